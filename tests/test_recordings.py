"""The committed recordings, checked against two witnesses that do not use rtinspect.

``tests/recordings/record.py`` recorded each scenario three ways at once: the
``.rtcap`` written by ``rtinspect proxy``, what the clients observed
(``.expected.json``), and a ``.pcapng`` of the proxy-to-server leg taken by
dumpcap. The proxy relays bytes unchanged, so that leg carries exactly the
bytes of the client leg the capture holds.

The HTTP/2 recordings in ``recordings/http2/`` (over TLS, with the clients'
key log beside them) are checked against their clients here too, and against
tshark's ``http2`` dissector in ``test_tshark_http2.py``.

- The report built from the ``.rtcap`` must agree with the clients: connections,
  messages and payload bytes per transport and direction, polls and empty polls,
  and the payload of each message as the analyser counted it while the capture arrived;
  it must have no anomalies, and every byte of the capture must be in exactly
  one category of one transport.
- Where tshark is installed, Wireshark's dissectors must agree with the report:
  TCP payload bytes per connection and direction, WebSocket frames (data and
  control, header and mask-key bytes, payload bytes, compressed messages),
  HTTP head bytes, and HTTP body and chunk-framing bytes.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from tshark import TcpStream, dissect_pcapng, frame_figures, needs_tshark

from inspector.capture import ConnectionClosed, ConnectionOpened, DataChunk, read_capture
from inspector.classify import Classifier, TransportRule
from inspector.cli import main as rtinspect
from inspector.connection import ConnectionAnalyzer, ConnectionRecord
from inspector.render.json import report_to_dict
from inspector.replay import Analysis, analyze_captures
from inspector.report import PerDirection, Report
from inspector.summary import build_report
from inspector.wire import Category, Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
RECORDINGS = Path(__file__).parent / "recordings"
SCENARIOS = sorted(path.name.removesuffix(".expected.json") for path in RECORDINGS.glob("*.expected.json"))
#: The HTTP/2 recordings, named by their path under ``recordings/``.
HTTP2_SCENARIOS = sorted(
    f"http2/{p.name.removesuffix('.expected.json')}" for p in RECORDINGS.glob("http2/*.expected.json")
)
#: Every recording whose report is checked against its clients.
CLIENT_CHECKED = SCENARIOS + HTTP2_SCENARIOS
POLLING = ("long_poll", "short_poll")


@dataclass(frozen=True)
class Recording:
    name: str
    expected: dict[str, Any]
    analysis: Analysis
    report: Report

    @property
    def rtcap(self) -> Path:
        return RECORDINGS / f"{self.name}.rtcap"

    @property
    def pcapng(self) -> Path:
        return RECORDINGS / f"{self.name}.pcapng"

    @property
    def rules(self) -> list[str]:
        return list(self.expected["rules"])

    def record(self, connection_id: str) -> ConnectionRecord:
        return next(record for record in self.analysis.records if record.id == connection_id)

    def transport_of(self, connection_id: str) -> str:
        return next(c.transport for c in self.report.connections if c.id == connection_id)


@functools.cache
def expected(name: str) -> dict[str, Any]:
    """What the clients of a scenario observed, and how to report it (rules, server port)."""
    return json.loads((RECORDINGS / f"{name}.expected.json").read_text())


def with_transports(*transports: str, scenarios: list[str] = SCENARIOS) -> list[str]:
    """Scenarios in which the clients used any of ``transports``."""
    return [name for name in scenarios if set(expected(name)["transports"]) & set(transports)]


@functools.cache
def load(name: str) -> Recording:
    seen = expected(name)
    rules = tuple(TransportRule.parse(rule) for rule in seen["rules"])
    analysis = analyze_captures([RECORDINGS / f"{name}.rtcap"], classifier=Classifier(rules))
    return Recording(name, seen, analysis, build_report(analysis.records))


def pair(value: dict[str, int]) -> PerDirection:
    return PerDirection(value["client_to_server"], value["server_to_client"])


def test_every_scenario_is_recorded() -> None:
    assert SCENARIOS == sorted(["websocket", "websocket_deflate", "sse", "ndjson", "long_poll", "short_poll", "mixed"])
    assert HTTP2_SCENARIOS == sorted(f"http2/h2_{n}" for n in ["sse", "ndjson", "long_poll", "short_poll", "websocket"])
    for name in CLIENT_CHECKED:
        assert (RECORDINGS / f"{name}.rtcap").is_file() and (RECORDINGS / f"{name}.pcapng").is_file()


@pytest.mark.parametrize("name", HTTP2_SCENARIOS)
def test_http2_recordings_are_reported_as_http2(name: str) -> None:
    report = load(name).report
    assert {c.protocol for c in report.connections} == {"h2"}
    for transport, summary in report.transports.items():
        assert list(summary.by_protocol) == ["h2"], transport
        assert summary.http2 is not None and summary.http2.frame_header_bytes.total > 0, transport


# -- the report against what the clients observed


@pytest.mark.parametrize("name", CLIENT_CHECKED)
def test_transports_match_what_the_clients_saw(name: str) -> None:
    recording = load(name)
    report = recording.report
    assert set(report.transports) == set(recording.expected["transports"])
    for transport, seen in recording.expected["transports"].items():
        summary = report.transport(transport)
        assert summary.connections == seen["connections"], transport
        assert summary.messages == pair(seen["messages"]), transport
        assert summary.payload_bytes == pair(seen["payload_bytes"]), transport
        for direction, sizes in seen["message_sizes"].items():  # the recording is consistent
            assert (len(sizes), sum(sizes)) == (seen["messages"][direction], seen["payload_bytes"][direction])


def messages_as_they_arrived(recording: Recording) -> dict[tuple[str, Direction], list[tuple[int, int]]]:
    """Per transport and direction, the (messages, payload bytes) the analyser added as each
    chunk of the capture arrived: the capture fed to it chunk by chunk, as the proxy saw
    it, with the figures of the connection so far taken after every chunk."""
    classifier = Classifier(tuple(TransportRule.parse(rule) for rule in recording.rules))
    analyzers: dict[int, ConnectionAnalyzer] = {}
    counted: dict[int, dict[Direction, tuple[int, int]]] = {}
    arrivals: dict[tuple[str, Direction], list[tuple[int, int]]] = defaultdict(list)

    def note(connection_id: int, record: ConnectionRecord) -> None:
        for direction in Direction:
            now = (
                sum(totals.messages[direction] for totals in record.totals.values()),
                sum(totals.payload[direction] for totals in record.totals.values()),
            )
            before = counted[connection_id].get(direction, (0, 0))
            if now != before:
                added = (now[0] - before[0], now[1] - before[1])
                arrivals[(recording.transport_of(record.id), direction)].append(added)
            counted[connection_id][direction] = now

    with read_capture(recording.rtcap) as capture:
        for record in capture:
            if isinstance(record, ConnectionOpened):
                analyzers[record.connection_id] = ConnectionAnalyzer(record, classifier=classifier)
                counted[record.connection_id] = {}
            elif isinstance(record, DataChunk):
                analyzer = analyzers[record.connection_id]
                analyzer.feed(record.direction, record.data, record.timestamp)
                note(record.connection_id, analyzer.snapshot())
            elif isinstance(record, ConnectionClosed):
                note(record.connection_id, analyzers.pop(record.connection_id).close(record.timestamp))
    for connection_id, analyzer in analyzers.items():  # still open when the capture ended
        note(connection_id, analyzer.close(0.0))
    return arrivals


@pytest.mark.parametrize("name", CLIENT_CHECKED)
def test_each_message_is_one_the_clients_saw(name: str) -> None:
    """Message by message, not just in total: each message the analyser counted as it
    arrived has the payload of a message a client sent or received. Where one chunk of
    the capture completed several messages, they add up to as many of the clients' messages."""
    recording = load(name)
    arrivals = messages_as_they_arrived(recording)
    for transport, seen in recording.expected["transports"].items():
        for direction in Direction:
            sizes = Counter(seen["message_sizes"][direction.value])
            added = arrivals.get((transport, direction), [])
            one_each = Counter(size for count, size in added if count == 1)
            assert one_each <= sizes, (transport, direction, sorted((one_each - sizes).elements()))
            together = [(count, size) for count, size in added if count > 1]
            rest = sizes - one_each
            assert (rest.total(), sum(rest.elements())) == (sum(c for c, _ in together), sum(s for _, s in together))
            assert len(together) <= len(added) // 4, (transport, direction, together)  # most chunks carried one message


@pytest.mark.parametrize("name", with_transports(*POLLING, scenarios=CLIENT_CHECKED))
def test_polls_match_what_the_clients_saw(name: str) -> None:
    """Every poll is either a message (a response with data) or an empty poll."""
    recording = load(name)
    for transport in POLLING:
        seen = recording.expected["transports"].get(transport)
        if seen is None:
            continue
        summary = recording.report.transport(transport)
        assert summary.empty_polls == seen["empty_polls"], transport
        assert summary.messages.server_to_client + summary.empty_polls == seen["polls"], transport
        assert summary.empty_polls > 0, f"{transport}: the recording should hold empty polls"


@pytest.mark.parametrize("name", CLIENT_CHECKED)
def test_no_anomalies_and_every_byte_parsed(name: str) -> None:
    report = load(name).report
    assert [(c.id, c.anomalies) for c in report.connections if c.anomalies] == []
    for transport, summary in report.transports.items():
        assert summary.anomalies == 0, transport
        assert summary.categories[Category.UNPARSED.value].total == 0, transport


@pytest.mark.parametrize("name", CLIENT_CHECKED)
def test_every_captured_byte_is_counted_once(name: str) -> None:
    """Per direction: bytes in the capture == wire bytes of all transports == the sum of their categories."""
    recording = load(name)
    captured = {C2S: 0, S2C: 0}
    with read_capture(recording.rtcap) as capture:
        for record in capture:
            if isinstance(record, DataChunk):
                captured[record.direction] += len(record.data)
    report = recording.report
    for direction in Direction:
        wire = sum(summary.wire_bytes[direction] for summary in report.transports.values())
        categories = sum(
            split[direction] for summary in report.transports.values() for split in summary.categories.values()
        )
        connections = sum(c.wire_bytes[direction] for c in report.connections)
        assert captured[direction] == wire == categories == connections, direction
    for transport, summary in report.transports.items():
        for direction in Direction:
            parts = sum(split[direction] for split in summary.categories.values())
            assert summary.wire_bytes[direction] == parts, (transport, direction)


def test_the_command_line_reports_the_mixed_recording() -> None:
    recording = load("mixed")
    rules = [arg for rule in recording.rules for arg in ("--transport", rule)]
    runner = CliRunner()
    table = runner.invoke(rtinspect, ["report", str(recording.rtcap), *rules], env={"COLUMNS": "160"})
    assert table.exit_code == 0, table.output
    for transport in ("websocket", "sse", "http_stream", "long_poll", "short_poll"):
        assert re.search(rf"^\s*{transport}\s", table.output, re.MULTILINE), transport
    as_json = runner.invoke(rtinspect, ["report", str(recording.rtcap), *rules, "-f", "json"])
    assert as_json.exit_code == 0, as_json.output
    parsed = json.loads(as_json.output)
    assert parsed["format"] == "rtinspect-report"
    assert parsed["transports"] == report_to_dict(recording.report)["transports"]


# -- Wireshark's dissectors against the report


@functools.cache
def dissect(name: str) -> dict[int, TcpStream]:
    """Every TCP stream of a recording's pcapng, by tshark's stream index."""
    recording = load(name)
    return dissect_pcapng(recording.pcapng, recording.expected["server_port"])


def captured_bytes(recording: Recording) -> dict[str, dict[Direction, bytes]]:
    """Each connection's bytes per direction, as the .rtcap holds them."""
    data: dict[str, dict[Direction, bytearray]] = defaultdict(lambda: {C2S: bytearray(), S2C: bytearray()})
    with read_capture(recording.rtcap) as capture:
        for record in capture:
            if isinstance(record, DataChunk):
                data[str(record.connection_id)][record.direction] += record.data
    return {cid: {d: bytes(b) for d, b in streams.items()} for cid, streams in data.items()}


@functools.cache
def matched(name: str) -> dict[str, TcpStream]:
    """Each connection of the report with the TCP stream of the pcapng that carried it.

    The proxy's upstream connections use other ports than its clients, so
    streams are matched by the bytes they carried, which must be identical.
    Streams with no payload at all are left out: mitmproxy connects upstream
    as soon as a client connects, so the proxy's readiness probes (connect,
    then close) leave empty streams that carry nothing to count.
    """
    recording = load(name)
    streams = [s for s in dissect(name).values() if s.tcp_len[C2S] or s.tcp_len[S2C]]
    by_content = {(bytes(s.data[C2S]), bytes(s.data[S2C])): s for s in streams}
    pairs: dict[str, TcpStream] = {}
    for cid, data in captured_bytes(recording).items():
        stream = by_content.get((data[C2S], data[S2C]))
        assert stream is not None, (
            f"{name}: no TCP stream in the pcapng carried the bytes of connection {cid} "
            f"({len(data[C2S])} bytes up, {len(data[S2C])} down); streams: "
            + ", ".join(f"#{s.index} {s.tcp_len[C2S]}/{s.tcp_len[S2C]}" for s in streams)
        )
        pairs[cid] = stream
    unmatched = [s.index for s in streams if s not in pairs.values()]
    assert not unmatched, f"{name}: TCP streams {unmatched} carried bytes the capture does not have"
    return pairs


def by_transport(recording: Recording, pairs: dict[str, TcpStream]) -> dict[str, list[tuple[str, TcpStream]]]:
    grouped: dict[str, list[tuple[str, TcpStream]]] = defaultdict(list)
    for cid, stream in pairs.items():
        grouped[recording.transport_of(cid)].append((cid, stream))
    return grouped


@needs_tshark
@pytest.mark.parametrize("name", SCENARIOS)
def test_tcp_payload_bytes_agree_with_tshark(name: str) -> None:
    """Per connection and direction: sum of ``tcp.len`` == the report's wire bytes."""
    recording = load(name)
    pairs = matched(name)
    assert len(pairs) == len(recording.report.connections)
    for connection in recording.report.connections:
        stream = pairs[connection.id]
        assert stream.retransmissions == 0, f"TCP stream #{stream.index} has retransmissions, counted twice in tcp.len"
        assert PerDirection(stream.tcp_len[C2S], stream.tcp_len[S2C]) == connection.wire_bytes, (
            f"connection {connection.id} ({connection.transport}) vs TCP stream #{stream.index}"
        )
    for transport, members in by_transport(recording, pairs).items():
        tcp = PerDirection(sum(s.tcp_len[C2S] for _, s in members), sum(s.tcp_len[S2C] for _, s in members))
        assert tcp == recording.report.transport(transport).wire_bytes, transport


def websocket_frames(name: str) -> list[tuple[str, TcpStream]]:
    members = by_transport(load(name), matched(name))["websocket"]
    assert any(stream.frames for _, stream in members), "tshark dissected no WebSocket frames"
    return members


@needs_tshark
@pytest.mark.parametrize("name", with_transports("websocket"))
def test_websocket_frames_agree_with_tshark(name: str) -> None:
    """Per connection: frame counts, compressed messages, and every byte after the
    handshake is a frame; per transport: header (with mask key), payload and control bytes."""
    recording = load(name)
    members = websocket_frames(name)
    frames = [frame for _, stream in members for frame in stream.frames]
    # Each header as Wireshark sized it is what its length field and mask bit call for.
    for frame in frames:
        assert frame.header == 2 + {126: 2, 127: 8}.get(frame.length_code, 0) + 4 * frame.masked, frame
    assert all(f.masked == (f.direction is C2S) for f in frames)

    for cid, stream in members:
        record = recording.record(cid)
        (exchange,) = [e for e in record.exchanges if e.websocket is not None]
        counts = exchange.websocket
        assert counts is not None
        from_tshark = frame_figures(stream.frames)
        for figure, value in (
            ("data_frames", counts.data_frames),
            ("control_frames", counts.control_frames),
            ("compressed_messages", counts.compressed_messages),
        ):
            assert PerDirection(value.get(C2S, 0), value.get(S2C, 0)) == from_tshark[figure], (cid, figure)
        for direction in Direction:
            account = record.account(direction)
            after_heads = account.total - account[Category.HEAD]
            assert after_heads == sum(f.header + f.payload for f in stream.frames if f.direction is direction), (
                cid,
                direction,
            )

    figures = recording.report.transport("websocket").websocket
    assert figures is not None
    from_tshark = frame_figures(frames)
    for figure in ("frame_header_bytes", "wire_payload_bytes", "control_bytes"):
        assert getattr(figures, figure) == from_tshark[figure], figure
    if any(recording.expected["transports"]["websocket"]["extensions"]):
        assert from_tshark["compressed_messages"].total > 0


@needs_tshark
@pytest.mark.parametrize("name", with_transports("websocket"))
def test_report_websocket_frame_counts_agree_with_tshark(name: str) -> None:
    figures = load(name).report.transport("websocket").websocket
    assert figures is not None
    from_tshark = frame_figures([frame for _, stream in websocket_frames(name) for frame in stream.frames])
    assert figures.data_frames == from_tshark["data_frames"]
    assert figures.control_frames == from_tshark["control_frames"]
    assert figures.compressed_messages == from_tshark["compressed_messages"]


@needs_tshark
@pytest.mark.parametrize("name", SCENARIOS)
def test_http_heads_agree_with_tshark(name: str) -> None:
    """Request and response head bytes per transport and direction, and how many heads."""
    recording = load(name)
    for transport, members in by_transport(recording, matched(name)).items():
        heads = PerDirection(*(sum(sum(s.heads[d]) for _, s in members) for d in (C2S, S2C)))
        detail = {cid: (s.index, s.heads) for cid, s in members}
        assert heads == recording.report.transport(transport).categories[Category.HEAD.value], (transport, detail)
        for cid, stream in members:
            exchanges = recording.record(cid).exchanges
            assert len(stream.heads[C2S]) == len(exchanges), cid
            assert len(stream.heads[S2C]) == sum(len(e.interim) + (e.response is not None) for e in exchanges), cid
        if transport in POLLING:
            assert sum(len(s.heads[C2S]) for _, s in members) == recording.expected["transports"][transport]["polls"]


@needs_tshark
@pytest.mark.parametrize("name", with_transports("sse", "http_stream", *POLLING))
def test_http_bodies_agree_with_tshark(name: str) -> None:
    """Response bodies: their bytes are the payload (polls) or payload and message syntax
    (SSE, NDJSON), and everything else in them is chunk framing.

    Wireshark shows a chunked body only once it is complete, so connections with
    a response that never completed (a stream the client dropped) are not compared.
    """
    recording = load(name)
    compared = 0
    for cid, stream in matched(name).items():
        http = stream.http[True]
        if recording.transport_of(cid) == "websocket" or not http.answered:
            continue
        account = recording.record(cid).account(S2C)
        body = sum(data for data, _ in http.bodies)
        framing = sum(framing for _, framing in http.bodies)
        assert account[Category.PAYLOAD] + account[Category.MESSAGE_SYNTAX] == body, cid
        assert account[Category.CHUNK_FRAMING] == framing, cid
        compared += 1
    assert compared, "no connection had every response body reassembled by tshark"
