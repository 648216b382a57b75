"""HTTP/3 in the report: aioquic's conversations, recorded as a QUIC capture, read back.

Each conversation (tests/h3_conversations.py) is what an aioquic client and
server said to each other, stream by stream; written as a capture's QUIC
records, it must come out of ``rtinspect report`` with every byte counted
once, each exchange under its transport, and the same figures however the
capture is shared among processes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from h3_conversations import Conversation, Datagram, StreamBytes, conversation

from inspector.capture import (
    CaptureWriter,
    ConnectionClosed,
    ConnectionOpened,
    DatagramChunk,
    Record,
    StreamChunk,
    StreamEnded,
    TlsInfo,
    read_capture,
)
from inspector.connection import ConnectionAnalyzer
from inspector.formats.export import export_records
from inspector.render.json import report_to_dict
from inspector.replay import report_from_captures
from inspector.report import HTTP3
from inspector.wire import Direction

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
NAMES = ("get", "sse", "post", "websocket", "webtransport")


def quic_records(connection_id: int, talk: Conversation, start: float) -> list[Record]:
    """One conversation as the proxy records a QUIC connection."""
    opened = ConnectionOpened(
        connection_id,
        start,
        client=f"127.0.0.1:{50000 + connection_id}",
        server="127.0.0.1:4433",
        mode="reverse:https://localhost:4433",
        tls=TlsInfo("QUICv1", "localhost", "h3", None, start, start),
        transport="quic",
    )
    records: list[Record] = [opened]
    at = start
    for item in talk.records:
        at += 0.001
        if isinstance(item, StreamBytes):
            records.append(StreamChunk(connection_id, at, item.direction, item.stream_id, item.data))
        elif isinstance(item, Datagram):
            records.append(DatagramChunk(connection_id, at, item.direction, item.data))
        else:
            records.append(StreamEnded(connection_id, at, item.direction, item.stream_id, item.reset, item.error_code))
    records.append(ConnectionClosed(connection_id, at + 0.001, "client closed"))
    return records


def fed_bytes(talk: Conversation) -> dict[Direction, int]:
    fed = {C2S: 0, S2C: 0}
    for item in talk.records:
        if isinstance(item, (StreamBytes, Datagram)):
            fed[item.direction] += len(item.data)
    return fed


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("h3") / "h3.rtcap"
    with CaptureWriter(path) as writer:
        for number, name in enumerate(NAMES, start=1):
            for record in quic_records(number, conversation(name), 1_700_000_000.0 + number):
                writer.write(record)
    return path


def test_every_stream_and_datagram_byte_is_counted_once(capture: Path) -> None:
    report = report_from_captures([capture])
    fed = {C2S: 0, S2C: 0}
    for name in NAMES:
        for direction, size in fed_bytes(conversation(name)).items():
            fed[direction] += size
    for direction in Direction:
        assert sum(t.wire_bytes[direction] for t in report.transports.values()) == fed[direction]
        http3 = report.http3
        assert http3 is not None
        figures = (
            http3.stream_type_bytes,
            http3.frame_header_bytes,
            http3.header_block_bytes,
            http3.qpack_stream_bytes,
            http3.data_bytes,
            http3.control_bytes,
            http3.webtransport_bytes,
            http3.datagram_bytes,
            http3.unparsed_bytes,
        )
        assert sum(figure[direction] for figure in figures) == fed[direction]
    assert all(c.protocol == HTTP3 for c in report.connections)
    assert not any(c.anomalies for c in report.connections)


def test_each_exchange_is_under_its_transport(capture: Path) -> None:
    report = report_from_captures([capture])
    assert set(report.transports) == {"sse", "websocket", "webtransport", "http"}
    sse = report.transport("sse")
    assert sse.messages.server_to_client == 20 and sse.handshakes == 1
    assert set(sse.by_protocol) == {HTTP3}
    websocket = report.transport("websocket")
    assert websocket.handshakes == 1 and websocket.websocket is not None
    assert websocket.messages.total == websocket.websocket.data_frames.total > 0
    webtransport = report.transport("webtransport")
    figures = webtransport.webtransport
    assert figures is not None and figures.sessions == 1
    assert figures.datagrams.client_to_server == figures.datagrams.server_to_client == 3
    assert figures.streams.client_to_server > 0 and figures.streams.server_to_client > 0
    assert webtransport.messages.total == figures.streams.total + figures.datagrams.total
    assert webtransport.app_messages == webtransport.messages
    assert webtransport.http3 is not None and webtransport.http3.webtransport_bytes.total > 0


def test_the_json_names_http3_and_webtransport(capture: Path) -> None:
    document = report_to_dict(report_from_captures([capture]))
    assert document["http3"]["frames"]["server_to_client"]["DATA"] > 0
    assert document["transports"]["sse"]["by_protocol"].keys() == {HTTP3}
    assert document["transports"]["sse"]["http3"]["data_bytes"]["server_to_client"] > 0
    assert document["transports"]["sse"]["http2"] is None
    webtransport = document["transports"]["webtransport"]
    assert webtransport["sessions"] == 1
    assert set(webtransport["datagrams"]) == {"client_to_server", "server_to_client"}
    assert {c["protocol"] for c in document["connections"]} == {HTTP3}


def test_processes_sharing_the_capture_give_the_same_report(capture: Path) -> None:
    one = json.dumps(report_to_dict(report_from_captures([capture], jobs=1)), sort_keys=True)
    two = json.dumps(report_to_dict(report_from_captures([capture], jobs=2)), sort_keys=True)
    assert one == two


@pytest.mark.parametrize("name", ["get", "sse", "post", "websocket"])
@pytest.mark.parametrize("piece", [1, 7, 1 << 20])
def test_each_request_stream_is_its_exchange_however_it_is_read(name: str, piece: int) -> None:
    """A request stream's bytes, its HEADERS frame's type and length included, are all its
    exchange's, whether the stream is read byte by byte or whole."""
    talk = conversation(name)
    analyzer = ConnectionAnalyzer(quic_records(1, talk, 1.0)[0])  # type: ignore[arg-type]
    sent: dict[tuple[Direction, int], int] = {}
    for item in talk.records:
        if isinstance(item, StreamBytes):
            sent[(item.direction, item.stream_id)] = sent.get((item.direction, item.stream_id), 0) + len(item.data)
            for start in range(0, len(item.data), piece):
                analyzer.feed_stream(item.direction, item.stream_id, item.data[start : start + piece], 2.0)
        elif isinstance(item, Datagram):
            analyzer.datagram(item.direction, item.data, 2.0)
        else:
            analyzer.end_stream(item.direction, item.stream_id, item.reset, item.error_code, 2.0)
    record = analyzer.close(3.0, "client closed")
    assert record.exchanges and not record.anomalies
    for exchange in record.exchanges:
        for direction in Direction:
            assert exchange.accounts[direction].total == sent.get((direction, exchange.index), 0)


@pytest.mark.parametrize("fmt", ["pcapng", "har", "mitmproxy"])
def test_exports_leave_quic_connections_out_and_say_so(capture: Path, fmt: str) -> None:
    with read_capture(capture) as records:
        exported = export_records(records, fmt, io.BytesIO())
    assert exported.notes[-1].startswith(f"{len(NAMES)} QUIC connection(s) are not in the export")
