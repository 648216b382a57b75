"""The plain-language verdict: which transport spent the fewest wire bytes per message.

The comparison uses the all-in figure (every wire byte of a transport divided
by every message it delivered), among transports that delivered messages:
per application message (what the application received, see
:mod:`inspector.app_messages`) when every compared transport has them, else
per message as the transport frames it; the sentences say which.
When the traffic used more than one protocol (HTTP/1.1 and h2), transports are
ranked within each protocol, like with like, and then each transport seen over
both is set beside itself.

The ranking is :func:`.ranking.rank`'s, exact by default: a capture's bytes are
counted exactly, so only equal figures are the same. A caller that knows how
much its figures vary passes that :class:`~.ranking.Tolerance`, and transports
within it of the cheapest are said to be.
"""

from __future__ import annotations

from collections.abc import Callable

from ..report import Report, SessionsSummary, TransportSummary
from .ranking import EXACT, Ranking, Tolerance, rank
from .rows import protocols, transport_parts, transports_in_order
from .units import factor, human_bytes, is_number

#: The transport of requests that are no real-time channel (page loads, assets, API calls).
PLAIN_HTTP = "http"


def real_time(summaries: list[TransportSummary]) -> list[TransportSummary]:
    """The transports that are real-time channels: plain HTTP is never ranked against them."""
    return [t for t in summaries if t.transport != PLAIN_HTTP]


def delivered_messages(t: TransportSummary) -> bool:
    """Whether the transport delivered messages, so that it has a cost per message."""
    return t.messages.total > 0 and is_number(t.wire_bytes_per_message)


Cost = Callable[[TransportSummary], float | None]


def _per_message(t: TransportSummary) -> float | None:
    return t.wire_bytes_per_message


def _per_app_message(t: TransportSummary) -> float | None:
    return t.wire_bytes_per_app_message


def basis(summaries: list[TransportSummary]) -> tuple[Cost, str]:
    """What the comparison divides by, and its name: application messages when
    every transport that delivered messages has them, else the transports' own."""
    seen = list(filter(delivered_messages, summaries))
    if seen and all(t.app_messages.total and is_number(t.wire_bytes_per_app_message) for t in seen):
        return _per_app_message, "application message"
    return _per_message, "message"


def _ranked(
    summaries: list[TransportSummary], cost: Cost = _per_message, tolerance: Tolerance = EXACT
) -> Ranking[TransportSummary]:
    return rank(((t, cost(t) or 0.0) for t in summaries if delivered_messages(t)), tolerance)


def delivered(report: Report) -> list[TransportSummary]:
    """Transports that delivered messages, cheapest per message first."""
    return [t for t, _ in _ranked(real_time(transports_in_order(report))).ranked]


def cheapest_row(report: Report) -> int | None:
    """The row of the transport table (:func:`~inspector.render.rows.transport_parts`)
    that spent the fewest wire bytes per message, when there is a comparison."""
    parts = [t for _, t in transport_parts(report)]
    channels = real_time(parts)
    ranked = _ranked(channels, basis(channels)[0]).ranked
    return parts.index(ranked[0][0]) if len(ranked) > 1 else None


def _ranking(summaries: list[TransportSummary], over: str = "", tolerance: Tolerance = EXACT) -> list[str]:
    """Sentences ranking transports of one protocol (``over`` names it, e.g. " over h2")."""
    cost, unit = basis(summaries)
    ranking = _ranked(summaries, cost, tolerance)
    if not ranking.groups:
        return [f"No transport{over} delivered messages, so there is nothing to compare."]
    ranked = ranking.ranked
    best, best_cost = ranked[0]
    if len(summaries) == 1:
        return [
            f"Only one transport was seen{over}: {best.transport}, at {human_bytes(best_cost)} "
            f"on the wire per {unit} (all-in).",
        ]
    if len(ranked) == 1:
        return [
            f"Only {best.transport} delivered messages{over} ({human_bytes(best_cost)} on the wire "
            f"per {unit}, all-in), so there is nothing to compare it with.",
        ]
    sentences = [f"{best.transport} spent the fewest wire bytes per {unit}{over}: {human_bytes(best_cost)} all-in."]
    first, *later = ranking.groups
    for other, other_cost in first[1:]:
        if tolerance.exact:
            sentences.append(f"{other.transport} spent the same wire bytes per {unit} as {best.transport}{over}.")
        else:
            sentences.append(
                f"{other.transport} spent within {tolerance} of the wire bytes per {unit} "
                f"of {best.transport}{over} ({human_bytes(other_cost)})."
            )
    for group in later:
        for other, other_cost in group:
            times = ranking.times_lowest(other_cost)
            if times is not None:
                sentences.append(
                    f"{other.transport} spent {factor(times)} the wire bytes per {unit} "
                    f"of {best.transport}{over} ({human_bytes(other_cost)})."
                )
    return sentences


def _across(report: Report, first: str, second: str) -> list[str]:
    """Each transport seen over both protocols, set beside itself."""
    sentences = []
    for t in real_time(transports_in_order(report)):
        a, b = t.by_protocol.get(first), t.by_protocol.get(second)
        if a is None or b is None or not delivered_messages(a) or not delivered_messages(b):
            continue
        cost, unit = basis([a, b])
        cost_a, cost_b = cost(a) or 0.0, cost(b) or 0.0
        if cost_a > 0:
            sentences.append(
                f"{t.transport} over {second} spent {factor(cost_b / cost_a)} the wire bytes per {unit} "
                f"it spent over {first} ({human_bytes(cost_b)} against {human_bytes(cost_a)})."
            )
    return sentences


def verdict(report: Report, tolerance: Tolerance = EXACT) -> tuple[str, ...]:
    """Sentences stating the comparison neutrally; the first one is the headline. Transports
    within ``tolerance`` of the cheapest are said to be, not ranked against it."""
    if not report.transports:
        return ("No transport was recognised in this traffic.",)
    channels = real_time(transports_in_order(report))
    plain = report.transports.get(PLAIN_HTTP)
    if not channels:
        return (_plain_http(plain, alone=True),) if plain is not None else ()
    seen = protocols(report)
    sentences: list[str] = []
    if len(seen) <= 1:
        sentences += _ranking(channels, tolerance=tolerance)
    else:
        for protocol in seen:
            parts = [t.by_protocol[protocol] for t in channels if protocol in t.by_protocol]
            if parts:
                sentences += _ranking(parts, f" over {protocol}", tolerance)
        sentences += _across(report, seen[0], seen[1])
    sentences += [_sessions(name, s) for name, s in report.sessions.items()]
    if plain is not None:
        sentences.append(_plain_http(plain, alone=False))
    return tuple(sentences)


def _plain_http(t: TransportSummary, *, alone: bool) -> str:
    """Plain HTTP on a line of its own, with its bytes, never ranked against a stream."""
    what = f"{t.requests:,} plain HTTP request{'s' if t.requests != 1 else ''} ({human_bytes(t.wire_bytes.total)} on the wire)"
    if alone:
        return f"Only plain HTTP was seen: {what}; no real-time transport to compare."
    return f"Plain HTTP (page loads, assets, API calls) is not ranked against the real-time transports: {what}."


def _sessions(name: str, s: SessionsSummary) -> str:
    """One application protocol's sessions in a sentence."""
    paths = ", ".join(f"{path} ×{n:,}" for path, n in s.paths.items())
    per = (
        f"{human_bytes(s.wire_bytes_per_app_message)} on the wire per application message"
        if s.wire_bytes_per_app_message
        else "no application messages"
    )
    sentence = (
        f"{name}: {s.count:,} session{'s' if s.count != 1 else ''} ({paths}), {per}; "
        f"{s.app_messages.total:,} application and {s.control_messages.total:,} control messages"
    )
    if s.upgraded:
        sentence += f"; {human_bytes(s.before_upgrade_wire_bytes)} before the upgrade"
    return sentence + "."
