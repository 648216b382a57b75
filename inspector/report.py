"""The report: what each transport cost, as typed results.

These dataclasses are the report. The JSON, Markdown, CSV, HTML and terminal
renderers are views of them, never a second model. They are built from
connection records by :mod:`inspector.summary`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from .network import NetworkConditions
from .transport_layer import TransportLayer
from .wire import Anomaly, Direction

#: Transport names, in the order reports list them.
TRANSPORTS = ("websocket", "webtransport", "sse", "http_stream", "long_poll", "short_poll", "http")
#: Transports that open a stream once and deliver many messages on it.
STREAMING = frozenset({"websocket", "webtransport", "sse", "http_stream"})
#: Transports that ask again for each answer.
POLLING = frozenset({"long_poll", "short_poll"})
#: The HTTP versions a connection can speak, by their ALPN names, in the order reports list them.
HTTP1 = "http/1.1"
HTTP2 = "h2"
HTTP3 = "h3"
PROTOCOLS = (HTTP1, HTTP2, HTTP3)

REPORT_FORMAT = "rtinspect-report"
REPORT_VERSION = 1


@dataclass(frozen=True, slots=True)
class PerDirection:
    """An integer for each direction of travel."""

    client_to_server: int = 0
    server_to_client: int = 0

    @property
    def total(self) -> int:
        return self.client_to_server + self.server_to_client

    def __getitem__(self, direction: Direction) -> int:
        return getattr(self, direction.value)

    def __add__(self, other: PerDirection) -> PerDirection:
        return PerDirection(
            self.client_to_server + other.client_to_server,
            self.server_to_client + other.server_to_client,
        )

    def as_dict(self) -> dict[str, int]:
        return {"client_to_server": self.client_to_server, "server_to_client": self.server_to_client}


@dataclass(frozen=True, slots=True)
class Quantiles:
    """Summary of a distribution. ``exact`` is False when p50/p95 come from a
    bounded sample (mean, max and count are always exact)."""

    count: int
    mean: float
    p50: float
    p95: float
    max: float
    exact: bool = True


@dataclass(frozen=True, slots=True)
class WebSocketFigures:
    """Frame-level figures that only WebSocket has."""

    data_frames: PerDirection
    control_frames: PerDirection
    #: Frame headers plus mask keys.
    frame_header_bytes: PerDirection
    #: Data-frame payload as on the wire (compressed where permessage-deflate is on).
    wire_payload_bytes: PerDirection
    #: Ping, pong and close payload.
    control_bytes: PerDirection
    #: Messages that used permessage-deflate.
    compressed_messages: PerDirection


@dataclass(frozen=True, slots=True)
class Http2Figures:
    """HTTP/2 frame-level figures, the way Wireshark's ``http2`` dissector counts them.

    ``frames`` counts frames by type name ("DATA", "HEADERS", ...), for each
    direction. The byte figures are explained in
    :class:`~inspector.http2.Http2Counts`. ``connection_bytes`` are the bytes of
    HTTP/2 connections outside every stream (the preface, stream 0's frames, and
    frames on a stream not open when they came, such as a PRIORITY frame sent
    before its stream's request; see :mod:`inspector.http2`):
    for a transport, the share it was attributed; for the whole report, all of
    them. A transport's frame figures cover its streams' frames only; the
    report's cover every frame.
    """

    frames: dict[Direction, dict[str, int]]
    frame_header_bytes: PerDirection
    header_block_bytes: PerDirection
    decoded_header_bytes: PerDirection
    data_bytes: PerDirection
    padding_bytes: PerDirection
    control_bytes: PerDirection
    preface_bytes: PerDirection
    connection_bytes: PerDirection


@dataclass(frozen=True, slots=True)
class Http3Figures:
    """HTTP/3 figures of streams and DATAGRAMs, as :class:`~inspector.wire.Http3Counts`
    counts them: ``frames`` by type name for each direction, and the byte
    figures explained there. ``connection_bytes`` are the bytes of HTTP/3
    connections outside every request stream (the control streams, the QPACK
    encoder and decoder streams, push and unknown streams): for a transport,
    the share it was attributed; for the whole report, all of them.
    """

    frames: dict[Direction, dict[str, int]]
    stream_type_bytes: PerDirection
    frame_header_bytes: PerDirection
    header_block_bytes: PerDirection
    decoded_header_bytes: PerDirection
    qpack_stream_bytes: PerDirection
    data_bytes: PerDirection
    control_bytes: PerDirection
    webtransport_bytes: PerDirection
    datagram_bytes: PerDirection
    unparsed_bytes: PerDirection
    connection_bytes: PerDirection


@dataclass(frozen=True, slots=True)
class WebTransportFigures:
    """What only WebTransport has: its streams and DATAGRAMs, by the direction they carried data.

    A bidirectional stream that carried data both ways counts in both
    directions; ``datagram_bytes`` are the DATAGRAM payloads the application
    got (the quarter stream id left out).
    """

    sessions: int
    streams: PerDirection
    datagrams: PerDirection
    datagram_bytes: PerDirection


@dataclass(frozen=True, slots=True)
class AppProtocolFigures:
    """One application protocol's share of a transport (see :mod:`inspector.app_protocols`)."""

    app_messages: PerDirection
    control_messages: PerDirection
    #: Wire bytes of the protocol's own messages (the ``app_control`` category).
    control_bytes: int
    wire_bytes: int


@dataclass(frozen=True, slots=True)
class TransportSummary:
    """What one transport cost across all the connections that used it.

    ``payload_bytes`` is what the application received (after decompression for
    WebSocket). ``overhead_bytes`` is every wire byte that was not payload as it
    travelled: heads, handshakes, chunk framing, SSE syntax, frame headers, mask
    keys, control frames and unparsed bytes.
    """

    transport: str
    connections: int
    tcp_connects: int
    handshakes: int
    handshake_bytes: int
    messages: PerDirection
    payload_bytes: PerDirection
    wire_bytes: PerDirection
    overhead_bytes: int
    overhead_ratio: float
    #: Wire bytes attributed to each message (its frames, its SSE lines, its whole poll exchange).
    bytes_per_message: Quantiles | None
    anomalies: int
    #: Every wire byte by category and direction (the parts that add up to ``wire_bytes``).
    categories: dict[str, PerDirection]
    #: Bytes of HTTP heads that are not handshakes (each poll's request and response heads).
    head_bytes: int
    #: Chunk framing, SSE syntax, NDJSON line ends, frame headers and mask keys.
    framing_bytes: int
    control_bytes: int
    #: Polls (or other exchanges) whose response carried no data, and their wire bytes.
    empty_polls: int
    empty_poll_bytes: int
    #: All wire bytes divided by all messages: the all-in cost of one message.
    wire_bytes_per_message: float | None
    #: Seconds between consecutive messages from the server on one connection.
    inter_arrival: Quantiles | None
    #: Seconds from a connection's first client byte to its first server byte.
    time_to_first_byte: Quantiles | None
    #: Seconds from a connection's first client byte to its first message from the server.
    time_to_first_message: Quantiles | None
    #: Seconds each handshake took (request head to response head).
    handshake_duration: Quantiles | None
    websocket: WebSocketFigures | None = None
    #: TLS handshakes with clients (their bytes are not in the wire counts) and how long they took.
    tls_handshakes: int = 0
    tls_handshake_duration: Quantiles | None = None
    #: HTTP requests (HTTP/2 streams included), WebSocket Upgrades and stream requests too.
    requests: int = 0
    #: Messages the application received: SSE events, WebSocket messages,
    #: NDJSON lines, the items of JSON array bodies (see :mod:`inspector.app_messages`).
    app_messages: PerDirection = PerDirection()
    #: All wire bytes divided by all application messages.
    wire_bytes_per_app_message: float | None = None
    #: HTTP/2 frame figures of this transport's streams (None if none used HTTP/2).
    http2: Http2Figures | None = None
    #: HTTP/3 figures of this transport's streams (None if none used HTTP/3).
    http3: Http3Figures | None = None
    #: WebTransport's streams and DATAGRAMs (the ``webtransport`` transport only).
    webtransport: WebTransportFigures | None = None
    #: The same summary for the connections of each protocol ("http/1.1", "h2", "h3").
    by_protocol: dict[str, TransportSummary] = field(default_factory=dict)
    #: An application protocol's messages of its own (handshakes, heartbeats, acknowledgements);
    #: ``app_messages`` leaves them out.
    control_messages: PerDirection = PerDirection()
    #: The figures of each application protocol that used this transport.
    by_app_protocol: dict[str, AppProtocolFigures] = field(default_factory=dict)
    #: What its connections' client legs cost below the byte streams: TLS records, QUIC
    #: packets, IP headers (None: not recorded; see :mod:`inspector.transport_layer`).
    transport_layer: TransportLayer | None = None


@dataclass(frozen=True, slots=True)
class ConnectionSummary:
    """One TCP connection as the report lists it."""

    id: str
    transport: str
    client: str
    server: str
    opened_at: float | None
    closed_at: float | None
    #: How the connection ended: "client closed", "server closed", "client reset", "open", ...
    close_reason: str | None
    exchanges: int
    wire_bytes: PerDirection
    payload_bytes: PerDirection
    messages: PerDirection
    anomalies: tuple[Anomaly, ...]
    #: Request targets seen on this connection (first few), for people reading the list;
    #: without credentials unless the report was built with ``redact=False``.
    targets: tuple[str, ...] = ()
    #: Its bytes were rebuilt from a file that does not keep them (HAR, mitmproxy
    #: HTTP flows), so heads, framing and frame headers are estimates.
    reconstructed: bool = False
    #: "http/1.1", "h2" or "h3".
    protocol: str = "http/1.1"
    #: The application protocol it spoke (``socket.io``, ``graphql-transport-ws``, ...), if recognised.
    app_protocol: str | None = None
    #: The session it belonged to: an id stable within the report (``s1``, ``s2``, ...).
    session: str | None = None


@dataclass(frozen=True, slots=True)
class SessionsSummary:
    """The sessions of one application protocol: what a session cost end to end.

    A session is what the protocol calls one (an Engine.IO ``sid`` across its
    polling requests and its upgraded WebSocket; a SockJS session), or one
    connection for protocols without session ids. ``paths`` counts the
    sessions by the transports they used, in the order they first used them
    ("long_poll → websocket"); ``upgraded`` those that moved to WebSocket after
    another transport. ``before_upgrade_wire_bytes`` is what the upgraded
    sessions spent before their WebSocket.
    """

    count: int
    upgraded: int
    paths: dict[str, int]
    wire_bytes: int
    app_messages: PerDirection
    control_messages: PerDirection
    wire_bytes_per_app_message: float | None
    before_upgrade_wire_bytes: int


@dataclass(frozen=True, slots=True)
class MessagePoint:
    """One delivered message on the time line (for charts). Bounded per report."""

    time: float
    transport: str
    direction: Direction
    wire_bytes: int


@dataclass(frozen=True, slots=True)
class TransportProjection:
    """One transport's projected costs for a fleet of clients (see :mod:`inspector.projection`)."""

    wire_bytes_per_day: float
    requests_per_second: float
    handshakes_per_hour: float
    tcp_connects_per_hour: float
    open_connections: int


@dataclass(frozen=True, slots=True)
class Projection:
    """What ``clients`` clients, each receiving ``messages_per_second`` application
    messages from the server, would cost with each transport: a projection from the measured
    traffic, under its ``assumptions``."""

    clients: int
    messages_per_second: float
    transports: dict[str, TransportProjection]
    assumptions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Report:
    """The whole report of one or more captures."""

    transports: dict[str, TransportSummary]
    connections: tuple[ConnectionSummary, ...]
    sources: tuple[str, ...] = ()
    started_at: float | None = None
    ended_at: float | None = None
    #: Sentences a reader must see: what is not counted, what is estimated, what was skipped.
    notes: tuple[str, ...] = ()
    #: A sample of message arrivals for the "messages over time" chart.
    timeline: tuple[MessagePoint, ...] = field(default=())
    #: Every connection in the figures; ``connections`` lists at most a bounded number of them.
    connection_count: int = 0
    #: HTTP/2 frame figures of every HTTP/2 connection, connection-level frames included.
    http2: Http2Figures | None = None
    #: HTTP/3 figures of every HTTP/3 connection, its control and QPACK streams included.
    http3: Http3Figures | None = None
    #: What a fleet would cost, when asked for (``rtinspect report --project``).
    projection: Projection | None = None
    #: The network conditions the proxy added while the traffic was recorded (None: none).
    network: NetworkConditions | None = None
    #: The sessions of each application protocol seen (see :class:`SessionsSummary`).
    sessions: dict[str, SessionsSummary] = field(default_factory=dict)
    #: Every connection's figures below its byte streams, summed (None: none recorded).
    transport_layer: TransportLayer | None = None

    def transport(self, name: str) -> TransportSummary:
        """The summary of one transport; KeyError names the transports present."""
        try:
            return self.transports[name]
        except KeyError:
            raise KeyError(
                f"no {name!r} traffic in this report (present: {', '.join(self.transports) or 'none'})"
            ) from None


def with_network(report: Report, network: NetworkConditions | None) -> Report:
    """``report`` recorded under ``network``: the conditions, and the first of its notes
    says what they were (unchanged if it says so already, or if there were none)."""
    if network is None or report.network == network:
        return report
    return replace(report, network=network, notes=(network.note(), *report.notes))
