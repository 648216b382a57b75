"""Result tables, as aligned text or Markdown, and the numbers that go in them."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence

from inspector.processes import cpu_model


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by nearest rank."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def number(value: float | None, digits: int = 0) -> str:
    """A figure with thousands separators; ``–`` for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def ratio(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    return f"{value:.2f}×" if value < 10 else f"{value:.1f}×"


def mib(value: float | None) -> str:
    return "–" if value is None else f"{value / 2**20:,.1f}"


def render(headings: Sequence[str], rows: Sequence[Sequence[str]], fmt: str = "text") -> str:
    """Rows under headings; the first column left-aligned, the rest right-aligned."""
    if fmt == "markdown":
        left = _left_columns(headings)
        rule = ["---"] * left + ["---:"] * (len(headings) - left)
        lines = ["| " + " | ".join(headings) + " |", "| " + " | ".join(rule) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(str(c)) for c in column) for column in zip(headings, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i < _left_columns(headings) else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headings), line(["-" * w for w in widths]), *(line(row) for row in rows)])


def _left_columns(headings: Sequence[str]) -> int:
    """Leading text columns (names) are left-aligned: up to the first heading that is a figure."""
    return 2 if len(headings) > 2 and headings[1] in ("peer", "tool", "what") else 1


def machine() -> str:
    """nproc, CPU model and Python version: the facts a result needs beside it."""
    model = cpu_model() or "unknown CPU"
    load = ""
    try:
        load = f", load average {os.getloadavg()[0]:.2f} at the end"
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({model}), Python {platform.python_version()} "
        f"({sys.implementation.name}), Linux {platform.release()}{load}"
    )
