"""The rows of the readable transport and connection tables.

The terminal, Markdown and HTML views show the same columns with the same
figures; only the markup differs. Cells are plain text: strings that came from
traffic (addresses, targets, anomaly reasons) are not escaped here, each view
escapes them for its own markup.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..report import HTTP1, PROTOCOLS, TRANSPORTS, ConnectionSummary, Report, TransportSummary
from ..transport_layer import TransportLayer
from ..wire import Anomaly, Direction
from .units import MISSING, count, human_bytes, percent, quantile_bytes

#: Legend for the ``~`` mark, shown when a report has estimated figures.
ESTIMATE_LEGEND = "~ marks percentiles estimated from a sample (mean, max and counts are exact)."

#: Short names of the directions, as the column titles use them.
ARROWS = {Direction.CLIENT_TO_SERVER: "c→s", Direction.SERVER_TO_CLIENT: "s→c"}


@dataclass(frozen=True, slots=True)
class Column:
    """A column title, whether its cells are figures (aligned right), and a
    shorter title for narrow displays such as a terminal."""

    title: str
    numeric: bool = True
    short: str | None = None


@dataclass(frozen=True, slots=True)
class Grid:
    """One of the report's tables as every view shows it: its title, columns and rows, what
    the figures are (``caption``) and the notes under it. Only the markup is each view's."""

    title: str
    columns: tuple[Column, ...]
    rows: list[tuple[str, ...]]
    caption: str = ""
    notes: tuple[str, ...] = ()


TRANSPORT_COLUMNS = (
    Column("Transport", numeric=False),
    Column("Connections", short="Conns"),
    Column("Handshakes"),
    Column("Messages s→c / c→s", short="Msgs s→c/c→s"),
    Column("Payload"),
    Column("Wire"),
    Column("Overhead"),
    Column("Wire per message", short="Wire/msg"),
    Column("Wire per app message", short="Wire/app msg"),
    Column("Per message p50 / p95", short="p50 / p95"),
    Column("Anomalies", short="Anom."),
)

CONNECTION_COLUMNS = (
    Column("ID", numeric=False),
    Column("Transport", numeric=False),
    Column("Protocol", numeric=False, short="Proto"),
    Column("Application protocol", numeric=False, short="App"),
    Column("Client", numeric=False),
    Column("Server", numeric=False),
    Column("Exchanges"),
    Column("Wire c→s"),
    Column("Wire s→c"),
    Column("Messages s→c / c→s", short="Msgs s→c/c→s"),
    Column("Anomalies", numeric=False),
    Column("Close", numeric=False),
    Column("Targets", numeric=False),
)


SESSION_COLUMNS = (
    Column("Application protocol", numeric=False, short="App protocol"),
    Column("Sessions"),
    Column("Paths", numeric=False),
    Column("Wire"),
    Column("App messages s→c / c→s", short="App msgs s→c/c→s"),
    Column("Control messages s→c / c→s", short="Control s→c/c→s"),
    Column("Wire per app message", short="Wire/app msg"),
    Column("Before upgrade"),
)

#: What the sessions table shows.
SESSIONS_CAPTION = (
    "A session is what its protocol calls one (an Engine.IO sid across its polls and its upgraded WebSocket, "
    "a SockJS session), or one connection where the protocol has none. App messages are what the application's "
    "handlers received or sent; control messages are the protocol's own (handshakes, heartbeats, "
    "acknowledgements), and their bytes are the app_control category. Before upgrade: what the upgraded "
    "sessions spent before their WebSocket."
)

PROJECTION_COLUMNS = (
    Column("Transport", numeric=False),
    Column("Wire per day"),
    Column("Requests/s"),
    Column("Handshakes/h"),
    Column("TCP connects/h"),
    Column("Open connections", short="Open conns"),
)


def transports_in_order(report: Report) -> list[TransportSummary]:
    """The transports seen, in :data:`~inspector.report.TRANSPORTS` order
    (any other name after them, as the report lists it)."""
    known = [report.transports[name] for name in TRANSPORTS if name in report.transports]
    others = [t for name, t in report.transports.items() if name not in TRANSPORTS]
    return known + others


def protocols(report: Report) -> tuple[str, ...]:
    """The protocols the report's transports used, in :data:`~inspector.report.PROTOCOLS` order."""
    seen = {protocol for t in report.transports.values() for protocol in t.by_protocol}
    return tuple(p for p in PROTOCOLS if p in seen) + tuple(sorted(seen - set(PROTOCOLS)))


def transport_parts(report: Report) -> list[tuple[str, TransportSummary]]:
    """The rows of the transport table as (label, figures): one per transport
    when all traffic was HTTP/1.1, else one per transport and protocol
    ("sse (h2)"), so that like is set beside like."""
    if protocols(report) in ((), (HTTP1,)):
        return [(t.transport, t) for t in transports_in_order(report)]
    return [
        (f"{t.transport} ({protocol})", part)
        for t in transports_in_order(report)
        for protocol, part in t.by_protocol.items()
    ]


def http2_summary(report: Report) -> str | None:
    """One sentence on the report's HTTP/2 frames (None without HTTP/2)."""
    h2 = report.http2
    if h2 is None:
        return None
    frames = sum(sum(counts.values()) for counts in h2.frames.values())
    blocks, decoded = h2.header_block_bytes.total, h2.decoded_header_bytes.total
    saved = f" (HPACK saved {percent(1 - blocks / decoded)})" if decoded else ""
    return (
        f"HTTP/2: {count(frames)} frames; {human_bytes(blocks)} of header blocks carried "
        f"{human_bytes(decoded)} of headers{saved}; {human_bytes(h2.frame_header_bytes.total)} of frame headers; "
        f"{human_bytes(h2.control_bytes.total + h2.preface_bytes.total)} of control frames and prefaces; "
        f"{human_bytes(h2.connection_bytes.total)} outside every stream, shared among the transports."
    )


def layer_text(layer: TransportLayer) -> str:
    """Figures below the byte streams in a few words, both directions summed
    (``~`` marks estimated IP header bytes)."""
    total = layer.client_to_server + layer.server_to_client
    parts = []
    if total.tls_records:
        parts.append(f"{count(total.tls_records)} TLS records, {human_bytes(total.tls_record_bytes)}")
    if total.quic_packets:
        parts.append(
            f"{count(total.quic_packets)} QUIC packets, {human_bytes(total.quic_packet_bytes)} "
            f"({count(total.quic_ack_only_packets)} ACK-only, {human_bytes(total.quic_padding_bytes)} padding)"
        )
    if total.ip_header_bytes:
        mark = "~" if total.ip_header_bytes_estimated else ""
        parts.append(f"{mark}{human_bytes(total.ip_header_bytes)} of IP headers")
    return "; ".join(parts) if parts else "nothing recorded"


def transport_layer_summary(report: Report) -> str | None:
    """One sentence on what each transport's client legs cost below the byte streams
    (None when nothing recorded it)."""
    present = [(t.transport, t.transport_layer) for t in transports_in_order(report) if t.transport_layer]
    if not present:
        return None
    figures = "; ".join(f"{name}: {layer_text(layer)}" for name, layer in present if layer is not None)
    estimated = any(
        layer[direction].ip_header_bytes_estimated
        for _, layer in present
        if layer is not None
        for direction in Direction
    )
    legend = "; ~: estimated from the proxy's reads and writes" if estimated else ""
    return f"Below the byte streams (not in the wire bytes{legend}) — {figures}."


def _rate(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.2g}"


def projection_title(report: Report) -> str | None:
    """What the projection is of, and that it is one (None without a projection)."""
    p = report.projection
    if p is None:
        return None
    return (
        f"Projection: {count(p.clients)} clients, each receiving {p.messages_per_second:g} application "
        "messages/s from the server (from the measured traffic; not a measurement)"
    )


def projection_rows(report: Report) -> list[tuple[str, ...]]:
    """The projection table, one row per transport, in report order."""
    p = report.projection
    if p is None:
        return []
    return [
        (
            name,
            human_bytes(t.wire_bytes_per_day),
            _rate(t.requests_per_second),
            _rate(t.handshakes_per_hour),
            _rate(t.tcp_connects_per_hour),
            count(t.open_connections),
        )
        for name in [s.transport for s in transports_in_order(report)]
        if (t := p.transports.get(name)) is not None
    ]


def has_estimates(report: Report) -> bool:
    """Whether any figure in the transport table is a sampled estimate."""
    return any(t.bytes_per_message is not None and not t.bytes_per_message.exact for t in report.transports.values())


def report_notes(report: Report) -> list[str]:
    """The notes under the transport table: the HTTP/2 frames first, then the report's own,
    then what ``~`` marks where figures are estimated."""
    notes = list(report.notes)
    below = transport_layer_summary(report)
    if below is not None:
        notes.insert(0, below)
    frames = http2_summary(report)
    if frames is not None:
        notes.insert(0, frames)
    if has_estimates(report):
        notes.append(ESTIMATE_LEGEND)
    return notes


def transport_row(t: TransportSummary, label: str | None = None) -> tuple[str, ...]:
    """One transport's cells, in :data:`TRANSPORT_COLUMNS` order."""
    return (
        label or t.transport,
        count(t.connections),
        count(t.handshakes),
        f"{count(t.messages.server_to_client)} / {count(t.messages.client_to_server)}",
        human_bytes(t.payload_bytes.total),
        human_bytes(t.wire_bytes.total),
        percent(t.overhead_ratio),
        human_bytes(t.wire_bytes_per_message),
        human_bytes(t.wire_bytes_per_app_message),
        quantile_bytes(t.bytes_per_message),
        count(t.anomalies),
    )


def transport_rows(report: Report) -> list[tuple[str, ...]]:
    """The transport table (see :func:`transport_parts`)."""
    return [transport_row(t, label) for label, t in transport_parts(report)]


def anomaly_text(anomaly: Anomaly) -> str:
    """``c→s @1234: reason``, flagged when it is a request-smuggling shape."""
    flag = "security: " if anomaly.security else ""
    return f"{flag}{ARROWS[anomaly.direction]} @{anomaly.offset}: {anomaly.reason}"


def connection_row(c: ConnectionSummary) -> tuple[str, ...]:
    """One connection's cells, in :data:`CONNECTION_COLUMNS` order."""
    return (
        c.id,
        f"{c.transport} (rebuilt)" if c.reconstructed else c.transport,
        c.protocol,
        f"{c.app_protocol} {c.session}" if c.app_protocol and c.session else c.app_protocol or MISSING,
        c.client,
        c.server,
        count(c.exchanges),
        human_bytes(c.wire_bytes.client_to_server),
        human_bytes(c.wire_bytes.server_to_client),
        f"{count(c.messages.server_to_client)} / {count(c.messages.client_to_server)}",
        "; ".join(anomaly_text(a) for a in c.anomalies) or MISSING,
        c.close_reason or MISSING,
        " ".join(c.targets) or MISSING,
    )


def connection_rows(report: Report) -> list[tuple[str, ...]]:
    """The connection table, one row per connection in report order."""
    return [connection_row(c) for c in report.connections]


def transport_grid(report: Report) -> Grid | None:
    """The transport table (see :func:`transport_parts`); None without transports."""
    if not report.transports:
        return None
    return Grid("Transports", TRANSPORT_COLUMNS, transport_rows(report))


def session_rows(report: Report) -> list[tuple[str, ...]]:
    """The sessions of each application protocol, in :data:`SESSION_COLUMNS` order."""
    return [
        (
            name,
            count(s.count),
            "; ".join(f"{path} ×{count(n)}" for path, n in s.paths.items()) or MISSING,
            human_bytes(s.wire_bytes),
            f"{count(s.app_messages.server_to_client)} / {count(s.app_messages.client_to_server)}",
            f"{count(s.control_messages.server_to_client)} / {count(s.control_messages.client_to_server)}",
            human_bytes(s.wire_bytes_per_app_message),
            human_bytes(s.before_upgrade_wire_bytes) if s.upgraded else MISSING,
        )
        for name, s in report.sessions.items()
    ]


def session_grid(report: Report) -> Grid | None:
    """The application sessions table; None where no application protocol was recognised."""
    if not report.sessions:
        return None
    return Grid("Application sessions", SESSION_COLUMNS, session_rows(report), caption=SESSIONS_CAPTION)


def projection_grid(report: Report) -> Grid | None:
    """The projection table under its title, its assumptions as notes; None without a projection."""
    title = projection_title(report)
    if title is None or report.projection is None:
        return None
    return Grid(title, PROJECTION_COLUMNS, projection_rows(report), notes=report.projection.assumptions)


def connection_grid(report: Report) -> Grid | None:
    """The connection table; None without connections."""
    if not report.connections:
        return None
    return Grid("Connections", CONNECTION_COLUMNS, connection_rows(report))
