"""Real loopback servers, relays and an ``rtinspect proxy`` process for tests.

Everything listens on 127.0.0.1 on a free port, runs in background threads
(the proxy in a subprocess), and every wait is bounded by :data:`DEADLINE`.

- :class:`ScriptedServer`: raw TCP (optionally TLS) server whose handler reads
  and sends exact bytes; it records every byte each connection received and
  sent. Use it for wire shapes frameworks will not produce (chunk extensions,
  trailers).
- :class:`AppServer`: a FastAPI app under uvicorn with plain responses, polls,
  SSE, NDJSON and a WebSocket echo that negotiates permessage-deflate.
- :class:`RecordingRelay`: a TCP relay that records the bytes of each
  connection in both directions, to see what a real client sent and got.
- :class:`HypercornServer`: an ASGI app (:func:`make_app` by default) under
  Hypercorn, over TLS (ALPN h2 and http/1.1) or cleartext (HTTP/1.1 and h2c).
- :class:`H2Client` and :func:`serve_h2`: HTTP/2 with the ``h2`` library over
  one socket on each side, recording every byte each end sent and received.
- :func:`running_proxy`: ``rtinspect proxy`` in front of an upstream.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import os
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import h2.config
import h2.connection
import h2.events
import h2.settings
import trustme
import uvicorn
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, Response, StreamingResponse
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode

from inspector import proxy_process
from inspector.proxy_process import free_port as free_port  # for the tests that pick ports
from inspector.proxy_process import rtinspect_command

LOOPBACK = "127.0.0.1"
#: Seconds any wait in these helpers may take before the test fails.
DEADLINE = 20.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def _listening_socket() -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((LOOPBACK, 0))
    listener.listen(64)
    return listener


def _close_listener(listener: socket.socket) -> None:
    """Close a listening socket, waking a thread blocked in accept()."""
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)
    listener.close()


def wait_until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``deadline`` seconds."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def _start_thread(target: Callable[..., object], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


# -- scripted server


class ScriptedConnection:
    """One connection to a :class:`ScriptedServer`, as its handler sees it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.received = bytearray()
        self.sent = bytearray()
        self.finished = threading.Event()

    def read_until(self, marker: bytes) -> bytes:
        """Read until ``marker`` has arrived; returns everything received so far."""
        while marker not in self.received:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError(f"peer closed before {marker!r} arrived")
            self.received += data
        return bytes(self.received)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += data

    def _drain(self) -> None:
        """Stop sending, then record whatever the peer sends until it closes."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
            while data := self.sock.recv(65536):
                self.received += data


Handler = Callable[[ScriptedConnection], None]


def respond_with(*pieces: bytes) -> Handler:
    """A handler that reads one request head (and no body), then sends ``pieces`` one write each."""

    def handle(connection: ScriptedConnection) -> None:
        connection.read_until(b"\r\n\r\n")
        for piece in pieces:
            connection.send(piece)

    return handle


class ScriptedServer:
    """A TCP server whose ``handler`` scripts each connection byte for byte.

    After the handler returns, the server closes its sending side and records
    what the peer still sends until it closes. With ``tls``, connections are
    wrapped in TLS and the recorded bytes are the plaintext.
    """

    def __init__(self, handler: Handler, *, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self.tls = tls
        self.connections: list[ScriptedConnection] = []
        self._listener = _listening_socket()
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self.port}"

    def __enter__(self) -> ScriptedServer:
        self._threads.append(_start_thread(self._accept))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _close_listener(self._listener)
        for thread in self._threads:
            thread.join(DEADLINE)

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.settimeout(DEADLINE)
            self._threads.append(_start_thread(self._serve, sock))

    def _serve(self, sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_side=True)
            connection = ScriptedConnection(sock)
            self.connections.append(connection)
            try:
                self.handler(connection)
                connection._drain()
            finally:
                connection.finished.set()
        sock.close()

    def wait_finished(self, count: int) -> list[ScriptedConnection]:
        """Wait until ``count`` connections have been served to the end."""
        wait_until(
            lambda: len(self.connections) >= count and all(c.finished.is_set() for c in self.connections),
            f"{count} scripted connection(s) to finish",
        )
        return self.connections


def self_signed_certificate(directory: Path, host: str = LOOPBACK) -> tuple[Path, Path]:
    """Write a self-signed certificate and key for ``host``; returns (cert file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(host))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "upstream-cert.pem", directory / "upstream-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def tls_server_context(cert_file: Path, key_file: Path, alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A server's TLS context; with ``alpn``, the protocols it accepts, in its order of preference."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def tls_client_context(cafile: Path, alpn: tuple[str, ...] = (), keylog: Path | None = None) -> ssl.SSLContext:
    """A client's TLS context trusting ``cafile``, offering ``alpn``; with ``keylog``, it appends
    its TLS secrets there (NSS key log format, for tshark's ``tls.keylog_file``)."""
    context = ssl.create_default_context(cafile=cafile)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    if keylog is not None:
        context.keylog_filename = str(keylog)
    return context


@dataclass(frozen=True)
class Certificates:
    """A throwaway CA and a certificate it issued for 127.0.0.1 and localhost."""

    ca: Path
    #: The certificate chain and private key, in one PEM file.
    server: Path

    def server_context(self, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> ssl.SSLContext:
        return tls_server_context(self.server, self.server, alpn)


def issue_certificates(directory: Path) -> Certificates:
    """Make a CA with ``trustme`` and a server certificate; write both to ``directory``."""
    ca = trustme.CA()
    certificates = Certificates(directory / "test-ca.pem", directory / "test-server.pem")
    ca.cert_pem.write_to_path(str(certificates.ca))
    ca.issue_cert(LOOPBACK, "localhost").private_key_and_cert_chain_pem.write_to_path(str(certificates.server))
    return certificates


# -- recording relay


@dataclass
class RelayedConnection:
    """The bytes of one relayed connection, each way."""

    client_to_server: bytearray = field(default_factory=bytearray)
    server_to_client: bytearray = field(default_factory=bytearray)
    finished: threading.Event = field(default_factory=threading.Event)


class RecordingRelay:
    """Relays TCP connections to ``host:port`` unchanged and records their bytes."""

    def __init__(self, port: int, host: str = LOOPBACK) -> None:
        self.target = (host, port)
        self.connections: list[RelayedConnection] = []
        self._listener = _listening_socket()
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def __enter__(self) -> RecordingRelay:
        self._threads.append(_start_thread(self._accept))
        return self

    def __exit__(self, *exc_info: object) -> None:
        _close_listener(self._listener)
        for thread in self._threads:
            thread.join(DEADLINE)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._threads.append(_start_thread(self._relay, client))

    def _relay(self, client: socket.socket) -> None:
        record = RelayedConnection()
        self.connections.append(record)
        try:
            server = socket.create_connection(self.target, timeout=DEADLINE)
        except OSError:
            client.close()
            record.finished.set()
            return
        client.settimeout(DEADLINE)
        upstream = _start_thread(self._pump, server, client, record.server_to_client)
        self._pump(client, server, record.client_to_server)
        upstream.join(DEADLINE)
        client.close()
        server.close()
        record.finished.set()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                record += data
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def wait_finished(self, count: int) -> list[RelayedConnection]:
        """Wait until ``count`` connections have ended in both directions."""
        wait_until(
            lambda: len(self.connections) >= count and all(c.finished.is_set() for c in self.connections),
            f"{count} relayed connection(s) to finish",
        )
        return self.connections


# -- app server


def make_app() -> FastAPI:
    """The FastAPI app that :class:`AppServer` serves."""
    app = FastAPI()

    @app.get("/plain")
    async def plain() -> PlainTextResponse:
        return PlainTextResponse("hello, wire\n" * 20)

    @app.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    @app.get("/version")
    async def version(request: Request) -> PlainTextResponse:
        """The HTTP version this server saw the request arrive in ("1.1", "2")."""
        return PlainTextResponse(request.scope["http_version"])

    @app.get("/poll")
    async def poll(wait: float = 0.0, count: int = 1) -> dict[str, list[str]]:
        """A poll answered after ``wait`` seconds with ``count`` messages (0: an empty answer)."""
        await asyncio.sleep(wait)
        return {"messages": [f"message {i}" for i in range(count)]}

    @app.get("/sse")
    async def sse(count: int = 3, interval: float = 0.0) -> StreamingResponse:
        async def events() -> AsyncIterator[str]:
            for i in range(count):
                yield f"id: {i}\nevent: tick\ndata: message {i}\n\n"
                await asyncio.sleep(interval)

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/ndjson")
    async def ndjson(count: int = 3, interval: float = 0.0) -> StreamingResponse:
        async def lines() -> AsyncIterator[str]:
            for i in range(count):
                yield json.dumps({"n": i, "text": f"line {i}"}) + "\n"
                await asyncio.sleep(interval)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @app.websocket("/ws")
    async def websocket_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    await websocket.send_text(message["text"])
                else:
                    await websocket.send_bytes(message["bytes"])
        except WebSocketDisconnect:
            return

    return app


class AsgiServer:
    """An ASGI app under uvicorn in a background thread, on a free port of 127.0.0.1.

    ``ws_per_message_deflate``: WebSocket connections negotiate permessage-deflate
    when the client offers it.
    """

    def __init__(self, app: Any, *, ws_per_message_deflate: bool = False) -> None:
        self._socket = _listening_socket()
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
            ws_per_message_deflate=ws_per_message_deflate,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> Self:
        self._thread = _start_thread(self._server.run, [self._socket])
        wait_until(lambda: self._server.started, "the ASGI server to start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(DEADLINE)
        self._socket.close()


class AppServer(AsgiServer):
    """:func:`make_app` under uvicorn in a background thread, with permessage-deflate."""

    def __init__(self) -> None:
        super().__init__(make_app(), ws_per_message_deflate=True)


class HypercornServer:
    """An ASGI app under Hypercorn in a background thread, listening on 127.0.0.1.

    With ``certificates``, it serves TLS and offers ALPN ``h2`` and ``http/1.1``;
    without, it serves HTTP/1.1, h2c with prior knowledge and the h2c Upgrade.
    With ``cleartext_too``, a TLS server also serves cleartext on
    :attr:`cleartext_port` (for requests that should stay off a packet capture
    of the TLS port). The listening sockets exist before the server starts, so
    connections made right away wait for it rather than fail.
    """

    def __init__(
        self,
        app: Callable[..., object] | None = None,
        *,
        certificates: Certificates | None = None,
        cleartext_too: bool = False,
    ) -> None:
        self.tls = certificates is not None
        config = HypercornConfig()
        listener = _listening_socket()
        self.port: int = listener.getsockname()[1]
        config.bind = [f"fd://{_hand_over(listener)}"]
        self.cleartext_port: int | None = None
        if certificates is not None:
            config.certfile = config.keyfile = str(certificates.server)
            if cleartext_too:
                listener = _listening_socket()
                self.cleartext_port = listener.getsockname()[1]
                config.insecure_bind = [f"fd://{_hand_over(listener)}"]
        config.graceful_timeout = 1.0
        config.loglevel = "WARNING"
        config.accesslog = None
        self._config = config
        self._app = app if app is not None else make_app()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{LOOPBACK}:{self.port}"

    def __enter__(self) -> HypercornServer:
        self._thread = _start_thread(asyncio.run, self._serve())
        if not self._started.wait(DEADLINE):
            raise AssertionError("gave up waiting for Hypercorn to start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(DEADLINE)

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._started.set()
        try:
            await hypercorn_serve(self._app, self._config, shutdown_trigger=self._stop.wait)  # type: ignore[arg-type]
        except BaseException as e:  # noqa: BLE001 - kept for the test to see
            self.error = e


def _hand_over(listener: socket.socket) -> int:
    """A duplicate of a listening socket's descriptor, for a server that takes ``fd://N``;
    ``listener`` itself is closed (the duplicate keeps the socket listening)."""
    fd = os.dup(listener.fileno())
    listener.close()
    return fd


# -- HTTP/2 with the h2 library, every byte recorded


@dataclass
class H2Response:
    """One stream's answer, as an :class:`H2Client` received it."""

    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    #: Payload size of each DATA frame (padding excluded), in arrival order.
    data_frames: list[int] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None

    @property
    def status(self) -> int:
        return int(dict(self.headers)[b":status"])


class _H2Endpoint:
    """One end of an HTTP/2 connection over a blocking socket, with every byte it
    sent and received recorded. Reads happen only when a method waits for something."""

    def __init__(self, sock: socket.socket, client_side: bool, sent: bytearray, received: bytearray) -> None:
        self.sock = sock
        self.sent = sent
        self.received = received
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=client_side, header_encoding=None))
        self.closed = False

    def flush(self) -> None:
        if data := self.h2.data_to_send():
            self.sock.sendall(data)
            self.sent += data

    def read(self) -> None:
        """One read from the socket; its events go to :meth:`handle`. Sets :attr:`closed` at the end."""
        data = self.sock.recv(65536)
        if not data:
            self.closed = True
            return
        self.received += data
        for event in self.h2.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.closed = True
            self.handle(event)
        self.flush()

    def handle(self, event: h2.events.Event) -> None:
        pass

    def wait_for(self, condition: Callable[[], bool], what: str) -> None:
        end = time.monotonic() + DEADLINE
        while not condition():
            if self.closed:
                raise ConnectionError(f"the connection ended before {what}")
            if time.monotonic() > end:
                raise AssertionError(f"gave up waiting for {what}")
            self.read()

    def send_data(
        self, stream_id: int, data: bytes, *, end_stream: bool = False, pad_length: int | None = None
    ) -> None:
        """Send ``data`` in DATA frames (one write each) as flow control allows;
        ``pad_length`` pads each frame. Empty ``data`` with ``end_stream`` is an empty last frame."""
        if not data and not end_stream:
            return
        padding = 0 if pad_length is None else pad_length + 1

        def room() -> int:
            return min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size) - padding

        view = memoryview(data)
        while True:
            if view and room() <= 0:
                self.wait_for(lambda: room() > 0, "the peer to open its flow-control window")
            size = room()
            chunk, view = view[:size], view[size:]
            self.h2.send_data(stream_id, bytes(chunk), end_stream=end_stream and not view, pad_length=pad_length)
            self.flush()
            if not view:
                return


class H2Client(_H2Endpoint):
    """An HTTP/2 client with the ``h2`` library over one connected socket: TLS with
    ALPN h2, or cleartext (h2c with prior knowledge). :attr:`sent` and
    :attr:`received` hold every byte it sent and received."""

    def __init__(self, sock: socket.socket, authority: str, *, scheme: str | None = None) -> None:
        super().__init__(sock, True, bytearray(), bytearray())
        self.authority = authority.encode()
        self.scheme = (scheme or ("https" if isinstance(sock, ssl.SSLSocket) else "http")).encode()
        self.responses: dict[int, H2Response] = {}
        self.pings_acked = 0
        self.remote_settings_seen = False
        self.h2.initiate_connection()
        self.flush()

    @classmethod
    def connect(cls, port: int, tls: ssl.SSLContext | None = None) -> H2Client:
        sock = socket.create_connection((LOOPBACK, port), timeout=DEADLINE)
        if tls is not None:
            sock = tls.wrap_socket(sock, server_hostname=LOOPBACK)
            if sock.selected_alpn_protocol() != "h2":
                raise ConnectionError(f"ALPN chose {sock.selected_alpn_protocol()!r}, not h2")
        return cls(sock, f"{LOOPBACK}:{port}")

    def handle(self, event: h2.events.Event) -> None:
        match event:
            case h2.events.ResponseReceived() | h2.events.InformationalResponseReceived():
                self.responses[event.stream_id].headers += event.headers  # type: ignore[arg-type]
            case h2.events.DataReceived():
                response = self.responses[event.stream_id]
                response.body += event.data
                response.data_frames.append(len(event.data))
            case h2.events.StreamEnded():
                self.responses[event.stream_id].ended = True
            case h2.events.StreamReset():
                if event.stream_id in self.responses:
                    self.responses[event.stream_id].reset = event.error_code
            case h2.events.PingAckReceived():
                self.pings_acked += 1
            case h2.events.RemoteSettingsChanged():
                self.remote_settings_seen = True

    def start(
        self,
        method: str,
        path: str,
        headers: tuple[tuple[str, str], ...] = (),
        *,
        end_stream: bool = True,
        **priority: int | bool,
    ) -> int:
        """Open a stream with a request head; returns its id. ``priority`` takes
        h2's ``priority_weight``, ``priority_depends_on`` and ``priority_exclusive``."""
        stream_id = self.h2.get_next_available_stream_id()
        pseudo = [(b":method", method.encode())]
        if method != "CONNECT" or any(name == ":protocol" for name, _ in headers):
            pseudo += [(b":scheme", self.scheme), (b":path", path.encode())]
        pseudo.append((b":authority", self.authority))
        fields = [(name.encode(), value.encode()) for name, value in headers]
        fields.sort(key=lambda item: not item[0].startswith(b":"))
        self.responses[stream_id] = H2Response()
        self.h2.send_headers(stream_id, pseudo + fields, end_stream=end_stream, **priority)  # type: ignore[arg-type]
        self.flush()
        return stream_id

    def wait_response(self, stream_id: int, *, head_only: bool = False) -> H2Response:
        response = self.responses[stream_id]
        if head_only:
            self.wait_for(
                lambda: bool(response.headers) or response.reset is not None, f"the head of stream {stream_id}"
            )
        else:
            self.wait_for(lambda: response.ended or response.reset is not None, f"the end of stream {stream_id}")
        return response

    def request(
        self, method: str, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = ()
    ) -> H2Response:
        """One request and its whole response."""
        stream_id = self.start(method, path, headers, end_stream=not body)
        if body:
            self.send_data(stream_id, body, end_stream=True)
        return self.wait_response(stream_id)

    def wait_settings(self) -> h2.settings.Settings:
        """The server's SETTINGS, once they have arrived."""
        self.wait_for(lambda: self.remote_settings_seen, "the server's SETTINGS")
        return self.h2.remote_settings

    def ping(self) -> None:
        before = self.pings_acked
        self.h2.ping(b"rtinspec")
        self.flush()
        self.wait_for(lambda: self.pings_acked > before, "the PING's answer")

    def close(self) -> None:
        """GOAWAY, close the sending side, record what still comes until the peer closes."""
        with contextlib.suppress(OSError):
            if not self.closed:
                self.h2.close_connection()
                self.flush()
            self.sock.shutdown(socket.SHUT_WR)
            while data := self.sock.recv(65536):
                self.received += data
        self.sock.close()


class H2WebSocket:
    """A WebSocket over HTTP/2 (RFC 8441) on a stream of an :class:`H2Client`: an
    extended CONNECT with ``:protocol websocket``, then WebSocket frames (masked,
    built and read by wsproto's frame protocol) in DATA frames."""

    def __init__(self, client: H2Client, path: str) -> None:
        settings = client.wait_settings()
        if settings.enable_connect_protocol != 1:
            raise ConnectionError("the server did not send SETTINGS_ENABLE_CONNECT_PROTOCOL = 1")
        self.client = client
        self.frames = FrameProtocol(client=True, extensions=[])
        self.stream_id = client.start(
            "CONNECT", path, ((":protocol", "websocket"), ("sec-websocket-version", "13")), end_stream=False
        )
        self.response = client.wait_response(self.stream_id, head_only=True)
        self._read = 0
        self._messages: list[str | bytes] = []
        self.closed_by_server: int | None = None

    def send(self, message: str | bytes) -> None:
        self.client.send_data(self.stream_id, bytes(self.frames.send_data(message)))

    def recv(self) -> str | bytes | None:
        """The next message; None once the server has closed and every message has been read."""
        self.client.wait_for(
            lambda: bool(self._more()) or self._closed(), f"a WebSocket message on stream {self.stream_id}"
        )
        return self._messages.pop(0) if self._messages else None

    def _more(self) -> list[str | bytes]:
        body = self.response.body
        if len(body) > self._read:
            self.frames.receive_bytes(bytes(body[self._read :]))
            self._read = len(body)
            for frame in self.frames.received_frames():
                if frame.opcode is Opcode.CLOSE:
                    code, _ = frame.payload
                    self.closed_by_server = int(code)
                elif frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                    assert frame.frame_finished and frame.message_finished, "fragmented messages are not expected"
                    self._messages.append(frame.payload)
        return self._messages

    def _closed(self) -> bool:
        self._more()
        return self.closed_by_server is not None or self.response.ended or self.response.reset is not None

    def close(self) -> None:
        """End the WebSocket: send Close (1000) unless the server closed first, wait
        for the server's Close, then reset the stream (RST_STREAM, NO_ERROR).

        The client's side ends with a reset, and a Close from the server gets no
        Close back: Hypercorn 0.18 forgets a WebSocket stream once its side has
        closed, and a DATA frame on it after that (a Close reply, or one that
        ends the stream) makes it drop the whole connection.
        """
        if self.closed_by_server is None:
            self.client.send_data(self.stream_id, bytes(self.frames.close(CloseReason.NORMAL_CLOSURE)))
            self.client.wait_for(self._closed, "the server's Close")
        if self.response.reset is None:
            self.client.h2.reset_stream(self.stream_id)
            self.client.flush()


#: What :func:`serve_h2` answers: ``/plain``; ``/echo`` (the request body); ``/stream?count=N``
#: (N DATA frames, one write each); ``/padded`` (DATA frames with padding); ``/padded-head``
#: (a whole response in one padded HEADERS frame); ``/big-headers`` (a response head larger
#: than a frame, so it takes CONTINUATION frames).
H2_PLAIN_BODY = b"hello, wire\n" * 20


def serve_h2(connection: ScriptedConnection) -> None:
    """A :class:`ScriptedServer` handler that speaks HTTP/2 with the ``h2`` library
    until the client says GOAWAY or closes; every byte lands in ``connection``."""
    server = _H2Server(connection)
    server.run()


class _H2Server(_H2Endpoint):
    def __init__(self, connection: ScriptedConnection) -> None:
        super().__init__(connection.sock, False, connection.sent, connection.received)
        self.requests: dict[int, tuple[dict[bytes, bytes], bytearray]] = {}
        self.complete: list[int] = []
        self.h2.initiate_connection()
        self.flush()

    def handle(self, event: h2.events.Event) -> None:
        match event:
            case h2.events.RequestReceived():
                self.requests[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
            case h2.events.DataReceived():
                self.requests[event.stream_id][1].extend(event.data)
            case h2.events.StreamEnded():
                self.complete.append(event.stream_id)
            case h2.events.StreamReset():
                self.requests.pop(event.stream_id, None)
                if event.stream_id in self.complete:
                    self.complete.remove(event.stream_id)

    def run(self) -> None:
        while not self.closed:
            while self.complete:
                stream_id = self.complete.pop(0)
                if stream_id in self.requests:
                    self.respond(stream_id, *self.requests.pop(stream_id))
            self.read()

    def respond(self, stream_id: int, head: dict[bytes, bytes], body: bytearray) -> None:
        target = urllib.parse.urlsplit(head[b":path"].decode())
        query = dict(urllib.parse.parse_qsl(target.query))
        ok = [(b":status", b"200"), (b"server", b"serve_h2")]
        match target.path:
            case "/plain":
                self.h2.send_headers(stream_id, [*ok, (b"content-type", b"text/plain")])
                self.send_data(stream_id, H2_PLAIN_BODY, end_stream=True)
            case "/echo":
                self.h2.send_headers(stream_id, [*ok, (b"content-length", str(len(body)).encode())])
                self.send_data(stream_id, bytes(body), end_stream=True)
            case "/stream":
                self.h2.send_headers(stream_id, [*ok, (b"content-type", b"application/x-ndjson")])
                self.flush()
                for n in range(int(query.get("count", "3"))):
                    self.send_data(stream_id, json.dumps({"n": n, "text": f"line {n}"}).encode() + b"\n")
                self.send_data(stream_id, b"", end_stream=True)
            case "/padded":
                self.h2.send_headers(stream_id, ok)
                self.send_data(stream_id, b"padded data", pad_length=7)
                self.send_data(stream_id, b"more", pad_length=0, end_stream=True)
            case "/big-headers":
                self.h2.send_headers(stream_id, [*ok, (b"x-big", b"b" * 30000)], end_stream=True)
            case "/padded-head":
                self.send_padded_headers(stream_id, ok, pad_length=5)
            case _:
                self.h2.send_headers(stream_id, [(b":status", b"404")], end_stream=True)
        self.flush()

    def send_padded_headers(self, stream_id: int, headers: list[tuple[bytes, bytes]], pad_length: int) -> None:
        """A whole response in one HEADERS frame with ``pad_length`` bytes of padding (h2 sends
        no padded HEADERS itself): h2 builds the frame, with its state and HPACK encoder, and
        the padding is added before the frame is sent."""
        stream = self.h2._get_or_create_stream(stream_id, h2.connection.AllowedStreamIDs(False))
        frames = stream.send_headers(headers, self.h2.encoder, end_stream=True)
        (head,) = frames
        head.flags.add("PADDED")
        head.pad_length = pad_length  # type: ignore[attr-defined]
        self.h2._prepare_for_sending(frames)


# -- the proxy


def rtinspect_environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}


def run_rtinspect(*args: str, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
    """Run ``rtinspect ARGS`` to completion and capture its output."""
    return subprocess.run(
        rtinspect_command(*args),
        env=rtinspect_environment(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


class CheckoutProxyProcess(proxy_process.ProxyProcess):
    """A running proxy (``rtinspect proxy`` or mitmdump) started from this checkout."""

    def __init__(self, command: list[str], port: int, capture: Path | None) -> None:
        super().__init__(command, port, capture, env=rtinspect_environment(), cwd=REPO_ROOT)


@contextlib.contextmanager
def running_proxy(
    upstream: str | None,
    *args: str,
    confdir: Path,
    capture: Path | None = None,
    quiet: bool = True,
) -> Iterator[CheckoutProxyProcess]:
    """``rtinspect proxy UPSTREAM ARGS`` on a free port, listening when this yields.

    ``confdir`` holds mitmproxy's CA (share one per test session: creating it
    takes a moment). Stopped with SIGTERM on exit unless the test stopped it.
    """
    proxy = CheckoutProxyProcess.rtinspect(upstream, *args, confdir=confdir, capture=capture, quiet=quiet)
    try:
        proxy.wait_listening()
        yield proxy
    finally:
        if proxy.process.poll() is None:
            proxy.stop()


def resident_set_size(pid: int) -> int:
    """VmRSS of process ``pid``, in bytes."""
    return _status_kilobytes(pid, "VmRSS") * 1024


def peak_resident_set_size(pid: int) -> int:
    """VmHWM of process ``pid``: the most resident memory it has had, in bytes."""
    return _status_kilobytes(pid, "VmHWM") * 1024


def _status_kilobytes(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                value, unit = line.split()[1:3]
                assert unit == "kB", line
                return int(value)
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def open_file_descriptors(pid: int) -> int:
    """How many file descriptors process ``pid`` has open (sockets, files, pipes)."""
    return len(os.listdir(f"/proc/{pid}/fd"))
