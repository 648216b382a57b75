"""Transports ranked on one figure, with what counts as too close to tell apart given as data.

A :class:`Tolerance` says how far apart two figures may be and still be the
same: within a part of the lower one (``relative=0.2``: 20 %), or within an
absolute floor in the figure's unit (``absolute=1.0, unit="ms"``), whichever
is wider. :func:`rank` orders the figures from lowest to highest in groups: a
group starts with the lowest figure not yet placed and takes every figure
within the tolerance of it, so transports one run cannot tell apart are named
together, never ranked. A :class:`Dimension` is what a verdict ranks on (its
name, how its figures are shown, its tolerance), and :meth:`Dimension.verdict`
says the ranking in one clause.

``rtinspect report`` ranks with :data:`EXACT` (only equal figures are the
same: a capture is counted exactly, see :mod:`.verdict`); the demo ranks each
of its dimensions with the tolerances its repeated runs showed
(:mod:`inspector.demo.verdicts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .units import factor


@dataclass(frozen=True, slots=True)
class Tolerance:
    """Two figures are the same when the higher is less than ``1 + relative`` times the lower,
    or at most ``absolute`` (in ``unit``) above it. The default is exact: equal figures only."""

    relative: float = 0.0
    absolute: float = 0.0
    unit: str = ""

    def close(self, low: float, high: float) -> bool:
        """Whether ``high`` (not below ``low``) is too close to ``low`` to tell apart."""
        # The margin keeps figures made of whole clock ticks from missing the floor by a rounding error.
        return high - low <= self.absolute * (1 + 1e-9) or (low > 0 and high / low < 1 + self.relative)

    @property
    def exact(self) -> bool:
        return not self.relative and not self.absolute

    def __str__(self) -> str:
        """``20% or 1 ms``; ``exactly`` for :data:`EXACT`."""
        parts = []
        if self.relative:
            parts.append(f"{self.relative * 100:g}%")
        if self.absolute:
            parts.append(f"{self.absolute:g} {self.unit}".rstrip())
        return " or ".join(parts) or "exactly"


#: Only equal figures are the same.
EXACT = Tolerance()


@dataclass(frozen=True, slots=True)
class Ranking[T]:
    """Items (transports, or their names) from the lowest figure to the highest, each with
    its figure, in groups too close to tell apart under ``tolerance``."""

    groups: tuple[tuple[tuple[T, float], ...], ...]
    tolerance: Tolerance

    @property
    def ranked(self) -> list[tuple[T, float]]:
        """Every item with its figure, lowest first."""
        return [placed for group in self.groups for placed in group]

    @property
    def lowest(self) -> float | None:
        return self.groups[0][0][1] if self.groups else None

    def times_lowest(self, value: float) -> float | None:
        """How many times the lowest figure ``value`` is; None when the lowest is not above zero."""
        lowest = self.lowest
        return value / lowest if lowest is not None and lowest > 0 else None


def rank[T](figures: Iterable[tuple[T, float]], tolerance: Tolerance = EXACT) -> Ranking[T]:
    """``figures`` from lowest to highest (equal figures in the order given), grouped: a group
    starts with the lowest figure not yet placed and takes every figure ``tolerance`` finds
    close to it."""
    groups: list[list[tuple[T, float]]] = []
    for item, value in sorted(figures, key=lambda placed: placed[1]):
        if groups and tolerance.close(groups[-1][0][1], value):
            groups[-1].append((item, value))
        else:
            groups.append([(item, value)])
    return Ranking(tuple(map(tuple, groups)), tolerance)


def listed(names: Sequence[str]) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


@dataclass(frozen=True, slots=True)
class Dimension:
    """What a verdict ranks transports on: its name as a sentence starts with it (``what``),
    how a figure is shown, and the tolerance within which figures are the same."""

    what: str
    shown: Callable[[float], str]
    tolerance: Tolerance = EXACT

    def verdict(self, figures: Iterable[tuple[str, float]]) -> str:
        """Transports (by name) from lowest to highest figure in one clause, in groups too
        close to tell apart; each later group says how many times the lowest it is."""
        ranking = rank(figures, self.tolerance)
        what, shown, within = self.what, self.shown, str(self.tolerance)
        ordered = ranking.ranked
        if not ordered:
            return f"no transport had {what}"
        if len(ordered) == 1:
            name, value = ordered[0]
            return f"{what} was {shown(value)} for {name}, the one transport run"

        def figures_of(group: tuple[tuple[str, float], ...]) -> str:
            low, high = shown(group[0][1]), shown(group[-1][1])
            if len(group) == 1:
                return low
            if self.tolerance.exact:
                return f"{low} each"
            return f"{low if low == high else f'{low} to {high}'}, within {within} of each other"

        def names_of(group: tuple[tuple[str, float], ...]) -> str:
            return listed([name for name, _ in group])

        first, *later = ranking.groups
        if not later and self.tolerance.exact:
            return f"{what} was the same for {names_of(first)} ({shown(first[0][1])})"
        if not later:
            return (
                f"{what}: {names_of(first)} were within {within} of each other ({shown(first[0][1])} to "
                f"{shown(ordered[-1][1])}), too close for one run to rank"
            )
        parts = [f"{what} was lowest for {names_of(first)} ({figures_of(first)})"]
        for group in later:
            times = ranking.times_lowest(group[0][1])
            parts.append(
                f"then {names_of(group)} ({f'{factor(times)} the lowest, ' if times is not None else ''}"
                f"{figures_of(group)})"
            )
        return "; ".join(parts)
