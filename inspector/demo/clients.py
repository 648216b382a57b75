"""One Python client per transport, all reading the feed through the proxy at once.

- Every client connects before the feed starts, so none of them pays for
  connecting during the feed. The start request goes to the server directly,
  not through the proxy, so it is not part of the measured traffic. A poll asks
  for everything after the last message it has, so it cannot miss one; it
  counts as connected once its first request is on its way.
- The clients (``websockets``, ``httpx``) behave as browsers do: WebSocket
  without keep-alive pings, polls over one keep-alive connection.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable

import httpx
from websockets.asyncio.client import connect as websocket_connect

from demo_server.app import FEED_ENDED_HEADER
from demo_server.sse import END_EVENT

from ..sse import SseStream
from .settings import CONNECT_TIMEOUT, DemoError, DemoSettings
from .tally import ClientTally, ProgressCallback


def _http_client() -> httpx.AsyncClient:
    """One keep-alive connection, no proxy from the environment, no read timeout
    (the run's deadline bounds waiting)."""
    return httpx.AsyncClient(
        trust_env=False,
        timeout=httpx.Timeout(CONNECT_TIMEOUT, read=None),
        limits=httpx.Limits(max_connections=1),
    )


def _expect_ok(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise DemoError(f"{response.request.url.path}: HTTP {response.status_code}")


async def websocket_client(base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/ws``: one connection, a text message per feed message, then a normal close."""
    url = "ws" + base.removeprefix("http") + tally.demo.path
    async with websocket_connect(
        url,
        compression="deflate" if settings.compression else None,
        proxy=None,
        ping_interval=None,
        max_size=None,
        open_timeout=CONNECT_TIMEOUT,
    ) as connection:
        tally.requests += 1
        connected.set()
        async for text in connection:
            tally.delivered([json.loads(text)], time.time())


async def sse_client(base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/sse``: one response, an event per feed message, then the ``end`` event."""
    async with _http_client() as client, client.stream(
        "GET", base + tally.demo.path, headers={"Accept": "text/event-stream"}
    ) as response:
        tally.requests += 1
        _expect_ok(response)
        connected.set()
        events = SseStream()
        async for chunk in response.aiter_bytes():
            for event in events.feed(chunk, time.time()):
                tally.delivered([] if event.type == END_EVENT else [json.loads(event.data)], event.timestamp)


async def stream_client(base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/stream``: one chunked response, an NDJSON line per feed message."""
    async with _http_client() as client, client.stream("GET", base + tally.demo.path) as response:
        tally.requests += 1
        _expect_ok(response)
        connected.set()
        async for line in response.aiter_lines():
            if line.strip():
                tally.delivered([json.loads(line)], time.time())


async def _poll(base: str, tally: ClientTally, connected: asyncio.Event, pause: float) -> None:
    """Ask for everything after the last message held, until the feed has ended;
    ``pause`` seconds between requests."""
    after = 0
    async with _http_client() as client:
        while True:
            connected.set()
            response = await client.get(base + tally.demo.path, params={"after": after})
            tally.requests += 1
            if response.status_code == 200:
                messages = response.json()
                tally.delivered(messages, time.time())
                after = max([after, *(int(message["seq"]) for message in messages)])
            elif response.status_code == 204:
                if response.headers.get(FEED_ENDED_HEADER) == "1":
                    return
            else:
                _expect_ok(response)
            if pause:
                await asyncio.sleep(pause)


async def long_poll_client(base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/longpoll?after=``: each request is held until there is news; asks again at once."""
    await _poll(base, tally, connected, 0.0)


async def short_poll_client(base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/poll?after=``: answered at once; asks again every ``poll_interval`` seconds."""
    await _poll(base, tally, connected, settings.poll_interval)


Client = Callable[[str, ClientTally, asyncio.Event, DemoSettings], Awaitable[None]]
CLIENTS: dict[str, Client] = {
    "ws": websocket_client,
    "sse": sse_client,
    "stream": stream_client,
    "longpoll": long_poll_client,
    "poll": short_poll_client,
}


def _describe(error: BaseException) -> str:
    """One line for a client's failure: our own message, else the exception's type and text."""
    text = str(error)
    if isinstance(error, DemoError) or not text:
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}"


async def _run_client(client: Client, base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """Run one client; a failure is recorded in its tally, never raised."""
    try:
        await client(base, tally, connected, settings)
    except Exception as error:  # noqa: BLE001 - any failure is that client's result
        tally.error = _describe(error)
    finally:
        connected.set()


async def start_feed(server_url: str) -> None:
    """``POST /feed/start``, straight to the server."""
    async with httpx.AsyncClient(trust_env=False, timeout=CONNECT_TIMEOUT) as client:
        response = await client.post(server_url + "/feed/start")
        if response.status_code != 200:
            raise DemoError(f"starting the feed: HTTP {response.status_code}")


async def run_python_clients(
    settings: DemoSettings, server_url: str, proxy_url: str, on_progress: ProgressCallback | None = None
) -> dict[str, ClientTally]:
    """Connect a client per transport through the proxy, start the feed, and
    wait (at most ``settings.deadline``) until every client has finished."""
    tallies = {t.key: ClientTally(t, settings.count, on_progress=on_progress) for t in settings.selected}
    connected = {key: asyncio.Event() for key in tallies}
    tasks = {
        key: asyncio.create_task(_run_client(CLIENTS[key], proxy_url, tally, connected[key], settings))
        for key, tally in tallies.items()
    }
    try:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await asyncio.gather(*(event.wait() for event in connected.values()))
        except TimeoutError:
            raise DemoError(f"the clients did not connect through the proxy within {CONNECT_TIMEOUT:g} s") from None
        await start_feed(server_url)
        _, late = await asyncio.wait(tasks.values(), timeout=settings.deadline)
        for key, task in tasks.items():
            if task in late:
                tallies[key].error = f"did not finish within {settings.deadline:g} s"
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    return tallies
