"""What each transport costs the demo server and the proxy (``rtinspect demo --clients N``), and the
pieces that measure it: the server's own counts, ``/proc`` sampling, joining the per-transport
captures, INP as web-vitals takes it, and the verdicts (their ranking is tests/test_ranking.py's).

The end-to-end run is small (20 clients per transport, a 0.4 s feed); nothing here asserts a time.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from oracles import ORACLE_MISSING
from servers import run_rtinspect
from websockets.asyncio.client import connect as websocket_connect

from demo_server.app import create_app
from demo_server.counting import ServerCounts
from demo_server.run import DemoServer, bind, url_for
from inspector.capture import CaptureWriter, ConnectionClosed, ConnectionOpened, DataChunk, Event, read_capture
from inspector.demo import DemoError, DemoSettings
from inspector.demo.browser_cost import BrowserCost, inp
from inspector.demo.captures import join_captures
from inspector.demo.costs import ProcessCost
from inspector.demo.server_process import ServerProcess
from inspector.demo.verdicts import INP, LATENCY, PAGE_TIME, SERVER_CPU, WIRE_BYTES
from inspector.processes import ProcessSample, TreeSample, available, final_sample, reset_peaks, sample_tree
from inspector.wire import Direction

CLIENTS = 20
COUNT = 20
RATE = 50.0
REPORT_NAMES = {"websocket", "sse", "http_stream", "long_poll", "short_poll"}
#: A missing /proc is a missing oracle: RTINSPECT_REQUIRE_ORACLES=1 fails the run instead of skipping.
needs_proc = pytest.mark.skipif(
    not available(), reason=f"Linux's /proc, which process figures are read from, {ORACLE_MISSING}"
)
#: The runs, as clients.json names them: the transports and the Socket.IO run.
RUN_NAMES = REPORT_NAMES | {"socket.io"}
#: The report's transports that the Socket.IO run used too (long polling, then WebSocket).
SHARED = {"websocket", "long_poll"}


@pytest.fixture(scope="module")
def clients_run(tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> dict[str, Any]:
    """One ``rtinspect demo --clients 20`` run: its output, clients.json and report.json."""
    output = tmp_path_factory.mktemp("demo-clients") / "demo"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = run_rtinspect(
        "demo",
        "--clients",
        str(CLIENTS),
        "--count",
        str(COUNT),
        "--rate",
        str(RATE),
        "--poll-interval",
        "0.2",
        "-o",
        str(output),
        "--set",
        f"confdir={confdir}",
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "done": done,
        # What the kernel says the demo and every process it waited for used, from outside /proc.
        "children_cpu_ms": 1000 * sum(getattr(after, f) - getattr(before, f) for f in ("ru_utime", "ru_stime")),
        "output": output,
        "clients": json.loads((output / "clients.json").read_text()),
        "report": json.loads((output / "report.json").read_text()),
    }


@needs_proc
def test_every_client_got_every_message_and_the_server_handled_what_they_sent(clients_run: dict[str, Any]) -> None:
    clients = clients_run["clients"]
    assert clients["clients_per_transport"] == CLIENTS and clients["one_transport_at_a_time"] is True
    assert {"cpu", "cores", "memory_bytes", "system", "python"} <= set(clients["machine"])
    assert set(clients["transports"]) == RUN_NAMES
    for name, measured in clients["transports"].items():
        assert measured["error"] is None, (name, measured["error"])
        assert measured["clients"] == CLIENTS
        assert (measured["received"], measured["lost"], measured["duplicates"]) == (CLIENTS * COUNT, 0, 0), name
        server, proxy = measured["server"], measured["proxy"]
        # The server counted its own: every request the clients sent, over one connection per client.
        assert server["requests"] == measured["requests"], (name, server, measured["requests"])
        assert server["connections"] == CLIENTS, (name, server)
        assert 1 <= server["connections_held"] <= CLIENTS, (name, server)
        # The proxy relayed the same requests on the same number of client connections.
        assert (proxy["requests"], proxy["connections"]) == (measured["requests"], CLIENTS), (name, proxy)
        for figures in (server, proxy):
            assert figures["messages"] == measured["received"]
            assert figures["cpu_ms"] >= 0 and figures["peak_rss_bytes"] > 0 and figures["baseline_rss_bytes"] > 0
            assert figures["cpu_ms_per_1000_messages"] == pytest.approx(
                figures["cpu_ms"] * 1000 / figures["messages"], abs=0.01
            )
            assert sum(figures["cpu_ms_by_process"].values()) == pytest.approx(figures["cpu_ms"], abs=0.2)
            growth = max(0, figures["peak_rss_bytes"] - figures["baseline_rss_bytes"])
            assert figures["rss_per_connection_bytes"] == pytest.approx(growth / figures["connections_held"], abs=1)
        # The proxy is the relay and its analyser.
        assert set(proxy["cpu_ms_by_process"]) <= {"relay", "analyser"}, proxy
    # The server's and the proxy's CPU time, read from /proc while the feed ran, is part of what the
    # kernel accounted to the demo's whole tree when it was waited for (17 s in all, 1.1 s of it
    # the servers' and proxies' during the feed, on a loaded 2-core machine).
    measured_cpu = sum(t[who]["cpu_ms"] for t in clients["transports"].values() for who in ("server", "proxy"))
    assert 0 < measured_cpu <= clients_run["children_cpu_ms"], (measured_cpu, clients_run["children_cpu_ms"])
    # Each push client held its connection from before the feed started until it ended.
    for name in ("websocket", "sse", "http_stream"):
        assert clients["transports"][name]["server"]["connections_held"] == CLIENTS, name
        assert clients["transports"][name]["requests"] == CLIENTS, name


def test_the_joined_capture_holds_every_connection_once(clients_run: dict[str, Any]) -> None:
    report = clients_run["report"]
    runs = clients_run["clients"]["transports"]
    for name in REPORT_NAMES - SHARED:
        assert report["transports"][name]["connections"] == CLIENTS, name
        assert report["transports"][name]["app_messages"]["server_to_client"] == runs[name]["received"] + (
            name == "sse" and CLIENTS
        ), name
    # The Socket.IO run's traffic is in websocket and long_poll too; each run's own report says what was its.
    for name in RUN_NAMES:
        ends = CLIENTS if name in ("sse", "socket.io") else 0
        assert runs[name]["report"]["app_messages"] == runs[name]["received"] + ends, name
    sessions = report["sessions"]["socket.io"]
    assert (sessions["count"], sessions["upgraded"]) == (CLIENTS, CLIENTS)
    assert sessions["app_messages"]["server_to_client"] == CLIENTS * (COUNT + 1)
    with read_capture(clients_run["output"] / "capture.rtcap") as records:
        opened = [r.connection_id for r in records if isinstance(r, ConnectionOpened)]
    assert sorted(opened) == list(range(1, report["connection_count"] + 1))
    socketio = sum(c["app_protocol"] == "socket.io" for c in report["connections"])
    assert report["connection_count"] == len(REPORT_NAMES) * CLIENTS + socketio >= len(RUN_NAMES) * CLIENTS
    assert not list(clients_run["output"].glob(".parts-*")), "the per-transport captures are removed"


def test_the_output_shows_the_costs_and_a_verdict_per_dimension(clients_run: dict[str, Any]) -> None:
    out = clients_run["done"].stdout
    words = " ".join(out.split())
    assert f"{CLIENTS} Python clients per transport, one transport after another" in words
    assert "Clients (the Python clients, 20 per transport)" in out
    assert "Server and proxy (a fresh process of each per transport)" in out
    for dimension in ("Bytes:", "Latency:", "Server:", "Conditions:"):
        assert f"• {dimension}" in out, dimension
    assert "Browser:" not in out
    assert f"{CLIENTS} Python clients per transport, one transport at a time" in words
    html = (clients_run["output"] / "report.html").read_text()
    section = html[html.index("<h2>CPU time per 1,000 feed messages: server and proxy</h2>") :]
    assert "<svg" in section and section.index("<svg") < section.index("</section>")
    assert html.index("The demo") < html.index("<footer>")
    # One bytes verdict: the demo's, with its tolerance, in place of the report's exact one.
    assert html.count('<section class="verdict">') == 1 and "fewest wire bytes" not in html
    assert html.index("<strong>Bytes:</strong>") < html.index("<h2>Transports</h2>")


def test_settings_refuse_what_the_cost_runs_cannot_do() -> None:
    with pytest.raises(DemoError, match="--clients is for the Python clients"):
        DemoSettings(output=Path("unused"), clients=2, browser=True)
    with pytest.raises(DemoError, match="--clients cannot be combined with --http2"):
        DemoSettings(output=Path("unused"), clients=2, http2=True)
    with pytest.raises(DemoError, match="--ui-rows is for the demo page"):
        DemoSettings(output=Path("unused"), ui_rows=100)
    settings = DemoSettings(output=Path("unused"), browser=True, ui_rows=2000)
    assert (settings.page_rows, settings.one_by_one) == (2000, True)
    assert (
        DemoSettings(output=Path("unused"), clients=1000).connect_timeout
        > DemoSettings(output=Path("unused")).connect_timeout
    )


def test_inp_is_taken_as_web_vitals_takes_it() -> None:
    # Fewer than 50 interactions: the longest one.
    assert inp([16.0, 104.0, 24.0], interactions=3) == 104.0
    # 120 interactions: two (120 // 50) of the longest are skipped, even if only some were long enough to be seen.
    assert inp([200.0, 96.0, 48.0, 40.0, 16.0], interactions=120) == 48.0
    # Interactions, but none of 16 ms or more: web-vitals reports 0.
    assert inp([], interactions=7) == 0.0
    assert inp([], interactions=0) is None
    before = {
        "LayoutCount": 10,
        "RecalcStyleCount": 5,
        "LayoutDuration": 0.5,
        "RecalcStyleDuration": 0.25,
        "ScriptDuration": 1.0,
        "TaskDuration": 2.0,
    }
    after = {
        "LayoutCount": 52,
        "RecalcStyleCount": 60,
        "LayoutDuration": 0.75,
        "RecalcStyleDuration": 0.5,
        "ScriptDuration": 1.5,
        "TaskDuration": 3.0,
    }
    cost = BrowserCost.from_readings(before, after, 1_000_000, 999_000, interactions=6, durations=[24.0])
    assert cost.to_dict() == {
        "layout_count": 42,
        "recalc_style_count": 55,
        "layout_ms": 250.0,
        "recalc_style_ms": 250.0,
        "script_ms": 500.0,
        "task_ms": 1000.0,
        "js_heap_bytes": -1000,
        "inp_ms": 24.0,
        "interactions": 6,
        "observed_interactions": 1,
    }


def test_joined_captures_number_their_connections_apart(tmp_path: Path) -> None:
    parts = []
    for part in range(2):
        path = tmp_path / f"part{part}.rtcap"
        with CaptureWriter(path) as writer:
            writer.write(Event(0, 1.0 + part, "started", {"part": part}))
            for ident in (1, 2):
                writer.write(ConnectionOpened(ident, 1.0 + part, f"c:{ident}", "s:1", "reverse"))
            writer.write(DataChunk(2, 1.1 + part, Direction.CLIENT_TO_SERVER, b"GET / HTTP/1.1\r\n\r\n"))
            writer.write(ConnectionClosed(1, 1.2 + part, "client closed"))
            writer.write(ConnectionOpened(3, 1.3 + part, "c:3", "s:1", "reverse"))
            for ident in (2, 3):
                writer.write(ConnectionClosed(ident, 1.4 + part, "client closed"))
        parts.append(path)
    facts = join_captures(parts, tmp_path / "joined.rtcap")
    assert [(f.connections, f.peak_open) for f in facts] == [(3, 2), (3, 2)]
    with read_capture(tmp_path / "joined.rtcap") as records:
        joined = list(records)
    assert [r.connection_id for r in joined if isinstance(r, ConnectionOpened)] == [1, 2, 3, 4, 5, 6]
    assert [r.connection_id for r in joined if isinstance(r, Event)] == [0, 0]
    assert [(r.connection_id, r.data) for r in joined if isinstance(r, DataChunk)] == [
        (2, b"GET / HTTP/1.1\r\n\r\n"),
        (5, b"GET / HTTP/1.1\r\n\r\n"),
    ]


@needs_proc
def test_a_process_tree_is_sampled_from_proc() -> None:
    sample = sample_tree(os.getpid())
    assert sample is not None and sample.processes[0].pid == os.getpid()
    assert sample.cpu_seconds > 0 and sample.rss_bytes > 0 and sample.peak_rss_bytes >= sample.rss_bytes
    reset_peaks(sample)
    assert sample_tree(2**22 + 12345) is None  # no such process
    later = TreeSample(at=sample.at + 1, processes=sample.processes)
    cost = ProcessCost.between(sample, later, messages=0, connections=0, connections_held=0, requests=0)
    assert (cost.cpu_ms, cost.cpu_ms_per_1000_messages, cost.rss_per_connection_bytes) == (0.0, None, None)


def test_the_analyser_is_counted_until_it_exits() -> None:
    """The relay's analyser may still be catching up when the connections close: its share comes
    from what the relay had waited for once it exited."""

    def process(pid: int, name: str, own: float, reaped: float = 0.0) -> ProcessSample:
        return ProcessSample(pid, name, own, reaped, rss_bytes=1000, peak_rss_bytes=2000)

    before = TreeSample(0.0, (process(1, "inspector", 1.0), process(2, "inspector.analyser_process", 0.5)))
    after = TreeSample(5.0, (process(1, "inspector", 1.2), process(2, "inspector.analyser_process", 0.7)))
    final = process(1, "?", 1.3, reaped=0.9)
    cost = ProcessCost.between(before, after, messages=100, connections=1, connections_held=1, requests=1, final=final)
    assert cost.cpu_ms_by_process == {"relay": pytest.approx(200.0), "analyser": pytest.approx(400.0)}
    assert cost.cpu_ms == pytest.approx(600.0) and cost.cpu_ms_per_1000_messages == pytest.approx(6000.0)
    assert (cost.baseline_rss_bytes, cost.peak_rss_bytes, cost.rss_per_connection_bytes) == (2000, 4000, 2000)
    without = ProcessCost.between(before, after, messages=100, connections=1, connections_held=1, requests=1)
    assert without.cpu_ms_by_process == {"relay": pytest.approx(200.0), "analyser": pytest.approx(200.0)}


#: A child that burns CPU itself and in a grandchild it waits for.
BURNER = (
    "import subprocess, sys; sum(range(10**7)); subprocess.run([sys.executable, '-c', 'sum(range(10**7))'], check=True)"
)


@needs_proc
def test_an_exited_child_is_read_before_it_is_waited_for() -> None:
    """Its CPU time as /proc gives it, its own and its waited-for grandchild's, is what the
    kernel's rusage of the child says when it is waited for."""
    child = subprocess.Popen([sys.executable, "-c", BURNER])
    try:
        final = final_sample(child.pid, timeout=60)
    finally:
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    assert child.returncode == 0
    assert final is not None and final.pid == child.pid and final.rss_bytes == 0
    assert final.own_cpu_seconds > 0.1 and final.reaped_cpu_seconds > 0.1, final
    tick = 1 / os.sysconf("SC_CLK_TCK")
    assert final.cpu_seconds == pytest.approx(usage.ru_utime + usage.ru_stime, abs=4 * tick), usage
    assert final_sample(child.pid, timeout=1) is None  # waited for: gone


def test_a_missing_proc_is_a_missing_oracle() -> None:
    """Where /proc is missing the process tests skip as an oracle does, so that a run that
    requires its oracles (RTINSPECT_REQUIRE_ORACLES=1) fails rather than passes without them."""
    assert ORACLE_MISSING in needs_proc.mark.kwargs["reason"]


@needs_proc
def test_the_server_process_counts_connections_and_requests_of_its_clients_only() -> None:
    settings = DemoSettings(output=Path("unused"), count=3, rate=100.0)

    async def clients(url: str) -> None:
        async with httpx.AsyncClient(trust_env=False) as client:
            for _ in range(2):
                assert (await client.get(url + "/poll")).status_code in (200, 204)
        async with websocket_connect("ws" + url.removeprefix("http") + "/ws", proxy=None) as websocket:
            assert len([message async for message in websocket]) == 3

    with ServerProcess(settings) as server:
        server.restart_counts()
        server.start_feed()
        asyncio.run(clients(server.url))
        deadline = time.monotonic() + 10
        while (counts := server.counts())["open"] and time.monotonic() < deadline:
            time.sleep(0.05)  # the server hears of the clients' closes a moment later
        sample = sample_tree(server.pid)
    assert sample is not None and sample.processes[0].name == "demo_server.child"
    assert counts["requests"] == 3 and counts["requests_by_path"] == {"/poll": 2, "/ws": 1}
    assert counts["connections"] == 2 and counts["peak_open"] == 1
    assert counts["open"] == 0  # the WebSocket's close was counted by the protocol it was handed to


def test_counted_uvicorn_protocols_in_a_thread() -> None:
    counts = ServerCounts()
    app = create_app(count=2, rate=100.0, autostart=True)
    sock = bind()
    server = DemoServer(app, counts=counts)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    assert server.ready.wait(20)
    try:
        with httpx.Client(trust_env=False) as client:
            lines = client.get(url_for(sock) + "/stream").text.splitlines()
    finally:
        server.should_exit = True
        thread.join(20)
    assert len(lines) == 2
    assert (counts.connections, counts.peak_open, dict(counts.requests)) == (1, 1, {"/stream": 1})


def test_the_demo_ranks_with_the_tolerances_its_runs_showed() -> None:
    dimensions = (WIRE_BYTES, LATENCY, PAGE_TIME, SERVER_CPU)
    assert [str(d.tolerance) for d in dimensions] == ["2%", "20% or 1 ms", "75%", "20%"]
    assert str(INP) == "24 ms" and INP.close(100.0, 124.0) and not INP.close(100.0, 132.0)
    text = WIRE_BYTES.verdict([("sse", 280.5), ("websocket", 130.0), ("short_poll", 275.6)])
    assert text == (
        "Wire bytes per feed message received was lowest for websocket (130 B); "
        "then short_poll and sse (2.1× the lowest, 275.6 B to 280.5 B, within 2% of each other)"
    )


def test_the_demo_server_child_answers_on_its_standard_output(tmp_path: Path) -> None:
    """The child's protocol as the run uses it, spoken by hand."""
    process = subprocess.run(
        [sys.executable, "-m", "demo_server.child", "--count", "1"],
        input="stats\nrestart\nbogus\nstop\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    hello, stats, restarted, bogus = (json.loads(line) for line in process.stdout.splitlines())
    assert hello["url"].startswith("http://127.0.0.1:") and isinstance(hello["pid"], int)
    assert stats == restarted == {"connections": 0, "open": 0, "peak_open": 0, "requests": 0, "requests_by_path": {}}
    assert bogus == {"error": "unknown command 'bogus'"}
    assert process.returncode == 0
