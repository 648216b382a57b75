"""Distributions of per-message figures in bounded memory.

A connection may carry millions of messages, so a :class:`Distribution` keeps
count, sum and maximum exactly but keeps values only up to a capacity; past it,
quantiles come from a uniform sample of the values seen. The sample is drawn
with a fixed seed, so the same values in the same order give the same report.
"""

from __future__ import annotations

import math
import random

from .report import Quantiles

_SEED = 0x5EED


class Distribution:
    """count, total and max exact; quantiles from every value up to ``capacity``
    values, then from a reservoir sample of ``capacity`` values (Algorithm R)."""

    __slots__ = ("_capacity", "_max", "_random_generator", "_sorted", "_values", "count", "total")

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.count = 0
        self.total: float = 0
        self._max = -math.inf
        self._capacity = capacity
        self._values: list[float] = []
        self._sorted: list[float] | None = None
        #: Made on first need: most distributions stay exact and never draw.
        self._random_generator: random.Random | None = None

    @property
    def _random(self) -> random.Random:
        if self._random_generator is None:
            self._random_generator = random.Random(_SEED)
        return self._random_generator

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def max(self) -> float | None:
        return self._max if self.count else None

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    @property
    def exact(self) -> bool:
        """True while every value added is kept, so quantiles are exact."""
        return len(self._values) == self.count

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        if value > self._max:
            self._max = value
        self._sorted = None
        values = self._values
        if len(values) < self._capacity:
            values.append(value)
        else:
            slot = int(self._random.random() * self.count)
            if slot < self._capacity:
                values[slot] = value

    def merge(self, other: Distribution) -> None:
        """Add everything ``other`` saw. The result is exact when both were exact and
        their values fit in this capacity; otherwise it keeps ``capacity`` values drawn
        from both, each side in proportion to the number of values it stands for."""
        if not other.count:
            return
        if not self.count and len(other._values) <= self._capacity:
            self._take(other)
            return
        mine, theirs = self._values, other._values
        exact = self.exact and other.exact
        self.count += other.count
        self.total += other.total
        self._max = max(self._max, other._max)
        self._sorted = None
        if exact and self.count <= self._capacity:
            mine.extend(theirs)
            return
        self._values = self._merged_sample(mine, self.count - other.count, theirs, other.count)

    def values(self) -> list[float]:
        """The values kept: every value added while :attr:`exact`, else a uniform sample."""
        return list(self._values)

    def _take(self, other: Distribution) -> None:
        """Become a copy of ``other``'s figures (its values are a uniform sample already)."""
        self.count, self.total, self._max = other.count, other.total, other._max
        self._values = list(other._values)
        self._sorted = None

    def copy(self) -> Distribution:
        """An independent copy, its sampling state included."""
        twin = Distribution(self._capacity)
        twin._take(self)
        if self._random_generator is not None:
            twin._random_generator = random.Random()
            twin._random_generator.setstate(self._random_generator.getstate())
        return twin

    def _merged_sample(self, a: list[float], a_count: int, b: list[float], b_count: int) -> list[float]:
        """A uniform sample of both sides: samples ``a`` and ``b`` stand for ``a_count``
        and ``b_count`` values; each slot takes a value of one side with probability
        in proportion to the values that side still stands for (a hypergeometric draw)."""
        size = min(self._capacity, len(a) + len(b))
        draw = self._random.random
        from_a, left_a, left = 0, a_count, a_count + b_count
        for _ in range(size):
            if draw() * left < left_a:
                from_a += 1
                left_a -= 1
            left -= 1
        from_a = max(min(from_a, len(a)), size - len(b))
        return self._random.sample(a, from_a) + self._random.sample(b, size - from_a)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (0 <= q <= 1), interpolating linearly between the closest
        ranks as ``statistics.quantiles(method="inclusive")`` and numpy's default do."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be between 0 and 1, not {q}")
        if not self.count:
            raise ValueError("quantile of an empty distribution")
        ordered = self._sorted
        if ordered is None:
            ordered = self._sorted = sorted(self._values)
        position = q * (len(ordered) - 1)
        below = int(position)
        if below == len(ordered) - 1:
            return ordered[below]
        fraction = position - below
        return ordered[below] + (ordered[below + 1] - ordered[below]) * fraction

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
