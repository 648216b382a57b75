"""``rtinspect demo`` end to end: the real server, the real proxy, real clients.

The command runs as a subprocess with a small, fast feed. What the clients
received (``clients.json``) is checked against the feed and against what the
proxy's capture says crossed the wire (``report.json``).
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from html import escape
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, Group
from servers import run_rtinspect

from inspector.capture import ConnectionClosed, ConnectionOpened, read_capture
from inspector.demo import TRANSPORTS, ClientTally, DemoError, DemoProgress, DemoSettings
from inspector.demo.costs import PROCESS_HEADINGS, ProcessCost, TransportCosts
from inspector.demo.display import clients_table, process_table, result_renderables
from inspector.demo.page import page_tallies
from inspector.demo.result import DemoFiles, DemoResult
from inspector.demo.settings import PAGE_TRANSPORTS
from inspector.render.rows import TRANSPORT_COLUMNS
from inspector.render.table import table_renderables
from inspector.replay import report_from_captures

COUNT = 20
RATE = 50.0
#: Seconds a demo run may take here: start-up, a 0.4 s feed, shutdown.
RUN_TIMEOUT = 60.0
#: The report's transports: the five, the Socket.IO run's among them (long polling, then WebSocket).
REPORT_NAMES = {t.transport for t in PAGE_TRANSPORTS}
#: The runs, as clients.json names them: the five transports and socket.io (not those HTTP/3 alone offers).
CLIENT_NAMES = {t.transport for t in TRANSPORTS if not t.h3_only}
#: The runs whose client counts an "end" event as one more delivery.
WITH_END_EVENT = {"sse", "socket.io"}


def run_demo(output: Path, confdir: Path, *args: str) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Run ``rtinspect demo`` into ``output``; returns the process and the two JSON files."""
    done = run_rtinspect(
        "demo",
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
        *args,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((output / "report.json").read_text())
    clients = json.loads((output / "clients.json").read_text())
    return done, report, clients


def test_every_message_reaches_every_client_and_the_report_counts_them(tmp_path: Path, confdir: Path) -> None:
    output = tmp_path / "demo"
    done, report, clients = run_demo(output, confdir)

    assert clients["format"] == "rtinspect-demo-clients"
    assert clients["clients"] == "python"
    assert clients["feed"] == {"count": COUNT, "rate": RATE, "size": 256}
    # Only the demo's transports: the feed's start request went to the server, not through the proxy.
    assert set(report["transports"]) == REPORT_NAMES
    assert set(clients["transports"]) == CLIENT_NAMES
    for name, measured in clients["transports"].items():
        assert measured["error"] is None, (name, measured)
        assert (measured["received"], measured["lost"], measured["duplicates"]) == (COUNT, 0, 0), name
        assert measured["latency_ms"]["count"] == len(measured["latency_ms"]["values"]) == COUNT, name
        # What the report of each run counted: messages as its client counts deliveries (Socket.IO's
        # application messages, its events), and the feed's messages among its application messages.
        figures = measured["report"]
        assert figures["deliveries"] == measured["deliveries"], name
        assert figures["app_messages"] == measured["received"] + (name in WITH_END_EVENT), name
    socketio = clients["transports"]["socket.io"]
    assert socketio["deliveries"] == COUNT + 1  # every message event and the "end" event
    assert socketio["report"]["path"] == "long_poll → websocket"
    assert socketio["report"]["control_messages"]["server_to_client"] >= 2  # Engine.IO's open, Socket.IO's CONNECT
    sessions = report["sessions"]["socket.io"]
    assert (sessions["count"], sessions["upgraded"], sessions["paths"]) == (1, 1, {"long_poll → websocket": 1})
    assert sessions["app_messages"]["server_to_client"] == COUNT + 1
    assert sessions["wire_bytes"] == socketio["report"]["wire_bytes"]
    # What a message on the wire is differs by transport; the clients agree with the report on each.
    assert clients["transports"]["websocket"]["deliveries"] == COUNT
    assert clients["transports"]["sse"]["deliveries"] == COUNT + 1  # the final "end" event
    assert clients["transports"]["http_stream"]["deliveries"] == COUNT
    plain = [c for c in report["connections"] if c["app_protocol"] is None]
    for name in ("websocket", "sse", "http_stream"):
        assert sum(c["transport"] == name for c in plain) == 1
        assert clients["transports"][name]["requests"] == 1
    assert 1 <= clients["transports"]["short_poll"]["deliveries"] <= COUNT
    # The application messages are the feed messages the clients received (SSE's and Socket.IO's final
    # "end" event is one more), so the report's wire bytes per application message are the clients' per
    # feed message: within 2% from 50 messages on (the demo sends 200 by default). The report's websocket
    # and long_poll hold the Socket.IO run too, so each run's own figures are taken for them.
    shared = {"websocket", "long_poll"}
    for name, measured in clients["transports"].items():
        received = measured["received"]
        if name in REPORT_NAMES - shared:
            figures = report["transports"][name]
            assert figures["app_messages"]["server_to_client"] == received + (name == "sse"), name
            assert sum(figures["wire_bytes"].values()) == measured["report"]["wire_bytes"], name
            per_app_message = figures["wire_bytes_per_app_message"]
        elif name == "socket.io":
            per_app_message = sessions["wire_bytes_per_app_message"]
        else:
            per_app_message = measured["report"]["wire_bytes"] / measured["report"]["app_messages"]
        per_feed_message = measured["report"]["wire_bytes"] / received
        assert per_app_message == pytest.approx(per_feed_message, rel=1 / COUNT + 1e-9), name
    for name in shared:
        # Each run's own share, and the Socket.IO run's, add up to the report's transport.
        socketio_share = report["transports"][name]["by_app_protocol"]["socket.io"]["wire_bytes"]
        whole = sum(report["transports"][name]["wire_bytes"].values())
        assert whole == clients["transports"][name]["report"]["wire_bytes"] + socketio_share, name

    # The proxy was stopped after every connection had closed of its own accord.
    closes = {c["transport"]: c["close_reason"] for c in report["connections"]}
    assert set(closes.values()) <= {"client closed", "server closed"}, closes
    assert not any("still open" in note for note in report["notes"])
    with read_capture(output / "capture.rtcap") as capture:
        records = list(capture)
        assert capture.truncated_tail == 0
    opened = {r.connection_id for r in records if isinstance(r, ConnectionOpened)}
    closed = {r.connection_id for r in records if isinstance(r, ConnectionClosed)}
    assert opened == closed and len(opened) == len(report["connections"]) == len(plain) + socketio_connections(report)

    html = (output / "report.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and "<svg" in html
    # The clients' latency sits beside the bytes: a strip per transport and the figures.
    latency = html[html.index("<h2>Latency measured by the clients</h2>") :]
    latency = latency[: latency.index("</section>")]
    assert "<svg" in latency and escape(str(output / "clients.json")) in latency
    for name in CLIENT_NAMES:
        assert f"<title>{name} · p90: " in latency and f'<td class="name">{name}</td>' in latency
    for name in ("capture.rtcap", "report.json", "report.html", "clients.json"):
        assert str(output / name) in done.stdout
    for heading in ("Transports", "Clients (the Python clients)", "Latency p50", "Wire per feed msg"):
        assert heading in done.stdout
    # The Socket.IO run is one row, and the bytes verdict says what it adds over plain WebSocket.
    rows = [line.split() for line in done.stdout.splitlines()]
    assert any(row[:3] == ["socket.io", f"{COUNT}", "/"] for row in rows), done.stdout
    assert "plain WebSocket's bytes per feed message" in " ".join(done.stdout.split())
    assert "the report counted" not in done.stdout  # no run's count differed from its client's


def socketio_connections(report: dict[str, Any]) -> int:
    return sum(c["app_protocol"] == "socket.io" for c in report["connections"])


def test_a_subset_without_compression(tmp_path: Path, confdir: Path) -> None:
    _, report, clients = run_demo(tmp_path / "demo", confdir, "--transports", "ws,poll", "--no-compression")

    assert set(report["transports"]) == set(clients["transports"]) == {"websocket", "short_poll"}
    assert report["sessions"] == {}
    assert clients["websocket_compression"] is False
    websocket = report["transports"]["websocket"]
    assert websocket["compressed_messages"] == {"client_to_server": 0, "server_to_client": 0}
    # Uncompressed, the payload crossed the wire as the application received it.
    assert websocket["wire_payload_bytes"]["server_to_client"] == websocket["payload_bytes"]["server_to_client"]
    for measured in clients["transports"].values():
        assert (measured["received"], measured["lost"]) == (COUNT, 0)


def test_a_proxy_that_cannot_start_is_one_line_and_a_failure(tmp_path: Path) -> None:
    done = run_rtinspect("demo", "--count", "5", "-o", str(tmp_path / "demo"), "--set", "no_such_option=1")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: the proxy exited with status 1: Error: Unknown option(s): no_such_option"
    ]


def test_settings_refuse_what_cannot_run() -> None:
    with pytest.raises(DemoError, match="--browser --http2"):
        DemoSettings(output=Path("unused"), transports=("ws",), browser=True, http2=True)
    # Without --http2 each transport has a page of its own, so any of them can run alone.
    assert DemoSettings(output=Path("unused"), transports=("ws",), browser=True).selected[0].key == "ws"
    with pytest.raises(DemoError, match="--transports"):
        DemoSettings(output=Path("unused"), transports=("ws", "carrier-pigeon"))
    # The page has no Socket.IO client: --browser and --http2 leave that run out, and cannot run it alone.
    for mode in ({"browser": True}, {"http2": True}, {"browser": True, "http2": True}):
        keys = [t.key for t in DemoSettings(output=Path("unused"), **mode).selected]
        assert keys == [t.key for t in PAGE_TRANSPORTS], mode
    for mode in ({"browser": True}, {"http2": True}):
        with pytest.raises(DemoError, match="Socket.IO run is left out"):
            DemoSettings(output=Path("unused"), transports=("socketio",), **mode)
    assert [t.key for t in DemoSettings(output=Path("unused")).selected][-1] == "socketio"


def test_a_client_counts_duplicates_and_losses_once() -> None:
    tally = ClientTally(TRANSPORTS[3], expected=3)
    tally.delivered([{"seq": 1, "sent_at": 10.0}, {"seq": 2, "sent_at": 10.5}], at=11.0)
    tally.delivered([{"seq": 2, "sent_at": 10.5}], at=11.5)
    assert (tally.received, tally.duplicates, tally.lost, tally.deliveries) == (2, 1, 1, 2)
    latency = tally.latency_ms.summary()
    assert latency is not None and (latency.count, latency.max) == (2, 1000.0)


def test_the_page_results_become_client_tallies() -> None:
    settings = DemoSettings(output=Path("unused"), count=2, browser=True)
    page = {
        key: {
            "received": 2,
            "lost": 0,
            "duplicates": 0,
            "requests": 1,
            "done": True,
            "state": "done",
            "error": None,
            "latencies": [0.004, 0.006],
        }
        for key in ("ws", "sse", "stream", "longpoll")
    }
    page["poll"] = {
        "received": 1,
        "lost": 1,
        "duplicates": 0,
        "requests": 3,
        "done": False,
        "state": "error",
        "error": "HTTP 502",
        "latencies": [0.5],
    }
    tallies = page_tallies({"done": False, "transports": page}, settings)
    assert [t.demo.key for t in tallies.values()] == ["ws", "sse", "stream", "longpoll", "poll"]
    assert all(t.deliveries is None for t in tallies.values())
    ws = tallies["ws"].latency_ms.summary()
    assert ws is not None and ws.count == 2 and ws.max == pytest.approx(6.0)
    assert (tallies["poll"].received, tallies["poll"].lost, tallies["poll"].error) == (1, 1, "HTTP 502")


def test_unknown_chromium_is_one_clear_line(tmp_path: Path) -> None:
    done = run_rtinspect("demo", "--browser", "--chromium", "no-such-browser", "-o", str(tmp_path / "demo"))
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: --browser needs Chromium, and no-such-browser was not found on PATH"
    assert not (tmp_path / "demo").exists()


RECORDINGS = Path(__file__).parent / "recordings"


def wide_result(tmp_path: Path) -> DemoResult:
    """A run as wide as the tables get: every transport, 1,000 clients each, six-figure counts."""
    captures = [RECORDINGS / f"{name}.rtcap" for name in ("websocket", "sse", "ndjson", "long_poll", "short_poll")]
    report = report_from_captures(captures)
    report = replace(
        report,
        transports={
            name: replace(summary, connections=1_000, handshakes=1_000, anomalies=12_345)
            for name, summary in report.transports.items()
        },
    )
    clients: dict[str, ClientTally] = {}
    costs: dict[str, TransportCosts] = {}
    for demo in TRANSPORTS:
        tally = ClientTally(demo, expected=200_000, clients=1_000)
        tally.received, tally.duplicates, tally.requests = 199_999, 12_345, 201_000
        for i in range(100):
            tally.latency_ms.add(10_000.0 + i)
        clients[tally.label] = tally
        cost = ProcessCost(
            cpu_ms=123_456.0,
            messages=200_000,
            baseline_rss_bytes=60_000_000,
            peak_rss_bytes=1_500_000_000,
            connections=1_000,
            connections_held=1_000,
            requests=201_000,
            seconds=10.0,
            cpu_ms_by_process={"relay": 100_000.0, "analyser": 23_456.0},
        )
        costs[tally.label] = TransportCosts(server=cost, proxy=cost)
    return DemoResult(
        settings=DemoSettings(output=tmp_path, clients=1_000),
        report=report,
        clients=clients,
        files=DemoFiles.in_folder(tmp_path, browser=False),
        problems=(),
        notes=(),
        seconds=20.0,
        costs=costs,
    )


def printed(renderable: object, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, force_terminal=False).print(renderable)
    return out.getvalue().splitlines()


def test_the_printed_tables_fit_100_columns_with_nothing_cut(tmp_path: Path) -> None:
    result = wide_result(tmp_path)
    transports = table_renderables(result.report)[0]
    tables = [
        # The table, its headings, and its widest figures.
        (transports, [column.short or column.title for column in TRANSPORT_COLUMNS], ["1,000", "12,345"]),
        (
            clients_table(result),
            [str(column.header) for column in clients_table(result).columns],
            ["199,999 / 200,000", "12,345", "201,000", "10,050 ms"],
        ),
        (process_table(result), list(PROCESS_HEADINGS), ["123,456 ms", "23,456 ms", "617 ms", "1.5 GB", "201,000"]),
    ]
    for table, headings, figures in tables:
        lines = printed(table, 100)
        text = "\n".join(lines)
        assert max(len(line) for line in lines) <= 100, text
        assert "…" not in text
        # Each heading whole on a heading line (one that starts with the first column's heading);
        # with the table split, the parts' heading lines together.
        heads = " | ".join(line for line in lines if line.strip().startswith(headings[0]))
        for heading in headings:
            assert heading in heads, (heading, text)
        for figure in figures:
            assert figure in text, (figure, text)
    # Wide enough, a table is not split.
    assert not any("(continued)" in line for line in printed(transports, 400))
    # The whole output, legends and verdicts wrapped, at 100 columns.
    lines = printed(Group(*result_renderables(result)), 100)
    assert max(len(line) for line in lines) <= 100


def test_progress_is_shown_on_a_terminal_only(tmp_path: Path) -> None:
    settings = DemoSettings(output=tmp_path, transports=("ws", "sse"))
    for terminal in (False, True):
        out = io.StringIO()
        console = Console(file=out, width=100, color_system=None, force_terminal=terminal)
        with DemoProgress(settings, console) as progress:
            progress.phase(None, "starting")
            progress.phase("ws", "running")
            progress("ws", 40)
            progress.phase("ws", "done")
        if terminal:
            assert "websocket" in out.getvalue() and "40/100" in out.getvalue()
        else:
            assert out.getvalue() == ""
