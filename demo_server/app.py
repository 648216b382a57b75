"""The demo server's routes: one feed, served over every real-time transport.

- ``/ws``        WebSocket push, one text frame per message, then close 1000
- ``/ws/echo``   WebSocket echo, for round trips
- ``/sse``       Server-Sent Events, resumable with ``Last-Event-ID``
- ``/stream``    NDJSON over one chunked response
- ``/longpoll``  long polling: held until something newer than ``after``
- ``/poll``      short polling: answers at once
- ``/socket.io/`` the feed over Socket.IO (:mod:`demo_server.socketio_feed`), in front of the rest
- ``/``          a page that consumes all of them in the browser

Polls answer 204 with ``X-Feed-Ended: 1`` once the feed has ended and nothing
newer is left, so clients know to stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from demo_server.feed import Feed, FeedParams, Message
from demo_server.socketio_feed import with_socketio
from demo_server.sse import sse_events

FEED_ENDED_HEADER = "X-Feed-Ended"
LONGPOLL_DEFAULT_TIMEOUT = 30.0
LONGPOLL_MAX_TIMEOUT = 300.0
NO_CACHE = {"Cache-Control": "no-cache"}


def create_app(
    rate: float = 20.0,
    count: int = 100,
    size: int = 256,
    heartbeat: float = 0.0,
    autostart: bool = True,
) -> FastAPI:
    """The demo server as an ASGI app.

    With ``autostart`` the feed begins when the server starts; without it the
    feed waits for ``POST /feed/start``, so a driver can connect every client
    first and none of them misses the first messages. The feed is
    ``app.state.feed``; what a server serves is ``app.state.asgi``: the app with
    the feed over Socket.IO in front of it (:func:`served`).
    """
    feed = Feed(FeedParams(rate=rate, count=count, size=size, heartbeat=heartbeat))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if autostart:
            feed.start()
        yield
        await feed.close()

    app = FastAPI(title="rtinspect demo server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.feed = feed
    page_html = files("demo_server").joinpath("static/index.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse)
    async def page() -> HTMLResponse:
        return HTMLResponse(page_html, headers=NO_CACHE)

    @app.get("/feed/status")
    async def feed_status() -> JSONResponse:
        return JSONResponse(feed.status(), headers=NO_CACHE)

    @app.post("/feed/start")
    async def feed_start() -> JSONResponse:
        """Start the feed; starting it again changes nothing."""
        feed.start()
        return JSONResponse(feed.status(), headers=NO_CACHE)

    @app.websocket("/ws")
    async def websocket_push(websocket: WebSocket, after: int = 0) -> None:
        await websocket.accept()
        try:
            async for message in feed.subscribe(after):
                await websocket.send_text(message.json)
            await websocket.close(code=1000)
        except WebSocketDisconnect:
            pass

    @app.websocket("/ws/echo")
    async def websocket_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        while True:
            received = await websocket.receive()
            if received["type"] == "websocket.disconnect":
                return
            if received.get("text") is not None:
                await websocket.send_text(received["text"])
            else:
                await websocket.send_bytes(received["bytes"])

    @app.get("/sse")
    async def server_sent_events(
        after: int = Query(0, ge=0),
        last_event_id: str | None = Header(None, alias="Last-Event-ID"),
    ) -> StreamingResponse:
        """Events after ``Last-Event-ID`` (set by reconnecting clients) or ``after``."""
        resume_from = int(last_event_id) if last_event_id and last_event_id.isdigit() else after
        return StreamingResponse(
            sse_events(feed, resume_from),
            media_type="text/event-stream",
            headers={**NO_CACHE, "X-Accel-Buffering": "no"},
        )

    @app.get("/stream")
    async def ndjson_stream(after: int = Query(0, ge=0)) -> StreamingResponse:
        async def lines() -> AsyncIterator[str]:
            async for message in feed.subscribe(after):
                yield message.json + "\n"

        return StreamingResponse(
            lines(),
            media_type="application/x-ndjson",
            headers={**NO_CACHE, "X-Accel-Buffering": "no"},
        )

    @app.get("/longpoll")
    async def long_poll(
        after: int = Query(0, ge=0),
        timeout: float = Query(LONGPOLL_DEFAULT_TIMEOUT, ge=0, le=LONGPOLL_MAX_TIMEOUT),
    ) -> Response:
        """Held until a message newer than ``after`` exists (200) or ``timeout`` (204)."""
        if not feed.after(after) and not feed.ended:
            await feed.wait_newer(after, timeout)
        return poll_answer(feed, after)

    @app.get("/poll")
    async def short_poll(after: int = Query(0, ge=0)) -> Response:
        return poll_answer(feed, after)

    app.state.asgi = with_socketio(app, feed)
    return app


def served(app: FastAPI) -> Any:
    """What a server runs for ``app``: with the feed over Socket.IO in front of it
    where :func:`create_app` put one there, else ``app`` itself."""
    return getattr(app.state, "asgi", app)


def poll_answer(feed: Feed, after: int) -> Response:
    """200 with every message newer than ``after`` as a JSON array, else 204."""
    newer = feed.after(after)
    if newer:
        return Response(json_array(newer), media_type="application/json", headers=NO_CACHE)
    headers = {**NO_CACHE, FEED_ENDED_HEADER: "1"} if feed.ended else NO_CACHE
    return Response(status_code=204, headers=headers)


def json_array(messages: list[Message]) -> str:
    """The messages' own JSON texts joined into one array, byte for byte."""
    return "[" + ",".join(message.json for message in messages) + "]"
