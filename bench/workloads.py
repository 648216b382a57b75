"""The load generator: each workload drives one kind of traffic at a peer until it is stopped.

A trial runs a workload against one peer: a warm-up, then a measured window
in which the workload counts what it completes (messages, events, requests
or connections: its *unit*) and the payload bytes they carried, while the
proxy's CPU time and resident set size are read from ``/proc``. WebSocket
traffic goes through the ``websockets`` library, HTTP through asyncio
streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from websockets.asyncio.client import ClientConnection, connect

from bench.peers import LOOPBACK
from bench.text import payload
from inspector.processes import cpu_seconds, descendants_cpu_seconds, reset_peak, resident_set

logging.getLogger("websockets").setLevel(logging.CRITICAL)
_MANY = 10**12


@dataclass
class Meter:
    """What a workload completed; the trial reads it at the edges of the measured window."""

    units: int = 0
    payload_bytes: int = 0
    rtts: list[float] = field(default_factory=list)
    measuring: bool = False

    def add(self, units: int, payload_bytes: int) -> None:
        self.units += units
        self.payload_bytes += payload_bytes


@dataclass(frozen=True)
class Trial:
    """One workload against one peer: counts over the measured window and the proxy's costs."""

    units: int
    payload_bytes: int
    seconds: float
    rtts: tuple[float, ...]
    cpu: float | None  #: proxy CPU seconds in the window
    rss: int | None  #: proxy RSS at the end of the trial
    peak_rss: int | None  #: proxy peak RSS during the trial
    #: CPU seconds of the proxy's child processes (its analyser) from the start of the warm-up until
    #: they went idle after the window, and the units relayed over the same span (warm-up included).
    analyser_cpu: float | None = None
    analyser_units: int | None = None
    #: Seconds the analyser stayed busy after the window ended (how far behind it was).
    analyser_lag: float | None = None

    @property
    def rate(self) -> float:
        return self.units / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.payload_bytes / self.seconds / 1e6


Drive = Callable[[int, Meter], Awaitable[None]]


@dataclass(frozen=True)
class Workload:
    """A named kind of traffic. ``drive(port, meter)`` runs until cancelled."""

    name: str
    unit: str
    describe: str
    drive: Drive


async def run_trial(workload: Workload, port: int, pid: int | None, warmup: float, seconds: float) -> Trial:
    """Drive ``workload`` at ``port`` for ``warmup + seconds``; measure the last ``seconds``."""
    meter = Meter()
    if pid is not None:
        reset_peak(pid)
    helpers_before = descendants_cpu_seconds(pid) if pid else 0.0
    task = asyncio.create_task(workload.drive(port, meter))
    try:
        done, _ = await asyncio.wait([task], timeout=warmup)
        if done:
            task.result()
            raise RuntimeError(f"{workload.name} ended during the warm-up")
        units, sent, cpu = meter.units, meter.payload_bytes, cpu_seconds(pid) if pid else None
        meter.rtts.clear()
        meter.measuring = True
        started = time.perf_counter()
        done, _ = await asyncio.wait([task], timeout=seconds)
        elapsed = time.perf_counter() - started
        meter.measuring = False
        if done:
            task.result()
            raise RuntimeError(f"{workload.name} ended before the measured window did")
        all_units = meter.units
        units, sent = meter.units - units, meter.payload_bytes - sent
        cpu = cpu_seconds(pid) - cpu if pid and cpu is not None else None
        rtts = tuple(meter.rtts)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    rss, peak = resident_set(pid) if pid else (None, None)
    analyser_cpu = analyser_lag = None
    if pid and descendants_cpu_seconds(pid) > helpers_before:
        analyser_lag = await _until_idle(pid)
        analyser_cpu = descendants_cpu_seconds(pid) - helpers_before
    return Trial(
        units,
        sent,
        elapsed,
        rtts,
        cpu,
        rss,
        peak,
        analyser_cpu,
        all_units if analyser_cpu is not None else None,
        analyser_lag,
    )


async def _until_idle(pid: int, quiet: float = 0.3, limit: float = 30.0) -> float:
    """Wait until ``pid``'s child processes use no CPU for ``quiet`` seconds; how long they were busy."""
    started = time.perf_counter()
    busy_until = started
    last = descendants_cpu_seconds(pid)
    while time.perf_counter() - busy_until < quiet and time.perf_counter() - started < limit:
        await asyncio.sleep(0.05)
        now = descendants_cpu_seconds(pid)
        if now > last + 0.005:
            busy_until = time.perf_counter()
        last = now
    return busy_until - started


# -- WebSocket


def _payloads(size: int, count: int = 256) -> list[bytes]:
    return [payload(size, seq) for seq in range(count)]


async def open_websocket(port: int, path: str, compression: bool) -> ClientConnection:
    return await connect(
        f"ws://{LOOPBACK}:{port}{path}",
        compression="deflate" if compression else None,
        max_size=None,
        max_queue=None,
        write_limit=256 * 1024,
        ping_interval=None,
        open_timeout=30,
    )


def _abort(ws: ClientConnection | None) -> None:
    if ws is not None:
        ws.transport.abort()


def websocket_echo(size: int, window: int, compression: bool = False) -> Drive:
    """``window`` text messages of ``size`` bytes in flight on one connection, echoed back."""
    payloads = _payloads(size)

    async def drive(port: int, meter: Meter) -> None:
        ws = await open_websocket(port, "/ws/echo", compression)
        in_flight = asyncio.Semaphore(window)

        async def send() -> None:
            i = 0
            while True:
                await in_flight.acquire()
                await ws.send(payloads[i & 255], text=True)
                i += 1

        sender = asyncio.create_task(send())
        try:
            while True:
                message = await ws.recv(decode=False)
                meter.add(1, len(message))
                in_flight.release()
        finally:
            sender.cancel()
            _abort(ws)

    return drive


def websocket_latency(size: int) -> Drive:
    """One message of ``size`` bytes in flight: every round trip is timed."""
    payloads = _payloads(size)

    async def drive(port: int, meter: Meter) -> None:
        ws = await open_websocket(port, "/ws/echo", False)
        clock = time.perf_counter
        try:
            i = 0
            while True:
                started = clock()
                await ws.send(payloads[i & 255], text=True)
                message = await ws.recv(decode=False)
                if meter.measuring:
                    meter.rtts.append(clock() - started)
                meter.add(1, len(message))
                i += 1
        finally:
            _abort(ws)

    return drive


def websocket_push(size: int, compression: bool = False) -> Drive:
    """The server pushes text messages of ``size`` bytes as fast as the client reads them."""

    async def drive(port: int, meter: Meter) -> None:
        ws = await open_websocket(port, f"/ws/push?size={size}&count={_MANY}", compression)
        try:
            while True:
                message = await ws.recv(decode=False)
                meter.add(1, len(message))
        finally:
            _abort(ws)

    return drive


def websocket_connect(concurrency: int) -> Drive:
    """Connections opened and closed: WebSocket handshake, one 64-byte echo, closing handshake."""
    message = payload(64, 0)

    async def drive(port: int, meter: Meter) -> None:
        async def one_after_another() -> None:
            while True:
                ws = await open_websocket(port, "/ws/echo", False)
                try:
                    await ws.send(message, text=True)
                    await ws.recv(decode=False)
                    await ws.close()
                except BaseException:
                    _abort(ws)
                    raise
                meter.add(1, len(message))

        await _all_until_cancelled([one_after_another() for _ in range(concurrency)])

    return drive


# -- HTTP


async def _all_until_cancelled(coroutines: list[Awaitable[None]]) -> None:
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    raise ValueError(f"no content-length in {head[:200]!r}")


def short_poll(size: int, connections: int) -> Drive:
    """``connections`` keep-alive connections, each asking GET /poll again as soon as it is answered."""
    request = b"GET /poll?size=%d HTTP/1.1\r\nhost: bench\r\naccept: application/json\r\n\r\n" % size

    async def drive(port: int, meter: Meter) -> None:
        async def poller() -> None:
            reader, writer = await asyncio.open_connection(LOOPBACK, port)
            try:
                while True:
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    body = await reader.readexactly(content_length(head))
                    meter.add(1, len(body))
            finally:
                writer.transport.abort()

        await _all_until_cancelled([poller() for _ in range(connections)])

    return drive


def server_sent_events(size: int) -> Drive:
    """One text/event-stream response of events with ``size`` bytes of data each, read as fast as it comes."""
    event_size = len(b"data: \n\n") + size
    request = b"GET /sse?size=%d&count=%d HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n\r\n" % (size, _MANY)

    async def drive(port: int, meter: Meter) -> None:
        reader, writer = await asyncio.open_connection(LOOPBACK, port, limit=1 << 20)
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if b" 200 " not in head.split(b"\r\n", 1)[0] + b" ":
                raise RuntimeError(f"SSE request refused: {head[:100]!r}")
            pending = 0  # event bytes received and not yet counted as a whole event
            while True:
                line = await reader.readuntil(b"\r\n")
                chunk = int(line.split(b";", 1)[0], 16)
                if chunk == 0:
                    return
                await reader.readexactly(chunk + 2)
                pending += chunk
                events, pending = divmod(pending, event_size)
                if events:
                    meter.add(events, events * size)
        finally:
            writer.transport.abort()

    return drive


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("ws-echo-64", "msg", "WebSocket echo, 64 B messages, 100 in flight", websocket_echo(64, 100)),
        Workload("ws-echo-1k", "msg", "WebSocket echo, 1 KiB messages, 100 in flight", websocket_echo(1024, 100)),
        Workload("ws-echo-64k", "msg", "WebSocket echo, 64 KiB messages, 16 in flight", websocket_echo(65536, 16)),
        Workload(
            "ws-echo-1k-deflate",
            "msg",
            "WebSocket echo, 1 KiB messages, 100 in flight, permessage-deflate",
            websocket_echo(1024, 100, compression=True),
        ),
        Workload("ws-push-1k", "msg", "WebSocket server push, 1 KiB messages", websocket_push(1024)),
        Workload(
            "ws-push-1k-deflate",
            "msg",
            "WebSocket server push, 1 KiB messages, permessage-deflate",
            websocket_push(1024, compression=True),
        ),
        Workload("sse-1k", "event", "SSE, 1 KiB of data per event, chunked", server_sent_events(1024)),
        Workload("poll-64", "req", "short polls of 64 B bodies, 10 keep-alive connections", short_poll(64, 10)),
        Workload("ws-connect", "conn", "WebSocket connections opened and closed, 10 at a time", websocket_connect(10)),
        Workload("ws-latency-64", "msg", "WebSocket echo, 64 B, one message in flight", websocket_latency(64)),
    )
}
