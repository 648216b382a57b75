"""Partial summaries merged give the report of all their captures.

``rtinspect report --partial`` writes a report's state; ``rtinspect merge``
combines any number of them. However the captures are split between partial
summaries, and however the partial summaries are grouped, the merged report
must be byte for byte the report ``rtinspect report`` gives of all the
captures in the same order: the committed recordings, a synthetic capture
past every distribution's capacity, and captures whose polls only the routes
of another capture decide. A damaged, foreign or newer file, and partial
summaries classified differently, are refused with one line.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.synthetic import write_synthetic
from inspector.capture import CaptureWriter, ConnectionClosed, ConnectionOpened, DataChunk
from inspector.cli import main as rtinspect
from inspector.connection import ConnectionAnalyzer, ConnectionRecord
from inspector.records import MessageTime
from inspector.render.json import report_to_dict
from inspector.stats import Distribution, KeyedSample
from inspector.summary import ReportBuilder
from inspector.totals import timeline_key
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
RECORDINGS = Path(__file__).parent / "recordings"
RECORDED = sorted(str(path) for path in RECORDINGS.glob("*.rtcap")) + [str(RECORDINGS / "http2" / "h2_long_poll.rtcap")]


def run(*args: str) -> str:
    result = CliRunner().invoke(rtinspect, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def report(captures: Sequence[str], *options: str, fmt: str = "json") -> str:
    return run("report", *captures, "-f", fmt, "-j", "1", *options)


def partials(tmp_path: Path, groups: Sequence[Sequence[str]], *options: str) -> list[str]:
    written = []
    for number, group in enumerate(groups):
        path = str(tmp_path / f"part-{number}-{len(group)}.partial")
        run("report", *group, "--partial", path, *options)
        written.append(path)
    return written


def merged(paths: Sequence[str], *, fmt: str = "json") -> str:
    """The merged report; JSON lists the connections, the text views list them when asked."""
    return run("merge", *paths, "-f", fmt, *(["--connections"] if fmt != "json" else []))


def assert_merges_as_one(tmp_path: Path, groups: Sequence[Sequence[str]], *options: str) -> None:
    """The merge of one partial summary per group is the report of all the groups' captures, in order."""
    captures = [capture for group in groups for capture in group]
    paths = partials(tmp_path, groups, *options)
    assert merged(paths) == report(captures, *options)
    for fmt in ("markdown", "table"):
        assert merged(paths, fmt=fmt) == report(captures, "--connections", *options, fmt=fmt)


def test_one_partial_summary_per_recording_merges_into_the_report_of_them_all(tmp_path: Path) -> None:
    assert_merges_as_one(tmp_path, [[capture] for capture in RECORDED])


@pytest.mark.parametrize("first_half", [True, False])
def test_two_groups_of_recordings_merge_in_either_order(tmp_path: Path, first_half: bool) -> None:
    half = len(RECORDED) // 2
    groups = [RECORDED[:half], RECORDED[half:]]
    assert_merges_as_one(tmp_path, groups if first_half else groups[::-1], "--transport", "/poll=long_poll")


def test_merging_merged_groups_is_merging_them_all(tmp_path: Path) -> None:
    """A partial summary of several captures numbers their connections as a merge of one each does."""
    whole = partials(tmp_path, [RECORDED])
    one_each = partials(tmp_path, [[capture] for capture in RECORDED])
    assert merged(whole) == merged(one_each) == report(RECORDED)
    assert json.loads(merged(one_each))["connections"][0]["id"].partition(":")[0].isdigit()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> str:
    """24 connections, 20,000 WebSocket messages and 2,000 polls: past every distribution's capacity."""
    path = tmp_path_factory.mktemp("synthetic") / "large.rtcap"
    write_synthetic(path, scale=0.02, seed=3)
    return str(path)


def test_a_capture_past_every_capacity_merges_with_another_in_either_order(tmp_path: Path, synthetic: str) -> None:
    mixed = str(RECORDINGS / "mixed.rtcap")
    large, small = partials(tmp_path, [[synthetic], [mixed]])
    assert merged([large, small]) == report([synthetic, mixed])
    assert merged([small, large]) == report([mixed, synthetic])
    assert merged([small, large], fmt="table") == report([mixed, synthetic], "--connections", fmt="table")
    assert json.loads(merged([large]))["transports"]["websocket"]["bytes_per_message"]["count"] == 20_000


def test_a_packet_capture_merges_with_its_notes(tmp_path: Path) -> None:
    """What the report says about an imported file comes along with its figures."""
    pcapng, mixed = str(RECORDINGS / "sse.pcapng"), str(RECORDINGS / "mixed.rtcap")
    port = str(json.loads((RECORDINGS / "sse.expected.json").read_text())["server_port"])
    packets = str(tmp_path / "packets.partial")
    run("report", pcapng, "--server-port", port, "--partial", packets)
    (recorded,) = partials(tmp_path, [[mixed]])
    whole = report([mixed, pcapng], "--server-port", port)
    assert merged([recorded, packets]) == whole
    assert any(pcapng in note for note in json.loads(whole)["notes"])


def _poll_capture(path: Path, start: float, *, port: int) -> str:
    """One connection, one request to /updates that the server held 1.5 s."""
    with CaptureWriter(path) as writer:
        writer.write(ConnectionOpened(1, start, f"127.0.0.1:{port}", "127.0.0.1:8000", "reverse"))
        writer.write(DataChunk(1, start, C2S, b"GET /updates?since=1 HTTP/1.1\r\nHost: x\r\n\r\n"))
        writer.write(DataChunk(1, start + 1.5, S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"))
        writer.write(ConnectionClosed(1, start + 2.0, "client closed"))
    return str(path)


def test_polls_are_decided_by_the_routes_of_every_merged_capture(tmp_path: Path) -> None:
    """Alone, each capture's one request is a one-off; together they are long polls."""
    first = _poll_capture(tmp_path / "a.rtcap", 10.0, port=50001)
    second = _poll_capture(tmp_path / "b.rtcap", 20.0, port=50002)
    alone = json.loads(merged(partials(tmp_path, [[first]])))
    assert set(alone["transports"]) == {"http"}
    assert_merges_as_one(tmp_path, [[first], [second]])
    together = json.loads(merged(partials(tmp_path, [[first], [second]])))
    assert set(together["transports"]) == {"long_poll"}
    assert [c["id"] for c in together["connections"]] == ["1:1", "2:1"]


def _refused(args: Sequence[str], expected: str) -> None:
    result = CliRunner().invoke(rtinspect, list(args))
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and expected in errors[0], result.output


@pytest.fixture
def written(tmp_path: Path) -> Path:
    path = tmp_path / "sse.partial"
    run("report", str(RECORDINGS / "sse.rtcap"), "--partial", str(path))
    return path


def _rewritten(path: Path, change: object) -> Path:
    state = json.loads(gzip.decompress(path.read_bytes()))
    change(state)  # type: ignore[operator]
    out = path.with_name("changed.partial")
    out.write_bytes(gzip.compress(json.dumps(state).encode()))
    return out


def test_a_damaged_foreign_or_newer_file_is_refused_with_one_line(written: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.partial"
    truncated.write_bytes(written.read_bytes()[:-20])
    _refused(["merge", str(truncated)], "damaged partial summary")
    foreign = tmp_path / "report.json"
    foreign.write_text(report([str(RECORDINGS / "sse.rtcap")]))
    _refused(["merge", str(foreign)], "not a partial summary")
    _refused(["merge", str(RECORDINGS / "sse.rtcap")], "not a partial summary")

    def newer(state: dict[str, object]) -> None:
        state["version"] = 99

    _refused(["merge", str(_rewritten(written, newer))], "newer than this rtinspect reads")

    def hostile(state: dict[str, dict[str, object]]) -> None:
        state["builder"]["connection_count"] = "5"

    _refused(["merge", str(_rewritten(written, hostile))], "damaged partial summary")

    def misnumbered(state: dict[str, dict[str, list[list[object]]]]) -> None:
        state["builder"]["totals"][0][2]["exchanges"]["sizes"]["count"] += 1

    _refused(["merge", str(_rewritten(written, misnumbered))], "damaged partial summary")


def test_partial_summaries_classified_differently_are_refused_with_one_line(written: Path, tmp_path: Path) -> None:
    other = tmp_path / "ruled.partial"
    run("report", str(RECORDINGS / "sse.rtcap"), "--partial", str(other), "--transport", "/poll=long_poll")
    _refused(["merge", str(written), str(other)], "--transport")

    def listing_more(state: dict[str, dict[str, object]]) -> None:
        state["builder"]["connection_limit"] = 20_000

    _refused(["merge", str(written), str(_rewritten(written, listing_more))], "lists 20,000 connections, not 10,000")
    _refused(
        ["report", str(RECORDINGS / "sse.rtcap"), "--partial", str(other), "-f", "json"], "give -f to rtinspect merge"
    )


POLL = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
RESPONSES = {
    "data": b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n[1,2,3]",
    "empty": b"HTTP/1.1 204 No Content\r\n\r\n",
    "sse": b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 20\r\n\r\ndata: a\n\ndata: bc\n\n",
}
connections = st.lists(
    st.tuples(
        st.floats(0, 100, allow_nan=False),
        st.lists(st.tuples(st.sampled_from(["/a", "/b", "/c?x=1"]), st.sampled_from(list(RESPONSES))), max_size=4),
        st.sampled_from([0.001, 0.25, 1.5]),
    ),
    min_size=1,
    max_size=12,
)


def _record(number: int, start: float, exchanges: list[tuple[str, str]], wait: float) -> ConnectionRecord:
    analyzer = ConnectionAnalyzer(
        ConnectionOpened(number, start, f"127.0.0.1:{40000 + number}", "127.0.0.1:8000", "reverse")
    )
    at = start
    for path, response in exchanges:
        analyzer.feed(C2S, POLL % path.encode(), at)
        at += wait
        analyzer.feed(S2C, RESPONSES[response], at)
        at += wait / 3
    return analyzer.close(at + 1, "client closed")


def _through_json(builder: ReportBuilder) -> ReportBuilder:
    return ReportBuilder.from_json(json.loads(json.dumps(builder.to_json())))


@settings(max_examples=60, deadline=None)
@given(connections, st.lists(st.integers(0, 12), max_size=3), st.booleans())
def test_builders_merge_into_the_builder_of_every_connection(
    specs: list[tuple[float, list[tuple[str, str]], float]], cuts: list[int], right_first: bool
) -> None:
    """However the connections are cut into consecutive parts, and whichever way the
    parts are paired, the merged builders report what one builder of them all does."""
    records = [_record(number, *spec) for number, spec in enumerate(specs, start=1)]
    one = ReportBuilder(connection_limit=5)
    for record in records:
        one.add(record)
    expected = report_to_dict(one.report())
    bounds = [0, *sorted(min(cut, len(records)) for cut in cuts), len(records)]
    parts = []
    for low, high in zip(bounds, bounds[1:], strict=False):
        part = ReportBuilder(connection_limit=5)
        for record in records[low:high]:
            part.add(record)
        parts.append(_through_json(part))
    if right_first:  # a, (b, (c, d))
        whole = parts[-1]
        for part in reversed(parts[:-1]):
            part.merge(whole)
            whole = part
    else:  # ((a, b), c), d
        whole = parts[0]
        for part in parts[1:]:
            whole.merge(part)
    assert report_to_dict(_through_json(whole).report()) == expected


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.integers(0, 3)), max_size=300),
    st.randoms(use_true_random=False),
)
def test_the_time_line_sample_and_the_totals_do_not_depend_on_order_or_grouping(
    points: list[tuple[float, int]], rng: random.Random
) -> None:
    """What a KeyedSample keeps, and a Distribution's total, follow from the items alone."""

    def sampled(items: list[tuple[float, int]], groups: int) -> tuple[list[MessageTime], int, float]:
        samples = [KeyedSample(16, timeline_key) for _ in range(groups)]
        sizes = [Distribution(8) for _ in range(groups)]
        for number, (time, wire) in enumerate(items):
            samples[number % groups].offer(MessageTime(time, S2C, wire))
            sizes[number % groups].add(time / 7)
        for sample, size in zip(samples[1:], sizes[1:], strict=True):
            samples[0].merge(sample)
            sizes[0].merge(size)
        return samples[0].items, samples[0].level, sizes[0].total

    shuffled = list(points)
    rng.shuffle(shuffled)
    kept, level, total = sampled(points, 1)
    assert sampled(shuffled, 3) == (kept, level, total)
    assert len(kept) <= 16 and total == math.fsum(time / 7 for time, _ in points)
