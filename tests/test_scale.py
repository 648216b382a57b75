"""What keeps rtinspect flat on long runs and large captures: state that does not
grow with a connection's age, reports built one connection at a time, and the
same report from any number of processes."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench.synthetic import write_synthetic
from inspector.capture import ConnectionOpened
from inspector.classify import TransportRule
from inspector.connection import EXCHANGE_DETAIL_LIMIT, ConnectionAnalyzer
from inspector.render.json import report_to_dict
from inspector.render.stream import ConnectionStream
from inspector.replay import report_from_captures
from inspector.stats import Distribution
from inspector.summary import ReportBuilder
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
RECORDINGS = Path(__file__).parent / "recordings"
SCENARIOS = sorted(path.name.removesuffix(".expected.json") for path in RECORDINGS.glob("*.expected.json"))
HTTP2_SCENARIOS = sorted(
    f"http2/{p.name.removesuffix('.expected.json')}" for p in RECORDINGS.glob("http2/*.expected.json")
)

POLL = b"GET /poll?after=%d HTTP/1.1\r\nHost: x\r\n\r\n"
DATA = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
EMPTY = b"HTTP/1.1 204 No Content\r\n\r\n"


def rules(name: str) -> tuple[TransportRule, ...]:
    expected = json.loads((RECORDINGS / f"{name}.expected.json").read_text())
    return tuple(TransportRule.parse(rule) for rule in expected["rules"])


def keep_alive_polls(number: int, polls: int, *, start: float = 0.0, wait: float = 0.001) -> ConnectionAnalyzer:
    analyzer = ConnectionAnalyzer(
        ConnectionOpened(number, start, f"127.0.0.1:{40000 + number}", "127.0.0.1:8000", "reverse")
    )
    at = start
    for i in range(polls):
        analyzer.feed(C2S, POLL % i, at)
        at += wait
        analyzer.feed(S2C, DATA if i % 3 else EMPTY, at)
        at += wait
    return analyzer


def test_a_keep_alive_connection_keeps_bounded_state_however_many_requests_it_carries() -> None:
    analyzer = keep_alive_polls(1, 5_000)
    assert analyzer.pending_exchanges <= 1
    snapshot = analyzer.snapshot()
    assert len(snapshot.exchanges) == EXCHANGE_DETAIL_LIMIT
    assert list(snapshot.totals) == [("GET", "/poll")]
    record = analyzer.close(100.0, "client closed")
    (totals,) = record.totals.values()
    assert record.exchange_count == totals.exchanges == 5_000
    assert len(record.exchanges) == EXCHANGE_DETAIL_LIMIT
    assert totals.empty_responses == 1_667
    assert totals.messages[S2C] == 3_333
    assert len(totals.sizes.values()) <= totals.sizes.capacity
    assert len(totals.timeline.items) < 512
    assert record.routes.requests == {("GET", "/poll"): 5_000}
    assert record.wire_bytes(C2S) == sum(len(POLL % i) for i in range(5_000))
    assert record.wire_bytes(S2C) == 1_667 * len(EMPTY) + 3_333 * len(DATA)


def test_folded_figures_give_the_report_whole_exchanges_would() -> None:
    """Folding is invisible: a connection with more exchanges than it keeps whole
    reports what the sum of its exchanges says."""
    record = keep_alive_polls(1, 3 * EXCHANGE_DETAIL_LIMIT).close(10.0, "client closed")
    builder = ReportBuilder()
    builder.add(record)
    poll = builder.report().transport("short_poll")
    assert poll.messages.server_to_client == 2 * EXCHANGE_DETAIL_LIMIT
    assert poll.empty_polls == EXCHANGE_DETAIL_LIMIT
    assert poll.wire_bytes.total == record.wire_bytes(C2S) + record.wire_bytes(S2C)
    assert poll.bytes_per_message is not None and poll.bytes_per_message.count == 2 * EXCHANGE_DETAIL_LIMIT


def test_a_poll_is_decided_by_routes_that_later_connections_bring() -> None:
    """A connection with one request is a one-off until another connection asks the same route."""
    builder = ReportBuilder()
    builder.add(keep_alive_polls(1, 1).close(1.0, "client closed"))
    assert set(builder.copy().report().transports) == {"http"}
    builder.add(keep_alive_polls(2, 1, start=2.0, wait=1.5).close(6.0, "client closed"))
    report = builder.report()
    assert set(report.transports) == {"long_poll"}
    assert report.transport("long_poll").connections == 2
    assert [c.transport for c in report.connections] == ["long_poll", "long_poll"]


def test_the_connection_list_is_bounded_and_the_stream_lists_every_connection() -> None:
    out = io.StringIO()
    stream = ConnectionStream("json", out)
    builder = ReportBuilder(connection_limit=3, on_connection=stream.write)
    for number in range(1, 9):
        builder.add(keep_alive_polls(number, 2, start=number).close(number + 0.5, "client closed"))
    report = builder.report()
    stream.finish(report)
    assert report.connection_count == 8
    assert [c.id for c in report.connections] == ["1", "2", "3"]
    assert report.transport("short_poll").connections == 8
    assert any("5 of 8 connections" in note for note in report.notes)
    written = json.loads(out.getvalue())
    assert sorted(c["id"] for c in written["connections"]) == [str(n) for n in range(1, 9)]
    assert {c["transport"] for c in written["connections"]} == {"short_poll"}
    assert written["transports"] == report_to_dict(report)["transports"]


def _same(a: Any, b: Any, path: str = "") -> None:
    """Equal, floats to within rounding (sums can be taken in another order)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), path
        for key in a:
            _same(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12), (path, a, b)
    else:
        assert a == b, (path, a, b)


def _as_kept(report: dict[str, Any]) -> dict[str, Any]:
    """A report of HTTP/1.1 traffic without the figures added after ``NAME.report.json``
    was kept: the protocol of each connection, the HTTP/2 and HTTP/3 figures, the
    figures below the byte streams (these recordings have none), the
    application messages, the network conditions, and the application
    protocols and their sessions, which say nothing new here
    (every transport's one protocol has the transport's figures; every message
    is one application message; no conditions were set)."""
    assert report.pop("http2") is None
    assert report.pop("http3") is None
    assert report.pop("transport_layer") is None
    assert report.pop("projection") is None
    assert report.pop("network") is None
    for figures in report["transports"].values():
        assert figures.pop("http2") is None
        assert figures.pop("http3") is None
        assert figures.pop("transport_layer") is None
        assert figures.pop("by_protocol") == {
            "http/1.1": {**figures, "http2": None, "http3": None, "transport_layer": None}
        }
        # In these recordings each message carried one application message.
        assert figures.pop("app_messages") == figures["messages"]
        assert figures.pop("wire_bytes_per_app_message") == figures["wire_bytes_per_message"]
        assert figures.pop("requests") >= figures["connections"]
        # No application protocol (Socket.IO and the like) rides on these recordings.
        assert figures.pop("control_messages") == {"client_to_server": 0, "server_to_client": 0}
        assert figures.pop("by_app_protocol") == {}
        assert figures["categories"].pop("app_control") == {"client_to_server": 0, "server_to_client": 0}
    assert report.pop("sessions") == {}
    for connection in report["connections"]:
        assert connection.pop("protocol") == "http/1.1"
        assert connection.pop("app_protocol") is None
        assert connection.pop("session") is None
    return report


@pytest.mark.parametrize("name", SCENARIOS)
def test_the_report_of_each_recording_is_the_one_kept_beside_it(name: str) -> None:
    """``NAME.report.json`` is the report of each recording as rtinspect gave it
    when every connection was held whole; reading one connection at a time must
    give the same report."""
    kept = json.loads((RECORDINGS / f"{name}.report.json").read_text())
    report = _as_kept(report_to_dict(report_from_captures([RECORDINGS / f"{name}.rtcap"], rules=rules(name))))
    report["sources"] = kept["sources"]
    assert report.pop("connection_count") == len(kept["connections"])
    _same(kept, report)


@pytest.mark.parametrize("name", SCENARIOS + HTTP2_SCENARIOS)
def test_any_number_of_processes_gives_the_same_report(name: str) -> None:
    path = RECORDINGS / f"{name}.rtcap"
    one = report_to_dict(report_from_captures([path], rules=rules(name), jobs=1))
    assert report_to_dict(report_from_captures([path], rules=rules(name), jobs=3)) == one


def test_processes_share_several_captures_as_one_process_reads_them() -> None:
    paths = [RECORDINGS / f"{name}.rtcap" for name in SCENARIOS]
    one = report_to_dict(report_from_captures(paths, jobs=1))
    assert report_to_dict(report_from_captures(paths, jobs=2)) == one
    assert one["connection_count"] == sum(
        len(json.loads((RECORDINGS / f"{name}.report.json").read_text())["connections"]) for name in SCENARIOS
    )


def test_processes_merge_their_parts_in_capture_order(tmp_path: Path) -> None:
    """Percentiles no longer depend on the order values arrive in, but the time line's even
    sample and the list of connections do. On a capture past a distribution's capacity
    (20,000 WebSocket messages on 4 connections, 2,000 polls on 20), the parts of two
    processes must be merged in the order one process reads the capture, not one part after
    the other."""
    path = tmp_path / "large.rtcap"
    truth = write_synthetic(path, scale=0.02, seed=3)
    assert truth.websocket_connections == 4 and truth.connections == 24
    one = report_to_dict(report_from_captures([path], jobs=1))
    sizes = one["transports"]["websocket"]["bytes_per_message"]
    assert sizes["count"] == 20_000 > Distribution().capacity
    assert report_to_dict(report_from_captures([path], jobs=2)) == one


def test_routes_are_kept_up_to_a_limit_and_the_rest_are_one_off_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection that asks for ever new paths (/items/1, /items/2, ...) keeps
    counts for a bounded number of them; the others are one-off requests."""
    import inspector.connection

    monkeypatch.setattr(inspector.connection, "CONNECTION_ROUTE_LIMIT", 10)
    analyzer = ConnectionAnalyzer(ConnectionOpened(1, 0.0, "127.0.0.1:40001", "127.0.0.1:8000", "reverse"))
    for i in range(50):
        analyzer.feed(C2S, b"GET /items/%d HTTP/1.1\r\nHost: x\r\n\r\n" % i, i)
        analyzer.feed(S2C, DATA, i + 0.001)
    analyzer.feed(C2S, b"GET /items/3 HTTP/1.1\r\nHost: x\r\n\r\n", 60.0)
    analyzer.feed(S2C, DATA, 60.001)
    record = analyzer.close(61.0, "client closed")
    assert len(record.routes.requests) == 10
    assert record.routes.untracked == 40
    assert len(record.totals) == 11  # ten routes and "http"
    builder = ReportBuilder()
    builder.add(record)
    report = builder.report()
    assert report.transport("short_poll").messages.server_to_client == 2  # /items/3, asked twice
    assert report.transport("http").messages.server_to_client == 49
    assert any("40 requests went to paths beyond" in note for note in report.notes)


def test_a_report_keeps_a_bounded_route_table_and_classifies_the_rest_by_their_connection() -> None:
    builder = ReportBuilder(route_limit=1)
    builder.add(keep_alive_polls(1, 1).close(1.0, "client closed"))  # fills the table with GET /poll
    other = ConnectionAnalyzer(ConnectionOpened(2, 2.0, "127.0.0.1:40002", "127.0.0.1:8000", "reverse"))
    for i in range(3):
        other.feed(C2S, b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n", 2.0 + i)
        other.feed(S2C, DATA, 2.001 + i)
    builder.add(other.close(6.0, "client closed"))
    report = builder.report()
    assert report.transport("short_poll").messages.server_to_client == 3
    assert report.transport("http").connections == 1
    assert any("3 requests went to paths beyond" in note for note in report.notes)


def test_report_writes_every_connection_as_it_closes_in_json_and_csv(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from inspector.cli import main as rtinspect

    capture = str(RECORDINGS / "mixed.rtcap")
    arguments = [
        f"--transport={rule}" for rule in json.loads((RECORDINGS / "mixed.expected.json").read_text())["rules"]
    ]
    kept = json.loads((RECORDINGS / "mixed.report.json").read_text())
    out = tmp_path / "mixed.json"
    result = CliRunner().invoke(
        rtinspect, ["report", capture, "--connections", "-f", "json", "-j", "2", "-o", str(out), *arguments]
    )
    assert result.exit_code == 0, result.output
    written = _as_kept(json.loads(out.read_text()))
    assert sorted(written["connections"], key=lambda c: c["id"]) == sorted(kept["connections"], key=lambda c: c["id"])
    _same(kept["transports"], written["transports"])
    result = CliRunner().invoke(rtinspect, ["report", capture, "--connections", "-f", "csv", *arguments])
    assert result.exit_code == 0, result.output
    rows = result.output.splitlines()
    assert rows[0].startswith("id,transport,") and len(rows) == 1 + len(kept["connections"])


def test_the_default_jobs_read_a_capture_one_connection_dominates_in_one_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Parts are planned by connection size: one connection that holds most of the bytes
    cannot be shared out, so more processes would only add their start and the merge."""
    from inspector import replay

    monkeypatch.setattr(replay, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(replay.os, "sched_getaffinity", lambda _: {0, 1}, raising=False)
    alone = [str(RECORDINGS / "websocket.rtcap")]
    assert replay.plan_parts(alone, 2)[1] == 1.0
    assert replay.default_jobs(alone) == 1
    several = [str(path) for path in sorted(RECORDINGS.glob("*.rtcap"))]
    owners, gain = replay.plan_parts(several, 2)
    assert gain >= replay.PARALLEL_MIN_GAIN and replay.default_jobs(several) == 2
    # Every connection has exactly one part, and both parts read some.
    assert {part for file in owners for part in file.values()} == {0, 1}
