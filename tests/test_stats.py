"""Bounded distributions: exact while small, a deterministic sample when large."""

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
    assert d.exact == (len(items) <= 8)


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


def test_memory_stays_bounded_and_the_sample_is_representative() -> None:
    items = list(range(100_000))
    random.Random(7).shuffle(items)
    d = distribution(items, capacity=1000)
    assert not d.exact
    assert len(d._values) == 1000
    assert d.count == 100_000 and d.max == 99_999 and d.total == sum(items)
    assert abs(d.quantile(0.5) - 50_000) < 5_000
    assert abs(d.quantile(0.95) - 95_000) < 3_000
    summary = d.summary()
    assert summary is not None and not summary.exact


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


def test_merge_past_capacity_is_bounded_deterministic_and_weighted() -> None:
    def merged() -> Distribution:
        d = distribution([0.0] * 10_000, capacity=500)
        d.merge(distribution([1.0] * 90_000, capacity=500))
        d.merge(Distribution())
        return d

    d = merged()
    assert not d.exact
    assert len(d._values) == 500
    assert d.count == 100_000 and d.total == 90_000 and d.max == 1.0
    # Each side is sampled in proportion to the values it stands for, not to its sample size.
    share_of_ones = sum(d._values) / len(d._values)
    assert 0.85 < share_of_ones < 0.95
    assert d.quantile(0.5) == 1.0
    assert d.quantile(0.02) == 0.0
    assert d.summary() == merged().summary()


def test_merge_into_an_empty_distribution() -> None:
    d = Distribution(10)
    d.merge(distribution([float(i) for i in range(50)], capacity=10))
    assert d.count == 50 and not d.exact and len(d._values) == 10


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Distribution(0)
