"""The Socket.IO run's client: python-socketio's ``AsyncClient``, as an application would use it.

It connects to the demo server's ``/socket.io/`` with its default transports:
Engine.IO long polling first, then the upgrade to WebSocket (offering
permessage-deflate when the run's WebSocket compression is on, as the plain
WebSocket client does), with ``{"after": 0}`` as its auth. Each ``message``
event is one feed message delivered, the ``end`` event one more delivery
without one (as SSE's ``end`` event is), after which the client disconnects.
Its HTTP requests (the polls, the POSTs, the Upgrade) are counted as its
aiohttp session makes them.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import aiohttp
import socketio

from .settings import CONNECT_TIMEOUT, DemoSettings
from .tally import ClientTally

if TYPE_CHECKING:
    from .clients import Target

#: The zlib window size offered for permessage-deflate (aiohttp's ``compress``; 0 offers none).
DEFLATE_WINDOW_BITS = 15


async def socketio_client(target: Target, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/socket.io/``: a ``message`` event per feed message, then ``end``; then disconnect."""

    async def request_started(session: aiohttp.ClientSession, context: SimpleNamespace, params: Any) -> None:
        tally.requests += 1

    tracing = aiohttp.TraceConfig()
    tracing.on_request_start.append(request_started)
    ended = asyncio.Event()
    async with aiohttp.ClientSession(trace_configs=[tracing]) as session:
        client = socketio.AsyncClient(
            reconnection=False,
            handle_sigint=False,
            http_session=session,
            request_timeout=CONNECT_TIMEOUT,
            websocket_extra_options={"compress": DEFLATE_WINDOW_BITS if settings.compression else 0},
        )

        @client.on("message")
        async def message(data: dict[str, Any]) -> None:
            tally.delivered([data], time.time())

        @client.on("end")
        async def end() -> None:
            tally.delivered([], time.time())
            ended.set()

        @client.on("disconnect")
        async def disconnect(*_: Any) -> None:
            ended.set()  # the server went away before its end event: what is missing counts as lost

        await client.connect(
            target.base,
            auth={"after": 0},
            socketio_path=tally.demo.path.strip("/"),
            wait_timeout=CONNECT_TIMEOUT,
        )
        try:
            connected.set()
            await ended.wait()
        finally:
            await client.disconnect()
