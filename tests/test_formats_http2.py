"""Exports of HTTP/2 connections: each stream a flow, in HAR and in mitmproxy's flow files.

The captures hold real HTTP/2 bytes: the conversations of two h2
``H2Connection`` objects (:mod:`h2_conversations`), written with the
project's :class:`~inspector.capture.CaptureWriter`.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from h2_conversations import CONVERSATIONS, Conversation, Talk, masked, polls_and_sse
from mitmproxy import http
from mitmproxy.io import FlowReader

from inspector.capture import CaptureWriter, ConnectionClosed, ConnectionOpened, DataChunk, TlsInfo
from inspector.cli import main as rtinspect
from inspector.connection import ConnectionAnalyzer
from inspector.formats.capture_flows import WIRE_SIZES, flows_from_records
from inspector.http2 import PREFACE, SNIFF_LIMIT, speaks_http2
from inspector.replay import analyze_captures
from inspector.report import Report
from inspector.summary import build_report
from inspector.wire import Category, Direction

# Importing mitmproxy's addons (for its HAR writer) imports ldap3, which warns about pyasn1 names.
pytestmark = pytest.mark.filterwarnings("ignore:.* is deprecated. Please use .* instead:DeprecationWarning")

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
SERVER = "127.0.0.1:8000"
H2_TLS = TlsInfo(version="TLSv1.3", sni="example.test", alpn="h2")


def two_websockets_and_a_reset() -> Conversation:
    """Two WebSocket sessions on one connection (RFC 8441), and a request the client gave up on."""
    talk = Talk(connect_protocol=True)
    sockets = []
    for path in ("/ws/a", "/ws/b"):
        ws = talk.request(path, method="CONNECT", extra=[(":protocol", "websocket"), ("sec-websocket-version", "13")])
        talk.server.send_headers(ws, [(":status", "200")])
        talk.pump()
        sockets.append(ws)
    for n, ws in enumerate(sockets):
        talk.send(ws, bytes([0x82, 3]) + bytes([n, n, n]))  # binary
        talk.send(ws, masked(0x1, b"hi %d" % n), from_client=True)
    abandoned = talk.request("/slow")
    talk.client.reset_stream(abandoned)
    talk.pump()
    for ws in sockets:
        talk.send(ws, masked(0x8, b"\x03\xe8"), from_client=True, end=True)
        talk.send(ws, b"\x88\x02\x03\xe8", end=True)
    return talk.sent


#: Each connection of the capture: its conversation and the client's TLS, if any.
CONNECTIONS: dict[str, tuple[Conversation, TlsInfo | None]] = {
    "polls_and_sse": (CONVERSATIONS["polls_and_sse"], H2_TLS),  # HTTP/2 told by ALPN
    "ndjson": (CONVERSATIONS["ndjson"], None),  # by the client's preface
    "websocket": (CONVERSATIONS["websocket"], None),
    "h2c_upgrade": (CONVERSATIONS["h2c_upgrade"], None),
    "two_websockets": (two_websockets_and_a_reset(), None),
}
IDS = {name: number for number, name in enumerate(CONNECTIONS, start=1)}


def opened(name: str, tls: TlsInfo | None) -> ConnectionOpened:
    number = IDS[name]
    return ConnectionOpened(number, number * 10.0, f"127.0.0.1:{50_000 + number}", SERVER, "reverse", tls=tls)


def chunk_time(name: str, n: int) -> float:
    return IDS[name] * 10.0 + 0.1 + n / 100


def write_capture(path: Path, connections: dict[str, tuple[Conversation, TlsInfo | None]]) -> Path:
    with CaptureWriter(path) as writer:
        for name, (conversation, tls) in connections.items():
            writer.write(opened(name, tls))
            for n, (direction, data) in enumerate(conversation):
                writer.write(DataChunk(IDS[name], chunk_time(name, n), direction, data))
            writer.write(ConnectionClosed(IDS[name], IDS[name] * 10.0 + 5, "client closed"))
    return path


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_capture(tmp_path_factory.mktemp("h2") / "h2.rtcap", CONNECTIONS)


def export(capture: Path, fmt: str, target: Path) -> str:
    result = CliRunner().invoke(rtinspect, ["export", str(capture), "--to", fmt, "-o", str(target)])
    assert result.exit_code == 0, result.output
    return result.output


def report(path: Path) -> Report:
    analysis = analyze_captures([path])
    return build_report(analysis.records, notes=analysis.notes)


def analysed(name: str, conversation: Conversation, tls: TlsInfo | None) -> Any:
    analyzer = ConnectionAnalyzer(opened(name, tls))
    for n, (direction, data) in enumerate(conversation):
        analyzer.feed(direction, data, chunk_time(name, n))
    return analyzer.close(IDS[name] * 10.0 + 5, "client closed")


# -- HAR ------------------------------------------------------------------------


def test_every_stream_is_a_har_entry_with_its_method_path_status_and_bodies(capture: Path, tmp_path: Path) -> None:
    har = tmp_path / "h2.har"
    assert "15 entries" in export(capture, "har", har)
    entries = json.loads(har.read_text())["log"]["entries"]
    expected = [
        ("1", "GET", "/sse", 200),
        *[("1", "GET", f"/poll?after={n}", 200) for n in range(4)],
        ("1", "POST", "/send", 200),
        ("1", "GET", "/trailers", 200),
        ("1", "GET", "/big", 200),
        ("2", "GET", "/ndjson", 200),
        ("3", "CONNECT", "/ws", 200),
        ("3", "GET", "/poll", 200),
        ("4", "GET", "/events", 200),
        ("5", "CONNECT", "/ws/a", 200),
        ("5", "CONNECT", "/ws/b", 200),
        ("5", "GET", "/slow", 0),
    ]
    assert len(entries) == len(expected)
    for entry, (connection, method, path, status) in zip(entries, expected, strict=True):
        request, response = entry["request"], entry["response"]
        assert (entry["connection"], request["method"], response["status"]) == (connection, method, status)
        host = "127.0.0.1" if path == "/events" else SERVER
        assert request["url"] == f"http://{host}{path}"
        h2_request = path != "/events"
        assert request["httpVersion"] == ("HTTP/2.0" if h2_request else "HTTP/1.1")
        assert response["httpVersion"] == ("HTTP/2.0" if status else "")
        names = [h["name"] for h in request["headers"]] + [h["name"] for h in response["headers"]]
        assert not any(name.startswith(":") for name in names), names
        if h2_request:
            assert {"name": "user-agent", "value": "h2-conversation/1"} in request["headers"]
    by_path = {(e["connection"], e["request"]["url"].split(SERVER, 1)[-1]): e for e in entries}
    text = {key: e["response"]["content"].get("text") for key, e in by_path.items()}
    assert [text["1", f"/poll?after={n}"] for n in range(4)] == [f'{{"seq": {n}}}' for n in range(4)]
    assert text["1", "/sse"] == "".join(f'id: {n}\ndata: {{"seq": {n}}}\n\n' for n in range(4))
    assert text["1", "/send"] == "ok"  # padded DATA frame: the padding is not content
    assert by_path["1", "/send"]["request"]["postData"]["text"] == "hello"
    assert text["1", "/trailers"] == "body"
    assert text["1", "/big"] == "x" * 16_000 + "y" * 16_000 + "z" * 8_000
    assert text["2", "/ndjson"] == "".join(f'{{"seq": {n}}}\n' for n in range(5))
    assert by_path["1", "/sse"]["response"]["content"]["mimeType"] == "text/event-stream"
    (events,) = [e for e in entries if e["request"]["url"].endswith("/events")]
    assert events["response"]["content"]["text"] == "data: one\n\n"
    assert events["request"]["headersSize"] + events["request"]["bodySize"] == len(CONVERSATIONS["h2c_upgrade"][0][1])

    messages = [(m["type"], m["opcode"], m["data"]) for m in by_path["3", "/ws"]["_webSocketMessages"]]
    assert messages == [
        *(item for n in range(3) for item in (("receive", 1, f"event {n:03d}"), ("send", 1, f"ack {n}"))),
        ("receive", 9, ""),  # the server's ping and the client's pong, as Chrome's opcodes
        ("send", 10, ""),
    ]
    for n, path in enumerate(("/ws/a", "/ws/b")):
        messages = [(m["type"], m["opcode"], m["data"]) for m in by_path["5", path]["_webSocketMessages"]]
        assert messages == [("receive", 2, base64.b64encode(bytes([n] * 3)).decode()), ("send", 1, f"hi {n}")]
    assert by_path["5", "/slow"]["response"]["_error"] == "the HTTP/2 stream was reset (RST_STREAM)"


def test_h2_flows_are_what_mitmproxy_makes_of_http2() -> None:
    records = [opened("polls_and_sse", H2_TLS)]
    records += [
        DataChunk(1, chunk_time("polls_and_sse", n), d, data)
        for n, (d, data) in enumerate(CONVERSATIONS["polls_and_sse"])
    ]
    flows = flows_from_records(records).flows
    assert all(isinstance(flow, http.HTTPFlow) for flow in flows)
    sse, poll, *_, post, trailed, big = flows
    assert isinstance(poll, http.HTTPFlow) and isinstance(trailed, http.HTTPFlow)
    request = poll.request
    assert (request.method, request.scheme, request.authority, request.path) == ("GET", "http", SERVER, "/poll?after=0")
    assert request.http_version == "HTTP/2.0" and request.host_header == SERVER
    assert request.pretty_url == f"http://{SERVER}/poll?after=0"
    assert poll.response is not None and (poll.response.status_code, poll.response.reason) == (200, "")
    assert poll.response.headers["content-type"] == "application/json"
    assert trailed.response is not None and trailed.response.trailers is not None
    assert trailed.response.trailers.fields == ((b"x-checksum", b"abc"),)
    assert poll.client_conn.alpn == b"h2" and poll.client_conn.tls


def test_wire_sizes_are_the_reports_bytes_of_each_stream() -> None:
    """Head sizes are the header blocks, head and body add up to the stream's bytes, and with
    the connection's own frames the flows' sizes are every byte (bar WebSocket sessions)."""
    for name, (conversation, tls) in CONNECTIONS.items():
        record = analysed(name, conversation, tls)
        records = [opened(name, tls)]
        records += [DataChunk(IDS[name], chunk_time(name, n), d, data) for n, (d, data) in enumerate(conversation)]
        flows = flows_from_records(records).flows
        assert len(flows) == len(record.exchanges), name
        for flow, exchange in zip(flows, sorted(record.exchanges, key=lambda e: e.request.timestamp), strict=True):
            assert isinstance(flow, http.HTTPFlow)
            sizes = flow.metadata[WIRE_SIZES]
            assert sizes["connection"] == str(IDS[name])
            assert sizes["request_head"] == exchange.accounts[C2S][Category.HEAD], (name, flow.request.path)
            assert sizes.get("response_head", 0) == exchange.accounts[S2C][Category.HEAD], (name, flow.request.path)
            if flow.websocket is None:
                assert sizes["request_head"] + sizes["request_body"] == exchange.accounts[C2S].total, (
                    name,
                    flow.request.path,
                )
                received = sizes.get("response_head", 0) + sizes.get("response_body", 0)
                assert received == exchange.accounts[S2C].total, (name, flow.request.path)
        if not any(flow.websocket for flow in flows):  # type: ignore[attr-defined]
            sent = sum(f.metadata[WIRE_SIZES]["request_head"] + f.metadata[WIRE_SIZES]["request_body"] for f in flows)
            received = sum(
                f.metadata[WIRE_SIZES]["response_head"] + f.metadata[WIRE_SIZES]["response_body"] for f in flows
            )
            assert sent + record.unattributed[C2S].total == record.wire_bytes(C2S), name
            assert received + record.unattributed[S2C].total == record.wire_bytes(S2C), name


# -- read back --------------------------------------------------------------------


def read_back_capture(tmp_path: Path) -> Path:
    """The capture without its 20 KB header field, which h11 would refuse when the
    exchange is rebuilt as HTTP/1.1 (past its 16 KB limit of a head)."""
    connections = dict(CONNECTIONS)
    connections["polls_and_sse"] = (polls_and_sse(large_head=False), H2_TLS)
    return write_capture(tmp_path / "h2.rtcap", connections)


def assert_same_transports(original: Report, again: Report) -> None:
    assert set(again.transports) == set(original.transports)
    for transport, summary in original.transports.items():
        rebuilt = again.transport(transport)
        assert (rebuilt.messages, rebuilt.payload_bytes) == (summary.messages, summary.payload_bytes), transport
        assert rebuilt.anomalies == 0, transport
    assert all(c.reconstructed for c in again.connections)


@pytest.mark.parametrize("fmt", ["har", "mitmproxy"])
def test_an_http2_export_reads_back_with_the_same_messages_and_payload(fmt: str, tmp_path: Path) -> None:
    capture = read_back_capture(tmp_path)
    exported = tmp_path / f"h2.{fmt}"
    export(capture, fmt, exported)
    original, again = report(capture), report(exported)
    assert_same_transports(original, again)
    assert original.transport("websocket").messages.total == 3 * 2 + 2 * 2
    assert any("HTTP/2.0 exchange(s) were rebuilt as HTTP/1.1" in note for note in again.notes)
    assert not any("CONNECT" in note for note in again.notes)
    # HTTP/1.1 carries one WebSocket session per connection, and nothing after an unanswered request.
    assert len(again.connections) == len(original.connections) + 2


def test_the_flow_file_reads_in_mitmproxy_as_http2_flows(capture: Path, tmp_path: Path) -> None:
    target = tmp_path / "h2.flows"
    assert "15 flows" in export(capture, "mitmproxy", target)
    with open(target, "rb") as file:
        flows = list(FlowReader(file).stream())
    assert all(isinstance(flow, http.HTTPFlow) for flow in flows)
    h2 = [flow for flow in flows if flow.request.path != "/events"]  # type: ignore[attr-defined]
    assert {flow.request.http_version for flow in h2} == {"HTTP/2.0"}  # type: ignore[attr-defined]
    websockets = [flow for flow in flows if flow.websocket is not None]  # type: ignore[attr-defined]
    assert [(f.request.method, f.request.path, len(f.websocket.messages)) for f in websockets] == [  # type: ignore[attr-defined]
        ("CONNECT", "/ws", 6),
        ("CONNECT", "/ws/a", 2),
        ("CONNECT", "/ws/b", 2),
    ]
    assert {f.websocket.close_code for f in websockets} == {1000}  # type: ignore[attr-defined]
    assert all(WIRE_SIZES in flow.metadata for flow in flows)


# -- which connections speak HTTP/2 ----------------------------------------------


def test_the_export_tells_http2_as_the_report_does() -> None:
    """The same rule for both: ALPN, else the client's first bytes (held up to a limit), else how it ended."""
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    ndjson = CONVERSATIONS["ndjson"]
    cases: dict[str, tuple[TlsInfo | None, Conversation]] = {
        "preface": (None, ndjson),
        "alpn h2": (H2_TLS, ndjson),
        "alpn http/1.1 over a preface": (TlsInfo(alpn="http/1.1"), ndjson),
        "alpn http/1.1": (TlsInfo(alpn="http/1.1"), [(C2S, get)]),
        "no alpn, http/1.1": (TlsInfo(), [(C2S, get)]),
        "the preface a byte at a time": (None, [(C2S, PREFACE[i : i + 1]) for i in range(len(PREFACE))] + ndjson[1:]),
        "the server first, past the limit": (None, [(S2C, b"x" * (SNIFF_LIMIT + 1)), *ndjson]),
    }
    for case, (tls, conversation) in cases.items():
        analyzer = ConnectionAnalyzer(ConnectionOpened(1, 0.0, "127.0.0.1:1", SERVER, "reverse", tls=tls))
        records: list[Any] = [ConnectionOpened(1, 0.0, "127.0.0.1:1", SERVER, "reverse", tls=tls)]
        for n, (direction, data) in enumerate(conversation):
            analyzer.feed(direction, data, 1.0 + n)
            records.append(DataChunk(1, 1.0 + n, direction, data))
        protocol = analyzer.close(99.0).protocol
        flows = flows_from_records(records).flows
        versions = {flow.request.http_version for flow in flows if isinstance(flow, http.HTTPFlow)}
        assert (protocol == "h2") == (versions == {"HTTP/2.0"}), (case, protocol, versions)
        assert protocol == ("h2" if case in ("preface", "alpn h2", "the preface a byte at a time") else "http/1.1"), (
            case
        )


def test_speaks_http2() -> None:
    assert speaks_http2("h2", b"") is True
    assert speaks_http2("http/1.1", PREFACE) is False
    assert speaks_http2(None, b"") is None
    assert speaks_http2(None, PREFACE[:5]) is None
    assert speaks_http2(None, PREFACE) is True
    assert speaks_http2(None, b"GET") is False
    assert speaks_http2(None, PREFACE[:5], held=SNIFF_LIMIT + 1) is False
    assert speaks_http2(None, PREFACE[:5], ended=True) is True
    assert speaks_http2(None, b"", ended=True) is False
