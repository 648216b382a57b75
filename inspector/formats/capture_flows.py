"""A capture's traffic as mitmproxy flows, content included: the model that
HAR and flow-file exports are written from.

The wire accounting counts bytes and keeps no content; formats such as HAR
carry heads, bodies and WebSocket messages. Each connection's streams are
parsed again here by the parsers the report uses: HTTP/1.1 by
:class:`~inspector.http1.Http1Parser`, HTTP/2 by
:class:`~inspector.http2.Http2Parser` (a connection speaks HTTP/2 by the
report's own rule, :func:`~inspector.http2.speaks_http2`: TLS ALPN "h2" or
the client's preface; or after an h2c Upgrade), WebSocket frames by wsproto
(unmasked, and inflated where permessage-deflate was negotiated). Every
HTTP/1.1 exchange and every HTTP/2 stream becomes an ``HTTPFlow`` (with its
WebSocket messages, where it upgraded); a connection that carried no HTTP
request at all becomes a ``TCPFlow`` of its chunks. A WebSocket session's
messages include its pings and pongs (``Opcode.PING``, ``Opcode.PONG``, with
their payload), in the order they came: HAR keeps them (opcodes 9 and 10),
while a mitmproxy flow file, whose messages are text and binary only, leaves
them out (:mod:`.export`).

An HTTP/2 stream's flow is what mitmproxy makes of one: ``http_version``
"HTTP/2.0", the method, scheme, authority and path from the request's
pseudo-header fields and the status from ``:status`` (pseudo-header fields
are not among the headers), no reason phrase, and trailers where a trailer
section came. A stream the server accepted WebSocket on (an extended
CONNECT, RFC 8441) keeps its method, CONNECT, and its path, and has the
session's messages; its ``:protocol`` is not kept (mitmproxy has no place for
it). A reset stream's flow has an error. After an h2c Upgrade, the upgraded
request (HTTP/1.1) has the response of stream 1 (HTTP/2.0).

Each ``HTTPFlow`` keeps the exact wire sizes of its messages in
``flow.metadata["rtinspect"]`` (:data:`WIRE_SIZES`): ``connection`` (the
capture's connection id), ``request_head``, ``request_body``,
``response_head``, ``response_body``. Over HTTP/1.1 a head is its bytes
(``response_head`` counts interim responses too) and a body has its chunk
framing and trailers. Over HTTP/2 a head is its header block as HPACK put it
on the wire, and a body is every other byte the stream carried that way, as
the report accounts them: its DATA frames whole (payload, 9-byte frame
header, padding), the frame headers of its HEADERS and CONTINUATION frames,
trailers, and its other frames (WINDOW_UPDATE, RST_STREAM, PRIORITY). So a
connection's bytes are its flows' sizes plus what belongs to no exchange:
over HTTP/2 the preface and the frames of stream 0 (SETTINGS, PING, GOAWAY,
the connection's WINDOW_UPDATEs). The bytes of a WebSocket session after its
handshake are in no size (over HTTP/2, the DATA frames of its stream once
the CONNECT was accepted).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from mitmproxy import connection, http, tcp
from mitmproxy.flow import Error, Flow
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.websocket import WebSocketData, WebSocketMessage
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from ..capture import ConnectionOpened, Record, TlsInfo
from ..driver import ConnectionConsumer, DamagedRecord, RecordDriver
from ..events import (
    BodyData,
    ConnectionEvent,
    FrameBytes,
    H2cUpgrade,
    Headers,
    MessageEnd,
    ParseFailure,
    ProtocolSwitch,
    RequestHead,
    ResponseHead,
    StreamEnd,
    Trailers,
    Unparsed,
)
from ..http2 import HTTP_VERSION as HTTP2_VERSION
from ..http2 import is_websocket_connect
from ..http_connection import HttpConnection
from ..wire import Category, Direction
from .mitmflows import negotiated_extensions

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

#: The key of the wire sizes in each exported ``HTTPFlow``'s metadata.
WIRE_SIZES = "rtinspect"


@dataclass(frozen=True, slots=True)
class CaptureFlows:
    """The flows of a capture, in the order their connections opened, and what the export left out."""

    flows: tuple[Flow, ...]
    notes: tuple[str, ...]


#: The address of a peer the capture does not know (mitmproxy's files need one).
UNKNOWN_ADDRESS = ("0.0.0.0", 0)


def _address(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        return UNKNOWN_ADDRESS
    return host.strip("[]"), int(port)


def _proxy_mode(spec: str) -> ProxyMode:
    try:
        return ProxyMode.parse(spec)
    except ValueError:
        return ProxyMode.parse("regular")


def _tls_fields(tls: TlsInfo | None) -> dict[str, Any]:
    if tls is None:
        return {}
    return {
        "tls": True,
        "tls_version": tls.version,
        "sni": tls.sni,
        "alpn": tls.alpn.encode() if tls.alpn else None,
        "cipher": tls.cipher,
        "timestamp_tls_setup": tls.handshake_finished,
    }


class _Exchange:
    """One request and its response (an HTTP/1.1 exchange or an HTTP/2 stream) while the streams are parsed."""

    def __init__(self, head: RequestHead) -> None:
        self.request = head
        self.response: ResponseHead | None = None
        self.bodies = {C2S: bytearray(), S2C: bytearray()}
        self.head_wire = {C2S: head.size, S2C: 0}
        self.body_wire = {C2S: 0, S2C: 0}
        self.trailers: dict[Direction, Headers] = {}
        #: When each message ended (or, unfinished, when its last bytes came).
        self.ended: dict[Direction, float] = {}
        #: The readers of its WebSocket session, once the server accepted one.
        self.websocket: dict[Direction, _WebSocketReader] | None = None
        self.messages: list[WebSocketMessage] = []
        self.close: tuple[bool, int, str] | None = None
        self.closed_at: float | None = None
        #: HTTP/2: when the stream ended, and whether it was reset.
        self.stream_ended: float | None = None
        self.reset = False

    def response_head(self, head: ResponseHead) -> None:
        self.head_wire[S2C] += head.size
        if not head.interim or head.status == 101:
            self.response = head

    def body(self, event: BodyData) -> None:
        self.bodies[event.direction] += event.data
        self.body_wire[event.direction] += len(event.data) + event.framing
        self.ended[event.direction] = event.timestamp

    def end(self, event: MessageEnd) -> None:
        self.body_wire[event.direction] += event.framing
        self.ended[event.direction] = event.timestamp

    def accept_websocket(self, response: ResponseHead) -> dict[Direction, _WebSocketReader]:
        if self.websocket is None:
            extensions = response.header("sec-websocket-extensions")
            self.websocket = {direction: _WebSocketReader(direction, extensions) for direction in Direction}
        return self.websocket


class _WebSocketReader:
    """The messages of one direction of a WebSocket session, as wsproto reads them."""

    def __init__(self, direction: Direction, extensions_header: str | None) -> None:
        self.direction = direction
        # A reader of the client's frames plays the server, and the other way round.
        self._frames = FrameProtocol(direction is S2C, negotiated_extensions(extensions_header))
        self._parts: list[bytes | str] = []
        self.failed = False

    def feed(self, exchange: _Exchange, data: bytes, timestamp: float) -> None:
        if self.failed:
            return
        self._frames.receive_bytes(data)
        try:
            for frame in self._frames.received_frames():
                if frame.opcode is Opcode.CLOSE:
                    code, reason = cast("tuple[int, str]", frame.payload)
                    if exchange.close is None:
                        exchange.close = (self.direction is C2S, int(code), reason)
                        exchange.closed_at = timestamp
                elif frame.opcode in (Opcode.PING, Opcode.PONG):
                    ping = WebSocketMessage(frame.opcode, self.direction is C2S, bytes(frame.payload), timestamp)  # type: ignore[arg-type]
                    exchange.messages.append(ping)
                elif not frame.opcode.iscontrol():
                    self._parts.append(cast("bytes | str", frame.payload))
                    if frame.message_finished:
                        text = frame.opcode is Opcode.TEXT
                        content = "".join(self._parts).encode() if text else b"".join(self._parts)  # type: ignore[arg-type]
                        exchange.messages.append(
                            WebSocketMessage(frame.opcode, self.direction is C2S, content, timestamp)
                        )
                        self._parts = []
        except ParseFailed:
            self.failed = True


def _pseudo(headers: Headers) -> tuple[dict[str, str], Headers]:
    """HTTP/2 pseudo-header fields (the first of each name), and the other fields."""
    pseudo: dict[str, str] = {}
    for name, value in headers:
        if name.startswith(":"):
            pseudo.setdefault(name, value)
    return pseudo, tuple(field for field in headers if not field[0].startswith(":"))


def _headers(fields: Headers) -> http.Headers:
    return http.Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in fields])


def _http_version(head: RequestHead | ResponseHead) -> bytes:
    """As mitmproxy spells it: "HTTP/1.1", "HTTP/2.0"."""
    if head.http_version == HTTP2_VERSION:
        return b"HTTP/2.0"
    return f"HTTP/{head.http_version}".encode("latin-1")


class _Connection(ConnectionConsumer[tuple[int, list[Flow]]]):
    """One connection's streams, parsed for content."""

    def __init__(self, opened: ConnectionOpened) -> None:
        self.opened = opened
        self.client = connection.Client(
            peername=_address(opened.client),
            sockname=("", 0),
            timestamp_start=opened.timestamp,
            proxy_mode=_proxy_mode(opened.mode),
            **_tls_fields(opened.tls),
        )
        address = _address(opened.server)
        self.server = connection.Server(
            address=address,
            peername=address,
            timestamp_start=opened.timestamp,
            timestamp_tcp_setup=opened.timestamp,
            **_tls_fields(opened.upstream_tls),
        )
        self.http = HttpConnection(opened.tls.alpn if opened.tls is not None else None)
        #: Every exchange, in the order of their requests.
        self.exchanges: list[_Exchange] = []
        #: Exchanges by their number (HTTP/1.1) or stream id (HTTP/2; an h2c Upgrade's is moved to 1).
        self.open: dict[int, _Exchange] = {}
        #: The connection's chunks until it shows a request (then it is HTTP, and they are dropped).
        self.raw: list[tcp.TCPMessage] | None = []
        self.unparsed = 0
        self.tunneled = 0

    def feed(self, direction: Direction, data: bytes, timestamp: float) -> None:
        if self.raw is not None:
            self.raw.append(tcp.TCPMessage(direction is C2S, bytes(data), timestamp))
        self._events(self.http.feed(direction, data, timestamp))

    def gap(self, direction: Direction, missing: int, timestamp: float) -> None:
        """Bytes the recording lacks: the direction is read no further (see the analyzer's ``gap``)."""
        self._events(self.http.stop(direction, f"{missing:,} bytes missing from the capture", timestamp))

    def close(self, timestamp: float, reason: str | None = None) -> tuple[int, list[Flow]]:
        """The connection's flows, keyed by this connection's identity."""
        return id(self), self._flows(timestamp)

    def _flows(self, timestamp: float) -> list[Flow]:
        self._events(self.http.close(timestamp))
        self.client.timestamp_end = self.server.timestamp_end = timestamp
        if self.raw is not None:
            if not self.raw:
                return []
            flow = tcp.TCPFlow(self.client, self.server)
            flow.messages = self.raw
            return [flow]
        return [self._flow(exchange) for exchange in self.exchanges]

    def _request(self, head: RequestHead) -> _Exchange:
        self.raw = None
        exchange = _Exchange(head)
        self.exchanges.append(exchange)
        return exchange

    def _events(self, events: list[ConnectionEvent]) -> None:
        for event in events:
            if isinstance(event, RequestHead):
                self.open[event.exchange] = self._request(event)
            elif isinstance(event, ProtocolSwitch):
                self._switched(event)
            elif isinstance(event, H2cUpgrade):
                # Stream 1 carries the upgraded request's response.
                self.open[1] = self.open[event.exchange]
            elif isinstance(event, Unparsed):
                if self.raw is None:
                    self.unparsed += event.size
            elif isinstance(event, ParseFailure | Trailers) or event.exchange is None:
                if isinstance(event, Trailers) and event.exchange in self.open:
                    self.open[event.exchange].trailers[event.direction] = _pseudo(event.headers)[1]
            elif (exchange := self.open.get(event.exchange)) is not None:
                self._exchange_event(exchange, event)

    def _exchange_event(self, exchange: _Exchange, event: ConnectionEvent) -> None:
        if isinstance(event, ResponseHead):
            exchange.response_head(event)
            if event.http_version == HTTP2_VERSION and 200 <= event.status < 300:
                if is_websocket_connect(exchange.request):
                    exchange.accept_websocket(event)
        elif isinstance(event, BodyData):
            if exchange.websocket is not None:
                # WebSocket over HTTP/2: frames inside the stream's DATA.
                exchange.websocket[event.direction].feed(exchange, event.data, event.timestamp)
                exchange.ended[event.direction] = event.timestamp
            else:
                exchange.body(event)
        elif isinstance(event, MessageEnd):
            exchange.end(event)
        elif isinstance(event, FrameBytes):
            sizes = exchange.head_wire if event.category is Category.HEAD else exchange.body_wire
            sizes[event.direction] += event.size
        elif isinstance(event, StreamEnd):
            exchange.stream_ended = event.timestamp
            exchange.reset = exchange.reset or event.reset

    def _switched(self, event: ProtocolSwitch) -> None:
        exchange = self.open.get(event.exchange) if event.exchange is not None else None
        response = exchange.response if exchange is not None else None
        if exchange is None or response is None or response.status != 101:
            self.tunneled += len(event.data)
            return
        if (response.header("upgrade") or "").strip().lower() != "websocket":
            self.tunneled += len(event.data)
            return
        reader = exchange.accept_websocket(response)[event.direction]
        if event.data:
            reader.feed(exchange, event.data, event.timestamp)

    def _flow(self, exchange: _Exchange) -> http.HTTPFlow:
        head = exchange.request
        flow = http.HTTPFlow(self.client, self.server)
        scheme, authority, path, fields = "https" if self.opened.tls else "http", "", head.target, head.headers
        if head.http_version == HTTP2_VERSION:
            # As mitmproxy reads an HTTP/2 request: its pseudo-header fields are not headers.
            pseudo, fields = _pseudo(head.headers)
            scheme = pseudo.get(":scheme") or scheme
            authority = pseudo.get(":authority", "")
            path = pseudo.get(":path", "")
        elif "://" in head.target:
            scheme, _, rest = head.target.partition("://")
            authority, slash, path = rest.partition("/")
            path = slash + path
        host, port = self.server.address or ("", 0)
        flow.request = http.Request(
            host=host,
            port=port,
            method=head.method.encode("latin-1"),
            scheme=scheme.encode("latin-1"),
            authority=authority.encode("latin-1"),
            path=path.encode("latin-1"),
            http_version=_http_version(head),
            headers=_headers(fields),
            content=bytes(exchange.bodies[C2S]),
            trailers=_headers(exchange.trailers[C2S]) if C2S in exchange.trailers else None,
            timestamp_start=head.timestamp,
            timestamp_end=exchange.ended.get(C2S, head.timestamp),
        )
        sizes = {
            "connection": str(self.opened.connection_id),
            "request_head": exchange.head_wire[C2S],
            "request_body": exchange.body_wire[C2S],
        }
        response = exchange.response
        if response is not None:
            flow.response = http.Response(
                http_version=_http_version(response),
                status_code=response.status,
                reason=response.reason.encode("latin-1"),
                headers=_headers(_pseudo(response.headers)[1]),
                content=bytes(exchange.bodies[S2C]),
                trailers=_headers(exchange.trailers[S2C]) if S2C in exchange.trailers else None,
                timestamp_start=response.timestamp,
                timestamp_end=exchange.ended.get(S2C, response.timestamp),
            )
            sizes |= {"response_head": exchange.head_wire[S2C], "response_body": exchange.body_wire[S2C]}
        if exchange.websocket is not None and response is not None:
            closed_by_client, code, reason = exchange.close or (None, None, None)
            flow.websocket = WebSocketData(
                messages=exchange.messages,
                closed_by_client=closed_by_client,
                close_code=code,
                close_reason=reason,
                timestamp_end=exchange.closed_at or exchange.stream_ended or self.client.timestamp_end,
            )
        if exchange.reset:
            flow.error = Error("the HTTP/2 stream was reset (RST_STREAM)")
        flow.metadata[WIRE_SIZES] = sizes
        return flow


def flows_from_records(records: Iterable[Record]) -> CaptureFlows:
    """The flows of a capture's records (in file order), parsed for content."""
    finished: list[_Connection] = []
    flows: dict[int, list[Flow]] = {}

    def start(opened: ConnectionOpened) -> _Connection:
        conn = _Connection(opened)
        finished.append(conn)
        return conn

    driver: RecordDriver[_Connection, tuple[int, list[Flow]]] = RecordDriver(start)
    for record in records:
        try:
            closed = driver.feed(record)
        except DamagedRecord:
            continue  # network conditions: nothing a flow holds
        if closed is not None:
            flows[closed[0]] = closed[1]
    for _, (key, conn_flows) in driver.finish(driver.last_timestamp, "still open when the capture ended"):
        flows[key] = conn_flows
    finished.sort(key=lambda conn: (conn.opened.timestamp, conn.opened.connection_id))
    return CaptureFlows(tuple(flow for conn in finished for flow in flows[id(conn)]), _notes(finished))


def _notes(connections: list[_Connection]) -> tuple[str, ...]:
    notes = []
    unparsed = sum(conn.unparsed for conn in connections)
    if unparsed:
        notes.append(f"{unparsed} bytes that could not be parsed as HTTP are not in the export.")
    tunneled = sum(conn.tunneled for conn in connections)
    if tunneled:
        notes.append(
            f"{tunneled} bytes of protocols other than WebSocket (after an Upgrade or CONNECT) are not in the export."
        )
    broken = sum(
        reader.failed
        for conn in connections
        for exchange in conn.exchanges
        for reader in (exchange.websocket or {}).values()
    )
    if broken:
        notes.append(
            f"{broken} WebSocket stream(s) stopped at a frame that could not be read; later messages are not in the export."
        )
    return tuple(notes)
