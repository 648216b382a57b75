"""Load through the real proxy: many WebSocket, SSE and polling clients at once, every message checked.

    .venv/bin/python tests/load.py --connections 1000 --messages 100

Starts the demo server and ``rtinspect proxy`` (recording a capture), each in
its own process on 127.0.0.1, and drives from this process, through the proxy:

- ``--connections`` WebSocket connections to ``/ws/echo``, all opened before
  any of them talks and held open until all are done, each sending
  ``--messages`` numbered messages one after another and checking that every
  echo is the message it sent, in order;
- ``--sse-clients`` clients on ``/sse`` and ``--pollers`` short-polling
  clients on ``/poll?after=N``, reading the demo feed (``--feed-messages`` at
  ``--feed-rate`` a second, started once every client is connected) at the
  same time, each checking that the sequence numbers arrive complete, once
  and in order.

Then it stops the proxy, replays the capture and checks that the report's
counts equal what the clients sent and received, exactly. It prints the
figures (connections held at once, messages a second, the proxy's peak
resident memory, open file descriptors and CPU time, time) and exits with status 1 if
anything was lost, reordered or miscounted. It raises its open-file limit to
the hard limit first; the servers it starts inherit it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from httpx_sse import aconnect_sse
from servers import (
    DEADLINE,
    LOOPBACK,
    CheckoutProxyProcess,
    free_port,
    open_file_descriptors,
    peak_resident_set_size,
    running_proxy,
    wait_until,
)
from websockets.asyncio.client import connect as websocket_connect

from demo_server.app import FEED_ENDED_HEADER
from demo_server.sse import END_EVENT
from inspector.classify import Classifier, TransportRule
from inspector.processes import cpu_seconds, raise_open_file_limit
from inspector.proxy_process import wait_until_closed
from inspector.replay import analyze_captures
from inspector.report import PerDirection, Report
from inspector.summary import build_report

#: Connections that may be opening at once (the proxy listens with a backlog of 100).
OPENING_AT_ONCE = 100
#: The pollers' requests are short polls, however long a busy proxy or server made them wait.
POLLS_ARE_SHORT = (TransportRule.parse("GET /poll=short_poll"),)


class LoadError(Exception):
    """A client got something other than what it expected; the message says what."""


@dataclass(frozen=True)
class LoadSettings:
    """How big a load to drive."""

    connections: int = 1000
    messages: int = 100
    message_size: int = 100
    sse_clients: int = 50
    pollers: int = 50
    feed_messages: int = 200
    feed_rate: float = 20.0
    feed_size: int = 128
    poll_interval: float = 0.2
    deflate: bool = False
    #: Seconds the traffic may take before the run fails.
    timeout: float = 600.0

    @property
    def held(self) -> int:
        """Client connections open at once."""
        return self.connections + self.sse_clients + self.pollers


@dataclass
class ClientCounts:
    """What the clients sent and received, to compare with the report."""

    websocket_sent: int = 0
    websocket_received: int = 0
    #: UTF-8 bytes of the messages sent (the echoes carry as many back).
    websocket_payload: int = 0
    #: Events dispatched, the feed's ``end`` event included, and the bytes of their data.
    sse_events: int = 0
    sse_payload: int = 0
    polls_with_data: int = 0
    empty_polls: int = 0
    #: Bytes of the bodies of the polls with data.
    poll_payload: int = 0


@dataclass
class LoadResult:
    """The figures of one run and every way the report disagreed with the clients."""

    settings: LoadSettings
    clients: ClientCounts
    held: int = 0
    fds_when_held: int = 0
    peak_fds: int = 0
    peak_rss: int = 0
    #: CPU seconds the proxy used, start-up and shutdown excluded.
    proxy_cpu_seconds: float = 0.0
    traffic_seconds: float = 0.0
    #: Seconds from the start of the traffic until the last WebSocket echo.
    websocket_seconds: float = 0.0
    total_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def relayed(self) -> int:
        """Messages the proxy relayed: WebSocket both ways, SSE events and poll responses with data."""
        c = self.clients
        return c.websocket_sent + c.websocket_received + c.sse_events + c.polls_with_data

    @property
    def websocket_messages_per_second(self) -> float:
        return (self.clients.websocket_sent + self.clients.websocket_received) / self.websocket_seconds

    @property
    def messages_per_second(self) -> float:
        return self.relayed / self.traffic_seconds

    def summary(self) -> str:
        s, c = self.settings, self.clients
        lines = [
            f"load: {s.connections:,} WebSocket connections x {s.messages:,} messages of {s.message_size} bytes"
            f"{' (permessage-deflate)' if s.deflate else ''}, {s.sse_clients:,} SSE clients and {s.pollers:,} "
            f"pollers on a feed of {s.feed_messages:,} messages at {s.feed_rate:g}/s",
            f"connections held at once: {self.held:,} (the proxy had {self.fds_when_held:,} descriptors open then)",
            f"traffic: {self.traffic_seconds:.1f} s; WebSocket {c.websocket_sent + c.websocket_received:,} messages "
            f"in {self.websocket_seconds:.1f} s ({self.websocket_messages_per_second:,.0f}/s, both directions), "
            f"SSE {c.sse_events:,} events, polls "
            f"{c.polls_with_data:,} with data and {c.empty_polls:,} empty; all messages "
            f"{self.messages_per_second:,.0f}/s",
            f"proxy: peak RSS {self.peak_rss / 2**20:,.0f} MiB, peak open file descriptors {self.peak_fds:,}, "
            f"CPU {self.proxy_cpu_seconds:.1f} s ({self.proxy_cpu_seconds / max(1, self.relayed) * 1e6:.0f} µs "
            f"a message)",
            f"total time {self.total_seconds:.1f} s",
            "report matches the clients exactly" if not self.problems else "PROBLEMS:",
            *(f"  {problem}" for problem in self.problems),
        ]
        return "\n".join(lines)


# -- the demo server, in its own process


@contextlib.contextmanager
def running_demo_server(settings: LoadSettings) -> Iterator[str]:
    """``python -m demo_server`` on a free port, its feed waiting for ``POST /feed/start``; yields its URL."""
    port = free_port()
    command = [
        sys.executable, "-m", "demo_server", "--port", str(port), "--no-autostart",
        "--rate", f"{settings.feed_rate:g}", "--count", str(settings.feed_messages),
        "--size", str(settings.feed_size),
        "--ws-compression" if settings.deflate else "--no-ws-compression",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        wait_until(lambda: _listening(port, server), "the demo server to listen")
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _listening(port: int, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise LoadError(f"the demo server exited with status {process.returncode}")
    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=1):
        return True
    return False


# -- the proxy's footprint


class FootprintSampler:
    """Samples the proxy's open file descriptors in a background thread and keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.peak_fds = open_file_descriptors(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> FootprintSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(DEADLINE)

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            with contextlib.suppress(OSError):
                self.peak_fds = max(self.peak_fds, open_file_descriptors(self.pid))


# -- the clients


#: Letters the messages are padded with: random, so that permessage-deflate is not flattered.
_PADDING = "".join(random.Random(0).choices(string.ascii_letters + string.digits, k=2**16))


def echo_text(connection: int, seq: int, size: int) -> str:
    """Message ``seq`` of WebSocket connection ``connection``: its numbers, padded to ``size`` characters."""
    label = f"{connection}:{seq}:"
    start = (connection * 7919 + seq * 104729) % (len(_PADDING) - size)
    return label + _PADDING[start : start + max(0, size - len(label))]


class Traffic:
    """Every client of one run, the barrier that holds them all open together, and their counts."""

    def __init__(self, proxy_url: str, server_url: str, settings: LoadSettings) -> None:
        self.proxy_url = proxy_url
        self.server_url = server_url
        self.settings = settings
        self.counts = ClientCounts()
        self.all_open = asyncio.Event()
        self.started_at = 0.0
        self.websockets_ended_at = 0.0
        self.ended_at = 0.0
        self._open = 0
        self._talking = settings.connections
        self._websockets_done = asyncio.Event()
        self._opening = asyncio.Semaphore(OPENING_AT_ONCE)

    async def run(self, when_held: Callable[[], None]) -> None:
        """Open every client, start the feed once all are connected (calling
        ``when_held`` then), and run them all to the end."""
        s = self.settings
        clients = [asyncio.create_task(self._websocket_client(i)) for i in range(s.connections)]
        clients += [asyncio.create_task(self._sse_client(i)) for i in range(s.sse_clients)]
        clients += [asyncio.create_task(self._poller(i)) for i in range(s.pollers)]
        opened = asyncio.create_task(self.all_open.wait())
        try:
            await asyncio.wait([opened, *clients], return_when=asyncio.FIRST_COMPLETED)
            if not opened.done():
                await asyncio.gather(*clients)  # raises what ended a client early
                raise LoadError("a client ended before every client had connected")
            when_held()
            self.started_at = time.monotonic()
            async with httpx.AsyncClient(trust_env=False, timeout=DEADLINE) as direct:
                (await direct.post(f"{self.server_url}/feed/start")).raise_for_status()
            await asyncio.gather(*clients)
            self.ended_at = time.monotonic()
        finally:
            for task in [opened, *clients]:
                task.cancel()
            await asyncio.gather(opened, *clients, return_exceptions=True)

    def _opened(self) -> None:
        self._open += 1
        if self._open == self.settings.held:
            self.all_open.set()

    async def _websocket_client(self, index: int) -> None:
        s = self.settings
        async with self._opening:
            connection = await websocket_connect(
                f"ws://{self.proxy_url.removeprefix('http://')}/ws/echo",
                compression="deflate" if s.deflate else None,
                proxy=None,
                ping_interval=None,
                max_size=None,
                open_timeout=DEADLINE,
            )
        async with connection:
            self._opened()
            await self.all_open.wait()
            for seq in range(s.messages):
                text = echo_text(index, seq, s.message_size)
                await connection.send(text)
                self.counts.websocket_sent += 1
                echo = await connection.recv()
                if echo != text:
                    raise LoadError(f"WebSocket {index}: the echo of message {seq} was {str(echo)[:40]!r}")
                self.counts.websocket_received += 1
                self.counts.websocket_payload += len(text.encode())
            self._talking -= 1
            if self._talking == 0:
                self.websockets_ended_at = time.monotonic()
                self._websockets_done.set()
            await self._websockets_done.wait()

    async def _sse_client(self, index: int) -> None:
        async with (
            httpx.AsyncClient(trust_env=False, timeout=httpx.Timeout(DEADLINE, read=None)) as http,
            contextlib.AsyncExitStack() as stack,
        ):
            async with self._opening:
                source = await stack.enter_async_context(aconnect_sse(http, "GET", f"{self.proxy_url}/sse"))
                source.response.raise_for_status()
            self._opened()
            expected = 1
            async for event in source.aiter_sse():
                self.counts.sse_events += 1
                self.counts.sse_payload += len(event.data.encode())
                if event.event == END_EVENT:
                    break
                seq = json.loads(event.data)["seq"]
                if event.id != str(expected) or seq != expected:
                    raise LoadError(f"SSE client {index}: expected message {expected}, got id {event.id}, seq {seq}")
                expected += 1
            if expected != self.settings.feed_messages + 1:
                raise LoadError(f"SSE client {index}: the stream ended after message {expected - 1}")

    async def _poller(self, index: int) -> None:
        """Polls ``/poll?after=LAST`` over one keep-alive connection until the feed has ended."""
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(trust_env=False, timeout=DEADLINE, limits=limits) as http:
            last = 0
            connected = False
            while True:
                response = await http.get(f"{self.proxy_url}/poll", params={"after": last})
                if not connected:
                    connected = True
                    self._opened()
                if response.status_code == 204:
                    self.counts.empty_polls += 1
                    if response.headers.get(FEED_ENDED_HEADER):
                        break
                elif response.status_code == 200:
                    self.counts.polls_with_data += 1
                    self.counts.poll_payload += len(response.content)
                    for message in response.json():
                        if message["seq"] != last + 1:
                            raise LoadError(f"poller {index}: expected message {last + 1}, got {message['seq']}")
                        last = message["seq"]
                else:
                    raise LoadError(f"poller {index}: HTTP {response.status_code}")
                await asyncio.sleep(self.settings.poll_interval)
            if last != self.settings.feed_messages:
                raise LoadError(f"poller {index}: the feed ended after message {last}")


# -- the run


def run_load(settings: LoadSettings, workdir: Path, confdir: Path | None = None) -> LoadResult:
    """Drive the load through a proxy recording to ``workdir``, then check the report against the clients.

    ``confdir`` holds mitmproxy's CA (created in ``workdir`` if not given).
    """
    started = time.monotonic()
    raise_open_file_limit()
    capture = workdir / "load.rtcap"
    result = LoadResult(settings, ClientCounts())
    with running_demo_server(settings) as server_url:
        with running_proxy(server_url, confdir=confdir or workdir / "mitmproxy", capture=capture) as proxy:
            traffic = Traffic(proxy.url, server_url, settings)
            result.clients = traffic.counts
            drive(traffic, proxy, result)
    analysis = analyze_captures([capture], classifier=Classifier(POLLS_ARE_SHORT))
    report = build_report(analysis.records)
    result.problems = disagreements(report, analysis.notes, settings, traffic.counts)
    result.total_seconds = time.monotonic() - started
    return result


def drive(traffic: Traffic, proxy: CheckoutProxyProcess, result: LoadResult) -> None:
    """Run the clients, wait for the proxy to have ended every connection, read its
    peaks and stop it (SIGTERM, so the capture is closed)."""
    pid = proxy.process.pid
    baseline_fds = open_file_descriptors(pid)
    cpu_before = cpu_seconds(pid)

    def when_held() -> None:
        result.held = traffic.settings.held
        result.fds_when_held = open_file_descriptors(pid)

    with FootprintSampler(pid) as sampler:
        try:
            asyncio.run(asyncio.wait_for(traffic.run(when_held), traffic.settings.timeout))
        except TimeoutError:
            raise LoadError(f"the traffic did not finish within {traffic.settings.timeout:g} s") from None
        wait_until(lambda: open_file_descriptors(pid) <= baseline_fds, "the proxy to close every connection")
    assert proxy.capture is not None
    if not wait_until_closed(proxy.capture, DEADLINE):
        raise LoadError("the capture never showed every connection closed")
    result.traffic_seconds = traffic.ended_at - traffic.started_at
    result.websocket_seconds = traffic.websockets_ended_at - traffic.started_at
    result.peak_fds = sampler.peak_fds
    result.peak_rss = peak_resident_set_size(pid)
    result.proxy_cpu_seconds = cpu_seconds(pid) - cpu_before
    if (status := proxy.stop()) != 0:
        raise LoadError(f"the proxy exited with status {status}: {proxy.stderr.strip()}")


def disagreements(report: Report, notes: tuple[str, ...], settings: LoadSettings, clients: ClientCounts) -> list[str]:
    """Every figure where the report (from the capture) differs from what the clients counted."""
    problems: list[str] = []

    def expect(what: str, reported: object, counted: object) -> None:
        if reported != counted:
            problems.append(f"{what}: the report says {reported}, the clients {counted}")

    expect("notes", notes, ())
    expect("transports", sorted(report.transports), ["short_poll", "sse", "websocket"])
    if problems:
        return problems
    websocket, sse, polls = (report.transport(name) for name in ("websocket", "sse", "short_poll"))
    expect("WebSocket connections", websocket.connections, settings.connections)
    expect("WebSocket messages", websocket.messages, PerDirection(clients.websocket_sent, clients.websocket_received))
    both_ways = PerDirection(clients.websocket_payload, clients.websocket_payload)
    expect("WebSocket payload", websocket.payload_bytes, both_ways)
    expect("SSE connections", sse.connections, settings.sse_clients)
    expect("SSE messages", sse.messages, PerDirection(0, clients.sse_events))
    expect("SSE payload", sse.payload_bytes, PerDirection(0, clients.sse_payload))
    expect("polling connections", polls.connections, settings.pollers)
    expect("polls with data", polls.messages, PerDirection(0, clients.polls_with_data))
    expect("empty polls", polls.empty_polls, clients.empty_polls)
    expect("poll payload", polls.payload_bytes, PerDirection(0, clients.poll_payload))
    expect("anomalies", sum(t.anomalies for t in report.transports.values()), 0)
    ends = {c.close_reason for c in report.connections}
    expect("how connections ended", ends - {"client closed", "server closed"}, set())
    return problems


def main(argv: list[str] | None = None) -> int:
    defaults = LoadSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=defaults.connections, help="WebSocket connections")
    parser.add_argument("--messages", type=int, default=defaults.messages, help="messages each WebSocket sends")
    parser.add_argument("--message-size", type=int, default=defaults.message_size, help="characters per message")
    parser.add_argument("--sse-clients", type=int, default=defaults.sse_clients)
    parser.add_argument("--pollers", type=int, default=defaults.pollers)
    parser.add_argument("--feed-messages", type=int, default=defaults.feed_messages)
    parser.add_argument("--feed-rate", type=float, default=defaults.feed_rate, help="feed messages a second")
    parser.add_argument("--poll-interval", type=float, default=defaults.poll_interval, help="seconds between polls")
    parser.add_argument("--deflate", action="store_true", help="WebSocket permessage-deflate")
    parser.add_argument("--timeout", type=float, default=defaults.timeout, help="seconds the traffic may take")
    parser.add_argument("--keep", metavar="DIR", help="write the capture to DIR and keep it")
    args = parser.parse_args(argv)
    settings = LoadSettings(
        connections=args.connections,
        messages=args.messages,
        message_size=args.message_size,
        sse_clients=args.sse_clients,
        pollers=args.pollers,
        feed_messages=args.feed_messages,
        feed_rate=args.feed_rate,
        poll_interval=args.poll_interval,
        deflate=args.deflate,
        timeout=args.timeout,
    )
    with contextlib.ExitStack() as stack:
        if args.keep:
            workdir = Path(args.keep)
            workdir.mkdir(parents=True, exist_ok=True)
        else:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rtinspect-load-")))
        try:
            result = run_load(settings, workdir)
        except LoadError as error:
            print(f"load: {error}", file=sys.stderr)
            return 1
    print(result.summary())
    return 1 if result.problems else 0


if __name__ == "__main__":
    sys.exit(main())
