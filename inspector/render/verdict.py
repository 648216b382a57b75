"""The plain-language verdict: which transport spent the fewest wire bytes per message.

The comparison uses the all-in figure (every wire byte of a transport divided
by every message it delivered), among transports that delivered messages.
"""

from __future__ import annotations

from ..report import Report, TransportSummary
from .rows import transports_in_order
from .units import factor, human_bytes, is_number


def delivered(report: Report) -> list[TransportSummary]:
    """Transports that delivered messages, cheapest per message first."""
    seen = [
        t
        for t in transports_in_order(report)
        if t.messages.total > 0 and is_number(t.wire_bytes_per_message)
    ]
    return sorted(seen, key=lambda t: t.wire_bytes_per_message or 0.0)


def verdict(report: Report) -> tuple[str, ...]:
    """Sentences stating the comparison neutrally; the first one is the headline."""
    if not report.transports:
        return ("No transport was recognised in this traffic.",)
    ranked = delivered(report)
    if not ranked:
        return ("No transport delivered messages, so there is nothing to compare.",)
    best = ranked[0]
    best_cost = best.wire_bytes_per_message or 0.0
    if len(report.transports) == 1:
        return (
            f"Only one transport was seen: {best.transport}, at {human_bytes(best_cost)} "
            "on the wire per message (all-in).",
        )
    if len(ranked) == 1:
        return (
            f"Only {best.transport} delivered messages ({human_bytes(best_cost)} on the wire "
            "per message, all-in), so there is nothing to compare it with.",
        )
    sentences = [
        f"{best.transport} spent the fewest wire bytes per message: "
        f"{human_bytes(best_cost)} all-in."
    ]
    for other in ranked[1:]:
        cost = other.wire_bytes_per_message or 0.0
        if cost == best_cost:
            sentences.append(
                f"{other.transport} spent the same wire bytes per message as {best.transport}."
            )
        elif best_cost > 0:
            sentences.append(
                f"{other.transport} spent {factor(cost / best_cost)} the wire bytes per message "
                f"of {best.transport} ({human_bytes(cost)})."
            )
    return tuple(sentences)
