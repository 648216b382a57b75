"""Running the demo server with uvicorn, in the foreground or in a thread.

The listening socket is bound before uvicorn starts, so port 0 picks a free
port and the real one is known at once.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

import uvicorn
from fastapi import FastAPI

from demo_server.feed import Feed

# wsproto is a declared dependency; uvicorn's "auto" would pick the websockets
# package instead whenever it happens to be installed, and the two differ on
# the wire (e.g. the permessage-deflate parameters they answer with).
WS_IMPLEMENTATION = "wsproto"
# A backstop only: the feed is ended first on shutdown, which finishes open
# streams and held polls; WebSocket echo clients are closed by uvicorn.
GRACEFUL_SHUTDOWN_SECONDS = 2
STARTUP_TIMEOUT_SECONDS = 30.0


def bind(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0 = any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
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

    def __init__(self, app: FastAPI, ws_compression: bool = True, log_level: str = "warning") -> None:
        """``ws_compression``: accept WebSocket permessage-deflate when a client offers it."""
        super().__init__(
            uvicorn.Config(
                app,
                ws=WS_IMPLEMENTATION,
                ws_per_message_deflate=ws_compression,
                log_level=log_level,
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
    _server: DemoServer
    _thread: threading.Thread

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def serve_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, ws_compression: bool = True
) -> RunningServer:
    """Start ``app`` (from ``create_app``) on ``host``:``port`` in a thread;
    returns once it accepts connections."""
    sock = bind(host, port)
    url = url_for(sock)
    server = DemoServer(app, ws_compression)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="demo-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.ready.wait(0.05):
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join()
            sock.close()
            raise RuntimeError("the demo server did not start")
    return RunningServer(url=url, port=sock.getsockname()[1], _server=server, _thread=thread)
