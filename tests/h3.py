"""An HTTP/3 server and client on aioquic, for tests that need real QUIC traffic.

:class:`H3Server` serves, on a UDP port of 127.0.0.1, in a thread of its own:

* ``GET /bytes?size=N``: N bytes of body;
* ``GET /sse?n=N&size=S``: N events ``data: <S bytes>`` as ``text/event-stream``,
  one DATA frame each;
* ``CONNECT :protocol=websocket /ws``: a WebSocket (RFC 9220) that echoes every message;
* ``CONNECT :protocol=webtransport /wt?n=N&reversed=R``: a WebTransport session
  (the draft aioquic speaks) that echoes datagrams and bidirectional streams,
  answers each unidirectional stream on a unidirectional stream of its own,
  and pushes N datagrams once the session is up; with R, it also opens R
  unidirectional streams of its own, the highest id first, each carrying
  ``stream <i>`` (see :func:`reversed_stream_ids`).

:class:`H3Client` speaks to it (or to a proxy in front of it): :meth:`H3Client.get`,
:meth:`H3Client.websocket`, :meth:`H3Client.webtransport`; :func:`run_client`
runs one coroutine with a connected client and returns what it returned.

Both ends keep a :class:`Received` account of every QUIC stream's bytes, every
DATAGRAM payload and every stream end as they arrived, below HTTP/3: what a
proxy in between relayed is then compared with what the other end got.

aioquic 1.2.0 (mitmproxy's pin) does not mark a WebTransport bidirectional
stream its client opened as WebTransport, so the server's echo on it would be
read as HTTP/3 frames; the client reads the QUIC events of such streams itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import wsproto
import wsproto.events
from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.asyncio.server import QuicServer
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    DatagramFrameReceived,
    QuicEvent,
    StopSendingReceived,
    StreamDataReceived,
    StreamReset,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from inspector.capture import (
    ConnectionClosed,
    ConnectionOpened,
    DatagramChunk,
    StreamChunk,
    StreamEnded,
    read_capture,
)
from inspector.wire import Direction

LOOPBACK = "127.0.0.1"
#: Seconds any wait here may take.
DEADLINE = 10.0
#: What a DATAGRAM frame may carry, on both ends (as mitmproxy allows).
MAX_DATAGRAM = 65536
#: HTTP/3 WebTransport stream headers (aioquic's draft): a bidirectional stream's
#: signal and a unidirectional stream's type, each followed by the session id.
WT_BIDI_SIGNAL = 0x41
WT_UNI_TYPE = 0x54
#: H3_REQUEST_CANCELLED: what a browser sends when a page abandons a request.
H3_REQUEST_CANCELLED = 0x10C
#: Header fields as a request's extra ones are given.
Headers = Sequence[tuple[bytes, bytes]]


@dataclass
class Received:
    """What one end of a QUIC connection received, below HTTP/3."""

    #: Each stream's bytes, by stream id, in order.
    streams: dict[int, bytearray] = field(default_factory=dict)
    #: How each stream's incoming direction ended: None for a FIN, else the reset's error code.
    ended: dict[int, int | None] = field(default_factory=dict)
    #: Each DATAGRAM frame's payload, in order.
    datagrams: list[bytes] = field(default_factory=list)
    #: STOP_SENDING frames: stream id to error code.
    stop_sending: dict[int, int] = field(default_factory=dict)
    #: Whether the connection has ended.
    closed: bool = False
    #: The error code and reason of the CONNECTION_CLOSE that ended it, if one did.
    close: tuple[int, str] | None = None

    def note(self, event: QuicEvent) -> None:
        match event:
            case StreamDataReceived(data=data, end_stream=end_stream, stream_id=stream_id):
                self.streams.setdefault(stream_id, bytearray()).extend(data)
                if end_stream:
                    self.ended[stream_id] = None
            case StreamReset(error_code=code, stream_id=stream_id):
                self.streams.setdefault(stream_id, bytearray())
                self.ended[stream_id] = code
            case StopSendingReceived(error_code=code, stream_id=stream_id):
                self.stop_sending[stream_id] = code
            case DatagramFrameReceived(data=data):
                self.datagrams.append(data)
            case ConnectionTerminated(error_code=code, reason_phrase=reason):
                self.closed = True
                self.close = (code, reason)


def reversed_stream_ids(count: int) -> dict[int, bytes]:
    """The streams ``/wt?reversed=COUNT`` opens on a new connection, by id (after HTTP/3's
    own unidirectional streams 3, 7 and 11), with what each carries after its header."""
    return {15 + 4 * index: b"stream %d" % index for index in range(count)}


def configuration(*, is_client: bool, **settings: Any) -> QuicConfiguration:
    """A QUIC configuration for HTTP/3 that allows DATAGRAM frames."""
    return QuicConfiguration(
        is_client=is_client, alpn_protocols=H3_ALPN, max_datagram_frame_size=MAX_DATAGRAM, **settings
    )


def wt_stream_header(session_id: int, *, unidirectional: bool) -> bytes:
    """What starts a WebTransport stream of ``session_id`` (aioquic's draft)."""
    return encode_uint_var(WT_UNI_TYPE if unidirectional else WT_BIDI_SIGNAL) + encode_uint_var(session_id)


class _Endpoint(QuicConnectionProtocol):
    """One end: QUIC events noted in :attr:`received`, then read as HTTP/3."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.h3 = H3Connection(self._quic, enable_webtransport=True)
        self.received = Received()
        #: Streams whose QUIC events HTTP/3 does not read (see the module's docstring).
        self.raw_streams: set[int] = set()

    def quic_event_received(self, event: QuicEvent) -> None:
        self.received.note(event)
        if isinstance(event, StreamDataReceived) and event.stream_id in self.raw_streams:
            return
        for h3_event in self.h3.handle_event(event):
            self.h3_event_received(h3_event)

    def connection_lost(self, exc: Exception | None) -> None:
        self.received.closed = True
        super().connection_lost(exc)

    def h3_event_received(self, event: H3Event) -> None:
        raise NotImplementedError


# -- the server


@dataclass
class _Exchange:
    """A request stream the server is answering."""

    path: str
    query: dict[str, list[str]]
    websocket: wsproto.Connection | None = None
    #: A WebTransport client unidirectional stream's bytes so far.
    uni: bytearray = field(default_factory=bytearray)


class _ServerEndpoint(_Endpoint):
    def __init__(self, *args: Any, accounts: list[Received], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        accounts.append(self.received)
        self._exchanges: dict[int, _Exchange] = {}
        self._uni: dict[int, bytearray] = {}

    def h3_event_received(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self._request(event.stream_id, dict(event.headers), event.stream_ended)
        elif isinstance(event, DataReceived):
            exchange = self._exchanges.get(event.stream_id)
            if exchange is not None and exchange.websocket is not None:
                self._websocket_data(event.stream_id, exchange.websocket, event.data)
        elif isinstance(event, DatagramReceived):
            self.h3.send_datagram(event.stream_id, event.data)
        elif isinstance(event, WebTransportStreamDataReceived):
            self._webtransport_stream(event)

    def _request(self, stream_id: int, headers: dict[bytes, bytes], ended: bool) -> None:
        target = urlsplit(headers.get(b":path", b"/").decode())
        query = parse_qs(target.query)
        exchange = self._exchanges[stream_id] = _Exchange(target.path, query)
        method, protocol = headers.get(b":method"), headers.get(b":protocol")

        def number(name: str, default: int) -> int:
            return int(query.get(name, [str(default)])[0])

        if method == b"CONNECT" and protocol == b"websocket" and target.path == "/ws":
            exchange.websocket = wsproto.Connection(wsproto.ConnectionType.SERVER)
            self.h3.send_headers(stream_id, [(b":status", b"200")])
        elif method == b"CONNECT" and protocol == b"webtransport" and target.path == "/wt":
            self.h3.send_headers(stream_id, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")])
            for index in range(number("n", 0)):
                self.h3.send_datagram(stream_id, b"push %d" % index)
            self._open_reversed(stream_id, number("reversed", 0))
        elif method == b"GET" and target.path == "/bytes":
            body = b"b" * number("size", 0)
            self._respond(stream_id, b"application/octet-stream", [body])
        elif method == b"GET" and target.path == "/sse":
            event = b"data: " + b"e" * number("size", 16) + b"\n\n"
            self._respond(stream_id, b"text/event-stream", [event] * number("n", 1))
        else:
            self._respond(stream_id, b"text/plain", [b"not found\n"], status=b"404")

    def _open_reversed(self, session_id: int, count: int) -> None:
        """Open ``count`` unidirectional WebTransport streams, the highest id first."""
        first = self._quic._local_next_stream_id_uni
        ids = [first + 4 * index for index in range(count)]
        for index, stream_id in reversed(list(enumerate(ids))):
            header = wt_stream_header(session_id, unidirectional=True)
            self._quic.send_stream_data(stream_id, header + b"stream %d" % index, end_stream=True)
        self._quic._local_next_stream_id_uni = first + 4 * count  # aioquic counts from the last one opened

    def _respond(self, stream_id: int, media_type: bytes, pieces: list[bytes], status: bytes = b"200") -> None:
        self.h3.send_headers(stream_id, [(b":status", status), (b"content-type", media_type)], end_stream=not pieces)
        for index, piece in enumerate(pieces):
            self.h3.send_data(stream_id, piece, end_stream=index == len(pieces) - 1)

    def _websocket_data(self, stream_id: int, websocket: wsproto.Connection, data: bytes) -> None:
        websocket.receive_data(data)
        for event in websocket.events():
            if isinstance(event, wsproto.events.Message):
                reply = type(event)(data=event.data, message_finished=event.message_finished)
                self.h3.send_data(stream_id, websocket.send(reply), end_stream=False)
            elif isinstance(event, wsproto.events.CloseConnection):
                self.h3.send_data(stream_id, websocket.send(event.response()), end_stream=True)

    def _webtransport_stream(self, event: WebTransportStreamDataReceived) -> None:
        stream_id = event.stream_id
        if stream_id % 4 == 0:  # a client's bidirectional stream: echoed on it
            self._quic.send_stream_data(stream_id, event.data, end_stream=event.stream_ended)
            return
        held = self._uni.setdefault(stream_id, bytearray())
        held += event.data
        if event.stream_ended:
            answer = self.h3.create_webtransport_stream(event.session_id, is_unidirectional=True)
            self._quic.send_stream_data(answer, bytes(self._uni.pop(stream_id)), end_stream=True)


class H3Server:
    """The HTTP/3 test server on ``LOOPBACK``, a free UDP port, in a thread of its own.

    :attr:`connections` holds a :class:`Received` per QUIC connection, in the
    order they came; read it once the traffic is done.
    """

    def __init__(self, certificate_chain: Path, keylog: Path | None = None) -> None:
        self._certificate_chain = certificate_chain
        self._keylog = keylog
        self.connections: list[Received] = []
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: QuicServer | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="h3-server", daemon=True)

    def __enter__(self) -> H3Server:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(DEADLINE)
        transport = self._server._transport
        assert transport is not None
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(DEADLINE)
        self._loop.close()

    @property
    def url(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    async def _serve(self) -> QuicServer:
        settings: dict[str, Any] = {}
        if self._keylog is not None:
            settings["secrets_log_file"] = self._keylog.open("a")
        config = configuration(is_client=False, **settings)
        _load_certificate_chain(config, self._certificate_chain)
        accounts = self.connections
        return await serve(
            LOOPBACK,
            0,
            configuration=config,
            create_protocol=lambda *args, **kwargs: _ServerEndpoint(*args, accounts=accounts, **kwargs),
        )


def _load_certificate_chain(config: QuicConfiguration, path: Path) -> None:
    """The certificate chain and key of one PEM file, in any order (aioquic's own loader wants the key last)."""
    pem = path.read_bytes()
    certificates = x509.load_pem_x509_certificates(pem)
    key = re.search(rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.*?-----END \1PRIVATE KEY-----", pem, re.DOTALL)
    if key is None:
        raise ValueError(f"{path}: no private key")
    config.certificate, config.certificate_chain = certificates[0], certificates[1:]
    config.private_key = serialization.load_pem_private_key(key.group(0), password=None)


@contextlib.contextmanager
def h3_server(certificate_chain: Path, keylog: Path | None = None) -> Iterator[H3Server]:
    """:class:`H3Server`, serving while the block runs."""
    with H3Server(certificate_chain, keylog) as server:
        yield server


# -- the client


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


@dataclass
class WebTransportResult:
    """What a WebTransport session brought back."""

    session_id: int
    datagrams: list[bytes]
    #: Each bidirectional stream's echo, by stream id.
    echoes: dict[int, bytes]
    #: What came back on the server's unidirectional streams, in order.
    answers: list[bytes]


class H3Client(_Endpoint):
    """An HTTP/3 client; its coroutines return what the server sent back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._headers: dict[int, dict[bytes, bytes]] = {}
        self._bodies: dict[int, bytearray] = {}
        self._ended: set[int] = set()
        self._datagrams: dict[int, list[bytes]] = {}
        self._wt_uni: dict[int, bytearray] = {}
        self._wt_uni_ended: list[int] = []

    def h3_event_received(self, event: H3Event) -> None:
        if isinstance(event, HeadersReceived):
            self._headers.setdefault(event.stream_id, dict(event.headers))
            if event.stream_ended:
                self._ended.add(event.stream_id)
        elif isinstance(event, DataReceived):
            self._bodies.setdefault(event.stream_id, bytearray()).extend(event.data)
            if event.stream_ended:
                self._ended.add(event.stream_id)
        elif isinstance(event, DatagramReceived):
            self._datagrams.setdefault(event.stream_id, []).append(event.data)
        elif isinstance(event, WebTransportStreamDataReceived):
            self._wt_uni.setdefault(event.stream_id, bytearray()).extend(event.data)
            if event.stream_ended:
                self._wt_uni_ended.append(event.stream_id)

    async def until(self, condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
        """Wait until ``condition`` holds; fail after ``deadline`` seconds, naming ``what``."""
        give_up = time.monotonic() + deadline
        while not condition():
            if time.monotonic() > give_up:
                raise TimeoutError(f"timed out waiting for {what}")
            if self.received.closed:
                raise ConnectionError(f"the connection closed while waiting for {what}")
            await asyncio.sleep(0.01)

    def request(self, method: str, path: str, extra: Headers = (), end_stream: bool = True) -> int:
        """Send a request's head on a new stream; returns the stream id."""
        stream_id = self._quic.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
            *extra,
        ]
        self.h3.send_headers(stream_id, headers, end_stream=end_stream)
        self.transmit()
        return stream_id

    async def get(self, path: str) -> Response:
        stream_id = self.request("GET", path)
        await self.until(lambda: stream_id in self._ended, f"the response to GET {path}")
        headers = self._headers.get(stream_id, {})
        return Response(int(headers.get(b":status", b"0")), headers, bytes(self._bodies.get(stream_id, b"")))

    async def extended_connect(self, path: str, protocol: bytes, extra: Headers = ()) -> int:
        """An extended CONNECT (RFC 9220): the stream id, once the server said 200."""
        stream_id = self.request("CONNECT", path, [(b":protocol", protocol), *extra], end_stream=False)
        await self.until(lambda: stream_id in self._headers, f"the answer to CONNECT {path}")
        status = self._headers[stream_id].get(b":status")
        if status != b"200":
            raise ConnectionError(f"CONNECT {path}: status {status!r}")
        return stream_id

    async def websocket(self, path: str, messages: list[str]) -> list[str]:
        """Send each message over a WebSocket over HTTP/3 and close it; the echoes received."""
        stream_id = await self.extended_connect(path, b"websocket", [(b"sec-websocket-version", b"13")])
        websocket = wsproto.Connection(wsproto.ConnectionType.CLIENT)
        for message in messages:
            self.h3.send_data(stream_id, websocket.send(wsproto.events.TextMessage(message)), end_stream=False)
        self.transmit()
        echoes: list[str] = []
        seen = 0

        def read() -> None:
            nonlocal seen
            body = self._bodies.get(stream_id, bytearray())
            websocket.receive_data(bytes(body[seen:]))
            seen = len(body)
            for event in websocket.events():
                if isinstance(event, wsproto.events.TextMessage):
                    echoes.append(event.data)

        def echoed() -> bool:
            read()
            return len(echoes) >= len(messages)

        await self.until(echoed, "the WebSocket's echoes")
        self.h3.send_data(stream_id, websocket.send(wsproto.events.CloseConnection(1000)), end_stream=True)
        self.transmit()
        await self.until(lambda: stream_id in self._ended, "the WebSocket's close")
        return echoes

    def open_wt_stream(self, session_id: int, stream_id: int, data: bytes, *, end_stream: bool = True) -> None:
        """Open a WebTransport stream with the id given (opened streams need not come in order) and send ``data``."""
        unidirectional = bool(stream_id & 2)
        if not unidirectional:
            self.raw_streams.add(stream_id)
        header = wt_stream_header(session_id, unidirectional=unidirectional)
        self._quic.send_stream_data(stream_id, header + data, end_stream=end_stream)
        self.transmit()

    def next_stream_id(self, *, unidirectional: bool) -> int:
        return self._quic.get_next_available_stream_id(is_unidirectional=unidirectional)

    async def webtransport(
        self,
        path: str,
        *,
        datagrams: tuple[bytes, ...] | list[bytes] = (),
        bidi: tuple[bytes, ...] | list[bytes] = (),
        uni: tuple[bytes, ...] | list[bytes] = (),
        pushes: int = 0,
    ) -> WebTransportResult:
        """A WebTransport session: send the datagrams, one bidirectional stream and one
        unidirectional stream per message, and wait for every echo, answer and push."""
        session_id = await self.extended_connect(path, b"webtransport")
        for datagram in datagrams:
            self.h3.send_datagram(session_id, datagram)
        bidi_ids = []
        for message in bidi:
            stream_id = self.next_stream_id(unidirectional=False)
            self.open_wt_stream(session_id, stream_id, message)
            bidi_ids.append(stream_id)
        for message in uni:
            self.open_wt_stream(session_id, self.next_stream_id(unidirectional=True), message)
        self.transmit()

        def got() -> list[bytes]:
            return self._datagrams.get(session_id, [])

        await self.until(
            lambda: (
                len(got()) >= len(datagrams) + pushes
                and all(self.received.ended.get(s, 1) is None for s in bidi_ids)
                and len(self._wt_uni_ended) >= len(uni)
            ),
            "the WebTransport session's echoes",
        )
        return WebTransportResult(
            session_id,
            list(got()),
            {s: bytes(self.received.streams.get(s, b"")) for s in bidi_ids},
            [bytes(self._wt_uni[s]) for s in self._wt_uni_ended],
        )

    def end_stream(self, stream_id: int) -> None:
        """Finish ``stream_id`` (a FIN), opening it if it is new."""
        self._quic.send_stream_data(stream_id, b"", end_stream=True)
        self.transmit()

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        """Reset the sending side of ``stream_id`` (RESET_STREAM), opening it if it is new."""
        self._quic.reset_stream(stream_id, error_code)
        self.transmit()

    def stop_sending(self, stream_id: int, error_code: int = H3_REQUEST_CANCELLED) -> None:
        """Ask the server to stop sending on ``stream_id`` (STOP_SENDING), as a cancelled fetch does."""
        self._quic.stop_stream(stream_id, error_code)
        self.transmit()

    def bodies(self, stream_id: int) -> bytes:
        return bytes(self._bodies.get(stream_id, b""))


# -- what a proxy recorded


@dataclass
class QuicCaptured:
    """One QUIC connection of a capture, its records gathered."""

    opened: ConnectionOpened
    #: Each stream's bytes per direction, by (direction, stream id), in order.
    streams: dict[tuple[Direction, int], bytes]
    #: DATAGRAM payloads per direction, in order.
    datagrams: dict[Direction, list[bytes]]
    #: How each stream direction ended: (direction, stream id) to None (FIN) or the reset's error code.
    ended: dict[tuple[Direction, int], int | None]
    closed: ConnectionClosed | None

    def sent(self, direction: Direction) -> dict[int, bytes]:
        """Each stream's bytes in one direction, by stream id."""
        return {stream_id: data for (way, stream_id), data in self.streams.items() if way is direction}

    def ends(self, direction: Direction) -> dict[int, int | None]:
        """How each stream ended in one direction, by stream id: None (FIN) or the reset's error code."""
        return {stream_id: end for (way, stream_id), end in self.ended.items() if way is direction}


def captured_quic(path: Path) -> list[QuicCaptured]:
    """The QUIC connections of a capture, in the order they were opened."""
    found: dict[int, QuicCaptured] = {}
    streams: dict[int, dict[tuple[Direction, int], bytearray]] = {}
    with read_capture(path) as capture:
        for record in capture:
            match record:
                case ConnectionOpened(transport="quic"):
                    found[record.connection_id] = QuicCaptured(record, {}, {d: [] for d in Direction}, {}, None)
                    streams[record.connection_id] = {}
                case StreamChunk() if record.connection_id in found:
                    key = (record.direction, record.stream_id)
                    streams[record.connection_id].setdefault(key, bytearray()).extend(record.data)
                case DatagramChunk() if record.connection_id in found:
                    found[record.connection_id].datagrams[record.direction].append(record.data)
                case StreamEnded() if record.connection_id in found:
                    key = (record.direction, record.stream_id)
                    found[record.connection_id].ended[key] = record.error_code if record.reset else None
                case ConnectionClosed() if record.connection_id in found:
                    found[record.connection_id].closed = record
    for connection_id, connection in found.items():
        connection.streams = {key: bytes(data) for key, data in streams[connection_id].items()}
    return [found[connection_id] for connection_id in sorted(found)]


# -- running a client


async def _run[T](
    port: int,
    cafile: Path,
    scenario: Callable[[H3Client], Awaitable[T]],
    keylog: Path | None,
    close: bool,
    settings: dict[str, Any],
) -> tuple[T, Received]:
    settings = {"server_name": "localhost", **settings}
    if keylog is not None:
        settings["secrets_log_file"] = keylog.open("a")
    config = configuration(is_client=True, **settings)
    config.load_verify_locations(str(cafile))
    async with connect(LOOPBACK, port, configuration=config, create_protocol=H3Client) as client:
        assert isinstance(client, H3Client)
        result = await scenario(client)
        if close:
            client.close()
            await client.wait_closed()
    return result, client.received


def run_client[T](
    port: int,
    cafile: Path,
    scenario: Callable[[H3Client], Awaitable[T]],
    *,
    keylog: Path | None = None,
    close: bool = True,
    deadline: float = 3 * DEADLINE,
    **settings: Any,
) -> tuple[T, Received]:
    """Connect to ``LOOPBACK:port`` trusting ``cafile``, run ``scenario`` and close:
    what it returned and what the client received, below HTTP/3. ``settings``
    go to aioquic's ``QuicConfiguration`` (``idle_timeout=1.0``, say)."""

    async def bounded() -> tuple[T, Received]:
        return await asyncio.wait_for(_run(port, cafile, scenario, keylog, close, settings), deadline)

    return asyncio.run(bounded())
