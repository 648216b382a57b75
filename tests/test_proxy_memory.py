"""``rtinspect proxy`` keeps flat memory on a long-lived, busy connection.

One WebSocket connection through the real proxy (a subprocess writing a
capture) carries 200,000 text messages to the echo server and 200,000 echoes
back, with permessage-deflate on. Each message is a different 100-character
slice of random text, so compression cannot shrink the stream: about 40 MB
cross the proxy. Its resident set size is read at the 20,000th and at the
200,000th echo (on a machine too slow for 200,000 within the time budget,
the run is cut at the last reading it can reach, never below 60,000
messages, and says so). What the proxy keeps per message or per read (capture
buffers, parser and inflate state, distributions, time line samples) must be
bounded: keeping the relayed bytes, or a few dozen bytes per message, would
grow it past the limit. The capture must then replay to exactly those
messages.

With ``--analysis process`` the relay may hold up to its backlog bound
(:data:`~inspector.analyser_process.BACKLOG_LIMIT`) for an analyser that
falls behind, so there both processes are read once the analyser has caught
up: the relay must have grown less than the limit since the baseline, and
the analyser must hold less than :data:`ANALYSER_RSS_LIMIT`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from servers import DEADLINE, LOOPBACK, AppServer, resident_set_size, running_proxy
from websockets.asyncio.client import connect as websocket_connect

from inspector.processes import descendants, descendants_cpu_seconds
from inspector.replay import analyze_captures
from inspector.report import PerDirection
from inspector.summary import build_report

MESSAGES = 200_000
#: The echo at which the baseline RSS is read: past start-up and warm-up.
BASELINE_AT = 20_000
#: Most RSS growth allowed between the baseline and the last echo.
MAX_GROWTH = 20 * 2**20
#: Most RSS the analyser process may have once it has caught up (it keeps the connection's
#: parser state and the figures, not the traffic; about 30 MiB of it is Python and the core).
ANALYSER_RSS_LIMIT = 64 * 2**20
#: Messages sent and not yet echoed, so that sending never waits for a round trip.
WINDOW = 2_000
#: Characters in each message.
MESSAGE_SIZE = 100
#: Seconds the traffic may take before the test gives up.
BUDGET = 120.0
#: The fewest messages a run cut short for time still carries: growth is read over 40,000 of them.
LEAST_MESSAGES = 3 * BASELINE_AT

#: 1 MiB of random text; message ``i`` is a slice of it, far enough from the
#: previous use of the same slice that deflate finds nothing to refer back to.
_NOISE = base64.b64encode(os.urandom(3 * 2**18)).decode("ascii")


def message_text(i: int) -> str:
    start = i * MESSAGE_SIZE % (len(_NOISE) - MESSAGE_SIZE)
    return _NOISE[start : start + MESSAGE_SIZE]


@dataclass
class Traffic:
    """What the echo run saw: RSS readings by echo count, how long it took,
    and how many messages it carried (fewer than ``MESSAGES`` on a slow machine)."""

    rss: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0
    messages: int = MESSAGES

    def readings(self) -> str:
        return ", ".join(f"{n:,}: {rss / 2**20:.1f} MiB" for n, rss in sorted(self.rss.items()))


async def echo_traffic(url: str, pid: int, checkpoints: frozenset[int]) -> Traffic:
    """Send ``MESSAGES`` messages with up to ``WINDOW`` in flight and check each echo;
    read the RSS of ``pid`` when the echo count reaches each checkpoint."""
    traffic = Traffic()
    started = time.monotonic()
    in_flight = asyncio.Semaphore(WINDOW)
    async with websocket_connect(url, open_timeout=DEADLINE, max_queue=None, compression="deflate") as ws:

        async def send() -> None:
            i = 0
            while i < traffic.messages:
                await in_flight.acquire()
                if i < traffic.messages:
                    await ws.send(message_text(i))
                i += 1

        async def receive() -> None:
            echoed = 0
            while echoed < traffic.messages:
                message = await ws.recv()
                echoed += 1
                assert message == message_text(echoed - 1), f"echo {echoed:,} was {message!r}"
                in_flight.release()
                if echoed in checkpoints:
                    traffic.rss[echoed] = resident_set_size(pid)
                if echoed == BASELINE_AT:
                    # A slow machine carries fewer messages: up to the last reading it can reach in time.
                    per_message = (time.monotonic() - started) / BASELINE_AT
                    reachable = int(0.8 * BUDGET / per_message) // BASELINE_AT * BASELINE_AT
                    traffic.messages = max(LEAST_MESSAGES, min(MESSAGES, reachable))

        sender = asyncio.create_task(send())
        try:
            await receive()
            await sender
        finally:
            sender.cancel()
    traffic.seconds = time.monotonic() - started
    return traffic


def wait_idle(pid: int, quiet: float = 0.5) -> None:
    """Wait (bounded) until the child processes of ``pid`` use no CPU for ``quiet`` seconds."""
    deadline = time.monotonic() + BUDGET
    last, idle_since = descendants_cpu_seconds(pid), time.monotonic()
    while time.monotonic() - idle_since < quiet:
        assert time.monotonic() < deadline, "the analyser process did not catch up"
        time.sleep(0.05)
        now = descendants_cpu_seconds(pid)
        if now > last + 0.005:
            idle_since = time.monotonic()
        last = now


@pytest.mark.parametrize("analysis", ["inline", "process"])
def test_memory_stays_flat_over_200k_websocket_messages(
    app_server: AppServer, confdir: Path, tmp_path: Path, analysis: str
) -> None:
    capture = tmp_path / "memory.rtcap"
    checkpoints = frozenset(range(BASELINE_AT, MESSAGES + 1, BASELINE_AT))
    with running_proxy(app_server.url, "--analysis", analysis, confdir=confdir, capture=capture) as proxy:
        # The command runs the Python interpreter itself, so this is the proxy process.
        pid = proxy.process.pid
        try:
            traffic = asyncio.run(
                asyncio.wait_for(echo_traffic(f"ws://{LOOPBACK}:{proxy.port}/ws", pid, checkpoints), BUDGET)
            )
        except TimeoutError:
            pytest.fail(
                f"{MESSAGES:,} echoes (or the fewer a slow machine is given) "
                f"through the proxy did not finish within {BUDGET:.0f} s"
            )
        if analysis == "process":
            (analyser,) = descendants(pid)[1:]
            wait_idle(pid)
            caught_up = resident_set_size(pid), resident_set_size(analyser)
        assert proxy.stop() == 0, proxy.stderr

    print(f"proxy RSS at echo {traffic.readings()}; {traffic.messages:,} echoes took {traffic.seconds:.1f} s")
    messages = traffic.messages
    if analysis == "inline":
        growth = traffic.rss[messages] - traffic.rss[BASELINE_AT]
        assert growth < MAX_GROWTH, f"proxy RSS grew {growth / 2**20:.1f} MiB ({traffic.readings()})"
    else:
        relay, analysed = caught_up
        print(f"once the analyser caught up: relay {relay / 2**20:.1f} MiB, analyser {analysed / 2**20:.1f} MiB")
        growth = relay - traffic.rss[BASELINE_AT]
        assert growth < MAX_GROWTH, f"relay RSS grew {growth / 2**20:.1f} MiB ({traffic.readings()})"
        assert analysed < ANALYSER_RSS_LIMIT, f"analyser RSS {analysed / 2**20:.1f} MiB"

    analysis = analyze_captures([capture])
    assert analysis.notes == ()
    report = build_report(analysis.records)
    [connection] = [c for c in report.connections if c.transport == "websocket"]
    assert connection.messages == PerDirection(messages, messages)
    websocket = report.transport("websocket")
    assert websocket.messages == PerDirection(messages, messages)
    assert websocket.websocket is not None
    assert websocket.websocket.compressed_messages == PerDirection(messages, messages)
