"""A capture's traffic as mitmproxy flows, content included: the model that
HAR and flow-file exports are written from.

The wire accounting counts bytes and keeps no content; formats such as HAR
carry heads, bodies and WebSocket messages. Each connection's streams are
parsed again here: HTTP/1.1 by :class:`~inspector.http1.Http1Parser` (the
parser the report uses), WebSocket frames by wsproto (unmasked, and inflated
where permessage-deflate was negotiated). Every HTTP exchange becomes an
``HTTPFlow`` (with its WebSocket messages, where it upgraded); a connection
that carried no HTTP request at all becomes a ``TCPFlow`` of its chunks.

Each ``HTTPFlow`` keeps the exact wire sizes of its messages in
``flow.metadata["rtinspect"]`` (:data:`WIRE_SIZES`): ``connection`` (the
capture's connection id), ``request_head``, ``request_body``,
``response_head``, ``response_body`` (bodies with their chunk framing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mitmproxy import connection, http, tcp
from mitmproxy.flow import Flow
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.websocket import WebSocketData, WebSocketMessage
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed

from ..capture import ConnectionClosed, ConnectionOpened, DataChunk, Record, TlsInfo
from ..http1 import (
    BodyData,
    Http1Parser,
    MessageEnd,
    ProtocolSwitch,
    RequestHead,
    ResponseHead,
    Unparsed,
)
from ..wire import Direction
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
    """One request and its response while the streams are parsed."""

    def __init__(self, head: RequestHead) -> None:
        self.request = head
        self.response: ResponseHead | None = None
        self.bodies = {C2S: bytearray(), S2C: bytearray()}
        self.body_wire = {C2S: 0, S2C: 0}
        #: When each message ended (or, unfinished, when its last bytes came).
        self.ended: dict[Direction, float] = {}
        self.messages: list[WebSocketMessage] = []
        self.close: tuple[bool, int, str] | None = None
        self.closed_at: float | None = None


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
                    code, reason = frame.payload
                    if exchange.close is None:
                        exchange.close = (self.direction is C2S, int(code), reason)
                        exchange.closed_at = timestamp
                elif not frame.opcode.iscontrol():
                    self._parts.append(frame.payload)
                    if frame.message_finished:
                        text = frame.opcode is Opcode.TEXT
                        content = "".join(self._parts).encode() if text else b"".join(self._parts)  # type: ignore[arg-type]
                        exchange.messages.append(WebSocketMessage(frame.opcode, self.direction is C2S, content, timestamp))
                        self._parts = []
        except ParseFailed:
            self.failed = True


class _Connection:
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
        self.parser = Http1Parser()
        self.exchanges: list[_Exchange] = []
        #: The connection's chunks until it shows a request (then it is HTTP, and they are dropped).
        self.raw: list[tcp.TCPMessage] | None = []
        self.websocket: dict[Direction, _WebSocketReader] = {}
        self.unparsed = 0
        self.tunneled = 0

    def feed(self, direction: Direction, data: bytes, timestamp: float) -> None:
        if self.raw is not None:
            self.raw.append(tcp.TCPMessage(direction is C2S, bytes(data), timestamp))
        for event in self.parser.feed(direction, data, timestamp):
            self._event(event)

    def close(self, timestamp: float) -> list[Flow]:
        for event in self.parser.close(timestamp):
            self._event(event)
        self.client.timestamp_end = self.server.timestamp_end = timestamp
        if self.raw is not None:
            if not self.raw:
                return []
            flow = tcp.TCPFlow(self.client, self.server)
            flow.messages = self.raw
            return [flow]
        return [self._flow(exchange) for exchange in self.exchanges]

    def _event(self, event: object) -> None:
        if isinstance(event, RequestHead):
            self.raw = None
            self.exchanges.append(_Exchange(event))
        elif isinstance(event, ResponseHead):
            exchange = self.exchanges[event.exchange]
            if not event.interim or event.status == 101:
                exchange.response = event
        elif isinstance(event, BodyData) and event.exchange is not None:
            exchange = self.exchanges[event.exchange]
            exchange.bodies[event.direction] += event.data
            exchange.body_wire[event.direction] += len(event.data) + event.framing
            exchange.ended[event.direction] = event.timestamp
        elif isinstance(event, MessageEnd) and event.exchange is not None:
            exchange = self.exchanges[event.exchange]
            exchange.body_wire[event.direction] += event.framing
            exchange.ended[event.direction] = event.timestamp
        elif isinstance(event, ProtocolSwitch):
            self._switched(event)
        elif isinstance(event, Unparsed) and self.raw is None:
            self.unparsed += event.size

    def _switched(self, event: ProtocolSwitch) -> None:
        exchange = self.exchanges[event.exchange] if event.exchange is not None else None
        response = exchange.response if exchange is not None else None
        upgrade = response.header("upgrade") if response is not None else None
        if exchange is None or response is None or response.status != 101 or (upgrade or "").lower() != "websocket":
            self.tunneled += len(event.data)
            return
        reader = self.websocket.get(event.direction)
        if reader is None:
            reader = self.websocket[event.direction] = _WebSocketReader(
                event.direction, response.header("sec-websocket-extensions")
            )
        if event.data:
            reader.feed(exchange, event.data, event.timestamp)

    def _flow(self, exchange: _Exchange) -> http.HTTPFlow:
        head = exchange.request
        flow = http.HTTPFlow(self.client, self.server)
        scheme, authority, path = "https" if self.opened.tls else "http", "", head.target
        if "://" in head.target:
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
            http_version=f"HTTP/{head.http_version}".encode("latin-1"),
            headers=http.Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in head.headers]),
            content=bytes(exchange.bodies[C2S]),
            trailers=None,
            timestamp_start=head.timestamp,
            timestamp_end=exchange.ended.get(C2S, head.timestamp),
        )
        sizes = {
            "connection": str(self.opened.connection_id),
            "request_head": head.size,
            "request_body": exchange.body_wire[C2S],
        }
        response = exchange.response
        if response is not None:
            flow.response = http.Response(
                http_version=f"HTTP/{response.http_version}".encode("latin-1"),
                status_code=response.status,
                reason=response.reason.encode("latin-1"),
                headers=http.Headers([(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]),
                content=bytes(exchange.bodies[S2C]),
                trailers=None,
                timestamp_start=response.timestamp,
                timestamp_end=exchange.ended.get(S2C, response.timestamp),
            )
            sizes |= {"response_head": response.size, "response_body": exchange.body_wire[S2C]}
        if self.websocket and response is not None and response.status == 101:
            closed_by_client, code, reason = exchange.close or (None, None, None)
            flow.websocket = WebSocketData(
                messages=exchange.messages,
                closed_by_client=closed_by_client,
                close_code=code,
                close_reason=reason,
                timestamp_end=exchange.closed_at or self.client.timestamp_end,
            )
        flow.metadata[WIRE_SIZES] = sizes
        return flow


def flows_from_records(records: Iterable[Record]) -> CaptureFlows:
    """The flows of a capture's records (in file order), parsed for content."""
    live: dict[int, _Connection] = {}
    finished: list[_Connection] = []
    flows: dict[int, list[Flow]] = {}
    last_seen = 0.0
    for record in records:
        last_seen = max(last_seen, record.timestamp)
        if isinstance(record, DataChunk):
            conn = live.get(record.connection_id)
            if conn is not None:
                conn.feed(record.direction, record.data, record.timestamp)
        elif isinstance(record, ConnectionOpened):
            live[record.connection_id] = _Connection(record)
        elif isinstance(record, ConnectionClosed):
            conn = live.pop(record.connection_id, None)
            if conn is not None:
                flows[id(conn)] = conn.close(record.timestamp)
                finished.append(conn)
    for conn in live.values():
        flows[id(conn)] = conn.close(last_seen)
        finished.append(conn)
    finished.sort(key=lambda conn: (conn.opened.timestamp, conn.opened.connection_id))
    return CaptureFlows(tuple(flow for conn in finished for flow in flows[id(conn)]), _notes(finished))


def _notes(connections: list[_Connection]) -> tuple[str, ...]:
    notes = []
    unparsed = sum(conn.unparsed for conn in connections)
    if unparsed:
        notes.append(f"{unparsed} bytes that could not be parsed as HTTP are not in the export.")
    tunneled = sum(conn.tunneled for conn in connections)
    if tunneled:
        notes.append(f"{tunneled} bytes of protocols other than WebSocket (after an Upgrade or CONNECT) are not in the export.")
    broken = sum(reader.failed for conn in connections for reader in conn.websocket.values())
    if broken:
        notes.append(f"{broken} WebSocket stream(s) stopped at a frame that could not be read; later messages are not in the export.")
    return tuple(notes)
