"""Inline SVG charts for the HTML report: stacked bars, step lines and strips on a log axis.

The charts are plain markup with no scripts or external references, so a
report stays one self-contained file. Colours and fonts come from the page's
CSS classes (``axis``, ``grid``, ``label``, ``value``, ``inside``, ``density``,
``whisker``), so the
charts follow the page's light or dark scheme. Every label is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 960


@dataclass(frozen=True, slots=True)
class Segment:
    """One part of a stacked bar."""

    label: str
    value: float
    color: str


@dataclass(frozen=True, slots=True)
class Bar:
    """A labelled bar made of segments laid end to end."""

    label: str
    segments: tuple[Segment, ...]

    @property
    def total(self) -> float:
        return sum(s.value for s in self.segments)


@dataclass(frozen=True, slots=True)
class Series:
    """A line: (x, y) points in increasing x."""

    label: str
    color: str
    points: tuple[tuple[float, float], ...]


@dataclass(frozen=True, slots=True)
class Mark:
    """A labelled value on a strip, such as a percentile."""

    label: str
    value: float
    color: str


@dataclass(frozen=True, slots=True)
class Strip:
    """A row of a strip chart: its values shaded by how many fall at each point,
    a line from ``low`` to ``high``, its marks, and a note at the right end."""

    label: str
    values: tuple[float, ...] = ()
    marks: tuple[Mark, ...] = ()
    low: float | None = None
    high: float | None = None
    note: str = ""


def nice_ticks(maximum: float, target: int = 5) -> list[float]:
    """Round tick values from 0 to at least ``maximum`` (steps of 1, 2, 2.5 or 5 × 10ⁿ)."""
    if maximum <= 0:
        return [0.0, 1.0]
    raw = maximum / target
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    count = math.ceil(maximum / step - 1e-9)
    return [i * step for i in range(count + 1)]


def log_ticks(low: float, high: float) -> list[float]:
    """Powers of ten from at or below ``low`` to at or above ``high`` (both > 0), at least
    one decade apart; over two decades or fewer, 2 and 5 times each power as well."""
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    last = max(last, first + 1)
    steps = (1, 2, 5) if last - first <= 2 else (1,)
    ticks = [float(f"{m}e{e}") for e in range(first, last) for m in steps]
    return [*ticks, float(f"1e{last}")]


def _label_width(rows: Sequence[Bar] | Sequence[Strip], least: int) -> int:
    """Room for the longest row label (``short_poll (http/1.1)``), at least ``least`` and at most 260."""
    longest = max((len(r.label) for r in rows), default=0)
    return min(260, max(least, 8 * longest + 24))


def _fmt(x: float) -> str:
    return f"{x:.1f}".rstrip("0").rstrip(".")


def stacked_bars(bars: Sequence[Bar], value_text: Callable[[float], str]) -> str:
    """Horizontal stacked bars, one row per bar, on a shared linear axis.

    Segments wide enough to hold their value are labelled inside; every segment
    has a tooltip; each bar ends with its total.
    """
    label_width, total_width, row, bar_height, top, axis = _label_width(bars, 130), 96, 40, 24, 8, 30
    plot = WIDTH - label_width - total_width
    ticks = nice_ticks(max((b.total for b in bars), default=0))
    scale = plot / ticks[-1]
    height = top + row * len(bars) + axis
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img">']
    bottom = top + row * len(bars)
    for tick in ticks:
        tx = _fmt(label_width + tick * scale)
        out.append(f'<line class="grid" x1="{tx}" y1="{top}" x2="{tx}" y2="{bottom}"/>')
        out.append(
            f'<text class="axis" x="{tx}" y="{bottom + 18}" text-anchor="middle">{escape(value_text(tick))}</text>'
        )
    for i, bar in enumerate(bars):
        y = top + i * row + (row - bar_height) / 2
        middle = _fmt(y + bar_height / 2)
        out.append(
            f'<text class="label" x="{label_width - 12}" y="{middle}" text-anchor="end" '
            f'dominant-baseline="central">{escape(bar.label)}</text>'
        )
        x = float(label_width)
        for segment in bar.segments:
            if segment.value <= 0:
                continue
            w = segment.value * scale
            out.append(
                f'<rect x="{_fmt(x)}" y="{_fmt(y)}" width="{_fmt(max(w, 0.5))}" '
                f'height="{bar_height}" fill="{segment.color}">'
                f"<title>{escape(bar.label)} · {escape(segment.label)}: "
                f"{escape(value_text(segment.value))}</title></rect>"
            )
            text = value_text(segment.value)
            if w >= 9 * len(text) + 8:
                out.append(
                    f'<text class="inside" x="{_fmt(x + w / 2)}" y="{middle}" text-anchor="middle" '
                    f'dominant-baseline="central">{escape(text)}</text>'
                )
            x += w
        out.append(
            f'<text class="value" x="{_fmt(x + 8)}" y="{middle}" dominant-baseline="central">'
            f"{escape(value_text(bar.total))}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def step_lines(
    series: Sequence[Series],
    x_text: Callable[[float], str],
    y_text: Callable[[float], str],
    x_title: str,
    y_title: str,
) -> str:
    """Lines that step up at each point (a cumulative count), on linear axes
    starting at zero; each line is held level to the right edge."""
    height, left, right, top, bottom = 340, 70, 24, 14, 52
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    x_ticks = nice_ticks(max((p[0] for s in series for p in s.points), default=0), 8)
    y_ticks = nice_ticks(max((p[1] for s in series for p in s.points), default=0), 5)
    sx, sy = plot_w / x_ticks[-1], plot_h / y_ticks[-1]

    def at(x: float, y: float) -> str:
        return f"{_fmt(left + x * sx)},{_fmt(top + plot_h - y * sy)}"

    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img">']
    for tick in y_ticks:
        ty = _fmt(top + plot_h - tick * sy)
        out.append(f'<line class="grid" x1="{left}" y1="{ty}" x2="{left + plot_w}" y2="{ty}"/>')
        out.append(
            f'<text class="axis" x="{left - 8}" y="{ty}" text-anchor="end" '
            f'dominant-baseline="central">{escape(y_text(tick))}</text>'
        )
    for tick in x_ticks:
        tx = _fmt(left + tick * sx)
        out.append(f'<line class="grid" x1="{tx}" y1="{top}" x2="{tx}" y2="{top + plot_h}"/>')
        out.append(
            f'<text class="axis" x="{tx}" y="{top + plot_h + 18}" text-anchor="middle">{escape(x_text(tick))}</text>'
        )
    out.append(
        f'<text class="axis title" x="{left + plot_w / 2}" y="{height - 6}" '
        f'text-anchor="middle">{escape(x_title)}</text>'
        f'<text class="axis title" transform="translate(16 {top + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(y_title)}</text>'
    )
    for s in series:
        path = [at(0, 0)]
        level = 0.0
        for x, y in s.points:
            path += [at(x, level), at(x, y)]
            level = y
        path.append(at(x_ticks[-1], level))
        out.append(
            f'<polyline fill="none" stroke="{s.color}" stroke-width="2.5" '
            f'stroke-linejoin="round" points="{" ".join(path)}">'
            f"<title>{escape(s.label)}: {escape(y_text(level))}</title></polyline>"
        )
    out.append("</svg>")
    return "".join(out)


def log_strips(strips: Sequence[Strip], value_text: Callable[[float], str], axis_title: str, bins: int = 120) -> str:
    """One row per strip on a shared logarithmic axis: the strip's values as shaded
    bins (darker where more values fall), a line from its low to its high, and its
    marks as ticks with tooltips. Values at or below zero are drawn at the axis's start.
    Empty when nothing is above zero."""
    positive = [
        v
        for s in strips
        for v in (*s.values, *(m.value for m in s.marks), s.low or 0, s.high or 0)
        if v > 0 and math.isfinite(v)
    ]
    if not positive:
        return ""
    ticks = log_ticks(min(positive), max(positive))
    label_width, note_width, row, top, axis = _label_width(strips, 110), 110, 44, 8, 48
    plot = WIDTH - label_width - note_width
    first, span = math.log10(ticks[0]), math.log10(ticks[-1]) - math.log10(ticks[0])

    def position(v: float) -> float:
        """0 to 1 along the axis."""
        if not v > 0:
            return 0.0
        return min(1.0, max(0.0, (math.log10(v) - first) / span))

    def x(v: float) -> str:
        return _fmt(label_width + position(v) * plot)

    height = top + row * len(strips) + axis
    bottom = top + row * len(strips)
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" role="img">']
    for tick in ticks:
        out.append(f'<line class="grid" x1="{x(tick)}" y1="{top}" x2="{x(tick)}" y2="{bottom}"/>')
        out.append(
            f'<text class="axis" x="{x(tick)}" y="{bottom + 18}" text-anchor="middle">{escape(value_text(tick))}</text>'
        )
    out.append(
        f'<text class="axis title" x="{_fmt(label_width + plot / 2)}" y="{height - 6}" '
        f'text-anchor="middle">{escape(axis_title)}</text>'
    )
    width = plot / bins
    for i, strip in enumerate(strips):
        middle = top + i * row + row / 2
        out.append(
            f'<text class="label" x="{label_width - 12}" y="{_fmt(middle)}" text-anchor="end" '
            f'dominant-baseline="central">{escape(strip.label)}</text>'
        )
        counts = [0] * bins
        for v in strip.values:
            counts[min(bins - 1, int(position(v) * bins))] += 1
        most = max(counts)
        for b, n in enumerate(counts):
            if n:
                out.append(
                    f'<rect class="density" x="{_fmt(label_width + b * width)}" y="{_fmt(middle - 8)}" '
                    f'width="{_fmt(width)}" height="16" fill-opacity="{0.15 + 0.7 * math.sqrt(n / most):.2f}"/>'
                )
        if strip.low is not None and strip.high is not None:
            out.append(
                f'<line class="whisker" x1="{x(strip.low)}" y1="{_fmt(middle)}" x2="{x(strip.high)}" y2="{_fmt(middle)}"/>'
            )
        for mark in strip.marks:
            out.append(
                f'<rect x="{_fmt(float(x(mark.value)) - 1.5)}" y="{_fmt(middle - 12)}" width="3" height="24" rx="1" '
                f'fill="{mark.color}"><title>{escape(strip.label)} · {escape(mark.label)}: '
                f"{escape(value_text(mark.value))}</title></rect>"
            )
        if strip.note:
            out.append(
                f'<text class="value" x="{label_width + plot + 12}" y="{_fmt(middle)}" '
                f'dominant-baseline="central">{escape(strip.note)}</text>'
            )
    out.append("</svg>")
    return "".join(out)
