"""The verdict engine: transports ranked on one figure, in groups too close to tell apart under a
tolerance given as data; exact for ``rtinspect report``, the demo's runs' tolerances for the demo."""

from __future__ import annotations

import pytest

from inspector.render.ranking import EXACT, Dimension, Tolerance, listed, rank


def shown(value: float) -> str:
    return f"{value:g}"


def groups(figures: list[tuple[str, float]], tolerance: Tolerance) -> list[list[str]]:
    return [[name for name, _ in group] for group in rank(figures, tolerance).groups]


def test_a_group_starts_at_the_lowest_figure_not_yet_placed_and_takes_what_is_close_to_it() -> None:
    figures = [("c", 30.0), ("a", 10.0), ("b", 11.0), ("d", 33.0), ("e", 90.0)]
    assert groups(figures, Tolerance(relative=0.2)) == [["a", "b"], ["c", "d"], ["e"]]
    # Close to the group's first figure, not to its last: no chain of small steps joins 10 and 14.
    assert groups([("a", 10.0), ("b", 11.5), ("c", 13.2)], Tolerance(relative=0.2)) == [["a", "b"], ["c"]]


def test_the_relative_tolerance_is_strict_and_the_absolute_floor_inclusive() -> None:
    assert not Tolerance(relative=0.2).close(10.0, 12.0)
    assert Tolerance(relative=0.2).close(10.0, 11.99)
    latency = Tolerance(relative=0.2, absolute=1.0, unit="ms")
    assert latency.close(0.5, 1.5) and not latency.close(0.5, 1.51)  # 3× apart, but within 1 ms
    # CPU time comes in whole clock ticks: a difference of exactly the floor is within it.
    assert Tolerance(absolute=100.0).close(5 * 0.01 * 1000 * 5, 7 * 0.01 * 1000 * 5)
    # Nothing is relatively close to zero; only the floor can join it.
    assert not Tolerance(relative=0.5).close(0.0, 0.001) and Tolerance(absolute=0.01).close(0.0, 0.001)


def test_exact_groups_equal_figures_only_in_the_order_given() -> None:
    figures = [("sse", 133.6), ("websocket", 110.6), ("http_stream", 110.6), ("long_poll", 110.61)]
    assert groups(figures, EXACT) == [["websocket", "http_stream"], ["long_poll"], ["sse"]]
    assert EXACT.close(5.0, 5.0) and not EXACT.close(5.0, 5.000001)
    assert rank(figures).tolerance == EXACT


def test_a_ranking_knows_its_lowest_figure_and_each_figure_against_it() -> None:
    ranking = rank([("b", 30.0), ("a", 10.0)])
    assert ranking.ranked == [("a", 10.0), ("b", 30.0)]
    assert (ranking.lowest, ranking.times_lowest(30.0)) == (10.0, 3.0)
    free = rank([("a", 0.0), ("b", 5.0)])
    assert free.times_lowest(5.0) is None  # no "times the lowest" of nothing
    empty = rank([])
    assert (empty.groups, empty.ranked, empty.lowest) == ((), [], None)


@pytest.mark.parametrize(
    ("tolerance", "words"),
    [
        (EXACT, "exactly"),
        (Tolerance(relative=0.02), "2%"),
        (Tolerance(relative=0.2, absolute=1.0, unit="ms"), "20% or 1 ms"),
        (Tolerance(relative=0.75), "75%"),
        (Tolerance(absolute=24.0, unit="ms"), "24 ms"),
    ],
)
def test_a_tolerance_says_itself(tolerance: Tolerance, words: str) -> None:
    assert str(tolerance) == words


def test_a_dimension_names_groups_together_never_ranking_within_them() -> None:
    cost = Dimension("Cost", shown, Tolerance(relative=0.2))
    text = cost.verdict([("c", 30.0), ("a", 10.0), ("b", 11.0), ("d", 33.0), ("e", 90.0)])
    assert text == (
        "Cost was lowest for a and b (10 to 11, within 20% of each other); "
        "then c and d (3.0× the lowest, 30 to 33, within 20% of each other); then e (9.0× the lowest, 90)"
    )
    text = cost.verdict([("a", 10.0), ("b", 11.0)])
    assert text == "Cost: a and b were within 20% of each other (10 to 11), too close for one run to rank"
    rounded = Dimension("Cost", lambda v: f"{v:.0f}", Tolerance(relative=0.2))
    text = rounded.verdict([("a", 10.0), ("b", 10.01), ("c", 20.0)])
    assert text == "Cost was lowest for a and b (10, within 20% of each other); then c (2.0× the lowest, 20)"
    ticks = [("a", 5 * 0.01 * 1000 * 5), ("b", 7 * 0.01 * 1000 * 5)]
    cpu = Dimension("CPU", shown, Tolerance(relative=0.2, absolute=100.0, unit="ms"))
    assert (
        cpu.verdict(ticks)
        == "CPU: a and b were within 20% or 100 ms of each other (250 to 350), too close for one run to rank"
    )


def test_a_dimension_with_one_transport_or_none() -> None:
    cost = Dimension("Cost", shown, Tolerance(relative=0.2))
    assert cost.verdict([("a", 10.0)]) == "Cost was 10 for a, the one transport run"
    assert cost.verdict([]) == "no transport had Cost"


def test_a_dimension_ranks_exactly_by_default() -> None:
    exact = Dimension("Cost", shown)
    text = exact.verdict([("b", 10.0), ("a", 10.0), ("c", 10.01)])
    assert text == "Cost was lowest for b and a (10 each); then c (1.00× the lowest, 10.01)"
    assert exact.verdict([("b", 10.0), ("a", 10.0)]) == "Cost was the same for b and a (10)"


def test_names_are_listed_as_a_sentence_lists_them() -> None:
    assert [listed(["a"]), listed(["a", "b"]), listed(["a", "b", "c"])] == ["a", "a and b", "a, b and c"]
