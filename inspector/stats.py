"""Distributions of per-message figures in bounded memory.

A connection may carry millions of messages, so a :class:`Distribution` keeps
count, sum and maximum exactly but not every value. It keeps every value up to
``capacity`` of them; past that, it counts each distinct value while there are
at most ``capacity`` distinct ones, and quantiles stay exact; past that too, it
counts values in logarithmic buckets (256 per doubling, each remembering the
least and greatest value it holds), coarsened as often as it takes to keep
``capacity`` buckets or fewer.

What a distribution holds depends only on the values added, never on their
order or on how they were split between distributions later merged: a bucket's
count, least and greatest value are the same whatever the order, and the
coarsening level is the finest that fits all the values. So the quantiles of a
report do not depend on how its connections were split between processes, nor
on the order in which their figures were merged, and merging costs time in
proportion to what is merged in. The total is exact too (summed as a fraction and
rounded once when read), so the mean does not depend on the order either.

A :class:`KeyedSample` keeps a bounded sample that, likewise, depends only on
the items offered; an :class:`EvenSample` keeps one spread evenly over a
stream whose order is its own (one connection's messages).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .checked import StateError, expect, fields, items, number, whole
from .report import Quantiles

#: Buckets per doubling at the finest logarithmic level (each spans 0.27 % of its values).
_STEPS_PER_DOUBLING = 256
#: The bucket of every value not above zero (durations and sizes are never negative).
_NOT_POSITIVE = -(1 << 62)
#: A float's value times this is a whole number (the smallest subnormal is 2**-1074).
_FIXED_POINT = 1074


def _fixed(value: float) -> int:
    """A finite ``value`` exactly, in units of 2**-1074."""
    numerator, denominator = value.as_integer_ratio()
    return numerator << (_FIXED_POINT - denominator.bit_length() + 1)


def _bucket(value: float, level: int) -> int:
    """The bucket of ``value`` at logarithmic ``level`` (1 and up): each level's
    buckets are pairs of the level below's, so a value's bucket at any level
    follows from its bucket at level 1."""
    if value <= 0:
        return _NOT_POSITIVE
    return math.floor(math.log2(value) * _STEPS_PER_DOUBLING) >> (level - 1)


def _summed(counts: dict[float, int], whole: int, not_finite: float) -> tuple[int, float]:
    """``whole`` and ``not_finite`` (as :class:`Distribution` keeps them) with ``counts`` of values added."""
    for value, n in counts.items():
        if math.isfinite(value):
            whole += _fixed(value) * n
        else:
            not_finite += value * n
    return whole, not_finite


def _tally(values: list[float]) -> dict[float, int]:
    counts: dict[float, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


class Distribution:
    """count, total and max exact; quantiles from every value up to ``capacity``
    values, then from the count of each distinct value up to ``capacity`` of them,
    then from up to ``capacity`` logarithmic buckets (see the module's docstring)."""

    __slots__ = ("_capacity", "_counts", "_exact", "_level", "_max", "_not_finite", "_sorted", "_values", "count")

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.count = 0
        #: The sum of the values no longer kept (past ``capacity`` distinct ones): of the
        #: finite ones exactly (see :func:`_fixed`), and of the others.
        self._exact = 0
        self._not_finite = 0.0
        self._max = -math.inf
        self._capacity = capacity
        #: Every value, in the order added, while there are at most ``capacity``.
        self._values: list[float] | None = []
        #: Then, at level 0: each distinct value and how many times it was added;
        #: at level 1 and up: each bucket and [count, least value, greatest value].
        self._counts: dict[Any, Any] = {}
        self._level = 0
        #: The values in order (while kept), or (value or bucket, count, least,
        #: greatest) in order: made when a quantile is asked for.
        self._sorted: list[Any] | None = None

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def max(self) -> float | None:
        return self._max if self.count else None

    @property
    def total(self) -> float:
        """The sum of the values, rounded once: the same whatever their order."""
        whole, not_finite = self._exact, self._not_finite
        if self._values is not None:
            whole, not_finite = _summed(_tally(self._values), whole, not_finite)
        elif not self._level:
            whole, not_finite = _summed(self._counts, whole, not_finite)
        try:
            exact = whole / (1 << _FIXED_POINT)
        except OverflowError:
            exact = math.inf if whole > 0 else -math.inf
        return exact + not_finite if not_finite else exact

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def exact(self) -> bool:
        """True while every value, or every distinct value's count, is kept, so quantiles are exact."""
        return self._level == 0

    def add(self, value: float) -> None:
        self.count += 1
        if value > self._max:
            self._max = value
        self._sorted = None
        values = self._values
        if values is not None:
            if len(values) < self._capacity:
                values.append(value)
                return
            self._count_values()
        counts = self._counts
        if not self._level:
            counts[value] = counts.get(value, 0) + 1
            if len(counts) > self._capacity:
                self._coarsen()
            return
        if math.isfinite(value):
            self._exact += _fixed(value)
        else:
            self._not_finite += value
        key = _bucket(value, self._level)
        bucket = counts.get(key)
        if bucket is None:
            counts[key] = [1, value, value]
            if len(counts) > self._capacity:
                self._coarsen()
        else:
            bucket[0] += 1
            if value < bucket[1]:
                bucket[1] = value
            elif value > bucket[2]:
                bucket[2] = value

    def merge(self, other: Distribution) -> None:
        """Add everything ``other`` saw, in time proportional to what it holds (and,
        when this one must be coarsened for it, to what this one holds). The result
        is what adding all of ``other``'s values here would have given."""
        if not other.count:
            return
        self.count += other.count
        self._exact += other._exact
        self._not_finite += other._not_finite
        if other._max > self._max:
            self._max = other._max
        self._sorted = None
        mine, theirs = self._values, other._values
        if mine is not None and theirs is not None and len(mine) + len(theirs) <= self._capacity:
            mine.extend(theirs)
            return
        if mine is not None:
            self._count_values()
        if theirs is not None:
            counts, level = _tally(theirs), 0
        else:
            counts, level = other._counts, other._level
        if level > self._level:
            self._coarsen(level)
        into = self._counts
        if not self._level:
            for value, n in counts.items():
                into[value] = into.get(value, 0) + n
        else:
            if not level:
                self._exact, self._not_finite = _summed(counts, self._exact, self._not_finite)
            _add_buckets(into, counts, level, self._level)
        if len(into) > self._capacity:
            self._coarsen()

    def _count_values(self) -> None:
        """Count the values kept instead of keeping them."""
        assert self._values is not None
        self._counts = _tally(self._values)
        self._values = None
        if len(self._counts) > self._capacity:
            self._coarsen()

    def _coarsen(self, level: int = 0) -> None:
        """Count in the buckets of ``level``, or of the next level up, and of later
        levels until ``capacity`` buckets hold everything."""
        level = max(level, self._level + 1)
        if not self._level:
            self._exact, self._not_finite = _summed(self._counts, self._exact, self._not_finite)
        while True:
            coarse: dict[int, list[float]] = {}
            _add_buckets(coarse, self._counts, self._level, level)
            if len(coarse) <= self._capacity:
                self._counts, self._level = coarse, level
                return
            level += 1

    def values(self) -> list[float]:
        """Every value added, in the order added, while there are at most ``capacity``;
        past that, ``capacity`` values at evenly spaced ranks, from the least to the
        greatest (their quantiles are the distribution's, as near as that many allow)."""
        if self._values is not None:
            return list(self._values)
        last = self.count - 1
        steps = max(1, self._capacity - 1)
        return _ranked_many(self._ordered(), [round(i * last / steps) for i in range(steps + 1)])

    def copy(self) -> Distribution:
        """An independent copy."""
        twin = Distribution(self._capacity)
        twin.count, twin._max, twin._level = self.count, self._max, self._level
        twin._exact, twin._not_finite = self._exact, self._not_finite
        twin._values = None if self._values is None else list(self._values)
        if self._level:
            twin._counts = {key: list(bucket) for key, bucket in self._counts.items()}
        else:
            twin._counts = dict(self._counts)
        return twin

    def to_json(self) -> dict[str, Any]:
        """Everything this distribution holds, as JSON (the values in a canonical order)."""
        state: dict[str, Any] = {"capacity": self._capacity, "count": self.count, "exact_total": hex(self._exact)}
        if self._not_finite:
            raise ValueError("a distribution of values that are not finite has no JSON form")
        if self.count:
            state["max"] = self._max
        if self._values is not None:
            state["values"] = sorted(self._values)
        elif self._level:
            state["level"] = self._level
            state["buckets"] = [[key, *bucket] for key, bucket in sorted(self._counts.items())]
        else:
            state["counts"] = [[value, n] for value, n in sorted(self._counts.items())]
        return state

    @classmethod
    def from_json(cls, state: object) -> Distribution:
        """A distribution as :meth:`to_json` wrote it; :class:`~inspector.checked.StateError` if it is not one."""
        state = fields(state, "distribution")
        capacity = whole(state.get("capacity"), "distribution capacity")
        if not 1 <= capacity <= 1 << 20:
            raise StateError(f"distribution capacity: {capacity} out of range")
        d = cls(capacity)
        d.count = whole(state.get("count"), "distribution count")
        try:
            d._exact = int(state.get("exact_total"), 16)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise StateError("distribution total: expected a hexadecimal integer") from None
        if d.count:
            d._max = number(state.get("max"), "distribution max")
        held = 0
        if "values" in state:
            d._values = [number(v, "distribution value") for v in items(state["values"], "distribution values")]
            held = len(d._values)
        elif "buckets" in state:
            d._values, d._level = None, whole(state.get("level"), "distribution level")
            if not 1 <= d._level <= 64:
                raise StateError(f"distribution level: {d._level} out of range")
            for entry in items(state["buckets"], "distribution buckets"):
                key, n, low, high = items(entry, "distribution bucket")
                d._counts[expect(key, int, "bucket")] = [
                    whole(n, "bucket count"),
                    number(low, "bucket least"),
                    number(high, "bucket greatest"),
                ]
                held += n
        else:
            d._values = None
            for entry in items(state.get("counts"), "distribution counts"):
                value, n = items(entry, "distribution count")
                d._counts[number(value, "distribution value")] = whole(n, "value count")
                held += n
        if held != d.count or len(d._values if d._values is not None else d._counts) > capacity:
            raise StateError("distribution: what it holds does not add up to its count")
        return d

    def _ordered(self) -> list[tuple[float, int, float, float]]:
        ordered = self._sorted
        if ordered is None:
            if self._level:
                ordered = [(key, int(b[0]), b[1], b[2]) for key, b in sorted(self._counts.items())]
            else:
                ordered = [(value, n, value, value) for value, n in sorted(self._counts.items())]
            self._sorted = ordered
        return ordered

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0 <= q <= 1), interpolating linearly between the closest
        ranks as ``statistics.quantiles(method="inclusive")`` and numpy's default do.

        Past ``capacity`` distinct values, a rank's value is read within its bucket,
        spacing the bucket's values evenly from its least to its greatest."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be between 0 and 1, not {q}")
        if not self.count:
            raise ValueError("quantile of an empty distribution")
        position = q * (self.count - 1)
        below = int(position)
        fraction = position - below
        if self._values is not None:
            values = self._sorted
            if values is None:
                values = self._sorted = sorted(self._values)
            if below == self.count - 1:
                return values[below]
            return values[below] + (values[below + 1] - values[below]) * fraction
        ordered = self._ordered()
        if below == self.count - 1:
            return _ranked(ordered, below)
        low = _ranked(ordered, below)
        return low + (_ranked(ordered, below + 1) - low) * fraction

    def summary(self) -> Quantiles | None:
        """Count, mean, median, 95th percentile and maximum; None when empty."""
        if not self.count:
            return None
        return Quantiles(
            count=self.count,
            mean=self.total / self.count,
            p50=self.quantile(0.5),
            p95=self.quantile(0.95),
            max=self._max,
            exact=self.exact,
        )

    def __repr__(self) -> str:
        return f"Distribution(count={self.count}, mean={self.mean}, max={self.max}, exact={self.exact})"


def _add_buckets(into: dict[int, list[float]], counts: dict[Any, Any], level: int, to_level: int) -> None:
    """Add ``counts`` of ``level`` (0: distinct values) into buckets of ``to_level``."""
    if level:
        shift = to_level - level
        for key, (n, low, high) in counts.items():
            if shift and key != _NOT_POSITIVE:
                key >>= shift
            _into(into, key, n, low, high)
    else:
        for value, n in counts.items():
            _into(into, _bucket(value, to_level), n, value, value)


def _into(into: dict[int, list[float]], key: int, n: float, low: float, high: float) -> None:
    bucket = into.get(key)
    if bucket is None:
        into[key] = [n, low, high]
    else:
        bucket[0] += n
        if low < bucket[1]:
            bucket[1] = low
        if high > bucket[2]:
            bucket[2] = high


def _ranked_many(ordered: list[tuple[float, int, float, float]], ranks: list[int]) -> list[float]:
    """The values of ``ranks`` (in increasing order), as :func:`_ranked` reads each."""
    out: list[float] = []
    start = 0
    entries = iter(ordered)
    _, n, low, high = next(entries)
    for rank in ranks:
        while rank >= start + n:
            start += n
            _, n, low, high = next(entries)
        within = rank - start
        out.append(low if n == 1 or low == high else low + (high - low) * within / (n - 1))
    return out


def _ranked(ordered: list[tuple[float, int, float, float]], rank: int) -> float:
    """The value of ``rank`` (from 0) among the counted values."""
    for _, n, low, high in ordered:
        if rank < n:
            if n == 1 or low == high:
                return low
            return low + (high - low) * rank / (n - 1)
        rank -= n
    raise AssertionError("rank past the count")


class EvenSample:
    """Up to ``capacity`` items spread evenly over everything offered: every
    ``stride``-th item is kept, and the stride doubles (dropping every other
    kept item) whenever the sample fills. ``offered`` counts every item."""

    __slots__ = ("_capacity", "_items", "_skip", "offered", "stride")

    def __init__(self, capacity: int = 512) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2, not {capacity}")
        self._capacity = capacity
        self._items: list[object] = []
        self._skip = 0
        self.offered = 0
        self.stride = 1

    def offer(self, item: object) -> None:
        self.offered += 1
        if self._skip:
            self._skip -= 1
            return
        self._items.append(item)
        self._skip = self.stride - 1
        if len(self._items) >= self._capacity:
            # Keeps items 0, 2s, 4s, ...; the next one due is still s - 1 items away.
            del self._items[1::2]
            self.stride *= 2

    @property
    def capacity(self) -> int:
        return self._capacity

    def copy(self) -> EvenSample:
        twin = EvenSample(self._capacity)
        twin._items = list(self._items)
        twin._skip, twin.offered, twin.stride = self._skip, self.offered, self.stride
        return twin

    @property
    def items(self) -> list[object]:
        return list(self._items)


def _mixed(key: int) -> int:
    """A 64-bit integer whose every bit depends on every bit of ``key`` (splitmix64's finaliser)."""
    key = (key ^ (key >> 30)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
    key = (key ^ (key >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return key ^ (key >> 31)


class KeyedSample[T]:
    """Up to ``capacity`` items, chosen by what they are rather than by when they came.

    Each item has a stable key (``key``, an integer the same in every process);
    an item is kept while the low ``level`` bits of its key, mixed, are zero, and
    the level rises by one whenever more than ``capacity`` items are kept. So
    an item is kept with odds 1 in 2**level, evenly over the items, and what the
    sample holds depends only on the items offered, never on their order or on
    how they were split between samples later merged (the level is the lowest
    that fits them all). ``offered`` counts every item.
    """

    __slots__ = ("_capacity", "_items", "_key", "level", "offered")

    def __init__(self, capacity: int, key: Callable[[T], int]) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self._capacity = capacity
        self._key = key
        #: The items kept, each with its mixed key.
        self._items: list[tuple[int, T]] = []
        self.level = 0
        self.offered = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    def offer(self, item: T) -> None:
        self.offered += 1
        mixed = _mixed(self._key(item))
        if mixed & ((1 << self.level) - 1):
            return
        self._items.append((mixed, item))
        if len(self._items) > self._capacity:
            self._rise(self.level + 1)

    def merge(self, other: KeyedSample[T]) -> None:
        """Add what ``other`` kept: the sample one would have of all the items offered to both."""
        self.offered += other.offered
        self._items += other._items
        self._rise(max(self.level, other.level))

    def _rise(self, level: int) -> None:
        """Keep the items of ``level``, or of the lowest level above it that fits them."""
        while True:
            mask = (1 << level) - 1
            kept = [entry for entry in self._items if not entry[0] & mask]
            if len(kept) <= self._capacity:
                self._items, self.level = kept, level
                return
            level += 1

    def copy(self) -> KeyedSample[T]:
        twin = KeyedSample(self._capacity, self._key)
        twin._items, twin.level, twin.offered = list(self._items), self.level, self.offered
        return twin

    def restore(self, items: list[T], *, level: int, offered: int) -> None:
        """Hold ``items`` kept at ``level`` of ``offered`` (as read back from :attr:`items`);
        :class:`~inspector.checked.StateError` if they could not have been."""
        mask = (1 << level) - 1
        self._items = [(_mixed(self._key(item)), item) for item in items]
        if len(items) > self._capacity or len(items) > offered or any(m & mask for m, _ in self._items):
            raise StateError("sample: its items could not have been kept at its level")
        self.level, self.offered = level, offered

    @property
    def items(self) -> list[T]:
        """The items kept, in their own order (they must be comparable)."""
        return sorted(item for _, item in self._items)  # type: ignore[type-var]
