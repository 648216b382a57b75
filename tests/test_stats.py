"""Bounded distributions: every value while few, then counts of distinct values, then logarithmic
buckets; the same whatever the order and split of the values."""

from __future__ import annotations

import random
import statistics
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inspector.report import Quantiles
from inspector.stats import Distribution

# What a distribution holds: byte counts and durations, never negative.
values = st.lists(st.floats(min_value=0, max_value=1e9, allow_nan=False), min_size=2, max_size=300)


def distribution(items: Sequence[float], capacity: int = 4096) -> Distribution:
    d = Distribution(capacity)
    for item in items:
        d.add(item)
    return d


@given(values, st.sampled_from([2, 4, 10, 20, 100]))
def test_quantiles_match_statistics_inclusive(items: list[float], n: int) -> None:
    d = distribution(items)
    expected = statistics.quantiles(items, n=n, method="inclusive")
    assert [d.quantile(i / n) for i in range(1, n)] == pytest.approx(expected, rel=1e-9, abs=1e-6)
    assert d.quantile(0) == min(items)
    assert d.quantile(1) == max(items)


@given(values)
def test_count_total_max_and_mean_are_exact(items: list[float]) -> None:
    d = distribution(items, capacity=8)
    assert d.count == len(items)
    assert d.total == pytest.approx(sum(items), rel=1e-9, abs=1e-6)
    assert d.max == max(items)
    assert d.mean == pytest.approx(sum(items) / len(items), rel=1e-9, abs=1e-6)
    assert d.exact == (len(set(items)) <= 8)


def test_empty_distribution() -> None:
    d = Distribution()
    assert d.summary() is None
    assert d.mean is None and d.max is None and d.exact
    with pytest.raises(ValueError):
        d.quantile(0.5)


def test_one_value() -> None:
    d = distribution([3.0])
    assert d.summary() == Quantiles(count=1, mean=3.0, p50=3.0, p95=3.0, max=3.0, exact=True)


def test_summary() -> None:
    summary = distribution(range(1, 101)).summary()
    assert summary is not None
    assert (summary.count, summary.mean, summary.p50, summary.max, summary.exact) == (100, 50.5, 50.5, 100, True)
    assert summary.p95 == pytest.approx(95.05)


def test_quantile_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError):
        distribution([1.0, 2.0]).quantile(1.5)


def test_memory_stays_bounded_and_quantiles_stay_close() -> None:
    items = list(range(100_000))
    random.Random(7).shuffle(items)
    d = distribution(items, capacity=1000)
    assert not d.exact
    assert len(d._counts) <= 1000
    assert d.count == 100_000 and d.max == 99_999 and d.total == sum(items)
    assert d.quantile(0) == 0 and d.quantile(1) == 99_999
    assert d.quantile(0.5) == pytest.approx(49_999.5, rel=0.01)
    assert d.quantile(0.95) == pytest.approx(94_999.05, rel=0.01)
    summary = d.summary()
    assert summary is not None and not summary.exact


def test_many_values_few_distinct_stay_exact() -> None:
    items = [float(i % 50) for i in range(100_000)]
    d = distribution(items, capacity=100)
    assert d.exact and len(d._counts) == 50
    assert [d.quantile(q) for q in (0.25, 0.5, 0.95)] == statistics.quantiles(items, n=20, method="inclusive")[4::5][
        :2
    ] + [statistics.quantiles(items, n=100, method="inclusive")[94]]


def test_past_capacity_quantiles_are_within_a_fraction_of_a_percent() -> None:
    generator = random.Random(11)
    items = [generator.lognormvariate(5, 1.5) for _ in range(50_000)]
    d = distribution(items)
    assert not d.exact
    exact = statistics.quantiles(items, n=100, method="inclusive")
    for q in (1, 25, 50, 75, 95, 99):
        assert d.quantile(q / 100) == pytest.approx(exact[q - 1], rel=0.003)


def test_the_same_values_give_the_same_sample() -> None:
    items = [random.Random(3).random() for _ in range(20_000)]
    assert distribution(items, 100).summary() == distribution(items, 100).summary()


def test_asking_for_quantiles_does_not_change_later_results() -> None:
    items = [float(i % 977) for i in range(10_000)]
    asked, quiet = Distribution(50), Distribution(50)
    for i, item in enumerate(items):
        asked.add(item)
        quiet.add(item)
        if i % 1000 == 0:
            asked.quantile(0.5)
    assert asked.summary() == quiet.summary()


@given(values, values)
def test_merge_is_exact_while_everything_fits(a: list[float], b: list[float]) -> None:
    merged = distribution(a)
    merged.merge(distribution(b))
    whole = distribution(a + b)
    assert merged.exact
    assert merged.count == whole.count and merged.max == whole.max
    assert merged.total == pytest.approx(whole.total)
    assert [merged.quantile(q) for q in (0, 0.25, 0.5, 0.95, 1)] == [whole.quantile(q) for q in (0, 0.25, 0.5, 0.95, 1)]


def test_merge_past_capacity_is_bounded_and_weighted() -> None:
    generator = random.Random(5)
    low = [generator.uniform(0, 1) for _ in range(10_000)]
    high = [generator.uniform(10, 11) for _ in range(90_000)]
    d = distribution(low, capacity=500)
    d.merge(distribution(high, capacity=500))
    d.merge(Distribution())
    assert not d.exact
    assert len(d._counts) <= 500
    assert d.count == 100_000 and d.max == max(high)
    # Each side counts for the values it stands for.
    assert 10 <= d.quantile(0.11) <= 11
    assert 0 <= d.quantile(0.09) <= 1
    assert state(d) == state(distribution(low + high, capacity=500))


def test_merge_into_an_empty_distribution() -> None:
    d = Distribution(10)
    d.merge(distribution([float(i) for i in range(50)], capacity=10))
    assert d.count == 50 and not d.exact and len(d._counts) <= 10


def state(d: Distribution) -> object:
    """Everything but the total, a float sum whose last bits follow the order of addition."""
    summary = d.summary()
    quantiles = None if summary is None else (summary.p50, summary.p95, summary.exact)
    kept = None if d._values is None else sorted(d._values)
    return (d.count, d.max, d._level, kept, sorted(d._counts.items()), quantiles)


wide = st.lists(
    st.one_of(st.floats(min_value=0, max_value=1e9, allow_nan=False), st.integers(0, 40).map(float)),
    min_size=0,
    max_size=400,
)


@given(wide, st.lists(st.integers(0, 400), max_size=6), st.randoms(use_true_random=False), st.sampled_from([4, 16, 64]))
def test_any_split_and_any_order_of_merges_give_the_same_distribution(
    items: list[float], cuts: list[int], order: random.Random, capacity: int
) -> None:
    """Values spread over parts any way, added in any order and merged in any order
    and grouping, give what adding them all to one distribution gives."""
    whole = distribution(items, capacity)
    points = sorted({min(c, len(items)) for c in cuts})
    parts = []
    for a, b in zip([0, *points], [*points, len(items)], strict=True):
        part = items[a:b]
        order.shuffle(part)
        parts.append(distribution(part, capacity))
    order.shuffle(parts)
    while len(parts) > 1:
        i = order.randrange(len(parts) - 1)
        left, right = parts[i], parts.pop(i + 1)
        left.merge(right)
    assert state(parts[0]) == state(whole)
    shuffled = list(items)
    order.shuffle(shuffled)
    assert state(distribution(shuffled, capacity)) == state(whole)


def test_a_copy_is_independent() -> None:
    d = distribution([float(i) for i in range(100)], capacity=10)
    twin = d.copy()
    twin.add(1e6)
    twin.merge(distribution([5.0] * 3, capacity=10))
    assert state(d) == state(distribution([float(i) for i in range(100)], capacity=10))
    assert twin.count == 104


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Distribution(0)


def test_values_are_every_value_as_added_up_to_capacity_then_evenly_spaced_ranks() -> None:
    assert distribution([3.0, 1.0, 2.0, 1.0], capacity=10).values() == [3.0, 1.0, 2.0, 1.0]
    values = distribution([float(i) for i in reversed(range(1000))], capacity=100).values()
    assert len(values) == 100 and values == sorted(values)
    assert values[0] == 0 and values[-1] == 999 and values[50] == pytest.approx(505, abs=6)
    repeated = distribution([float(i % 7) for i in range(1000)], capacity=100)
    assert repeated.exact and repeated.values() == sorted(repeated.values())
    assert len(repeated.values()) == 100 and set(repeated.values()) == set(range(7))
