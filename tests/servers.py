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
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

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
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


def tls_server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


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


class AppServer:
    """:func:`make_app` under uvicorn in a background thread.

    WebSocket connections negotiate permessage-deflate when the client offers it.
    """

    def __init__(self) -> None:
        self._socket = _listening_socket()
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            make_app(),
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
            ws_per_message_deflate=True,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def __enter__(self) -> AppServer:
        self._thread = _start_thread(self._server.run, [self._socket])
        wait_until(lambda: self._server.started, "the app server to start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(DEADLINE)
        self._socket.close()


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
