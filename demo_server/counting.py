"""What the demo server handled, counted by the server itself: TCP connections and requests.

uvicorn's protocol classes are wrapped so that every accepted connection is
counted when it is made and when it is lost, which also gives how many were
open at once. On a WebSocket Upgrade uvicorn hands the socket from its HTTP
protocol to its WebSocket protocol, which is told of the loss instead, so both
classes count losses and only the HTTP one counts connections made. Requests
are counted by an ASGI middleware, by path: each HTTP request and each
WebSocket handshake is one.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from uvicorn.config import HTTP_PROTOCOLS, WS_PROTOCOLS
from uvicorn.importer import import_from_string


@dataclass
class ServerCounts:
    """Connections accepted, open now and open at most at once; requests by path."""

    connections: int = 0
    open: int = 0
    peak_open: int = 0
    requests: Counter[str] = field(default_factory=Counter)

    def opened(self) -> None:
        self.connections += 1
        self.open += 1
        self.peak_open = max(self.peak_open, self.open)

    def closed(self) -> None:
        self.open = max(0, self.open - 1)

    def restart(self) -> None:
        """Count from now on: no connections or requests yet, the peak what is open now."""
        self.connections = 0
        self.peak_open = self.open
        self.requests.clear()

    def to_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "open": self.open,
            "peak_open": self.peak_open,
            "requests": sum(self.requests.values()),
            "requests_by_path": dict(sorted(self.requests.items())),
        }


def counted_http(name: str, counts: ServerCounts) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol ``name`` (``"auto"``, ``"h11"``, ...), counting connections made and lost."""
    base: Any = import_from_string(HTTP_PROTOCOLS[name])

    class CountedHttp(base):
        def connection_made(self, transport: Any) -> None:
            counts.opened()
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            counts.closed()
            super().connection_lost(exc)

    return CountedHttp


def counted_websocket(name: str, counts: ServerCounts) -> type[asyncio.Protocol]:
    """uvicorn's WebSocket protocol ``name``, counting the connections it loses (it is
    made from an HTTP connection that has been counted already)."""
    base: Any = import_from_string(WS_PROTOCOLS[name])

    class CountedWebSocket(base):
        def connection_lost(self, exc: Exception | None) -> None:
            counts.closed()
            super().connection_lost(exc)

    return CountedWebSocket


class CountRequests:
    """ASGI middleware: one request per HTTP request or WebSocket handshake, by path."""

    def __init__(self, app: Any, counts: ServerCounts) -> None:
        self.app = app
        self.counts = counts

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            self.counts.requests[scope.get("path", "")] += 1
        await self.app(scope, receive, send)
