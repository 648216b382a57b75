"""Import and export formats, checked against the tools that made or read them.

- pcapng: the committed recordings exported as packets, dissected by tshark
  with no setting at all, must agree with the report: every stream's bytes,
  TCP payload per connection and direction, HTTP heads, WebSocket frames.
- HAR: a recording exported as HAR and reported again gives the same
  connections, messages and payload per transport; a HAR in the shape Chrome
  exports (HTTP/2 pseudo-headers, gzip bodies, ``_webSocketMessages``) reads.
- mitmproxy: a flow file written by a real mitmdump in front of a real server
  with real clients (plain HTTP, SSE, WebSocket) reports the messages the
  clients exchanged.
- Detection by content, and one clear line for files rtinspect does not read.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import io
import json
import subprocess
import sys
import zlib
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from click.testing import CliRunner
from mitmproxy.io import FlowReader
from servers import (
    DEADLINE,
    LOOPBACK,
    AppServer,
    CheckoutProxyProcess,
    RecordingRelay,
    free_port,
)
from tshark import TSHARK, TcpStream, dissect_pcapng, frame_figures, needs_tshark
from websockets.sync.client import connect as websocket_connect

from inspector.capture import CaptureWriter, ConnectionOpened, DataChunk, read_capture
from inspector.classify import Classifier, TransportRule
from inspector.cli import main as rtinspect
from inspector.formats import FileFormat, ImportedTraffic, detect_format, open_traffic
from inspector.formats.export import export_records
from inspector.formats.pcapng import write_pcapng
from inspector.render.json import report_to_dict
from inspector.replay import analyze_captures
from inspector.report import PerDirection, Report
from inspector.summary import build_report
from inspector.wire import Category, Direction

# Importing mitmproxy's addons (for its HAR writer) imports ldap3, which warns about pyasn1 names.
pytestmark = pytest.mark.filterwarnings("ignore:.* is deprecated. Please use .* instead:DeprecationWarning")

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
RECORDINGS = Path(__file__).parent / "recordings"
SCENARIOS = sorted(path.name.removesuffix(".expected.json") for path in RECORDINGS.glob("*.expected.json"))


@functools.cache
def expected(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.expected.json").read_text())


def report_of(*paths: Path, name: str) -> Report:
    """The report of ``paths`` with the recording's own transport rules."""
    rules = tuple(TransportRule.parse(rule) for rule in expected(name)["rules"])
    analysis = analyze_captures(list(paths), classifier=Classifier(rules))
    return build_report(analysis.records, notes=analysis.notes)


def streams_of(path: Path) -> dict[str, tuple[bytes, bytes]]:
    """Each connection's bytes (client to server, server to client), by connection id."""
    data: dict[str, dict[Direction, bytearray]] = defaultdict(lambda: {C2S: bytearray(), S2C: bytearray()})
    with open_traffic(path) as traffic:
        for record in traffic:
            if isinstance(record, DataChunk):
                data[str(record.connection_id)][record.direction] += record.data
    return {cid: (bytes(d[C2S]), bytes(d[S2C])) for cid, d in data.items()}


# -- pcapng: tshark agrees with the report


@functools.cache
def exported_pcapng(name: str, folder: Path) -> Path:
    target = folder / f"{name}.pcapng"
    with read_capture(RECORDINGS / f"{name}.rtcap") as capture, open(target, "wb") as out:
        write_pcapng(capture, out)
    return target


@pytest.fixture(scope="module")
def export_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


def tshark_streams(name: str, folder: Path) -> dict[str, TcpStream]:
    """Each connection of the recording with the TCP stream of the export that carried it
    (by content: every stream must carry exactly the bytes of one connection)."""
    dissected = dissect_pcapng(exported_pcapng(name, folder), expected(name)["server_port"], decode_as=False)
    by_content = {(bytes(s.data[C2S]), bytes(s.data[S2C])): s for s in dissected.values()}
    pairs = {cid: by_content.get(streams) for cid, streams in streams_of(RECORDINGS / f"{name}.rtcap").items()}
    assert all(pairs.values()), (
        f"{name}: connections without their TCP stream: {[c for c, s in pairs.items() if s is None]}"
    )
    assert len(dissected) == len(pairs), "every TCP stream of the export is a connection of the capture"
    return pairs  # type: ignore[return-value]


@needs_tshark
@pytest.mark.parametrize("name", SCENARIOS)
def test_pcapng_export_agrees_with_the_report_in_tshark(name: str, export_folder: Path) -> None:
    report = report_of(RECORDINGS / f"{name}.rtcap", name=name)
    pairs = tshark_streams(name, export_folder)
    records = {r.id: r for r in analyze_captures([RECORDINGS / f"{name}.rtcap"]).records}
    for connection in report.connections:
        stream = pairs[connection.id]
        assert stream.retransmissions == 0
        # TCP payload per direction is the report's wire bytes.
        assert PerDirection(stream.tcp_len[C2S], stream.tcp_len[S2C]) == connection.wire_bytes, connection.id
        # tshark found every HTTP head without being told the port.
        exchanges = records[connection.id].exchanges
        assert len(stream.heads[C2S]) == len(exchanges), connection.id
        assert len(stream.heads[S2C]) == sum(len(e.interim) + (e.response is not None) for e in exchanges)
    for transport, summary in report.transports.items():
        members = [pairs[c.id] for c in report.connections if c.transport == transport]
        heads = PerDirection(*(sum(sum(s.heads[d]) for s in members) for d in (C2S, S2C)))
        assert heads == summary.categories[Category.HEAD.value], transport
        if summary.websocket is not None:
            figures = frame_figures([frame for s in members for frame in s.frames])
            assert figures["data_frames"] == summary.websocket.data_frames
            assert figures["control_frames"] == summary.websocket.control_frames
            assert figures["frame_header_bytes"] == summary.websocket.frame_header_bytes
            assert figures["wire_payload_bytes"] == summary.websocket.wire_payload_bytes
            assert figures["control_bytes"] == summary.websocket.control_bytes
            assert figures["compressed_messages"] == summary.websocket.compressed_messages
            assert figures["data_frames"].total > 0


@needs_tshark
def test_tshark_finds_nothing_wrong_with_the_tcp_of_an_export(export_folder: Path) -> None:
    path = exported_pcapng("mixed", export_folder)
    result = subprocess.run(
        [TSHARK or "tshark", "-n", "-r", str(path), "-q", "-z", "expert,warn"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert "Warnings" not in result.stdout and "Errors" not in result.stdout, result.stdout


def test_pcapng_segments_respect_the_mss_and_keep_every_byte(tmp_path: Path) -> None:
    """Small segments, host names and unknown addresses: the streams are still the capture's."""
    capture = tmp_path / "named.rtcap"
    with CaptureWriter(capture) as writer:
        writer.write(ConnectionOpened(1, 100.0, client="?", server="api.example.com:8443", mode="regular"))
        writer.write(DataChunk(1, 100.1, C2S, b"GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n"))
        writer.write(DataChunk(1, 100.2, S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 3000\r\n\r\n" + b"x" * 3000))
    out = io.BytesIO()
    with read_capture(capture) as records:
        written = write_pcapng(records, out, mss=1000)
    assert written.stand_ins == (1,)
    assert written.packets == 3 + 1 + 4  # handshake, request, response head and body in 1000-byte segments
    pcapng = tmp_path / "named.pcapng"
    pcapng.write_bytes(out.getvalue())
    if TSHARK is None:
        pytest.skip("tshark is not installed (apt-get install tshark): the pcapng is not dissected")
    (stream,) = dissect_pcapng(pcapng, 8443, decode_as=False).values()
    assert (bytes(stream.data[C2S]), bytes(stream.data[S2C])) == streams_of(capture)["1"]
    comments = subprocess.run(
        [TSHARK, "-r", str(pcapng), "-Y", "frame.comment", "-T", "fields", "-e", "frame.comment"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert "rtinspect connection 1: ? -> api.example.com:8443" in comments


@needs_tshark
def test_export_command_writes_pcapng_for_tshark(tmp_path: Path) -> None:
    target = tmp_path / "sse.pcapng"
    result = CliRunner().invoke(
        rtinspect, ["export", str(RECORDINGS / "sse.rtcap"), "--to", "pcapng", "-o", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {target}: " in result.output
    assert detect_format(target) is FileFormat.PCAPNG
    events = subprocess.run(
        [TSHARK or "tshark", "-r", str(target), "-Y", "http.response.code == 200", "-T", "fields", "-e", "http.content_type"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.splitlines()  # fmt: skip
    assert events and all(line.startswith("text/event-stream") for line in events)


# -- HAR: exported, read back, and as Chrome writes it


def har_of(name: str, folder: Path) -> Path:
    target = folder / f"{name}.har"
    with read_capture(RECORDINGS / f"{name}.rtcap") as capture, open(target, "wb") as out:
        export_records(capture, "har", out)
    return target


HAR_REQUIRED = {
    "entry": ("startedDateTime", "time", "request", "response", "cache", "timings"),
    "request": ("method", "url", "httpVersion", "cookies", "headers", "queryString", "headersSize", "bodySize"),
    "response": ("status", "statusText", "httpVersion", "cookies", "headers", "content", "redirectURL", "headersSize", "bodySize"),
    "timings": ("send", "wait", "receive"),
}  # fmt: skip


@pytest.mark.parametrize("name", SCENARIOS)
def test_har_export_reads_back_with_the_same_messages_and_payload(name: str, tmp_path: Path) -> None:
    har = har_of(name, tmp_path)
    document = json.loads(har.read_text())
    log = document["log"]
    assert log["version"] == "1.2" and log["creator"]["name"] == "rtinspect"
    for entry in log["entries"]:
        for part, fields in HAR_REQUIRED.items():
            holder = entry if part == "entry" else entry[part] if part != "timings" else entry["timings"]
            assert set(fields) <= set(holder), (part, set(fields) - set(holder))
        for message in entry.get("_webSocketMessages", []):
            assert set(message) == {"type", "time", "opcode", "data"} and message["type"] in ("send", "receive")

    # What the HAR holds is what the clients saw: each WebSocket message, and each poll's answer.
    seen = expected(name)["transports"]
    websocket_sizes: dict[str, list[int]] = {"send": [], "receive": []}
    polled = {rule.pattern: rule.transport for rule in map(TransportRule.parse, expected(name)["rules"])}
    polls: dict[str, list[int]] = defaultdict(list)
    for entry in log["entries"]:
        for message in entry.get("_webSocketMessages", []):
            if message["opcode"] in (1, 2):
                data = message["data"]
                size = len(data.encode()) if message["opcode"] == 1 else len(base64.b64decode(data))
                websocket_sizes[message["type"]].append(size)
        path = urlsplit(entry["request"]["url"]).path
        if path in polled:
            polls[polled[path]].append(entry["response"]["content"]["size"])
    if "websocket" in seen:
        sizes = seen["websocket"]["message_sizes"]
        assert sorted(websocket_sizes["send"]) == sorted(sizes["client_to_server"])
        assert sorted(websocket_sizes["receive"]) == sorted(sizes["server_to_client"])
    for transport, answers in polls.items():
        assert len(answers) == seen[transport]["polls"], transport
        assert answers.count(0) == seen[transport]["empty_polls"], transport
        assert sorted(size for size in answers if size) == sorted(seen[transport]["message_sizes"]["server_to_client"])

    original = report_of(RECORDINGS / f"{name}.rtcap", name=name)
    again = report_of(har, name=name)
    assert set(again.transports) == set(original.transports) == set(seen)
    for transport, summary in original.transports.items():
        rebuilt = again.transport(transport)
        # The report of the HAR agrees with the clients, and with the report of the capture.
        clients = PerDirection(**seen[transport]["messages"]), PerDirection(**seen[transport]["payload_bytes"])
        assert (rebuilt.messages, rebuilt.payload_bytes) == clients, transport
        assert rebuilt.connections == seen[transport]["connections"], transport
        assert rebuilt.connections == summary.connections, transport
        assert rebuilt.messages == summary.messages, transport
        assert rebuilt.payload_bytes == summary.payload_bytes, transport
        assert rebuilt.anomalies == 0, transport
    assert all(c.reconstructed for c in again.connections)
    assert not any(c.reconstructed for c in original.connections)
    assert any("a HAR file" in note and "rebuilt" in note for note in again.notes)


def test_har_sizes_are_the_wire_bytes_of_each_head_and_body(tmp_path: Path) -> None:
    """Without WebSocket, every byte of a connection is in some entry's headersSize or bodySize."""
    document = json.loads(har_of("short_poll", tmp_path).read_text())
    report = report_of(RECORDINGS / "short_poll.rtcap", name="short_poll")
    for connection in report.connections:
        entries = [e for e in document["log"]["entries"] if e["connection"] == connection.id]
        sent = sum(e["request"]["headersSize"] + e["request"]["bodySize"] for e in entries)
        received = sum(e["response"]["_transferSize"] for e in entries)
        assert PerDirection(sent, received) == connection.wire_bytes


def chrome_har() -> dict[str, Any]:
    """A HAR in the shape Chrome's DevTools exports: an HTTP/2 poll answered with a gzip
    body, an SSE stream whose text Chrome did not keep, and a WebSocket with text and
    binary messages on a connection of its own."""
    body = json.dumps({"messages": ["hello"] * 20}).encode()
    timings = {
        "blocked": 1.2,
        "dns": -1,
        "ssl": -1,
        "connect": -1,
        "send": 0.1,
        "wait": 20.5,
        "receive": 0.4,
        "_blocked_queueing": 0.8,
    }
    poll = {
        "_initiator": {"type": "script"}, "_priority": "High", "_resourceType": "fetch", "cache": {},
        "connection": "1234", "pageref": "page_1", "serverIPAddress": "[::1]",
        "startedDateTime": "2026-01-02T10:00:00.000Z", "time": 22.2, "timings": timings,
        "request": {
            "method": "GET", "url": "https://app.example:8443/poll?after=3", "httpVersion": "http/2.0",
            "headers": [
                {"name": ":authority", "value": "app.example:8443"}, {"name": ":method", "value": "GET"},
                {"name": ":path", "value": "/poll?after=3"}, {"name": ":scheme", "value": "https"},
                {"name": "accept", "value": "*/*"}, {"name": "accept-encoding", "value": "gzip"},
            ],
            "queryString": [{"name": "after", "value": "3"}], "cookies": [], "headersSize": -1, "bodySize": 0,
        },
        "response": {
            "status": 200, "statusText": "", "httpVersion": "http/2.0",
            "headers": [{"name": "content-encoding", "value": "gzip"}, {"name": "content-type", "value": "application/json"}],
            "cookies": [], "redirectURL": "", "headersSize": -1, "bodySize": -1, "_transferSize": 180, "_error": None,
            "content": {"size": len(body), "mimeType": "application/json", "compression": 60, "text": body.decode()},
        },
    }  # fmt: skip
    second_poll = json.loads(json.dumps(poll))
    second_poll["startedDateTime"] = "2026-01-02T10:00:00.500Z"
    sse = json.loads(json.dumps(poll))
    sse |= {"startedDateTime": "2026-01-02T10:00:01.000Z", "connection": "1300", "_resourceType": "eventsource"}
    sse["request"] |= {"url": "http://app.example:8080/events", "httpVersion": "HTTP/1.1"}
    sse["response"] |= {
        "httpVersion": "HTTP/1.1",
        "headers": [
            {"name": "Content-Type", "value": "text/event-stream"},
            {"name": "Transfer-Encoding", "value": "chunked"},
        ],
        "content": {"size": 1200, "mimeType": "text/event-stream"},
    }
    websocket = {
        "_initiator": {"type": "script"}, "_priority": "Low", "_resourceType": "websocket", "cache": {},
        "connection": "1400", "serverIPAddress": "127.0.0.1",
        "startedDateTime": "2026-01-02T10:00:02.000Z", "time": 3.1,
        "timings": {"blocked": 0.5, "dns": -1, "ssl": -1, "connect": -1, "send": 0, "wait": 2.6, "receive": 0},
        "request": {
            "method": "GET", "url": "ws://app.example:8080/ws", "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": "Host", "value": "app.example:8080"}, {"name": "Connection", "value": "Upgrade"},
                {"name": "Upgrade", "value": "websocket"}, {"name": "Sec-WebSocket-Version", "value": "13"},
                {"name": "Sec-WebSocket-Key", "value": "dGhlIHNhbXBsZSBub25jZQ=="},
            ],
            "queryString": [], "cookies": [], "headersSize": 180, "bodySize": 0,
        },
        "response": {
            "status": 101, "statusText": "Switching Protocols", "httpVersion": "HTTP/1.1",
            "headers": [
                {"name": "Upgrade", "value": "websocket"}, {"name": "Connection", "value": "Upgrade"},
                {"name": "Sec-WebSocket-Accept", "value": "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="},
            ],
            "cookies": [], "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "",
            "headersSize": 129, "bodySize": 0, "_transferSize": 129,
        },
        "_webSocketMessages": [
            {"type": "send", "time": 1767348002.01, "opcode": 1, "data": "subscribe"},
            {"type": "receive", "time": 1767348002.02, "opcode": 1, "data": "x" * 300},
            {"type": "receive", "time": 1767348002.03, "opcode": 2, "data": base64.b64encode(bytes(range(40))).decode()},
        ],
    }  # fmt: skip
    return {"log": {"version": "1.2", "creator": {"name": "WebInspector", "version": "537.36"},
                    "pages": [], "entries": [poll, second_poll, sse, websocket]}}  # fmt: skip


def test_a_har_as_chrome_exports_it_is_reported(tmp_path: Path) -> None:
    har = tmp_path / "chrome.har"
    har.write_text(json.dumps(chrome_har()))
    with open_traffic(har) as traffic:
        assert isinstance(traffic, ImportedTraffic) and traffic.format is FileFormat.HAR
        opened = [r for r in traffic if isinstance(r, ConnectionOpened)]
        assert [o.server for o in opened] == ["[::1]:8443", "[::1]:8080", "127.0.0.1:8080"]
        assert [o.client for o in opened] == ["?", "?", "?"]
        assert all(o.reconstructed and o.mode == "har" for o in opened)
        first_request = next(r.data for r in traffic if isinstance(r, DataChunk) and r.direction is C2S)
    # HTTP/2 becomes HTTP/1.1, pseudo-header fields become a Host field.
    assert first_request.startswith(b"GET /poll?after=3 HTTP/1.1\r\nHost: app.example:8443\r\n")
    assert b":authority" not in first_request

    analysis = analyze_captures([har])
    report = build_report(analysis.records, notes=analysis.notes)
    assert set(report.transports) == {"websocket", "sse", "short_poll"}
    polls = report.transport("short_poll")
    assert polls.connections == 1 and polls.messages.server_to_client == 2  # both polls on connection "1234"
    # The body counts as it travelled: gzip again. Each response body on the rebuilt
    # connection is one gzip member that zlib inflates to the HAR's text; the payload is
    # those members' bytes, wherever zlib says each one ends.
    body = json.dumps({"messages": ["hello"] * 20}).encode()
    (down,) = [down for up, down in streams_of(har).values() if up.startswith(b"GET /poll")]
    members = []
    while down:
        head, _, down = down.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"content-encoding: gzip" in head.lower()
        inflate = zlib.decompressobj(wbits=31)
        assert inflate.decompress(down) == body and inflate.eof
        members.append(len(down) - len(inflate.unused_data))
        down = inflate.unused_data
    assert len(members) == 2 and all(size < len(body) for size in members)
    assert polls.payload_bytes == PerDirection(0, sum(members))
    websocket = report.transport("websocket")
    assert websocket.messages == PerDirection(1, 2)
    assert websocket.payload_bytes == PerDirection(len("subscribe"), 300 + 40)
    assert report.transport("sse").messages.server_to_client == 0
    assert any("no body text" in note for note in report.notes)
    # Traffic of unknown clients exports to HAR and flows, one entry or flow per HTTP
    # exchange of the HAR, and each export reads back with the same messages and payload.
    for fmt, summary in (("har", "4 entries"), ("mitmproxy", "4 flows")):
        target = tmp_path / f"chrome.{fmt}"
        with open_traffic(har) as traffic, open(target, "wb") as out:
            assert export_records(traffic, fmt, out).summary == summary
        again = build_report(analyze_captures([target]).records)
        assert set(again.transports) == {"websocket", "sse", "short_poll"}, fmt
        assert again.transport("websocket").messages == PerDirection(1, 2), fmt
        assert again.transport("websocket").payload_bytes == PerDirection(len("subscribe"), 300 + 40), fmt
        assert again.transport("short_poll").messages == PerDirection(0, 2), fmt
        assert again.transport("short_poll").payload_bytes == PerDirection(0, sum(members)), fmt


@needs_tshark
def test_a_har_as_chrome_exports_it_exports_to_pcapng_for_tshark(tmp_path: Path) -> None:
    """Traffic of unknown clients (no client address, an IPv6 server) as packets: tshark
    finds every connection's bytes, as many packets as the export says, and the WebSocket
    messages of the HAR as frames."""
    har = tmp_path / "chrome.har"
    har.write_text(json.dumps(chrome_har()))
    target = tmp_path / "chrome.pcapng"
    with open_traffic(har) as traffic:
        records = list(traffic)  # once: each reading masks the WebSocket frames with new keys
    with open(target, "wb") as out:
        summary = export_records(records, "pcapng", out).summary
    data: dict[int, dict[Direction, bytes]] = defaultdict(lambda: {C2S: b"", S2C: b""})
    for record in records:
        if isinstance(record, DataChunk):
            data[record.connection_id][record.direction] += record.data
    packets = subprocess.run(
        [TSHARK or "tshark", "-n", "-r", str(target), "-T", "fields", "-e", "frame.number"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout.split()  # fmt: skip
    assert summary == f"{len(packets)} packets of 3 connection(s)"
    # One server port at a time: the polls' connection (tshark's first stream) on 8443, the SSE
    # and WebSocket ones on 8080.
    on_8080 = dissect_pcapng(target, 8080)
    streams = [dissect_pcapng(target, 8443)[0], on_8080[1], on_8080[2]]
    assert len(on_8080) == 3
    dissected = sorted((bytes(s.data[C2S]), bytes(s.data[S2C])) for s in streams)
    assert dissected == sorted((d[C2S], d[S2C]) for d in data.values())
    frames = [frame for s in streams for frame in s.frames]
    assert [(f.direction, f.opcode, f.payload) for f in frames] == [(C2S, 1, 9), (S2C, 1, 300), (S2C, 2, 40)]
    assert [f.masked for f in frames] == [True, False, False]


# -- WebSocket pings and pongs: counted where the file has them, a note where it cannot


#: The ping the client of the websocket recording sent, and the pong that answered it.
RECORDED_PING = b"are you there"


def control_frames(report: Report) -> tuple[PerDirection, PerDirection]:
    websocket = report.transport("websocket").websocket
    assert websocket is not None
    return websocket.control_frames, websocket.control_bytes


def test_pings_and_pongs_go_into_har_and_come_back_as_control_frames(tmp_path: Path) -> None:
    """The recording has one ping from the client and its pong (and a close each way, which no
    HAR writer keeps): the export lists them as Chrome's opcodes 9 and 10, and the report of the
    HAR counts them as the control frames and bytes they were."""
    har = har_of("websocket", tmp_path)
    (entry,) = json.loads(har.read_text())["log"]["entries"]
    control = [m for m in entry["_webSocketMessages"] if m["opcode"] not in (1, 2)]
    encoded = base64.b64encode(RECORDED_PING).decode()
    assert [(m["type"], m["opcode"], m["data"]) for m in control] == [("send", 9, encoded), ("receive", 10, encoded)]

    original = report_of(RECORDINGS / "websocket.rtcap", name="websocket")
    with_close = len(RECORDED_PING) + 2  # a close frame carries its 2-byte code
    assert control_frames(original) == (PerDirection(2, 2), PerDirection(with_close, with_close))
    again = report_of(har, name="websocket")
    assert control_frames(again) == (PerDirection(1, 1), PerDirection(len(RECORDED_PING), len(RECORDED_PING)))
    assert again.transport("websocket").messages == original.transport("websocket").messages
    assert not any("pings or pongs" in note for note in again.notes)


def test_a_har_from_a_browser_says_its_pings_and_pongs_are_not_counted(tmp_path: Path) -> None:
    har = tmp_path / "chrome.har"
    har.write_text(json.dumps(chrome_har()))
    analysis = analyze_captures([har])
    report = build_report(analysis.records, notes=analysis.notes)
    assert control_frames(report) == (PerDirection(0, 0), PerDirection(0, 0))
    (note,) = [note for note in report.notes if "pings or pongs" in note]
    assert note.startswith(f"{har}: 1 WebSocket session(s) have no pings or pongs in the file: browsers list")
    assert "not counted" in note


def test_a_flow_file_says_its_pings_and_pongs_are_not_counted(tmp_path: Path) -> None:
    """mitmproxy records text and binary messages only: the export says it left the recording's
    ping and pong out, and the report of the flow file says any pings are missing."""
    flows = tmp_path / "websocket.flows"
    with read_capture(RECORDINGS / "websocket.rtcap") as capture, open(flows, "wb") as out:
        exported = export_records(capture, "mitmproxy", out)
    assert any(note.startswith("2 WebSocket ping(s) and pong(s) are not in the flow file") for note in exported.notes)
    report = report_of(flows, name="websocket")
    assert control_frames(report) == (PerDirection(1, 1), PerDirection(2, 2))  # the closes, from the flow's close code
    assert any(
        "1 WebSocket session(s) have no pings or pongs in the file: mitmproxy records" in n for n in report.notes
    )


def test_pings_and_pongs_in_a_flow_file_are_counted(tmp_path: Path) -> None:
    """A flow file whose messages include pings and pongs (mitmproxy's message type is an opcode)."""
    from mitmproxy.io import FlowWriter
    from mitmproxy.test.tflow import twebsocketflow
    from mitmproxy.websocket import WebSocketMessage
    from wsproto.frame_protocol import Opcode

    flow = twebsocketflow()
    assert flow.websocket is not None
    flow.request.headers["Host"] = flow.request.host  # HTTP/1.1 requires it; mitmproxy's test flow has none
    start = flow.response.timestamp_end if flow.response else 0.0
    flow.websocket.messages = [
        WebSocketMessage(Opcode.TEXT, True, b"hello", start + 1),
        WebSocketMessage(Opcode.PING, False, b"tick", start + 2),
        WebSocketMessage(Opcode.PONG, True, b"tick", start + 3),
        WebSocketMessage(Opcode.PING, True, b"", start + 4),
        WebSocketMessage(Opcode.PONG, False, b"", start + 5),
        WebSocketMessage(Opcode.PING, True, b"x" * 126, start + 6),  # too long for a control frame
        WebSocketMessage(Opcode.BINARY, False, b"\x00" * 10, start + 7),
    ]
    flow.websocket.close_code = None
    path = tmp_path / "pings.flows"
    with open(path, "wb") as out:
        FlowWriter(out).add(flow)
    analysis = analyze_captures([path])
    report = build_report(analysis.records, notes=analysis.notes)
    assert control_frames(report) == (PerDirection(2, 2), PerDirection(len(b"tick"), len(b"tick")))
    assert report.transport("websocket").messages == PerDirection(1, 1)
    assert report.transport("websocket").anomalies == 0
    assert not any("have no pings or pongs" in note for note in report.notes)
    assert any("1 WebSocket ping(s) or pong(s) had more than 125 bytes" in note for note in report.notes)


# -- mitmproxy flow files written by a real mitmdump


@contextlib.contextmanager
def mitmdump_writing(flows: Path, mode: str, confdir: Path) -> Iterator[CheckoutProxyProcess]:
    """``mitmdump --mode MODE -w FLOWS`` on a free port, listening when this yields;
    stopped (and its flow file complete) when the block ends."""
    port = free_port()
    mitmdump = [
        str(Path(sys.executable).with_name("mitmdump")), "-q",
        "--mode", mode, "--listen-host", LOOPBACK, "-p", str(port),
        "--set", f"confdir={confdir}", "-w", str(flows),
    ]  # fmt: skip
    proxy = CheckoutProxyProcess(mitmdump, port, None)
    try:
        proxy.wait_listening()
        yield proxy
    finally:
        assert proxy.stop() == 0, proxy.stderr


@pytest.fixture(scope="module")
def mitmdump_flows(app_server: AppServer, confdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``mitmdump -w`` in front of the app server while real clients talk through it."""
    flows = tmp_path_factory.mktemp("mitmdump") / "traffic.flows"
    with mitmdump_writing(flows, f"reverse:{app_server.url}", confdir) as proxy:
        url = proxy.url
        with httpx.Client(timeout=DEADLINE) as client:
            assert client.get(f"{url}/plain").status_code == 200
            assert client.post(f"{url}/echo", content=b"e" * 500).content == b"e" * 500
            with client.stream("GET", f"{url}/sse?count=7") as response:
                assert "".join(response.iter_text()).count("data: message") == 7
        with websocket_connect(f"ws://{LOOPBACK}:{proxy.port}/ws", open_timeout=DEADLINE) as websocket:
            for i in range(4):
                websocket.send(f"text message {i} " * 10)
                assert websocket.recv(timeout=DEADLINE) == f"text message {i} " * 10
            websocket.send(bytes(range(200)))
            assert websocket.recv(timeout=DEADLINE) == bytes(range(200))
    return flows


def test_a_mitmdump_flow_file_is_reported_with_the_clients_messages(mitmdump_flows: Path) -> None:
    assert detect_format(mitmdump_flows) is FileFormat.MITMPROXY
    report = build_report(analyze_captures([mitmdump_flows]).records)
    websocket = report.transport("websocket")
    sent = sum(len(f"text message {i} " * 10) for i in range(4)) + 200
    assert websocket.messages == PerDirection(5, 5)
    assert websocket.payload_bytes == PerDirection(sent, sent)
    assert websocket.websocket is not None and websocket.websocket.compressed_messages.total > 0
    sse = report.transport("sse")
    assert sse.messages.server_to_client == 7
    assert sse.payload_bytes.server_to_client == sum(len(f"message {i}") for i in range(7))
    assert report.transport("http").payload_bytes == PerDirection(500, len("hello, wire\n" * 20) + 500)
    assert all(c.reconstructed for c in report.connections)
    assert all(summary.anomalies == 0 for summary in report.transports.values())
    # mitmdump relays pings without recording them: the report says it cannot count them.
    notes = analyze_captures([mitmdump_flows]).notes
    assert any("1 WebSocket session(s) have no pings or pongs in the file: mitmproxy records" in n for n in notes)


def test_the_report_command_reads_a_flow_file_and_marks_it_reconstructed(mitmdump_flows: Path) -> None:
    result = CliRunner().invoke(rtinspect, ["report", str(mitmdump_flows), "-f", "json"])
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.output)
    assert parsed["connections"] and all(c["reconstructed"] for c in parsed["connections"])
    assert any("a mitmproxy flow file" in note for note in parsed["notes"])
    table = CliRunner().invoke(rtinspect, ["report", str(mitmdump_flows), "--connections"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "websocket (rebuilt)" in table.output


def test_raw_tcp_flows_of_mitmdump_are_exact(app_server: AppServer, confdir: Path, tmp_path: Path) -> None:
    """``--mode reverse:tcp://`` keeps each connection as its byte stream: the import is
    byte for byte what a relay between the client and mitmdump saw, and not reconstructed."""
    flows = tmp_path / "tcp.flows"
    mode = f"reverse:tcp://{LOOPBACK}:{app_server.port}"
    with mitmdump_writing(flows, mode, confdir) as proxy, RecordingRelay(proxy.port) as relay:
        with httpx.Client(timeout=DEADLINE) as client:
            assert client.get(f"{relay.url()}/sse?count=5").status_code == 200
        with websocket_connect(relay.url("ws") + "/ws", open_timeout=DEADLINE) as websocket:
            websocket.send("over raw TCP")
            assert websocket.recv(timeout=DEADLINE) == "over raw TCP"
        relayed = relay.wait_finished(2)
    with open_traffic(flows) as traffic:
        opened = [r for r in traffic if isinstance(r, ConnectionOpened)]
    assert opened and not any(o.reconstructed for o in opened)
    imported = sorted(streams_of(flows).values())
    assert imported == sorted((bytes(c.client_to_server), bytes(c.server_to_client)) for c in relayed)
    report = build_report(analyze_captures([flows]).records)
    assert report.transport("websocket").messages == PerDirection(1, 1)
    assert report.transport("sse").messages.server_to_client == 5
    assert not any(c.reconstructed for c in report.connections)


def test_flows_exported_from_a_capture_read_back(tmp_path: Path) -> None:
    flows = tmp_path / "mixed.flows"
    result = CliRunner().invoke(
        rtinspect, ["export", str(RECORDINGS / "mixed.rtcap"), "--to", "mitmproxy", "-o", str(flows)]
    )
    assert result.exit_code == 0, result.output
    original = report_of(RECORDINGS / "mixed.rtcap", name="mixed")
    again = report_of(flows, name="mixed")
    seen = expected("mixed")["transports"]
    assert set(again.transports) == set(original.transports) == set(seen)
    for transport, summary in again.transports.items():
        # What the clients saw, and what the capture itself reports.
        clients = PerDirection(**seen[transport]["messages"]), PerDirection(**seen[transport]["payload_bytes"])
        assert (summary.messages, summary.payload_bytes) == clients, transport
        assert summary.connections == seen[transport]["connections"], transport
        assert summary.anomalies == 0, transport
        before = original.transport(transport)
        assert (summary.messages, summary.payload_bytes) == (before.messages, before.payload_bytes), transport
    for transport in ("long_poll", "short_poll"):
        assert again.transport(transport).empty_polls == seen[transport]["empty_polls"], transport


# -- detection


def test_each_format_is_told_by_its_content_not_its_name(tmp_path: Path, mitmdump_flows: Path) -> None:
    named_wrongly = {
        "capture.har": (RECORDINGS / "sse.rtcap").read_bytes(),
        "traffic.rtcap": har_of("sse", tmp_path).read_bytes(),
        "flows.json": mitmdump_flows.read_bytes(),
        "packets.har": (RECORDINGS / "sse.pcapng").read_bytes(),
    }
    found = {}
    for name, content in named_wrongly.items():
        (tmp_path / name).write_bytes(content)
        found[name] = detect_format(tmp_path / name)
    assert found == {
        "capture.har": FileFormat.RTCAP,
        "traffic.rtcap": FileFormat.HAR,
        "flows.json": FileFormat.MITMPROXY,
        "packets.har": FileFormat.PCAPNG,
    }
    report = build_report(analyze_captures([tmp_path / "traffic.rtcap"]).records)
    assert (
        report.transport("sse").messages.server_to_client
        == expected("sse")["transports"]["sse"]["messages"]["server_to_client"]
    )


JUNK = {
    "junk.bin": (b"\x00\x01 not anything", "not an rtinspect capture"),
    "empty.rtcap": (b"", "the file is empty"),
    "list.har": (b"[1, 2, 3]", "not an rtinspect capture"),
    "other.json": (b'{"name": "package.json"}', "not a HAR file (it has no log.entries)"),
    "broken.har": (b'{"log": {"entries": [', "not valid JSON"),
    "report.json": (
        b'{"format": "rtinspect-report", "version": 1, "transports": {}}',
        "an rtinspect report, not traffic",
    ),
    "packets.pcapng": (b"\x0a\x0d\x0d\x0a" + bytes(60), "a pcapng file of packets"),
    "fake.flows": (b"12:not a flow!", "not an rtinspect capture"),
    "damaged.flows": (b"5:hello}", "not a readable mitmproxy flow file"),
}


@pytest.mark.parametrize("name", sorted(JUNK))
def test_files_rtinspect_does_not_read_get_one_clear_line(name: str, tmp_path: Path) -> None:
    content, reason = JUNK[name]
    path = tmp_path / name
    path.write_bytes(content)
    for command in (["report", str(path)], ["export", str(path), "--to", "har", "-o", str(tmp_path / "out.har")]):
        result = CliRunner().invoke(rtinspect, command)
        assert result.exit_code == 1, (command, result.output)
        assert result.output.count("\n") == 1 and result.output.startswith("Error: "), result.output
        assert reason in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out.har").exists() and not (tmp_path / "out.har.partial").exists()


def test_a_flow_file_cut_short_keeps_the_flows_before_the_cut(tmp_path: Path, mitmdump_flows: Path) -> None:
    content = mitmdump_flows.read_bytes()
    cut = tmp_path / "cut.flows"
    cut.write_bytes(content[: len(content) - 50])
    # mitmdump wrote each flow as it ended: the HTTP ones (/plain, /echo, /sse), then the
    # WebSocket one, the last to end, which is the flow the cut leaves incomplete.
    with open(mitmdump_flows, "rb") as file:
        paths = [flow.request.path for flow in FlowReader(file).stream()]
    assert paths == ["/plain", "/echo", "/sse?count=7", "/ws"]
    analysis = analyze_captures([cut])
    assert any("ends inside a flow" in note for note in analysis.notes)
    # What the clients of the flows before the cut exchanged, and nothing of the WebSocket.
    report = build_report(analysis.records)
    assert set(report.transports) == {"http", "sse"}
    assert report.transport("http").payload_bytes == PerDirection(500, len("hello, wire\n" * 20) + 500)
    assert report.transport("sse").messages == PerDirection(0, 7)
    assert report.transport("sse").payload_bytes == PerDirection(0, sum(len(f"message {i}") for i in range(7)))


def test_flows_recorded_through_the_rtinspect_addon_are_refused(tmp_path: Path) -> None:
    """The addon keeps only a flow's last message, so its flow file would undercount."""
    from mitmproxy.io import FlowWriter
    from mitmproxy.test.tflow import ttcpflow

    from inspector.mitmproxy_connections import CLOSE_REASON_KEY

    flow = ttcpflow()
    flow.metadata[CLOSE_REASON_KEY] = "client closed"
    path = tmp_path / "addon.flows"
    with open(path, "wb") as out:
        FlowWriter(out).add(flow)
    result = CliRunner().invoke(rtinspect, ["report", str(path)])
    assert result.exit_code == 1 and "recorded through rtinspect's addon" in result.output


def test_unknown_export_options_are_usage_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(rtinspect, ["export", str(RECORDINGS / "sse.rtcap"), "--to", "har", "--mss", "1000"])
    assert result.exit_code == 2 and "pcapng" in result.output
    result = runner.invoke(rtinspect, ["export", str(RECORDINGS / "sse.rtcap"), "--to", "xml"])
    assert result.exit_code == 2
    same = tmp_path / "same.har"
    same.write_text(json.dumps(chrome_har()))
    result = runner.invoke(rtinspect, ["export", str(same), "--to", "har"])
    assert result.exit_code == 2 and "overwrite" in result.output


def test_json_report_of_a_capture_has_no_reconstructed_connections() -> None:
    report = report_of(RECORDINGS / "sse.rtcap", name="sse")
    assert all(c["reconstructed"] is False for c in report_to_dict(report)["connections"])
