"""Numbers as people read them: byte units, counts, percentages, factors.

Byte units are decimal (1 KB = 1000 B), as Wireshark's statistics show them.
Exact integers are in the JSON and CSV views; these strings are for reading.
"""

from __future__ import annotations

import math

from ..report import Quantiles

#: Shown where a figure does not exist (no messages, nothing to divide by).
MISSING = "–"
#: Prefixed to a figure estimated from a sample.
ESTIMATE = "~"

_BYTE_UNITS = ("B", "KB", "MB", "GB", "TB")


def is_number(value: float | None) -> bool:
    """True for a finite number (not None, NaN or infinity)."""
    return value is not None and math.isfinite(value)


def human_bytes(n: float | None) -> str:
    """``812 B``, ``48.3 B``, ``1.2 KB``, ``123 KB``, ``4.5 MB``."""
    if not is_number(n):
        return MISSING
    assert n is not None
    if abs(n) < 1000:
        return f"{n:.0f} B" if float(n).is_integer() else f"{n:.1f} B"
    exponent = min(int(math.log10(abs(n)) // 3), len(_BYTE_UNITS) - 1)
    value = n / 1000**exponent
    if round(abs(value), 1) >= 1000 and exponent < len(_BYTE_UNITS) - 1:
        exponent, value = exponent + 1, value / 1000
    digits = 1 if abs(value) < 99.95 else 0
    return f"{value:.{digits}f} {_BYTE_UNITS[exponent]}"


def count(n: int) -> str:
    """An integer with thousands separators: ``12,345``."""
    return f"{n:,}"


def percent(ratio: float | None) -> str:
    """A ratio as a percentage with one decimal: ``37.2%``."""
    if ratio is None or not is_number(ratio * 100):
        return MISSING
    return f"{ratio * 100:.1f}%"


def factor(x: float) -> str:
    """How many times as much: ``3.1×``, ``12×``, ``1,250×``; never rounds a
    difference away to ``1.0×``."""
    if not is_number(x):
        return MISSING
    if x < 10:
        text = f"{x:.1f}"
        if text == "1.0" and x != 1:
            text = f"{x:.2f}"
        return f"{text}×"
    return f"{x:,.0f}×"


def seconds(s: float | None) -> str:
    """A duration: ``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if not is_number(s):
        return MISSING
    assert s is not None
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        minutes, rest = divmod(round(s), 60)
        return f"{minutes} min {rest:02d} s"
    hours, rest = divmod(round(s) // 60, 60)
    return f"{hours} h {rest:02d} min"


def milliseconds(ms: float | None) -> str:
    """A latency given in milliseconds: ``0.25 ms``, ``3.1 ms``, ``508 ms``, ``1,007 ms``."""
    if not is_number(ms):
        return MISSING
    assert ms is not None
    if abs(ms) < 1:
        return f"{ms:.2g} ms"
    if abs(ms) < 10:
        return f"{ms:.1f} ms"
    return f"{ms:,.0f} ms"


def quantile_bytes(q: Quantiles | None) -> str:
    """p50 and p95 of a byte distribution, ``~`` marking sampled estimates."""
    if q is None or q.count == 0:
        return MISSING
    mark = "" if q.exact else ESTIMATE
    return f"{mark}{human_bytes(q.p50)} / {mark}{human_bytes(q.p95)}"
