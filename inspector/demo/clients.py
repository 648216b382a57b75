"""Python clients reading the feed through the proxy: ``--clients N`` of one
transport at a time, or with ``--http2`` one per transport and protocol, all at once.

- Every client connects before the feed starts, so none of them pays for
  connecting during the feed. The feed is started outside the proxy (straight
  at the server, or over the server process's standard input), so that is not
  part of the measured traffic. A poll asks for everything after the last
  message it has, so it cannot miss one; it counts as connected once its first
  request is on its way. At most :data:`~.settings.CONNECTING_AT_ONCE` clients of
  a transport connect at once; the others wait for one of them to have connected.
- The clients (``websockets``, ``httpx``) behave as browsers do: WebSocket
  without keep-alive pings, polls over one keep-alive connection. The
  Socket.IO run's is python-socketio's own (:mod:`.socketio_client`).
- With ``--http2`` every transport has two clients, over TLS: one offering
  only ``http/1.1`` (ALPN) and one offering only ``h2``: ``httpx`` with
  ``http2=True``, and for WebSocket :class:`~.h2websocket.H2WebSocket`
  (RFC 8441). Each checks it got the protocol it asked for. ``--http3`` adds
  a third over HTTP/3 (:mod:`.h3clients`), and WebTransport's over HTTP/3 alone.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect as websocket_connect

from demo_server.app import FEED_ENDED_HEADER
from demo_server.sse import END_EVENT

from ..sse import SseStream
from .h2websocket import H2WebSocket
from .settings import CONNECT_TIMEOUT, CONNECTING_AT_ONCE, H2, H3, HTTP1, DemoError, DemoSettings, DemoTransport
from .socketio_client import socketio_client
from .tally import ClientTally, ProgressCallback

#: What ``httpx`` reports as ``Response.http_version`` for each protocol.
HTTP_VERSIONS = {HTTP1: "HTTP/1.1", H2: "HTTP/2"}


@dataclass(frozen=True, slots=True)
class Target:
    """Where a client connects and how.

    ``base`` is ``http://HOST:PORT`` or ``https://HOST:PORT``; over TLS the
    client trusts ``ca`` only. ``protocol`` is what it must speak (``--http2``:
    ``"http/1.1"`` or ``"h2"``, offered alone by ALPN); None for the plain demo.
    """

    base: str
    ca: Path | None = None
    protocol: str | None = None

    def ssl_context(self) -> ssl.SSLContext:
        """A new client context (each client its own: ALPN is set per context) trusting ``ca``."""
        context = ssl.create_default_context(cafile=str(self.ca) if self.ca is not None else None)
        if self.protocol is not None:
            context.set_alpn_protocols([self.protocol])
        return context

    @property
    def ws_base(self) -> str:
        return "ws" + self.base.removeprefix("http")


def _http_client(target: Target) -> httpx.AsyncClient:
    """One keep-alive connection, no proxy from the environment, no read timeout
    (the run's deadline bounds waiting); over TLS, h2 if the target asks for it."""
    tls = target.base.startswith("https:")
    return httpx.AsyncClient(
        trust_env=False,
        timeout=httpx.Timeout(CONNECT_TIMEOUT, read=None),
        limits=httpx.Limits(max_connections=1),
        verify=target.ssl_context() if tls else True,
        http1=target.protocol != H2,
        http2=target.protocol == H2,
    )


def _expect_protocol(response: httpx.Response, target: Target, tally: ClientTally) -> None:
    """The response came over the protocol the target asked for (if it asked)."""
    if target.protocol is not None:
        tally.http_version = response.http_version
        if response.http_version != HTTP_VERSIONS[target.protocol]:
            raise DemoError(f"asked for {target.protocol}, got {response.http_version}")


def _expect_ok(response: httpx.Response, target: Target, tally: ClientTally) -> None:
    """A 200, over the protocol the target asked for."""
    _expect_protocol(response, target, tally)
    if response.status_code != 200:
        raise DemoError(f"{response.request.url.path}: HTTP {response.status_code}")


async def websocket_client(
    target: Target, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings
) -> None:
    """``/ws``: one connection, a text message per feed message, then a normal close."""
    if target.protocol == H2:
        await _h2_websocket_client(target, tally, connected, settings)
        return
    tls = target.base.startswith("https:")
    async with websocket_connect(
        target.ws_base + tally.demo.path,
        compression="deflate" if settings.compression else None,
        proxy=None,
        ping_interval=None,
        max_size=None,
        open_timeout=CONNECT_TIMEOUT,
        ssl=target.ssl_context() if tls else None,
    ) as connection:
        tally.requests += 1
        if target.protocol is not None:
            tally.http_version = HTTP_VERSIONS[HTTP1]
        connected.set()
        async for text in connection:
            tally.delivered([json.loads(text)], time.time())


async def _h2_websocket_client(
    target: Target, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings
) -> None:
    """``/ws`` over h2 (RFC 8441): an extended CONNECT, then the same messages and close."""
    websocket = await H2WebSocket.connect(target.base + tally.demo.path, target.ssl_context(), settings.compression)
    try:
        tally.requests += 1
        tally.http_version = HTTP_VERSIONS[H2]
        connected.set()
        async for text in websocket.messages():
            tally.delivered([json.loads(text)], time.time())
        if websocket.close_code not in (None, 1000):
            raise DemoError(f"closed with code {websocket.close_code}")
    finally:
        await websocket.close()


async def sse_client(target: Target, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/sse``: one response, an event per feed message, then the ``end`` event."""
    async with (
        _http_client(target) as client,
        client.stream("GET", target.base + tally.demo.path, headers={"Accept": "text/event-stream"}) as response,
    ):
        tally.requests += 1
        _expect_ok(response, target, tally)
        connected.set()
        events = SseStream()
        async for chunk in response.aiter_bytes():
            for event in events.feed(chunk, time.time()):
                tally.delivered([] if event.type == END_EVENT else [json.loads(event.data)], event.timestamp)


async def stream_client(target: Target, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/stream``: one streamed response (chunked over HTTP/1.1), an NDJSON line per feed message."""
    async with _http_client(target) as client, client.stream("GET", target.base + tally.demo.path) as response:
        tally.requests += 1
        _expect_ok(response, target, tally)
        connected.set()
        async for line in response.aiter_lines():
            if line.strip():
                tally.delivered([json.loads(line)], time.time())


#: httpcore's trace events that say a request's head has gone out.
_REQUEST_SENT = frozenset({"http11.send_request_headers.complete", "http2.send_request_headers.complete"})


async def _poll(target: Target, tally: ClientTally, connected: asyncio.Event, pause: float) -> None:
    """Ask for everything after the last message held, until the feed has ended;
    ``pause`` seconds between requests. Connected once the first request's head is sent."""

    async def trace(event: str, info: Any) -> None:
        if event in _REQUEST_SENT:
            connected.set()

    after = 0
    async with _http_client(target) as client:
        while True:
            extensions = {} if connected.is_set() else {"trace": trace}
            url = target.base + tally.demo.path
            try:
                response = await client.get(url, params={"after": after}, extensions=extensions)
            except httpx.RemoteProtocolError:
                # The keep-alive connection was closed as the request went out (the server's idle
                # timeout): ask again on a new one, once, as browsers do.
                response = await client.get(url, params={"after": after})
            tally.requests += 1
            _expect_protocol(response, target, tally)
            if response.status_code == 200:
                messages = response.json()
                tally.delivered(messages, time.time())
                after = max([after, *(int(message["seq"]) for message in messages)])
            elif response.status_code == 204:
                if response.headers.get(FEED_ENDED_HEADER) == "1":
                    return
            else:
                _expect_ok(response, target, tally)
            if pause:
                await asyncio.sleep(pause)


async def long_poll_client(
    target: Target, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings
) -> None:
    """``/longpoll?after=``: each request is held until there is news; asks again at once."""
    await _poll(target, tally, connected, 0.0)


async def short_poll_client(
    target: Target, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings
) -> None:
    """``/poll?after=``: answered at once; asks again every ``poll_interval`` seconds."""
    await _poll(target, tally, connected, settings.poll_interval)


Client = Callable[[Target, ClientTally, asyncio.Event, DemoSettings], Awaitable[None]]
CLIENTS: dict[str, Client] = {
    "ws": websocket_client,
    "sse": sse_client,
    "stream": stream_client,
    "longpoll": long_poll_client,
    "poll": short_poll_client,
    "socketio": socketio_client,
}


def client_for(tally: ClientTally) -> Client:
    """The client for ``tally``'s transport over its protocol: over HTTP/3, aioquic's (:mod:`.h3clients`)."""
    if tally.protocol == H3:
        from .h3clients import H3_CLIENTS

        return H3_CLIENTS[tally.demo.key]
    return CLIENTS[tally.demo.key]


def _describe(error: BaseException) -> str:
    """One line for a client's failure: our own message, else the exception's type and text."""
    text = str(error)
    if isinstance(error, DemoError) or not text:
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}"


async def _run_client(
    client: Client,
    target: Target,
    tally: ClientTally,
    connected: asyncio.Event,
    settings: DemoSettings,
    gate: asyncio.Semaphore | None = None,
) -> None:
    """Run one client; a failure is recorded in its tally, never raised. With a ``gate``,
    the client holds one of its places until it has connected."""
    running: asyncio.Future[None] | None = None
    try:
        if gate is None:
            await client(target, tally, connected, settings)
            return
        async with gate:
            running = asyncio.ensure_future(client(target, tally, connected, settings))
            waiting = asyncio.ensure_future(connected.wait())
            try:
                await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
        await running
    except Exception as error:  # noqa: BLE001 - any failure is that client's result
        tally.error = _describe(error)
    finally:
        if running is not None:
            running.cancel()
        connected.set()


async def run_transport_clients(
    settings: DemoSettings,
    demo: DemoTransport,
    proxy: Target,
    start: Callable[[], Awaitable[None]],
    on_progress: ProgressCallback | None = None,
) -> ClientTally:
    """``settings.clients`` clients of one transport through the ``proxy``: connect them all
    (at most :data:`~.settings.CONNECTING_AT_ONCE` at a time), ``start`` the feed, and wait
    (at most ``settings.deadline``) until every one has finished. Returns their
    :meth:`ClientTally.combined` tally."""
    received = 0

    def progress(label: str, _: int) -> None:
        nonlocal received
        received += 1
        if on_progress is not None:
            on_progress(label, received)

    tallies = [
        ClientTally(demo, settings.count, on_progress=progress if on_progress is not None else None)
        for _ in range(settings.clients)
    ]
    connected = [asyncio.Event() for _ in tallies]
    gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
    tasks = [
        asyncio.create_task(_run_client(CLIENTS[demo.key], proxy, tally, event, settings, gate))
        for tally, event in zip(tallies, connected, strict=True)
    ]
    try:
        try:
            async with asyncio.timeout(settings.connect_timeout):
                await asyncio.gather(*(event.wait() for event in connected))
        except TimeoutError:
            waiting = sum(not event.is_set() for event in connected)
            raise DemoError(
                f"{demo.transport}: {waiting} of {len(tallies)} clients did not connect through the proxy "
                f"within {settings.connect_timeout:g} s"
            ) from None
        await start()
        _, late = await asyncio.wait(tasks, timeout=settings.deadline)
        for tally, task in zip(tallies, tasks, strict=True):
            if task in late:
                tally.error = f"did not finish within {settings.deadline:g} s"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return ClientTally.combined(tallies)


async def start_feed(server: Target) -> None:
    """``POST /feed/start``, straight to the server."""
    verify = server.ssl_context() if server.base.startswith("https:") else True
    async with httpx.AsyncClient(trust_env=False, timeout=CONNECT_TIMEOUT, verify=verify) as client:
        response = await client.post(server.base + "/feed/start")
        if response.status_code != 200:
            raise DemoError(f"starting the feed: HTTP {response.status_code}")


async def run_python_clients(
    settings: DemoSettings, server: Target, proxy: Target, on_progress: ProgressCallback | None = None
) -> dict[str, ClientTally]:
    """Connect a client per transport (with ``--http2``, one per transport and
    protocol) through the ``proxy``, start the feed on the ``server``, and wait
    (at most ``settings.deadline``) until every client has finished. The tallies
    are keyed by :attr:`ClientTally.label`."""
    targets: dict[str, Target] = {}
    tallies: dict[str, ClientTally] = {}
    for demo in settings.selected:
        for protocol in settings.protocols_of(demo):
            tally = ClientTally(demo, settings.count, protocol=protocol, on_progress=on_progress)
            tallies[tally.label] = tally
            targets[tally.label] = Target(proxy.base, proxy.ca, protocol)
    connected = {key: asyncio.Event() for key in tallies}
    tasks = {
        key: asyncio.create_task(_run_client(client_for(tally), targets[key], tally, connected[key], settings))
        for key, tally in tallies.items()
    }
    try:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await asyncio.gather(*(event.wait() for event in connected.values()))
        except TimeoutError:
            raise DemoError(f"the clients did not connect through the proxy within {CONNECT_TIMEOUT:g} s") from None
        await start_feed(server)
        _, late = await asyncio.wait(tasks.values(), timeout=settings.deadline)
        for key, task in tasks.items():
            if task in late:
                tallies[key].error = f"did not finish within {settings.deadline:g} s"
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    return tallies
