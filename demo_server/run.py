"""Running the demo server with uvicorn, in the foreground or in a thread, or
with Hypercorn over TLS (HTTP/1.1 and h2, WebSocket over h2) in a thread,
and then also over HTTP/3 on the same port number, over UDP (:mod:`demo_server.h3`).

The listening socket is bound before the server starts, so port 0 picks a free
port and the real one is known at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI

from demo_server.app import served
from demo_server.counting import CountRequests, ServerCounts, counted_http, counted_websocket
from demo_server.feed import Feed
from demo_server.tls import TlsFiles

# wsproto is a declared dependency; uvicorn's "auto" would pick the websockets
# package instead whenever it happens to be installed, and the two differ on
# the wire (e.g. the permessage-deflate parameters they answer with).
WS_IMPLEMENTATION = "wsproto"
# A backstop only: the feed is ended first on shutdown, which finishes open
# streams and held polls; WebSocket echo clients are closed by uvicorn.
GRACEFUL_SHUTDOWN_SECONDS = 2
STARTUP_TIMEOUT_SECONDS = 30.0
#: Connections waiting to be accepted: room for a thousand clients connecting at once.
LISTEN_BACKLOG = 4096


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0 = any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError:
        sock.close()
        raise
    return sock


def url_for(sock: socket.socket) -> str:
    """The http:// URL a client uses to reach the server listening on ``sock``."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class DemoServer(uvicorn.Server):
    """uvicorn serving a demo app; on shutdown the feed ends before connections
    are drained, so streaming clients get a proper end instead of a cut."""

    def __init__(
        self, app: FastAPI, ws_compression: bool = True, log_level: str = "warning", counts: ServerCounts | None = None
    ) -> None:
        """``ws_compression``: accept WebSocket permessage-deflate when a client offers it;
        ``counts``: count connections and requests into it (:mod:`demo_server.counting`)."""
        asgi: Any = served(app)
        http: Any = "auto"
        ws: Any = WS_IMPLEMENTATION
        if counts is not None:
            asgi, http, ws = CountRequests(asgi, counts), counted_http(http, counts), counted_websocket(ws, counts)
        super().__init__(
            uvicorn.Config(
                asgi,
                http=http,
                ws=ws,
                ws_per_message_deflate=ws_compression,
                log_level=log_level,
                access_log=counts is None,  # the child process answers on its standard output
                timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            )
        )
        self.feed: Feed = app.state.feed
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.should_exit:
            self.ready.set()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.feed.close()
        await super().shutdown(sockets)


@dataclass
class RunningServer:
    """A demo server running in a background thread; ``stop()`` ends it."""

    url: str
    port: int
    _server: DemoServer | None
    _thread: threading.Thread
    _stop: Callable[[], None] | None = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join()
        if self._stop is not None:
            self._stop()
            # Bounded: Hypercorn waits for its connections to close; the thread is a daemon.
            self._thread.join(STARTUP_TIMEOUT_SECONDS)

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, ws_compression: bool = True) -> RunningServer:
    """Start ``app`` (from ``create_app``) on ``host``:``port`` in a thread;
    returns once it accepts connections."""
    sock = bind(host, port)
    url = url_for(sock)
    server = DemoServer(app, ws_compression)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="demo-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.ready.wait(0.05):
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join()
            sock.close()
            raise RuntimeError("the demo server did not start")
    return RunningServer(url=url, port=sock.getsockname()[1], _server=server, _thread=thread)


#: Seconds an app that closed a WebSocket waits for the client's Close under Hypercorn.
CLOSE_HANDSHAKE_SECONDS = 5.0


class AwaitWebSocketClose:
    """ASGI middleware: when the app closes a WebSocket, hold its return until the
    client's Close has arrived (at most :data:`CLOSE_HANDSHAKE_SECONDS`).

    Hypercorn 0.18 over h2 forgets the stream as soon as the app returns after
    closing; the client's Close then arrives in a DATA frame for a stream it no
    longer knows, and the KeyError ends the whole connection, every other stream
    on it included. Waiting for the closing handshake, as RFC 6455 has it, avoids that.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        closed = disconnected = False

        async def receive_watched() -> dict[str, Any]:
            nonlocal disconnected
            message = await receive()
            disconnected = disconnected or message["type"] == "websocket.disconnect"
            return message

        async def send_watched(message: dict[str, Any]) -> None:
            nonlocal closed
            closed = closed or message["type"] == "websocket.close"
            await send(message)

        await self.app(scope, receive_watched, send_watched)
        if closed and not disconnected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_HANDSHAKE_SECONDS):
                    while (await receive())["type"] != "websocket.disconnect":
                        pass


class _HypercornThread(threading.Thread):
    """Hypercorn serving a demo app over TLS in its own event loop; :meth:`shutdown`
    ends the feed (so open streams and held polls finish) and then the server."""

    def __init__(
        self,
        app: FastAPI,
        sock: socket.socket,
        tls: TlsFiles,
        log_level: str,
        udp: socket.socket | None = None,
        ws_compression: bool = True,
    ) -> None:
        super().__init__(name="demo-server-h2", daemon=True)
        self.udp = udp
        self.tls = tls
        self.ws_compression = ws_compression
        from hypercorn.config import Config

        self.feed: Feed = app.state.feed
        self.app: Any = AwaitWebSocketClose(served(app))
        self.config = Config()
        self.config.certfile = str(tls.cert_chain)
        self.config.keyfile = str(tls.key)
        self.config.alpn_protocols = ["h2", "http/1.1"]
        self.config.graceful_timeout = GRACEFUL_SHUTDOWN_SECONDS
        self.config.loglevel = log_level.upper()
        self.config.accesslog = None  # errors and warnings still go to standard error
        # Hypercorn takes over the socket's descriptor (fd://), so ours must not close it too.
        self.config.bind = [f"fd://{sock.detach()}"]
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # noqa: BLE001 - reported by serve_tls_in_thread
            self.error = error

    async def _serve(self) -> None:
        from hypercorn.asyncio import serve

        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        quic = None
        if self.udp is not None:
            from demo_server.h3 import serve_h3

            quic = await serve_h3(self.app, self.feed, self.tls, self.udp, self.ws_compression)
        try:
            await serve(self.app, self.config, shutdown_trigger=self._until_stopped, mode="asgi")
        finally:
            if quic is not None:
                quic.close()

    async def _until_stopped(self) -> None:
        # Hypercorn awaits this once its listeners accept connections.
        assert self._stopping is not None
        self.ready.set()
        await self._stopping.wait()
        await self.feed.close()

    def shutdown(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:  # the loop closed meanwhile
                pass


def serve_tls_in_thread(
    app: FastAPI,
    tls: TlsFiles,
    host: str = "127.0.0.1",
    port: int = 0,
    log_level: str = "warning",
    http3: bool = False,
    ws_compression: bool = True,
) -> RunningServer:
    """Start ``app`` under Hypercorn on ``host``:``port`` over TLS with the certificate
    in ``tls``, offering ``h2`` and ``http/1.1`` (ALPN), WebSocket over h2 (RFC 8441)
    included; returns once it accepts connections. Its URL is ``https://``.

    With ``http3`` it also serves HTTP/3 on UDP, on the same port number of every
    address (:mod:`demo_server.h3`), as an ``https://`` origin that offers QUIC does;
    ``ws_compression`` is for WebSocket over HTTP/3 (Hypercorn always accepts permessage-deflate)."""
    sock, udp = _bind_both(host, port) if http3 else (bind(host, port), None)
    url = "https" + url_for(sock).removeprefix("http")
    bound_port = sock.getsockname()[1]
    server = _HypercornThread(app, sock, tls, log_level, udp, ws_compression)
    server.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.ready.wait(0.05):
        if not server.is_alive() or time.monotonic() > deadline:
            server.shutdown()
            server.join(STARTUP_TIMEOUT_SECONDS)
            reason = f": {server.error}" if server.error else ""
            raise RuntimeError(f"the demo server did not start{reason}")
    return RunningServer(url=url, port=bound_port, _server=None, _thread=server, _stop=server.shutdown)


#: Attempts at finding a port number free on both TCP and UDP.
BIND_ATTEMPTS = 20


def _bind_both(host: str, port: int) -> tuple[socket.socket, socket.socket]:
    """A listening TCP socket on ``host``:``port`` and a UDP socket on the same port number
    of every address (:func:`demo_server.h3.bind_udp`); with port 0, a number free for both."""
    from demo_server.h3 import bind_udp

    for _ in range(BIND_ATTEMPTS if port == 0 else 1):
        sock = bind(host, port)
        try:
            return sock, bind_udp(sock.getsockname()[1])
        except OSError:
            sock.close()
            if port:
                raise
    raise OSError(f"no port free on both TCP and UDP after {BIND_ATTEMPTS} attempts")
