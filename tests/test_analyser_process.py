"""``rtinspect proxy --analysis process``: analysis in a second process gives the same answers.

The same real traffic goes through a proxy analysing inline and one feeding
an analyser process; each one's ``--report`` must equal ``rtinspect report``
of the capture it wrote, and the two must agree on every figure the traffic
decides (timings and client ports differ from run to run). The analyser
process is then killed, and stopped while the relay feeds it, to check that
relaying and recording go on and that the report says what it left out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import DEADLINE, AppServer, run_rtinspect, running_proxy, wait_until
from websockets.sync.client import connect as websocket_connect

from inspector.analyser import FINISH, Analyser, AnalyserSettings, Finished
from inspector.analyser_process import AnalyserProcess
from inspector.capture import (
    CAPTURE_HEADER,
    CAPTURE_VERSION,
    Capture,
    ConnectionClosed,
    ConnectionOpened,
    DataChunk,
    Event,
    encode_record,
    read_capture,
)
from inspector.proxy_process import wait_until_closed
from inspector.render import render
from inspector.replay import report_from_captures
from inspector.wire import Direction

RECORDING = Path(__file__).parent / "recordings" / "mixed.rtcap"

#: Report fields that depend on when things happened or on the client's port, not on the traffic.
RUN_DEPENDENT = {"started_at", "ended_at", "timeline", "sources", "opened_at", "closed_at", "client"}


def decided_by_traffic(value: Any) -> Any:
    """A JSON report without what differs between two runs of the same traffic:
    timestamps, client addresses, and of each timing distribution all but its count."""
    if isinstance(value, dict):
        if {"mean", "p50", "count"} <= value.keys():
            return {"count": value["count"]}
        return {key: decided_by_traffic(item) for key, item in value.items() if key not in RUN_DEPENDENT}
    if isinstance(value, list):
        return [decided_by_traffic(item) for item in value]
    return value


def talk(url: str, ws_url: str) -> None:
    """One connection after another, each closed by the client: WebSocket, polls, SSE, NDJSON, plain."""
    with websocket_connect(f"{ws_url}/ws", open_timeout=DEADLINE) as ws:
        for i in range(3):
            ws.send(f"message {i}")
            assert ws.recv(DEADLINE) == f"message {i}"
    with httpx.Client(base_url=url, timeout=DEADLINE) as client:
        for _ in range(3):
            assert client.get("/poll", params={"count": 1}).status_code == 200
    for path in ("/sse?count=5", "/ndjson?count=4", "/plain"):
        with httpx.Client(base_url=url, timeout=DEADLINE) as client:
            assert client.get(path).status_code == 200


def proxied_report(app_server: AppServer, confdir: Path, directory: Path, analysis: str) -> tuple[dict, Path]:
    """The ``--report`` of a proxy run with ``--analysis ANALYSIS`` over :func:`talk`, and its capture."""
    directory.mkdir()
    capture, report = directory / "run.rtcap", directory / "report.json"
    with running_proxy(
        app_server.url, "--analysis", analysis, "--report", str(report), confdir=confdir, capture=capture
    ) as proxy:
        talk(proxy.url, proxy.ws_url)
        assert wait_until_closed(capture)
        assert proxy.stop() == 0, proxy.stderr
    assert proxy.stderr == "", proxy.stderr
    return json.loads(report.read_text()), capture


def test_both_analyses_give_the_report_of_the_capture_and_agree(
    app_server: AppServer, confdir: Path, tmp_path: Path
) -> None:
    reports = {}
    for analysis in ("inline", "process"):
        reported, capture = proxied_report(app_server, confdir, tmp_path / analysis, analysis)
        from_capture = tmp_path / f"{analysis}-from-capture.json"
        done = run_rtinspect("report", str(capture), "-f", "json", "-o", str(from_capture))
        assert done.returncode == 0, done.stderr
        assert reported == json.loads(from_capture.read_text()), analysis
        reports[analysis] = reported
    inline, process = (decided_by_traffic(reports[a]) for a in ("inline", "process"))
    assert set(inline["transports"]) == {"websocket", "sse", "http_stream", "short_poll", "http"}
    for name in inline["transports"]:
        assert process["transports"][name] == inline["transports"][name], name
    assert process == inline


def analyser_pid(proxy_pid: int) -> int:
    with open(f"/proc/{proxy_pid}/task/{proxy_pid}/children") as listing:
        (child,) = (int(pid) for pid in listing.read().split())
    return child


def test_a_dead_analyser_leaves_relaying_and_recording_alone(
    app_server: AppServer, confdir: Path, tmp_path: Path
) -> None:
    capture, report = tmp_path / "run.rtcap", tmp_path / "report.json"
    with running_proxy(
        app_server.url, "--analysis", "process", "--report", str(report), confdir=confdir, capture=capture
    ) as proxy:
        with websocket_connect(f"{proxy.ws_url}/ws", open_timeout=DEADLINE) as ws:
            ws.send("before")
            assert ws.recv(DEADLINE) == "before"
            os.kill(analyser_pid(proxy.process.pid), signal.SIGKILL)
            wait_until(lambda: "analysis stopped" in proxy.stderr, "the proxy to warn that analysis stopped")
            for i in range(3):
                ws.send(f"after {i}")
                assert ws.recv(DEADLINE) == f"after {i}"
        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as client:
            assert client.get("/sse?count=3").status_code == 200
        assert wait_until_closed(capture)
        assert proxy.stop() == 0, proxy.stderr
    (line,) = proxy.stderr.strip().splitlines()
    assert line.startswith("warning: analysis stopped: the analyser process exited"), line
    assert f"rtinspect report {capture}" in line
    reported = json.loads(report.read_text())
    assert any("read from the capture at exit" in note for note in reported["notes"])
    expected = report_from_captures([capture])
    assert reported["transports"]["websocket"]["messages"]["client_to_server"] == 4
    assert reported["transports"] == json.loads(render(expected, "json"))["transports"]


def test_a_second_signal_stops_waiting_for_the_analyser(app_server: AppServer, confdir: Path, tmp_path: Path) -> None:
    capture, report = tmp_path / "run.rtcap", tmp_path / "report.json"
    with running_proxy(
        app_server.url, "--analysis", "process", "--report", str(report), confdir=confdir, capture=capture, quiet=False
    ) as proxy:
        assert httpx.get(f"{proxy.url}/plain", timeout=DEADLINE).status_code == 200
        assert wait_until_closed(capture)
        analyser = analyser_pid(proxy.process.pid)
        os.kill(analyser, signal.SIGSTOP)  # an analyser that never answers
        try:
            proxy.process.send_signal(signal.SIGTERM)
            wait_until(lambda: "waiting for the analyser process" in proxy.stderr, "the proxy to say it waits")
            assert proxy.stop(signal.SIGTERM) == 0, proxy.stderr
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(analyser, signal.SIGKILL)
    reported = json.loads(report.read_text())
    assert any("was not waited for at exit" in note for note in reported["notes"])
    assert reported["transports"]["http"]["connections"] == 1


def recording_records() -> list[Any]:
    with read_capture(RECORDING) as capture:
        return list(capture)


@pytest.mark.parametrize("chunk", [1, 7, 4096, None])
def test_the_analyser_fed_a_capture_stream_in_pieces_reports_as_rtinspect_report(chunk: int | None) -> None:
    stream = CAPTURE_HEADER + b"".join(map(encode_record, recording_records()))
    stream += encode_record(Event(0, 0.0, FINISH))
    analyser = Analyser(AnalyserSettings(sources=(str(RECORDING),)))
    inbox, answers, rng = bytearray(), [], random.Random(chunk)
    position = 0
    while position < len(stream):
        size = rng.randint(1, chunk) if chunk else len(stream)
        inbox += stream[position : position + size]
        position += size
        if len(inbox) >= len(CAPTURE_HEADER):
            capture = Capture("stream", CAPTURE_VERSION, bytes(inbox))
            answers += analyser.feed(capture)
            del inbox[len(CAPTURE_HEADER) : len(inbox) - capture.truncated_tail]
    (finished,) = answers
    assert isinstance(finished, Finished)
    assert render(finished.report, "json") == render(report_from_captures([str(RECORDING)]), "json")


def test_an_analyser_far_behind_is_not_fed_and_the_report_says_so() -> None:
    """The analyser is stopped (SIGSTOP) while the relay's side feeds it more than the backlog allows."""
    limit = 1024 * 1024

    async def run() -> tuple[Finished | None, int]:
        settings = AnalyserSettings(sources=(str(RECORDING),), capture="run.rtcap", backlog_limit=limit)
        analyser = AnalyserProcess(settings)
        try:
            for record in recording_records():  # fits: sent whole
                analyser.add(record.connection_id, encode_record(record), last=isinstance(record, ConnectionClosed))
            await asyncio.sleep(0.2)
            os.kill(analyser.process.pid, signal.SIGSTOP)
            filler, late = 1000, 1001
            analyser.add(filler, encode_record(ConnectionOpened(filler, 1.0, "a:1", "b:2", "reverse")))
            chunk = b"x" * 65536
            for _ in range(16 * 20):  # 20 MiB, more than the socket buffers and the backlog hold
                analyser.add(filler, encode_record(DataChunk(filler, 1.0, Direction.CLIENT_TO_SERVER, chunk)))
            for record in (
                ConnectionOpened(late, 2.0, "a:3", "b:2", "reverse"),
                DataChunk(late, 2.0, Direction.CLIENT_TO_SERVER, b"GET / HTTP/1.1\r\n\r\n"),
                ConnectionClosed(late, 3.0, "client closed"),
            ):
                analyser.add(late, encode_record(record), last=isinstance(record, ConnectionClosed))
            analyser.add(filler, encode_record(ConnectionClosed(filler, 3.0, "client closed")), last=True)
            os.kill(analyser.process.pid, signal.SIGCONT)
            finished = await asyncio.wait_for(analyser.finish(), DEADLINE)
            return finished, analyser.abandoned
        finally:
            os.kill(analyser.process.pid, signal.SIGCONT)
            analyser.close()

    finished, abandoned = asyncio.run(run())
    assert finished is not None and abandoned >= 2
    expected = report_from_captures([str(RECORDING)])
    assert finished.report.transports == expected.transports
    assert finished.report.connection_count == expected.connection_count
    (note,) = [note for note in finished.report.notes if "not in these figures" in note]
    assert note.startswith("2 connection(s) are not in these figures: the analyser fell more than 1 MiB behind")
    assert "rtinspect report run.rtcap" in note


def test_analysis_mode_mistakes_are_refused() -> None:
    done = run_rtinspect("proxy", "http://127.0.0.1:9", "--analysis", "elsewhere")
    assert done.returncode == 2
    assert "'elsewhere' is not one of 'process', 'inline'" in done.stderr


def test_proxy_help_names_the_analysis_modes() -> None:
    done = run_rtinspect("proxy", "--help")
    assert "--analysis [process|inline]" in done.stdout
