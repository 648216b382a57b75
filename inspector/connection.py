"""Per-connection accounting: the two byte streams of one TCP connection (or
the streams and DATAGRAMs of one QUIC connection) in, an exact
:class:`ConnectionRecord` out.

The HTTP/1.1 parser, or the HTTP/2 parser when the client starts with the
HTTP/2 preface (prior knowledge, ALPN ``h2``, or after an h2c Upgrade), or the
HTTP/3 parser on a QUIC connection, splits the streams into exchanges: a
request and its response, or an HTTP/2 or HTTP/3 request stream.
Each response body goes to the parser its media type calls for (SSE, NDJSON,
or plain chunks), and an accepted WebSocket Upgrade (or extended CONNECT over
HTTP/2 and HTTP/3) hands the exchange's bytes to the WebSocket parser; an
accepted WebTransport session over HTTP/3 counts its streams and DATAGRAMs as
its messages. Every byte lands
in exactly one category of exactly one exchange (or, when it belongs to no
request at all, in the connection's ``unattributed`` account: HTTP/2's
preface and the frames of stream 0 are there, and HTTP/3's control and QPACK
streams).

Each exchange is folded into running per-transport figures
(:class:`~inspector.totals.ExchangeTotals`) once the parser has moved past it,
so a keep-alive connection's state does not grow with the number of requests
it carries; only the first :data:`EXCHANGE_DETAIL_LIMIT` exchanges are kept
whole, for people and tests that want to look at them. Which transport an
exchange was is decided then, by the :class:`~inspector.classify.Classifier`,
except for polls, which need every connection's routes in view.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from wsproto.frame_protocol import Opcode

from .app_messages import JsonBody, is_json
from .app_protocols import detect as detect_app_protocol
from .app_protocols import detect_from_first_message, reader_for, session_key, transport_of
from .app_protocols.reader import FrameworkReader
from .capture import QUIC, ConnectionOpened
from .classify import CONNECTION_ROUTE_LIMIT, Classifier, Route, RouteTable, exchange_route
from .driver import ConnectionConsumer
from .events import (
    BodyData,
    ConnectionEvent,
    ControlFrame,
    FrameBytes,
    FrameworkEvent,
    FrameworkMessage,
    FrameworkProblem,
    H2cUpgrade,
    MessageEnd,
    MessageKind,
    ParseFailure,
    ProtocolSwitch,
    RequestHead,
    ResponseHead,
    SessionId,
    SseEvent,
    StreamEnd,
    Unparsed,
    WebSocketEvent,
    WebSocketMessage,
    WebTransportBytes,
    WebTransportMessage,
)
from .http2 import HTTP_VERSION as HTTP2_VERSION
from .http3 import HTTP_VERSION as HTTP3_VERSION
from .http3 import Http3Parser
from .http_connection import HttpConnection
from .ndjson import LineStream
from .pseudo_headers import is_websocket_connect, is_webtransport_connect
from .records import ExchangeRecord, MessageTime, WebSocketCounts, WebTransportCounts
from .report import HTTP1, HTTP2, HTTP3
from .sse import SseStream
from .stats import Distribution, EvenSample
from .totals import ExchangeTotals
from .transport_layer import TransportLayer
from .websocket import DeflateParams, WebSocketStream
from .wire import Anomaly, BodyKind, ByteAccount, Category, Direction, Http2Counts, Http3Counts

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

#: Response media types whose bodies are a stream of lines, one message each.
LINE_STREAM_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/json-seq",
    }
)

#: Exchanges of one connection kept whole in its record; the rest are only in its totals.
EXCHANGE_DETAIL_LIMIT = 100
#: Distinct request targets a connection's record names.
TARGETS_LIMIT = 3

#: What a connection's exchanges are folded under: a transport, or a route whose
#: transport (long poll, short poll or one-off request) is decided later.
TotalsKey = str | Route


@dataclass(frozen=True, slots=True)
class ConnectionRecord:
    """Everything one TCP connection carried, accounted.

    ``totals`` holds the figures of every exchange, by transport (or by route,
    for exchanges only the routes of every connection can classify);
    ``exchanges`` keeps the first :data:`EXCHANGE_DETAIL_LIMIT` of them whole.
    """

    id: str
    opened: ConnectionOpened
    exchanges: tuple[ExchangeRecord, ...]
    #: Bytes that belong to no exchange (e.g. garbage before any request).
    unattributed: dict[Direction, ByteAccount]
    anomalies: tuple[Anomaly, ...]
    first_byte_at: dict[Direction, float]
    closed_at: float | None
    close_reason: str | None
    #: How many exchanges the connection carried (``exchanges`` may hold fewer).
    exchange_count: int = 0
    totals: dict[TotalsKey, ExchangeTotals] = field(default_factory=dict)
    #: Requests per route, every exchange counted, and the routes of exchanges not
    #: classified by rule or shape whose request the server held.
    routes: RouteTable = field(default_factory=RouteTable)
    #: The first few distinct request targets, as requested.
    targets: tuple[str, ...] = ()
    #: "http/1.1", "h2" or "h3".
    protocol: str = HTTP1
    #: HTTP/2 frame figures of the connection's own frames: the preface, stream 0,
    #: and streams no longer followed (None over HTTP/1.1).
    http2: Http2Counts | None = None
    #: HTTP/3 figures of the connection's own streams: control, QPACK, push and
    #: unknown streams, and streams no longer followed (None unless HTTP/3).
    http3: Http3Counts | None = None
    #: The application protocol its exchanges spoke, if one was recognised (the first one).
    app_protocol: str | None = None
    #: The session it belonged to, as that protocol names it (None: the connection is its own).
    session: str | None = None
    #: What its client leg cost below the byte streams: TLS records, QUIC packets, IP
    #: headers (None: not recorded; see :mod:`inspector.transport_layer`).
    transport_layer: TransportLayer | None = None

    @property
    def client(self) -> str:
        return self.opened.client

    @property
    def server(self) -> str:
        return self.opened.server

    def account(self, direction: Direction) -> ByteAccount:
        """Every byte of one direction, by category."""
        total = self.unattributed[direction].copy()
        for totals in self.totals.values():
            total.merge(totals.accounts[direction])
        return total

    def wire_bytes(self, direction: Direction) -> int:
        return self.account(direction).total

    def without_detail(self) -> ConnectionRecord:
        """The same record without its whole exchanges: what a report needs."""
        return replace(self, exchanges=())


class _AppLayer:
    """An exchange's application protocol: its reader, and what the reader counted.

    Control messages' bytes leave the payload for :attr:`Category.APP_CONTROL`
    when the exchange's record is made; for a compressed WebSocket message the
    wire share is in proportion to the content, so the parts still add up.
    """

    __slots__ = ("app", "control", "control_payload", "control_wire", "name", "problems", "reader")

    def __init__(self, name: str, reader: FrameworkReader) -> None:
        self.name = name
        self.reader = reader
        self.app = {C2S: 0, S2C: 0}
        self.control = {C2S: 0, S2C: 0}
        #: Wire bytes (as they travelled) and delivered bytes of the control messages.
        self.control_wire = {C2S: 0, S2C: 0}
        self.control_payload = {C2S: 0, S2C: 0}
        #: Directions whose first malformed message has been flagged (later ones are only counted).
        self.problems: set[Direction] = set()

    def count(
        self, direction: Direction, events: list[FrameworkEvent], *, size: int, wire: int, delivered: int
    ) -> tuple[list[FrameworkProblem], str | None]:
        """Count the reader's messages of ``size`` content bytes that travelled as
        ``wire`` payload bytes and were delivered as ``delivered``; the problems
        to flag and the session the protocol named, if it named one."""
        problems: list[FrameworkProblem] = []
        session: str | None = None
        control = 0
        for event in events:
            if isinstance(event, FrameworkMessage):
                if event.kind is MessageKind.CONTROL:
                    control += event.size
                    if event.counted:
                        self.control[direction] += 1
                elif event.counted:
                    self.app[direction] += 1
            elif isinstance(event, SessionId):
                session = event.id
            elif direction not in self.problems:
                self.problems.add(direction)
                problems.append(event)
        if control:
            whole = control >= size
            self.control_wire[direction] += wire if whole else wire * control // size
            self.control_payload[direction] += delivered if whole else delivered * control // size
        return problems, session


class _Exchange:
    """An exchange while it is being parsed."""

    def __init__(self, head: RequestHead) -> None:
        self.index = head.exchange
        self.request = head
        self.response: ResponseHead | None = None
        self.interim: list[ResponseHead] = []
        self.body_kind = BodyKind.NONE
        self.accounts = {C2S: ByteAccount(), S2C: ByteAccount()}
        self.request_ended_at: float | None = None
        self.response_ended_at: float | None = None
        self.first_body_at: float | None = None
        self.last_body_at: float | None = None
        self.stream_messages = {C2S: 0, S2C: 0}
        self.stream_payload = {C2S: 0, S2C: 0}
        self.sizes = Distribution()
        self.inter_arrival = Distribution()
        self.first_server_message_at: float | None = None
        self.last_server_message_at: float | None = None
        self.timeline = EvenSample()
        self.body_parser: SseStream | LineStream | None = None
        #: The transfer-coding chunk (or unchunked body) being read: wire and payload bytes.
        self.chunk_wire = 0
        self.chunk_payload = 0
        self.websocket: dict[Direction, WebSocketStream] = {}
        self.deflate: DeflateParams | None = None
        self.compressed = {C2S: 0, S2C: 0}
        self.close_codes: dict[Direction, int | None] = {C2S: None, S2C: None}
        #: The HTTP/2 or HTTP/3 stream's running frame figures.
        self.http2: Http2Counts | None = None
        self.http3: Http3Counts | None = None
        #: A WebTransport session's streams and DATAGRAMs, by direction.
        self.webtransport: WebTransportCounts | None = None
        #: A JSON response body kept to count the application's messages in it.
        self.json_body: JsonBody | None = None
        #: The application protocol its messages speak, once recognised.
        self.app: _AppLayer | None = None
        self.app_transport: str | None = None
        self.session: str | None = None
        #: Whether the response body is the protocol's (not an error page).
        self.app_reads_response = True
        #: Directions whose first WebSocket message has been seen (to recognise a protocol by it).
        self.first_message_seen: set[Direction] = set()

    def message(self, direction: Direction, wire_bytes: int, payload_bytes: int, timestamp: float) -> None:
        self.stream_messages[direction] += 1
        self.stream_payload[direction] += payload_bytes
        self.sizes.add(wire_bytes)
        self.timeline.offer(MessageTime(timestamp, direction, wire_bytes))
        if direction is S2C:
            if self.last_server_message_at is None:
                self.first_server_message_at = timestamp
            else:
                self.inter_arrival.add(timestamp - self.last_server_message_at)
            self.last_server_message_at = timestamp

    def app_messages(self) -> dict[Direction, int]:
        """The application's messages: each SSE event, NDJSON line, WebSocket
        message or WebTransport stream and DATAGRAM; a JSON body's items; one for any other body with data. Where an
        application protocol was recognised, its application messages only."""
        if self.app is not None:
            return dict(self.app.app)
        if self.websocket or self.body_kind is BodyKind.WEBTRANSPORT:
            return dict(self.stream_messages)
        request = 1 if self.accounts[C2S][Category.PAYLOAD] else 0
        if self.body_kind in (BodyKind.SSE, BodyKind.LINES):
            return {C2S: request, S2C: self.stream_messages[S2C]}
        if self.body_kind is BodyKind.PLAIN:
            return {C2S: request, S2C: self.json_body.messages() if self.json_body is not None else 1}
        return {C2S: request, S2C: 0}

    def record(self, *, final: bool) -> ExchangeRecord:
        accounts = {direction: account.copy() for direction, account in self.accounts.items()}
        if isinstance(self.body_parser, (SseStream, LineStream)):
            accounts[S2C].merge(self.body_parser.account)
            if not final:
                accounts[S2C].add(Category.MESSAGE_SYNTAX, self.body_parser.pending_bytes)
        websocket = None
        if self.websocket:
            for direction, stream in self.websocket.items():
                accounts[direction].merge(stream.account)
                if not final:
                    accounts[direction].add(Category.UNPARSED, stream.buffered)
            websocket = WebSocketCounts(
                data_frames={d: s.data_frames for d, s in self.websocket.items()},
                control_frames={d: s.control_frames for d, s in self.websocket.items()},
                compressed_messages=dict(self.compressed),
                deflate=self.deflate,
                close_codes=dict(self.close_codes),
            )
        stream_payload = dict(self.stream_payload)
        app = self.app
        if app is not None:
            for direction in Direction:
                accounts[direction].add(Category.PAYLOAD, -app.control_wire[direction])
                accounts[direction].add(Category.APP_CONTROL, app.control_wire[direction])
                stream_payload[direction] -= app.control_payload[direction]
        return ExchangeRecord(
            index=self.index,
            request=self.request,
            response=self.response,
            interim=tuple(self.interim),
            body_kind=self.body_kind,
            accounts=accounts,
            request_ended_at=self.request_ended_at,
            response_ended_at=self.response_ended_at,
            first_body_at=self.first_body_at,
            last_body_at=self.last_body_at,
            stream_messages=dict(self.stream_messages),
            stream_payload=stream_payload,
            stream_message_sizes=self.sizes,
            app_messages=self.app_messages(),
            inter_arrival=self.inter_arrival,
            first_server_message_at=self.first_server_message_at,
            timeline=tuple(self.timeline.items),  # type: ignore[arg-type]
            websocket=websocket,
            http2=self.http2.copy() if self.http2 is not None else None,
            http3=self.http3.copy() if self.http3 is not None else None,
            webtransport=self.webtransport.copy() if self.webtransport is not None else None,
            app_protocol=app.name if app is not None else None,
            control_messages=dict(app.control) if app is not None else {C2S: 0, S2C: 0},
            session=self.session,
            app_transport=self.app_transport,
        )


def _media_type(head: ResponseHead) -> str:
    value = head.header("content-type") or ""
    return value.split(";", 1)[0].strip().lower()


def _upgraded_to(exchange: _Exchange) -> str:
    """The protocol a 101 response switched to (lower case), or ""."""
    response = exchange.response or (exchange.interim[-1] if exchange.interim else None)
    if response is None or response.status != 101:
        return ""
    return (response.header("upgrade") or "").strip().lower()


class ConnectionAnalyzer(ConnectionConsumer[ConnectionRecord]):
    """Accounts one connection: a TCP connection's two byte streams, or a QUIC
    connection's streams and DATAGRAMs.

    Feed chunks in the order they were seen, each with its direction and the
    time it was seen (and, over QUIC, its stream); :meth:`close` returns the
    finished record. Nothing here
    raises on bad traffic: anomalies are recorded and the bytes counted. What
    is kept between chunks is bounded: exchanges are folded into
    ``classifier``'s transports as the parser moves past them.
    """

    def __init__(
        self,
        opened: ConnectionOpened,
        *,
        id: str | None = None,
        classifier: Classifier | None = None,
        detail_limit: int = EXCHANGE_DETAIL_LIMIT,
    ) -> None:
        self._id = id if id is not None else str(opened.connection_id)
        self._opened = opened
        self._classifier = classifier if classifier is not None else Classifier()
        self._detail_limit = detail_limit
        #: Exchanges not folded yet, by index, oldest first.
        self._exchanges: dict[int, _Exchange] = {}
        self._detail: list[ExchangeRecord] = []
        self._exchange_count = 0
        self._totals: dict[TotalsKey, ExchangeTotals] = {}
        self._routes = RouteTable(limit=CONNECTION_ROUTE_LIMIT)
        self._targets: list[str] = []
        self._unattributed = {C2S: ByteAccount(), S2C: ByteAccount()}
        self._anomalies: list[Anomaly] = []
        self._fed = {C2S: 0, S2C: 0}
        self._first_byte_at: dict[Direction, float] = {}
        #: Once the connection speaks WebSocket, chunks go straight to its streams.
        self._websocket: _Exchange | None = None
        self._http = HttpConnection(opened.tls.alpn if opened.tls is not None else None)
        #: A QUIC connection's HTTP/3 (None over TCP).
        self._http3 = Http3Parser() if opened.transport == QUIC else None
        #: The first application protocol and session its exchanges named.
        self._app_protocol: str | None = None
        self._session: str | None = None
        self._record: ConnectionRecord | None = None
        self._transport_layer: TransportLayer | None = None

    @property
    def opened(self) -> ConnectionOpened:
        return self._opened

    @property
    def pending_exchanges(self) -> int:
        """Exchanges held whole because the parser may still add to them."""
        return len(self._exchanges)

    @property
    def protocol(self) -> str:
        if self._http3 is not None:
            return HTTP3
        return HTTP2 if self._http.http2 is not None else HTTP1

    def feed(self, direction: Direction, data: bytes, timestamp: float) -> None:
        if not data or self._record is not None:
            return
        if self._http3 is not None:
            # TCP bytes on a QUIC connection: a damaged record; they are not HTTP/3.
            self._unattributed[direction].add(Category.UNPARSED, len(data))
            return
        self._first_byte_at.setdefault(direction, timestamp)
        self._fed[direction] += len(data)
        if self._websocket is not None and direction in self._websocket.websocket:
            self._websocket_events(
                self._websocket, direction, self._websocket.websocket[direction].feed(data, timestamp)
            )
        else:
            self._http_events(self._http.feed(direction, data, timestamp))

    def feed_stream(self, direction: Direction, stream_id: int, data: bytes, timestamp: float) -> None:
        if data and self._quic_bytes(direction, len(data), timestamp):
            self._http_events(self._http3.feed(direction, stream_id, data, timestamp))  # type: ignore[union-attr]

    def end_stream(
        self, direction: Direction, stream_id: int, reset: bool, error_code: int | None, timestamp: float
    ) -> None:
        if self._record is None and self._http3 is not None:
            self._http_events(self._http3.end_stream(direction, stream_id, reset, error_code, timestamp))

    def datagram(self, direction: Direction, data: bytes, timestamp: float) -> None:
        if self._quic_bytes(direction, len(data), timestamp):
            self._http_events(self._http3.datagram(direction, data, timestamp))  # type: ignore[union-attr]

    def _quic_bytes(self, direction: Direction, size: int, timestamp: float) -> bool:
        """Count ``size`` bytes of a QUIC stream or DATAGRAM; whether HTTP/3 is to read them
        (not after the close, nor on a TCP connection's record, where they are unparsed)."""
        if self._record is not None:
            return False
        self._first_byte_at.setdefault(direction, timestamp)
        self._fed[direction] += size
        if self._http3 is None:
            self._unattributed[direction].add(Category.UNPARSED, size)
            return False
        return True

    def gap(self, direction: Direction, missing: int, timestamp: float) -> None:
        """``missing`` bytes of ``direction`` come next that the record does not have
        (a packet capture lost their segments). The connection becomes
        reconstructed, and ``direction`` is parsed no further: what follows a hole
        cannot be told apart from what was cut (a body, a frame), so the message
        the hole cut and every later byte of the direction are counted as
        unparsed, behind one anomaly. No byte is made up for the hole."""
        if self._record is not None:
            return
        self._opened = replace(self._opened, reconstructed=True)
        at = self._fed[direction]
        reason = f"{missing:,} bytes missing from the packet capture at byte {at:,}; not parsed from there"
        before = len(self._anomalies)
        websocket = self._websocket.websocket.get(direction) if self._websocket is not None else None
        if websocket is not None:
            websocket.stop(reason)
            self._websocket_events(self._websocket, direction, [])  # type: ignore[arg-type]
        else:
            self._http_events(self._http.stop(direction, reason, timestamp))
        # A parser stops where the head, chunk line or frame that the hole cut begins:
        # the reason says so when that is before the hole, so offset and reason agree.
        for i in range(before, len(self._anomalies)):
            anomaly = self._anomalies[i]
            if anomaly.reason == reason and anomaly.offset < at:
                cut = f"{missing:,} bytes missing from the packet capture at byte {at:,}, inside what began at byte "
                self._anomalies[i] = replace(anomaly, reason=f"{cut}{anomaly.offset:,}; not parsed from there")
                if websocket is not None and websocket.anomaly == anomaly:
                    websocket.anomaly = self._anomalies[i]

    def transport_layer(self, figures: TransportLayer, timestamp: float) -> None:
        """The figures below the byte streams so far: they replace the earlier ones."""
        if self._record is None:
            self._transport_layer = figures

    def close(self, timestamp: float, reason: str | None = None) -> ConnectionRecord:
        """The connection ended; finish every parser and return the record."""
        if self._record is not None:
            return self._record
        self._http_events(self._http.close(timestamp) if self._http3 is None else self._http3.close(timestamp))
        for exchange in self._exchanges.values():
            self._finish_body(exchange, timestamp)
            for direction, stream in exchange.websocket.items():
                self._websocket_events(exchange, direction, stream.close(timestamp))
        self._fold_before(None)
        self._record = self._build(self._totals, self._routes, closed_at=timestamp, reason=reason)
        return self._record

    def snapshot(self) -> ConnectionRecord:
        """The record so far, while the connection is open (bytes still being
        parsed are counted as syntax or unparsed until they complete)."""
        if self._record is not None:
            return self._record
        totals = {key: figures.copy() for key, figures in self._totals.items()}
        routes = self._routes.copy()
        for exchange in self._exchanges.values():
            self._fold(exchange.record(final=False), totals, routes)
        return self._build(totals, routes, closed_at=None, reason=None)

    # -- folding ------------------------------------------------------------

    def _fold_before(self, index: int | None) -> None:
        """Fold every exchange before ``index`` (all of them for None): the parser
        has moved past them, so nothing will be added to them any more."""
        while self._exchanges:
            first = next(iter(self._exchanges))
            if index is not None and first >= index:
                return
            self._fold_exchange(self._exchanges.pop(first))

    def _fold_exchange(self, exchange: _Exchange) -> None:
        record = exchange.record(final=True)
        if len(self._detail) < self._detail_limit:
            self._detail.append(record)
        self._fold(record, self._totals, self._routes)

    def _fold(self, record: ExchangeRecord, totals: dict[TotalsKey, ExchangeTotals], routes: RouteTable) -> None:
        route = exchange_route(record)
        tracked = route is not None and routes.track(route)
        key = self._classifier.decide(record)
        if isinstance(key, tuple):
            if not tracked:
                key = "http"  # a route past the connection's limit: a one-off request
            elif self._classifier.held(record):
                routes.held.add(key)
        figures = totals.get(key)
        if figures is None:
            figures = totals[key] = ExchangeTotals()
        figures.add(record, key if isinstance(key, str) else "http")

    def _build(
        self,
        totals: dict[TotalsKey, ExchangeTotals],
        routes: RouteTable,
        *,
        closed_at: float | None,
        reason: str | None,
    ) -> ConnectionRecord:
        detail = list(self._detail)
        if closed_at is None:
            detail += [e.record(final=False) for e in self._exchanges.values()][: self._detail_limit - len(detail)]
        return ConnectionRecord(
            id=self._id,
            opened=self._opened,
            exchanges=tuple(detail),
            unattributed={d: a.copy() for d, a in self._unattributed.items()},
            anomalies=tuple(sorted(self._anomalies, key=lambda a: (a.direction != C2S, a.offset))),
            first_byte_at=dict(self._first_byte_at),
            closed_at=closed_at,
            close_reason=reason,
            exchange_count=self._exchange_count,
            totals=totals,
            routes=routes,
            targets=tuple(self._targets),
            protocol=self.protocol,
            http2=self._http.http2.connection.copy() if self._http.http2 is not None else None,
            http3=self._http3.connection_counts.copy() if self._http3 is not None else None,
            app_protocol=self._app_protocol,
            session=self._session,
            transport_layer=self._transport_layer,
        )

    # -- HTTP ---------------------------------------------------------------

    def _http_events(self, events: Sequence[ConnectionEvent]) -> None:
        for event in events:
            if isinstance(event, FrameBytes):
                exchange = self._exchange(event.exchange)
                account = exchange.accounts[event.direction] if exchange else self._unattributed[event.direction]
                account.add(event.category, event.size)
            elif isinstance(event, BodyData):
                self._body_data(event)
            elif isinstance(event, RequestHead):
                exchange = self._request_head(event)
                if event.http_version == HTTP2_VERSION:
                    exchange.http2 = self._http.http2.stream_counts(event.exchange)  # type: ignore[union-attr]
                elif event.http_version == HTTP3_VERSION:
                    exchange.http3 = self._http3.stream_counts(event.exchange)  # type: ignore[union-attr]
            elif isinstance(event, ResponseHead):
                if event.http_version in (HTTP2_VERSION, HTTP3_VERSION):
                    self._stream_response_head(event)
                else:
                    self._fold_before(event.exchange)
                    self._response_head(self._exchanges[event.exchange], event)
            elif isinstance(event, MessageEnd):
                exchange = self._exchange(event.exchange)
                if exchange is None:
                    continue
                exchange.accounts[event.direction].add(Category.CHUNK_FRAMING, event.framing)
                if (
                    exchange.app is not None
                    and not exchange.websocket
                    and (event.direction is C2S or exchange.app_reads_response)
                ):
                    self._app_events(exchange, event.direction, exchange.app.reader.body_end(event.direction))
                if event.direction is C2S:
                    exchange.request_ended_at = event.timestamp
                else:
                    exchange.response_ended_at = event.timestamp
                    self._finish_body(exchange, event.timestamp)
            elif isinstance(event, StreamEnd):
                exchange = self._exchanges.pop(event.exchange, None)
                if exchange is not None:
                    self._finish_body(exchange, event.timestamp)
                    for direction, stream in exchange.websocket.items():
                        self._websocket_events(exchange, direction, stream.close(event.timestamp))
                    self._fold_exchange(exchange)
            elif isinstance(event, ProtocolSwitch):
                self._switch(event)
            elif isinstance(event, H2cUpgrade):
                # Stream 1 carries the upgraded request's response.
                upgraded = self._exchanges.pop(event.exchange, None)
                if upgraded is not None:
                    self._exchanges[1] = upgraded
                    upgraded.http2 = event.stream_counts
            elif isinstance(event, Unparsed):
                exchange = self._exchange(event.exchange)
                account = exchange.accounts[event.direction] if exchange else self._unattributed[event.direction]
                account.add(Category.UNPARSED, event.size)
            elif isinstance(event, ParseFailure):
                self._anomalies.append(event.anomaly)
            elif isinstance(event, WebTransportBytes):
                exchange = self._exchange(event.exchange)
                account = exchange.accounts[event.direction] if exchange else self._unattributed[event.direction]
                account.add(Category.CHUNK_FRAMING, event.framing)
                account.add(Category.PAYLOAD if exchange else Category.UNPARSED, event.payload)
            elif isinstance(event, WebTransportMessage):
                exchange = self._exchange(event.exchange)
                if exchange is not None:
                    self._webtransport_message(exchange, event)
            # Trailers carry no bytes: their block is framing.

    def _request_head(self, event: RequestHead) -> _Exchange:
        exchange = _Exchange(event)
        self._exchanges[event.exchange] = exchange
        self._exchange_count += 1
        if len(self._targets) < TARGETS_LIMIT and event.target not in self._targets:
            self._targets.append(event.target)
        exchange.accounts[C2S].add(Category.HEAD, event.size)
        name = self._classifier.app_protocol_for(event.method, event.target) or detect_app_protocol(
            event.method, event.target, event.headers, ()
        )
        if name is not None:
            self._start_app(exchange, name)
        return exchange

    def _start_app(self, exchange: _Exchange, name: str) -> None:
        """The exchange speaks application protocol ``name``: read its messages from here on."""
        request = exchange.request
        exchange.app = _AppLayer(name, reader_for(name, target=request.target))
        exchange.app_transport = transport_of(name, request.method, request.target)
        exchange.session = session_key(name, request.method, request.target)
        exchange.app.reader.start_body(C2S, request.method, request.target)
        if self._app_protocol is None:
            self._app_protocol = name
        if self._session is None and exchange.session is not None:
            self._session = exchange.session

    def _app_events(
        self,
        exchange: _Exchange,
        direction: Direction,
        events: list[FrameworkEvent],
        *,
        size: int | None = None,
        wire: int | None = None,
        delivered: int | None = None,
    ) -> None:
        """Count what the application protocol's reader found in ``size`` bytes of content
        (a body's, when not given: its bytes are its wire bytes)."""
        app = exchange.app
        assert app is not None
        if size is None:
            size = sum(event.size for event in events if isinstance(event, FrameworkMessage))
        problems, session = app.count(
            direction,
            events,
            size=size,
            wire=size if wire is None else wire,
            delivered=size if delivered is None else delivered,
        )
        if session is not None and exchange.session is None:
            exchange.session = session
            if self._session is None:
                self._session = session
        for problem in problems:
            self._anomalies.append(Anomaly(direction, self._fed[direction], f"{app.name}: {problem.reason}"))

    def _response_head(self, exchange: _Exchange, event: ResponseHead) -> None:
        exchange.accounts[S2C].add(Category.HEAD, event.size)
        request = exchange.request
        if exchange.app is None and request is not None:
            name = detect_app_protocol(request.method, request.target, request.headers, event.headers)
            if name is not None:
                self._start_app(exchange, name)
        if event.interim:
            exchange.interim.append(event)
            return
        exchange.response = event
        if exchange.app is not None and request is not None:
            if event.status >= 300:
                # An error page or a redirect is no message of the protocol's: its body stays payload.
                exchange.app_reads_response = False
            else:
                exchange.app.reader.start_body(S2C, request.method, request.target)
        media_type = _media_type(event)
        if media_type == "text/event-stream":
            exchange.body_parser = SseStream(offset=self._fed[S2C])
        elif media_type in LINE_STREAM_TYPES:
            exchange.body_parser = LineStream()
        else:
            request = exchange.request
            place = self._classifier.app_message_place(request.method, request.target) if request else None
            if exchange.app is None and (place is not None or is_json(media_type)):
                exchange.json_body = JsonBody(place)

    def _exchange(self, index: int | None) -> _Exchange | None:
        return None if index is None else self._exchanges.get(index)

    def _body(self, event: BodyData) -> None:
        exchange = self._exchanges[event.exchange]  # type: ignore[index]
        account = exchange.accounts[event.direction]
        account.add(Category.CHUNK_FRAMING, event.framing)
        if event.direction is C2S:
            account.add(Category.PAYLOAD, len(event.data))
            if exchange.app is not None and event.data:
                self._app_events(exchange, C2S, exchange.app.reader.body_data(C2S, event.data))
            return
        if not event.data:
            return
        if exchange.first_body_at is None:
            exchange.first_body_at = event.timestamp
        exchange.last_body_at = event.timestamp
        parser = exchange.body_parser
        if isinstance(parser, SseStream):
            exchange.body_kind = BodyKind.SSE
            self._sse_events(exchange, parser.feed(event.data, event.timestamp))
        elif isinstance(parser, LineStream):
            exchange.body_kind = BodyKind.LINES
            for line in parser.feed(event.data, event.timestamp):
                exchange.message(S2C, line.wire_bytes, line.payload_bytes, line.timestamp)
        else:
            exchange.body_kind = BodyKind.PLAIN
            account.add(Category.PAYLOAD, len(event.data))
            if exchange.json_body is not None:
                exchange.json_body.feed(event.data)
            elif exchange.app is not None and exchange.app_reads_response:
                self._app_events(exchange, S2C, exchange.app.reader.body_data(S2C, event.data))
            exchange.chunk_wire += len(event.data) + event.framing
            exchange.chunk_payload += len(event.data)
            if event.chunk_end:
                exchange.message(S2C, exchange.chunk_wire, exchange.chunk_payload, event.timestamp)
                exchange.chunk_wire = exchange.chunk_payload = 0

    def _finish_body(self, exchange: _Exchange, timestamp: float) -> None:
        """The response body ended: flush its parser (an unfinished SSE event is dropped)."""
        parser = exchange.body_parser
        if isinstance(parser, SseStream):
            self._sse_events(exchange, parser.close(timestamp))
        elif parser is not None:
            for message in parser.close(timestamp):
                exchange.message(S2C, message.wire_bytes, message.payload_bytes, message.timestamp)
        if parser is not None:
            exchange.body_parser = None
            exchange.accounts[S2C].merge(parser.account)
        elif exchange.body_kind is BodyKind.PLAIN and exchange.chunk_payload:
            # A body without transfer-coding chunks is one stream message.
            exchange.message(S2C, exchange.chunk_wire, exchange.chunk_payload, exchange.last_body_at or timestamp)
            exchange.chunk_wire = exchange.chunk_payload = 0

    def _sse_events(self, exchange: _Exchange, events: list[SseEvent]) -> None:
        """An event stream's events; where an application protocol rides on it, each
        event's data is one of its messages (SockJS's frames over EventSource)."""
        for sse_event in events:
            exchange.message(S2C, sse_event.wire_bytes, sse_event.payload_bytes, sse_event.timestamp)
            if exchange.app is not None and exchange.app_reads_response:
                content = sse_event.data.encode()
                found = exchange.app.reader.websocket_message(S2C, content, True)
                wire = sse_event.payload_bytes
                self._app_events(exchange, S2C, found, size=len(content), wire=wire, delivered=wire)

    # -- HTTP/2 and HTTP/3 -------------------------------------------------

    def _stream_response_head(self, event: ResponseHead) -> None:
        exchange = self._exchanges.get(event.exchange)
        if exchange is None:
            self._unattributed[S2C].add(Category.HEAD, event.size)
            return
        if event.http_version == HTTP2_VERSION and exchange.http2 is None:
            exchange.http2 = self._http.http2.stream_counts(event.exchange)  # type: ignore[union-attr]
        self._response_head(exchange, event)
        if not 200 <= event.status < 300 or exchange.request is None:
            return
        if is_websocket_connect(exchange.request):
            self._accept_websocket(exchange, event, {d: self._fed[d] for d in Direction})
        elif event.http_version == HTTP3_VERSION and is_webtransport_connect(exchange.request):
            exchange.body_kind = BodyKind.WEBTRANSPORT
            exchange.webtransport = WebTransportCounts(sessions=1)

    def _webtransport_message(self, exchange: _Exchange, event: WebTransportMessage) -> None:
        """A WebTransport DATAGRAM, or one direction of a stream that ended: one message."""
        direction = event.direction
        exchange.message(direction, event.wire_bytes, event.payload_bytes, event.timestamp)
        counts = exchange.webtransport
        if counts is None:
            return
        if event.stream_id is None:
            counts.datagrams[direction] += 1
            counts.datagram_bytes[direction] += event.payload_bytes
        else:
            counts.streams[direction] += 1

    def _body_data(self, event: BodyData) -> None:
        exchange = self._exchange(event.exchange)
        if exchange is None:
            account = self._unattributed[event.direction]
            account.add(Category.CHUNK_FRAMING, event.framing)
            account.add(Category.UNPARSED, len(event.data))
        elif event.direction in exchange.websocket:
            # WebSocket over HTTP/2: frames inside the stream's DATA.
            exchange.accounts[event.direction].add(Category.CHUNK_FRAMING, event.framing)
            stream = exchange.websocket[event.direction]
            self._websocket_events(exchange, event.direction, stream.feed(event.data, event.timestamp))
        else:
            self._body(event)

    # -- WebSocket ----------------------------------------------------------

    def _accept_websocket(self, exchange: _Exchange, response: ResponseHead, offsets: dict[Direction, int]) -> None:
        """The server accepted WebSocket on this exchange: its later bytes are WebSocket frames."""
        exchange.body_kind = BodyKind.WEBSOCKET
        exchange.deflate = DeflateParams.from_response_header(response.header("sec-websocket-extensions"))
        for direction in Direction:
            exchange.websocket[direction] = WebSocketStream(
                direction, offset=offsets[direction], deflate=exchange.deflate, keep_content=True
            )

    def _switch(self, event: ProtocolSwitch) -> None:
        direction = event.direction
        exchange = self._exchange(event.exchange)
        if exchange is None:
            return
        stream = exchange.websocket.get(direction)
        if stream is None and exchange.body_kind is not BodyKind.OPAQUE:
            if _upgraded_to(exchange) == "websocket":
                response = exchange.response or exchange.interim[-1]
                exchange.body_kind = BodyKind.WEBSOCKET
                exchange.deflate = DeflateParams.from_response_header(response.header("sec-websocket-extensions"))
                offset = self._fed[direction] - len(event.data)
                stream = exchange.websocket[direction] = WebSocketStream(
                    direction, offset=offset, deflate=exchange.deflate, keep_content=True
                )
                self._websocket = exchange
            else:
                exchange.body_kind = BodyKind.OPAQUE
                offset = self._fed[direction] - len(event.data)
                self._anomalies.append(
                    Anomaly(direction, offset, "the connection switched to a protocol other than WebSocket; not parsed")
                )
        if stream is None:
            exchange.accounts[direction].add(Category.UNPARSED, len(event.data))
            return
        self._websocket_events(exchange, direction, stream.feed(event.data, event.timestamp))

    def _websocket_content(
        self, exchange: _Exchange, direction: Direction, message: WebSocketMessage, content: bytes
    ) -> None:
        """A message's content: read by the application protocol, or used to recognise
        one from the client's first message; a stream whose protocol is still unknown
        after its first message keeps no more content."""
        first = direction not in exchange.first_message_seen
        exchange.first_message_seen.add(direction)
        if exchange.app is None and first and direction is C2S:
            name = detect_from_first_message(content)
            if name is not None:
                self._start_app(exchange, name)
        if exchange.app is None:
            exchange.websocket[direction].keep_content = False
            return
        found = exchange.app.reader.websocket_message(direction, content, message.opcode is Opcode.TEXT)
        self._app_events(
            exchange,
            direction,
            found,
            size=len(content),
            wire=message.wire_payload_bytes,
            delivered=message.payload_bytes,
        )

    def _websocket_events(self, exchange: _Exchange, direction: Direction, events: list[WebSocketEvent]) -> None:
        for event in events:
            if isinstance(event, WebSocketMessage):
                exchange.message(direction, event.wire_bytes, event.payload_bytes, event.timestamp)
                if event.compressed:
                    exchange.compressed[direction] += 1
                if event.content is not None:
                    self._websocket_content(exchange, direction, event, event.content)
            elif isinstance(event, ControlFrame) and event.close_code is not None:
                if exchange.close_codes[direction] is None:
                    exchange.close_codes[direction] = event.close_code
        stream = exchange.websocket[direction]
        if stream.anomaly is not None and stream.anomaly not in self._anomalies:
            self._anomalies.append(stream.anomaly)
