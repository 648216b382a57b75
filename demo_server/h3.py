"""The demo over HTTP/3, on aioquic: the demo app's routes, WebSocket over HTTP/3 and WebTransport.

One UDP port serves every HTTP/3 transport of the demo, so that a proxy in
front of it relays one QUIC origin:

- every request of the demo app (the page, ``/sse``, ``/stream``, the polls,
  ``/feed/*``) goes to the same ASGI app the TCP server runs, over an ASGI
  ``http`` scope with ``http_version "3"``;
- an extended CONNECT with ``:protocol websocket`` (RFC 9220) goes to the
  app's WebSocket routes over an ASGI ``websocket`` scope, the frames read and
  written by wsproto (permessage-deflate when offered and allowed);
- an extended CONNECT with ``:protocol webtransport`` (the draft aioquic
  speaks, draft-02) to :data:`WEBTRANSPORT_PATH` or :data:`WEBTRANSPORT_DATAGRAM_PATH`
  is a WebTransport session served here, which ASGI has no scope for:
  the feed, each message as a unidirectional stream of its own (the stream is
  the message: no framing, and one message's loss or delay holds up no other),
  or each message as one HTTP/3 DATAGRAM; then the feed's end the same way
  (``{"last_seq": N}``), and the client, once it has every message, ends the session.
  The session also echoes what its client sends: datagrams as datagrams,
  bidirectional streams on themselves, unidirectional streams on a new one.

Hypercorn 0.18 speaks HTTP/3 with aioquic 1.2.0 too, SSE and RFC 9220
WebSocket included, but it opens no WebTransport sessions, and data for a
stream it has already finished (a WebSocket client's end of stream after its
Close) raises a KeyError that stops its whole UDP server; so the demo serves
HTTP/3 here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aioquic.asyncio import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, ProtocolNegotiated, QuicEvent, StreamReset
from wsproto.connection import Connection as WebSocketFrames
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.handshake import server_extensions_handshake

from demo_server.feed import Feed
from demo_server.tls import TlsFiles

WEBTRANSPORT_PATH = "/wt"
WEBTRANSPORT_DATAGRAM_PATH = "/wt-datagram"
#: What the server answers a WebTransport CONNECT with: the draft it speaks.
WEBTRANSPORT_DRAFT = (b"sec-webtransport-http3-draft", b"draft02")
#: The largest DATAGRAM frame either side accepts (RFC 9221 max_datagram_frame_size).
MAX_DATAGRAM_FRAME = 65536
#: A feed message larger than this is not sent as a datagram (a QUIC packet holds about 1,200 bytes):
#: its client counts it lost.
MAX_DATAGRAM_MESSAGE = 1100
#: Seconds a WebTransport session waits, once it has sent the feed's end, for its client to end it.
SESSION_END_SECONDS = 5.0


def quic_configuration(tls: TlsFiles) -> QuicConfiguration:
    """The server's QUIC settings: HTTP/3, DATAGRAM frames allowed, the demo's certificate."""
    configuration = QuicConfiguration(
        alpn_protocols=H3_ALPN, is_client=False, max_datagram_frame_size=MAX_DATAGRAM_FRAME
    )
    configuration.load_cert_chain(tls.cert_chain, tls.key)
    return configuration


def bind_udp(port: int) -> socket.socket:
    """A UDP socket on ``port`` of every address, IPv4 and IPv6 (Chromium reaches ``localhost`` at ::1)."""
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", port))
    except OSError:
        sock.close()
        raise
    return sock


async def serve_h3(app: Any, feed: Feed, tls: TlsFiles, sock: socket.socket, ws_compression: bool = True) -> QuicServer:
    """Serve ``app`` (an ASGI app) and the ``feed`` over HTTP/3 on the UDP socket ``sock``, in
    the running loop; ``close()`` the result to stop."""
    configuration = quic_configuration(tls)
    loop = asyncio.get_running_loop()

    def protocol(*args: Any, **kwargs: Any) -> H3DemoProtocol:
        return H3DemoProtocol(*args, app=app, feed=feed, ws_compression=ws_compression, **kwargs)

    _, server = await loop.create_datagram_endpoint(
        lambda: QuicServer(configuration=configuration, create_protocol=protocol), sock=sock
    )
    return server


@dataclass(slots=True)
class _Request:
    """A request's head as HTTP/3 gave it: pseudo-headers apart from the rest."""

    method: str
    path: str
    query: str
    protocol: str | None
    authority: str
    headers: list[tuple[bytes, bytes]]

    @classmethod
    def from_headers(cls, headers: list[tuple[bytes, bytes]]) -> _Request:
        pseudo = {name.decode(): value.decode("latin-1") for name, value in headers if name.startswith(b":")}
        target = urlsplit(pseudo.get(":path", "/"))
        return cls(
            method=pseudo.get(":method", "GET"),
            path=target.path or "/",
            query=target.query,
            protocol=pseudo.get(":protocol"),
            authority=pseudo.get(":authority", ""),
            headers=[(name, value) for name, value in headers if not name.startswith(b":")],
        )

    def scope(self, kind: str, client: Any, server: Any) -> dict[str, Any]:
        """The request as an ASGI ``http`` or ``websocket`` scope."""
        headers = [(b"host", self.authority.encode()), *self.headers] if self.authority else self.headers
        scope: dict[str, Any] = {
            "type": kind,
            "asgi": {"version": "3.0"},
            "http_version": "3",
            "scheme": "https" if kind == "http" else "wss",
            "path": self.path,
            "raw_path": self.path.encode(),
            "query_string": self.query.encode(),
            "root_path": "",
            "headers": headers,
            "client": client,
            "server": server,
            "extensions": {},
        }
        if kind == "http":
            scope["method"] = self.method
        else:
            protocols = self.header(b"sec-websocket-protocol")
            scope["subprotocols"] = [p.strip() for p in protocols.split(",")] if protocols else []
        return scope

    def header(self, name: bytes) -> str | None:
        values = [value.decode("latin-1") for key, value in self.headers if key == name]
        return ", ".join(values) if values else None


class H3DemoProtocol(QuicConnectionProtocol):
    """One QUIC connection of the demo's HTTP/3 server: its requests, WebSockets and WebTransport sessions."""

    def __init__(self, *args: Any, app: Any, feed: Feed, ws_compression: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = app
        self.feed = feed
        self.ws_compression = ws_compression
        self.http: H3Connection | None = None
        self.exchanges: dict[int, _Exchange] = {}
        self.sessions: dict[int, _WebTransportSession] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
            self.http = H3Connection(self._quic, enable_webtransport=True)
        elif isinstance(event, StreamReset):
            exchange = self.exchanges.pop(event.stream_id, None)
            if exchange is not None:
                exchange.disconnected()
        elif isinstance(event, ConnectionTerminated):
            for exchange in [*self.exchanges.values(), *self.sessions.values()]:
                exchange.disconnected()
            self.exchanges.clear()
            self.sessions.clear()
        if self.http is not None:
            for h3_event in self.http.handle_event(event):
                self._http_event(h3_event)

    def _http_event(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self._request(event.stream_id, _Request.from_headers(event.headers), event.stream_ended)
        elif isinstance(event, DataReceived):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None:
                exchange.received(event.data, event.stream_ended)
        elif isinstance(event, WebTransportStreamDataReceived):
            session = self.sessions.get(event.session_id)
            if session is not None:
                session.stream_data(event.stream_id, event.data, event.stream_ended)
        elif isinstance(event, DatagramReceived):
            session = self.sessions.get(event.stream_id)
            if session is not None:
                session.datagram(event.data)

    def _request(self, stream_id: int, request: _Request, ended: bool) -> None:
        assert self.http is not None
        exchange: _Exchange
        if request.method == "CONNECT" and request.protocol == "webtransport":
            if request.path not in (WEBTRANSPORT_PATH, WEBTRANSPORT_DATAGRAM_PATH):
                self.http.send_headers(stream_id, [(b":status", b"404")], end_stream=True)
                self.transmit()
                return
            session = _WebTransportSession(self, stream_id, request)
            self.sessions[stream_id] = session
            exchange = session
        elif request.method == "CONNECT" and request.protocol == "websocket":
            exchange = _WebSocketExchange(self, stream_id, request)
        else:
            exchange = _HttpExchange(self, stream_id, request)
        self.exchanges[stream_id] = exchange
        exchange.start()
        if ended:
            exchange.received(b"", True)

    def finished(self, stream_id: int) -> None:
        """The exchange on ``stream_id`` has ended (its handler returned)."""
        self.exchanges.pop(stream_id, None)
        self.sessions.pop(stream_id, None)

    def addresses(self) -> tuple[Any, Any]:
        """The client's and the server's (host, port), as ASGI scopes give them."""
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        sockname = self._transport.get_extra_info("sockname") if self._transport is not None else None
        return (peer[:2] if peer else None), (sockname[:2] if sockname else None)


@dataclass(eq=False)
class _Exchange:
    """One request stream and the task that answers it."""

    connection: H3DemoProtocol
    stream_id: int
    request: _Request
    inbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    closed: bool = False

    @property
    def http(self) -> H3Connection:
        assert self.connection.http is not None
        return self.connection.http

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            await self.run()
        except Exception:  # noqa: BLE001 - one exchange's failure ends that stream, not the server
            self._abort()
        finally:
            self.connection.finished(self.stream_id)

    async def run(self) -> None:
        raise NotImplementedError

    def received(self, data: bytes, ended: bool) -> None:
        raise NotImplementedError

    def disconnected(self) -> None:
        """The stream or the connection is gone."""
        self.closed = True
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def send_headers(self, headers: list[tuple[bytes, bytes]], end: bool = False) -> None:
        if not self.closed:
            self.http.send_headers(self.stream_id, headers, end_stream=end)
            self.connection.transmit()

    def send_data(self, data: bytes, end: bool = False) -> None:
        if not self.closed:
            self.http.send_data(self.stream_id, data, end_stream=end)
            self.connection.transmit()

    def _abort(self) -> None:
        if not self.closed:
            with contextlib.suppress(Exception):
                self.connection._quic.reset_stream(self.stream_id, 0x102)  # H3_INTERNAL_ERROR
                self.connection.transmit()
            self.closed = True


class _HttpExchange(_Exchange):
    """A request answered by the ASGI app."""

    def received(self, data: bytes, ended: bool) -> None:
        self.inbox.put_nowait({"type": "http.request", "body": data, "more_body": not ended})

    async def run(self) -> None:
        client, server = self.connection.addresses()
        scope = self.request.scope("http", client, server)
        await self.connection.app(scope, self._receive, self._send)

    async def _receive(self) -> dict[str, Any]:
        if self.closed and self.inbox.empty():
            return {"type": "http.disconnect"}
        return await self.inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status = str(message["status"]).encode()
            headers = [(name.lower(), value) for name, value in message.get("headers", [])]
            self.send_headers([(b":status", status), *headers])
        elif message["type"] == "http.response.body":
            self.send_data(bytes(message.get("body", b"")), end=not message.get("more_body", False))
        if self.closed:
            raise ConnectionError("the client has gone")


@dataclass(eq=False)
class _WebSocketExchange(_Exchange):
    """An RFC 9220 WebSocket answered by the ASGI app: wsproto frames in the stream's DATA."""

    frames: WebSocketFrames | None = None
    #: The parts of a message still arriving.
    parts: list[Any] = field(default_factory=list)

    def received(self, data: bytes, ended: bool) -> None:
        if self.frames is None:
            return
        if data:
            self.frames.receive_data(data)
        for event in self.frames.events():
            if isinstance(event, (TextMessage, BytesMessage)):
                self.parts.append(event.data)
                if event.message_finished:
                    message: dict[str, Any]
                    if isinstance(event, TextMessage):
                        message = {"type": "websocket.receive", "text": "".join(self.parts)}
                    else:
                        message = {"type": "websocket.receive", "bytes": b"".join(self.parts)}
                    self.parts = []
                    self.inbox.put_nowait(message)
            elif isinstance(event, Ping):
                self.send_data(self.frames.send(event.response()))
            elif isinstance(event, CloseConnection):
                # The closing handshake is done once both Close frames have gone: end our side too.
                answer = self.frames.send(event.response()) if self.frames.state.name == "REMOTE_CLOSING" else b""
                self.send_data(answer, end=True)
                self.inbox.put_nowait({"type": "websocket.disconnect", "code": event.code})
        if ended:
            self.inbox.put_nowait({"type": "websocket.disconnect", "code": 1006})

    async def run(self) -> None:
        client, server = self.connection.addresses()
        scope = self.request.scope("websocket", client, server)
        self.inbox.put_nowait({"type": "websocket.connect"})
        await self.connection.app(scope, self._receive, self._send)

    async def _receive(self) -> dict[str, Any]:
        if self.closed and self.inbox.empty():
            return {"type": "websocket.disconnect", "code": 1006}
        return await self.inbox.get()

    async def _send(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            extensions: list[Extension] = []
            head = [(b":status", b"200")]
            offered = self.request.header(b"sec-websocket-extensions")
            if self.connection.ws_compression and offered:
                deflate = PerMessageDeflate()
                accepted = server_extensions_handshake([o.strip() for o in offered.split(",")], [deflate])
                if accepted is not None:
                    extensions.append(deflate)
                    head.append((b"sec-websocket-extensions", accepted))
            if message.get("subprotocol"):
                head.append((b"sec-websocket-protocol", message["subprotocol"].encode()))
            self.frames = WebSocketFrames(ConnectionType.SERVER, extensions)
            self.send_headers(head)
        elif kind == "websocket.send" and self.frames is not None:
            if message.get("text") is not None:
                self.send_data(self.frames.send(TextMessage(data=message["text"])))
            else:
                self.send_data(self.frames.send(BytesMessage(data=message.get("bytes") or b"")))
        elif kind == "websocket.close":
            if self.frames is None:
                self.send_headers([(b":status", b"403")], end=True)
            elif self.frames.state.name == "OPEN":
                self.send_data(self.frames.send(CloseConnection(code=int(message.get("code", 1000)))))
        if self.closed:
            raise ConnectionError("the client has gone")


@dataclass(eq=False)
class _WebTransportSession(_Exchange):
    """A WebTransport session: the feed on unidirectional streams or as datagrams, then its end
    (:func:`end_message`) the same way, and echoes."""

    #: What each of the client's unidirectional streams has brought so far.
    uni_parts: dict[int, list[bytes]] = field(default_factory=dict)
    client_ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def via_datagrams(self) -> bool:
        return self.request.path == WEBTRANSPORT_DATAGRAM_PATH

    def received(self, data: bytes, ended: bool) -> None:
        if ended:
            self.client_ended.set()

    async def run(self) -> None:
        """The feed, then its end; the session ends when the client ends it (it has every message:
        ending a session resets its streams, and a relay may pass the end on before the last
        stream), or :data:`SESSION_END_SECONDS` after the feed's end, or as soon as the client
        ends it early."""
        self.send_headers([(b":status", b"200"), WEBTRANSPORT_DRAFT])
        feeding = asyncio.ensure_future(self._send_feed(_query_int(self.request.query, "after")))
        ended = asyncio.ensure_future(self.client_ended.wait())
        try:
            await asyncio.wait({feeding, ended}, return_when=asyncio.FIRST_COMPLETED)
            if feeding.done():
                feeding.result()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(SESSION_END_SECONDS):
                        await ended
        finally:
            feeding.cancel()
            ended.cancel()
        self.send_data(b"", end=True)

    async def _send_feed(self, after: int) -> None:
        feed = self.connection.feed
        async for message in feed.subscribe(after):
            self._send(message.json.encode())
        self._send(end_message(feed.last_seq))

    def _send(self, data: bytes) -> None:
        """One message: a DATAGRAM (unless too large for one), or a unidirectional stream of its own."""
        if self.via_datagrams:
            if len(data) <= MAX_DATAGRAM_MESSAGE:
                self.http.send_datagram(self.stream_id, data)
        else:
            stream_id = self.http.create_webtransport_stream(self.stream_id, is_unidirectional=True)
            self.connection._quic.send_stream_data(stream_id, data, end_stream=True)
        self.connection.transmit()

    def stream_data(self, stream_id: int, data: bytes, ended: bool) -> None:
        """Echo a bidirectional stream on itself; a unidirectional one, once ended, on a new one."""
        quic = self.connection._quic
        if stream_id & 2 == 0:
            quic.send_stream_data(stream_id, data, end_stream=ended)
        else:
            self.uni_parts.setdefault(stream_id, []).append(data)
            if ended:
                reply = self.http.create_webtransport_stream(self.stream_id, is_unidirectional=True)
                quic.send_stream_data(reply, b"".join(self.uni_parts.pop(stream_id)), end_stream=True)
        self.connection.transmit()

    def datagram(self, data: bytes) -> None:
        self.http.send_datagram(self.stream_id, data)
        self.connection.transmit()


def end_message(last_seq: int) -> bytes:
    """What a WebTransport session sends after the feed: ``{"last_seq": N}``, as SSE's end event carries."""
    return json.dumps({"last_seq": last_seq}, separators=(",", ":")).encode()


def _query_int(query: str, name: str) -> int:
    values = parse_qs(query).get(name)
    return int(values[0]) if values and values[0].isdigit() else 0
