"""Network conditions: does the proxy add the delay and hold the bandwidth it is asked for?

    .venv/bin/python -m bench.network [--rounds 3] [--echoes 200] [--bytes 1000000] [--format markdown]

Starts the upstream server (bench/upstream.py) and one ``rtinspect proxy`` per
condition on 127.0.0.1, and measures what a client sees through each:

- added round trip: WebSocket echoes of 64 B, one in flight, timed by the
  client; the median (and p5/p95) through the shaped proxy minus the median
  through a proxy without conditions in the same round;
- download: time from sending ``GET /poll?size=1000000`` to the last byte of
  the 1 MB body (Content-Length; ``--bytes`` changes the size);
- upload: one WebSocket message of 1,000,000 bytes echoed back (the way back
  is not limited), from sending it to receiving it whole;
- bulk: a WebSocket push of 20 MiB (64 KiB messages), for the ceiling that
  the proxy's hold limit puts on a delayed direction without a rate.

Each measurement is taken ``--rounds`` times; tables give the median over the
rounds and the range. The checks compare medians with the targets in
bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from websockets.asyncio.client import connect

from bench.peers import LOOPBACK, Process, Upstream, free_port, wait_listening
from bench.table import machine, median, number, percentile, render

ECHO_SIZE = 64
#: Bytes downloaded and uploaded (less than 1 MiB: the upstream's largest body).
TRANSFER_BYTES = 1_000_000
BULK_MESSAGE = 64 * 1024
BULK_COUNT = 320


@dataclass(frozen=True)
class Condition:
    """A proxy's network flags and what a measurement through it should give."""

    name: str
    flags: tuple[str, ...]


CONDITIONS = (
    Condition("none", ()),
    Condition("rtt 100", ("--rtt", "100")),
    Condition("rtt 100 jitter 20", ("--rtt", "100", "--jitter", "20")),
    Condition("down 1mbit", ("--down", "1mbit")),
    Condition("up 1mbit", ("--up", "1mbit")),
    Condition("4g", ("--network", "4g")),
    Condition("transatlantic", ("--network", "transatlantic")),
)


def start_proxy(condition: Condition, upstream_port: int, workdir: Path) -> Process:
    port = free_port()
    confdir = workdir / "confdir"
    confdir.mkdir(exist_ok=True)
    log = workdir / f"{condition.name.replace(' ', '-')}.log"
    command = [
        sys.executable,
        "-m",
        "inspector",
        "proxy",
        f"http://{LOOPBACK}:{upstream_port}",
        "--listen-host",
        LOOPBACK,
        "-p",
        str(port),
        "--set",
        f"confdir={confdir}",
        "-q",
        *condition.flags,
    ]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_listening(port, process, condition.name)
    return Process(condition.name, port, process, log)


async def round_trips(port: int, count: int) -> list[float]:
    """``count`` WebSocket echo round trips of :data:`ECHO_SIZE` bytes, one in flight, in seconds."""
    message = "x" * ECHO_SIZE
    times = []
    async with connect(f"ws://{LOOPBACK}:{port}/ws/echo", compression=None, ping_interval=None) as ws:
        for _ in range(count):
            started = time.perf_counter()
            await ws.send(message)
            await ws.recv()
            times.append(time.perf_counter() - started)
    return times


async def download(port: int, size: int) -> float:
    """Seconds from sending the request to the last byte of a body of ``size`` bytes."""
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    try:
        started = time.perf_counter()
        writer.write(f"GET /poll?size={size} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")).split(b":")[1]
        )
        assert length == size, length
        await reader.readexactly(length)
        return time.perf_counter() - started
    finally:
        writer.close()


async def upload(port: int, size: int) -> float:
    """Seconds to send one WebSocket message of ``size`` bytes and receive its echo."""
    message = b"u" * size
    async with connect(f"ws://{LOOPBACK}:{port}/ws/echo", compression=None, max_size=None, ping_interval=None) as ws:
        started = time.perf_counter()
        await ws.send(message)
        assert len(await ws.recv()) == size
        return time.perf_counter() - started


async def bulk(port: int, size: int) -> float:
    """MB/s of a WebSocket push of :data:`BULK_COUNT` messages of :data:`BULK_MESSAGE` bytes."""
    path = f"/ws/push?size={BULK_MESSAGE}&count={BULK_COUNT}"
    async with connect(f"ws://{LOOPBACK}:{port}{path}", compression=None, max_size=None, ping_interval=None) as ws:
        started = time.perf_counter()
        received = 0
        for _ in range(BULK_COUNT):
            received += len(await ws.recv(decode=False))
        return received / (time.perf_counter() - started) / 1e6


Measure = Callable[[int, int], Awaitable[float]]


def spread(values: list[float], scale: float = 1.0, digits: int = 0) -> str:
    return f"{number(min(values) * scale, digits)}–{number(max(values) * scale, digits)}"


async def run(rounds: int, echoes: int, size: int, fmt: str) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="rtinspect-bench-network-"))
    upstream = Upstream.start()
    proxies: dict[str, Process] = {}
    try:
        for condition in CONDITIONS:
            proxies[condition.name] = start_proxy(condition, upstream.port, workdir)
        port = {name: proxy.port for name, proxy in proxies.items()}
        latency_rows, failures = [], []
        # -- added round trip
        added: dict[str, list[float]] = {name: [] for name in ("rtt 100", "rtt 100 jitter 20", "4g", "transatlantic")}
        spreads: dict[str, list[list[float]]] = {name: [] for name in added}
        for round_number in range(rounds):
            plain = median(await round_trips(port["none"], echoes))
            for name in added:
                times = await round_trips(port[name], echoes)
                added[name].append(median(times) - plain)
                spreads[name].append([t - plain for t in times])
                print(
                    f"round trip  round {round_number + 1}/{rounds}  {name:<18} +{(median(times) - plain) * 1000:.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
        targets = {"rtt 100": (100, 15), "rtt 100 jitter 20": (100, 15), "4g": (165, 15), "transatlantic": (80, 15)}
        for name, values in added.items():
            every = [t for times in spreads[name] for t in times]
            target, tolerance = targets[name]
            got = median(values) * 1000
            ok = abs(got - target) <= tolerance
            failures += [] if ok else [f"{name}: added round trip {got:.1f} ms, target {target} ± {tolerance} ms"]
            latency_rows.append(
                [
                    name,
                    f"{target} ± {tolerance}",
                    number(got, 1),
                    spread(values, 1000, 1),
                    number(percentile(every, 5) * 1000, 1),
                    number(percentile(every, 95) * 1000, 1),
                    "yes" if ok else "NO",
                ]
            )
        # -- transfers
        megabytes = f"{size / 1e6:g} MB"
        transfers: list[tuple[str, str, Measure, float, str]] = [
            ("down 1mbit", f"{megabytes} download", download, size * 8 / 1e6, "s"),
            ("up 1mbit", f"{megabytes} upload (WebSocket echo)", upload, size * 8 / 1e6, "s"),
            ("4g", f"{megabytes} download", download, size * 8 / 8_100_000 + 0.165, "s"),
            ("none", "20 MiB WebSocket push", bulk, 0.0, "MB/s"),
            ("transatlantic", "20 MiB WebSocket push", bulk, 0.0, "MB/s"),
            ("rtt 100", "20 MiB WebSocket push", bulk, 0.0, "MB/s"),
        ]
        transfer_rows = []
        for name, what, measure, target, unit in transfers:
            values = []
            for round_number in range(rounds):
                values.append(await measure(port[name], size))
                print(
                    f"transfer    round {round_number + 1}/{rounds}  {name:<18} {what}: {values[-1]:.3f} {unit}",
                    file=sys.stderr,
                    flush=True,
                )
            got = median(values)
            if target:
                ok = abs(got - target) <= 0.15 * target
                failures += [] if ok else [f"{name} {what}: {got:.2f} s, target {target:.2f} s ± 15%"]
                verdict, goal = ("yes" if ok else "NO"), f"{number(target, 2)} ± 15%"
            else:
                verdict, goal = "", ""
            transfer_rows.append([name, what, goal, number(got, 2), spread(values, 1, 2), unit, verdict])
    finally:
        for proxy in proxies.values():
            proxy.stop()
        upstream.stop()

    print(f"# rtinspect network conditions — {machine()}\n")
    print(
        f"Added round trip, ms ({rounds} rounds of {echoes} WebSocket echoes of {ECHO_SIZE} B, "
        "one in flight; each round's median minus the median through a proxy without conditions)\n"
    )
    print(render(["condition", "target", "median", "range", "p5", "p95", "within"], latency_rows, fmt))
    print(f"\nTransfers ({rounds} rounds)\n")
    print(render(["condition", "what", "target", "median", "range", "unit", "within"], transfer_rows, fmt))
    print()
    for failure in failures:
        print(f"- outside its target: {failure}")
    if not failures:
        print("- every figure within its target")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--echoes", type=int, default=200, help="WebSocket echoes per round and condition")
    parser.add_argument("--bytes", type=int, default=TRANSFER_BYTES, help="bytes per download and upload (< 1 MiB)")
    parser.add_argument("--format", choices=["text", "markdown"], default="text")
    args = parser.parse_args()
    if not 0 < args.bytes < 2**20:
        parser.error("--bytes: from 1 to 1,048,575")
    raise SystemExit(asyncio.run(run(args.rounds, args.echoes, args.bytes, args.format)))


if __name__ == "__main__":
    main()
