"""The feed over Socket.IO: python-socketio's server in front of the demo's routes.

A client connects to ``/socket.io/`` (polling first, then upgraded to
WebSocket, as Socket.IO clients do by default) with ``{"after": N}`` as its
auth; the server emits each feed message above N as a ``message`` event whose
data is the message's JSON object, then one ``end`` event, and the client
disconnects. It is the WebSocket transport's feed with a framework in between,
so the report shows what the framework adds: its handshake and polling phase,
its heartbeats, its packet prefixes.
"""

from __future__ import annotations

import json
from typing import Any

import socketio
from fastapi import FastAPI

from demo_server.feed import Feed

#: Where Socket.IO clients connect.
SOCKETIO_PATH = "/socket.io/"


def with_socketio(app: FastAPI, feed: Feed) -> Any:
    """``app`` with the feed served over Socket.IO at :data:`SOCKETIO_PATH` in front of it
    (lifespan events pass through to ``app``)."""
    server = socketio.AsyncServer(async_mode="asgi", cors_allowed_origins="*")

    async def push(sid: str, after: int) -> None:
        async for message in feed.subscribe(after):
            await server.emit("message", json.loads(message.json), to=sid)
        await server.emit("end", to=sid)

    @server.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        after = auth.get("after", 0) if isinstance(auth, dict) else 0
        server.start_background_task(push, sid, int(after))

    return socketio.ASGIApp(server, other_asgi_app=app, socketio_path=SOCKETIO_PATH.strip("/"))
