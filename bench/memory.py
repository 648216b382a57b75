"""Proxy memory: one long-lived busy connection, many open connections, many short ones.

    .venv/bin/python -m bench.memory [--messages 1000000] [--connections 1000] [--polls 20000] [--churn 2000]

For each proxy peer (default: rtinspect and mitmdump-tcp, plus mitmdump-http
for the open-connection figures), started fresh:

- long-lived: one WebSocket connection echoes ``--messages`` 64-byte text
  messages (1,000 in flight); the proxy's RSS is read at every tenth of the
  way. Flat means the last reading is within a few MiB of the first.
- open connections: ``--connections`` WebSocket connections opened (50 at a
  time), each echoing one message, then held open while the RSS is read;
  then all closed and the RSS read again.
- keep-alive polls: ``--polls`` short polls one after another on one
  HTTP/1.1 connection; the RSS at every tenth of the way.
- churn: ``--churn`` connections opened, used for one echo and closed, 10 at
  a time; the RSS before and after.

RSS is VmRSS from /proc; peak is VmHWM.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection

from bench.peers import LOOPBACK, PROXIES, Process, Upstream, start_peer
from bench.table import machine, mib, number, render
from bench.text import payload
from bench.workloads import content_length, open_websocket
from inspector.processes import resident_set

_SETTLE = 1.0


async def long_lived(port: int, pid: int, messages: int, window: int = 1000) -> tuple[list[tuple[int, int]], float]:
    """Echo ``messages`` on one connection; (echo count, RSS) at every tenth, and the seconds it took."""
    checkpoints = {messages * k // 10 for k in range(1, 11)}
    readings: list[tuple[int, int]] = []
    data = [payload(64, seq) for seq in range(256)]
    ws = await open_websocket(port, "/ws/echo", False)
    started = time.perf_counter()
    in_flight = asyncio.Semaphore(window)

    async def send() -> None:
        for i in range(messages):
            await in_flight.acquire()
            await ws.send(data[i & 255], text=True)

    sender = asyncio.create_task(send())
    try:
        for echoed in range(1, messages + 1):
            await ws.recv(decode=False)
            in_flight.release()
            if echoed in checkpoints:
                readings.append((echoed, resident_set(pid)[0]))
        await sender
    finally:
        sender.cancel()
        await ws.close()
    return readings, time.perf_counter() - started


async def keep_alive_polls(port: int, pid: int, requests: int) -> tuple[list[tuple[int, int]], float]:
    """``requests`` short polls, one after another on one keep-alive connection; RSS at every tenth."""
    checkpoints = {requests * k // 10 for k in range(1, 11)}
    readings: list[tuple[int, int]] = []
    request = b"GET /poll?size=64 HTTP/1.1\r\nhost: bench\r\naccept: application/json\r\n\r\n"
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    started = time.perf_counter()
    try:
        for n in range(1, requests + 1):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(content_length(head))
            if n in checkpoints:
                readings.append((n, resident_set(pid)[0]))
    finally:
        writer.close()
    return readings, time.perf_counter() - started


async def open_many(port: int, pid: int, count: int) -> tuple[int, int, int]:
    """RSS with ``count`` WebSocket connections open (each has echoed once), after closing them, and peak."""
    message = payload(64, 0)
    sockets: list[ClientConnection] = []

    async def one() -> None:
        ws = await open_websocket(port, "/ws/echo", False)
        sockets.append(ws)
        await ws.send(message, text=True)
        await ws.recv(decode=False)

    for start in range(0, count, 50):
        await asyncio.gather(*(one() for _ in range(min(50, count - start))))
    await asyncio.sleep(_SETTLE)
    rss_open = resident_set(pid)[0]
    await asyncio.gather(*(ws.close() for ws in sockets))
    await asyncio.sleep(_SETTLE)
    rss_closed, peak = resident_set(pid)
    return rss_open, rss_closed, peak


async def churn(port: int, count: int, concurrency: int = 10) -> None:
    message = payload(64, 0)
    remaining = count

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            ws = await open_websocket(port, "/ws/echo", False)
            await ws.send(message, text=True)
            await ws.recv(decode=False)
            await ws.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def growth_table(runs: dict[str, tuple[int, list[tuple[int, int]], float]], unit: str, fmt: str) -> str:
    """RSS readings along one connection's life, the growth from the first reading to the last."""
    marks = [n for n, _ in next(iter(runs.values()))[1]]
    headings = ["peer", "idle", *(f"@{n:,}" for n in marks), "growth", f"B/{unit}", f"{unit}/s"]
    rows = []
    for name, (idle, readings, seconds) in runs.items():
        (first_n, first), (last_n, last) = readings[0], readings[-1]
        rows.append(
            [
                name,
                mib(idle),
                *(mib(rss) for _, rss in readings),
                mib(last - first),
                number((last - first) / (last_n - first_n), 1) if last_n > first_n else "–",
                number(last_n / seconds),
            ]
        )
    return render(headings, rows, fmt)


def with_peer(name: str, upstream: Upstream, workdir: Path, work) -> object:
    proxy = start_peer(name, upstream.port, workdir)
    assert isinstance(proxy, Process)
    try:
        return asyncio.run(work(proxy))
    finally:
        proxy.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000, help="echoes on the long-lived connection")
    parser.add_argument("--connections", type=int, default=1000, help="WebSocket connections held open at once")
    parser.add_argument("--churn", type=int, default=2000, help="connections opened and closed one after another")
    parser.add_argument("--polls", type=int, default=20_000, help="short polls on one keep-alive connection")
    parser.add_argument(
        "--peers",
        default="rtinspect,mitmdump-tcp",
        help="proxies for the long-lived, polls and churn runs (rtinspect@DIR: the inspector package in DIR)",
    )
    parser.add_argument("--open-peers", default=",".join(PROXIES), help="proxies for the open-connections run")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    args = parser.parse_args(argv)
    peers = [p for p in args.peers.split(",") if p]
    open_peers = [p for p in args.open_peers.split(",") if p]
    for name in {*peers, *open_peers}:
        if name not in PROXIES and not name.startswith("rtinspect@"):
            parser.error(f"unknown proxy {name!r}: choose from {', '.join(PROXIES)}")

    workdir = Path(tempfile.mkdtemp(prefix="rtinspect-bench-memory-"))
    upstream = Upstream.start()
    lived: dict[str, tuple[int, list[tuple[int, int]], float]] = {}
    opened: dict[str, tuple[int, int, int, int]] = {}
    churned: dict[str, tuple[int, int, float]] = {}
    polled: dict[str, tuple[int, list[tuple[int, int]], float]] = {}
    try:
        for name in peers:
            if args.messages:

                async def run_long(proxy: Process) -> tuple[int, list[tuple[int, int]], float]:
                    idle = resident_set(proxy.pid)[0]
                    readings, seconds = await long_lived(proxy.port, proxy.pid, args.messages)
                    return idle, readings, seconds

                lived[name] = with_peer(name, upstream, workdir, run_long)  # type: ignore[assignment]
                print(f"long-lived  {name:<14} done in {lived[name][2]:.0f} s", file=sys.stderr, flush=True)
            if args.polls:

                async def run_polls(proxy: Process) -> tuple[int, list[tuple[int, int]], float]:
                    idle = resident_set(proxy.pid)[0]
                    readings, seconds = await keep_alive_polls(proxy.port, proxy.pid, args.polls)
                    return idle, readings, seconds

                polled[name] = with_peer(name, upstream, workdir, run_polls)  # type: ignore[assignment]
                print(f"polls       {name:<14} done in {polled[name][2]:.0f} s", file=sys.stderr, flush=True)
            if args.churn:

                async def run_churn(proxy: Process) -> tuple[int, int, float]:
                    await churn(proxy.port, 20)
                    before = resident_set(proxy.pid)[0]
                    started = time.perf_counter()
                    await churn(proxy.port, args.churn)
                    seconds = time.perf_counter() - started
                    await asyncio.sleep(_SETTLE)
                    return before, resident_set(proxy.pid)[0], seconds

                churned[name] = with_peer(name, upstream, workdir, run_churn)  # type: ignore[assignment]
                print(f"churn       {name:<14} done in {churned[name][2]:.0f} s", file=sys.stderr, flush=True)
        for name in open_peers:
            if args.connections:

                async def run_open(proxy: Process) -> tuple[int, int, int, int]:
                    idle = resident_set(proxy.pid)[0]
                    return (idle, *await open_many(proxy.port, proxy.pid, args.connections))

                opened[name] = with_peer(name, upstream, workdir, run_open)  # type: ignore[assignment]
                print(f"open        {name:<14} done", file=sys.stderr, flush=True)
    finally:
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"# rtinspect memory benchmark, {time.strftime('%Y-%m-%d')}")
    print(f"# {machine()}")
    if lived:
        print()
        print(f"# one WebSocket connection, {args.messages:,} echoes of 64 B (1,000 in flight): proxy RSS in MiB")
        print(growth_table(lived, "msg", args.format))
    if polled:
        print()
        print(f"# one keep-alive HTTP connection, {args.polls:,} short polls one after another: proxy RSS in MiB")
        print(growth_table(polled, "req", args.format))
    if opened:
        print()
        print(f"# {args.connections:,} WebSocket connections open at once (one echo each): proxy RSS in MiB")
        headings = ["peer", "idle", "open", "KiB/conn", "after close", "peak"]
        rows = [
            [
                name,
                mib(idle),
                mib(rss_open),
                number((rss_open - idle) / args.connections / 1024, 1),
                mib(closed),
                mib(peak),
            ]
            for name, (idle, rss_open, closed, peak) in opened.items()
        ]
        print(render(headings, rows, args.format))
    if churned:
        print()
        print(f"# {args.churn:,} WebSocket connections opened, used once and closed (10 at a time): proxy RSS in MiB")
        headings = ["peer", "before", "after", "KiB/conn", "conn/s"]
        rows = [
            [
                name,
                mib(before),
                mib(after),
                number((after - before) / args.churn / 1024, 2),
                number(args.churn / seconds),
            ]
            for name, (before, after, seconds) in churned.items()
        ]
        print(render(headings, rows, args.format))
    goals = []
    if "rtinspect" in lived:
        _, readings, _ = lived["rtinspect"]
        growth = readings[-1][1] - readings[0][1]
        verdict = "met" if growth < 5 * 2**20 else "not met"
        goals.append(
            f"rtinspect RSS flat over {args.messages:,} messages on one connection: "
            f"{mib(readings[0][1])} → {mib(readings[-1][1])} MiB ({growth / 2**20:+.1f} MiB): {verdict}"
        )
    if "rtinspect" in polled:
        idle, readings, _ = polled["rtinspect"]
        growth = readings[-1][1] - idle
        verdict = (
            "met"
            if args.polls >= 1_000_000 and growth < 20e6
            else "not met"
            if growth >= 20e6
            else "not measured at full size"
        )
        goals.append(
            f"rtinspect grows under 20 MB over 1,000,000 polls on one connection: {args.polls:,} polls grew it by "
            f"{growth / 1e6:.1f} MB ({growth / args.polls:,.1f} bytes a request): {verdict}"
        )
    if "rtinspect" in opened and args.connections >= 1000:
        rss_open = opened["rtinspect"][1]
        verdict = "met" if rss_open < 150e6 else "not met"
        goals.append(
            f"rtinspect under 150 MB with {args.connections:,} open WebSocket connections: "
            f"{rss_open / 1e6:.0f} MB: {verdict}"
        )
    if goals:
        print()
        for line in goals:
            print(f"- {line}")


if __name__ == "__main__":
    main()
