"""Classification and per-transport summaries, on connections built from byte literals."""

from __future__ import annotations

import pytest

from inspector.capture import ConnectionOpened
from inspector.classify import Classifier, TransportRule
from inspector.connection import ConnectionAnalyzer, ConnectionRecord
from inspector.report import PerDirection
from inspector.summary import build_report
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

POLL = b"GET /poll?after=%d HTTP/1.1\r\nHost: x\r\n\r\n"
DATA = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]"
EMPTY = b"HTTP/1.1 204 No Content\r\n\r\n"


def connection(
    number: int, *chunks: tuple[float, Direction, bytes], classifier: Classifier | None = None
) -> ConnectionRecord:
    opened = ConnectionOpened(number, chunks[0][0], f"127.0.0.1:{50000 + number}", "127.0.0.1:8000", "reverse")
    analyzer = ConnectionAnalyzer(opened, classifier=classifier)
    for at, direction, data in chunks:
        analyzer.feed(direction, data, at)
    return analyzer.close(chunks[-1][0] + 0.01, "client closed")


def polls(
    number: int, wait: float, answers: list[bytes], start: float = 0.0, classifier: Classifier | None = None
) -> ConnectionRecord:
    chunks = []
    at = start
    for i, answer in enumerate(answers):
        chunks.append((at, C2S, POLL % i))
        at += wait
        chunks.append((at, S2C, answer))
        at += 0.01
    return connection(number, *chunks, classifier=classifier)


def test_repeated_requests_answered_at_once_are_short_polls_with_empty_polls_counted() -> None:
    report = build_report([polls(1, 0.01, [DATA, EMPTY, DATA, EMPTY, EMPTY])])
    poll = report.transport("short_poll")
    assert poll.messages == PerDirection(0, 2)
    assert poll.empty_polls == 3
    assert poll.empty_poll_bytes == 3 * (len(POLL % 1) + len(EMPTY))
    assert poll.handshakes == 0
    assert poll.head_bytes == poll.wire_bytes.total - poll.payload_bytes.total
    assert poll.payload_bytes == PerDirection(0, 4)


def test_a_held_request_makes_the_path_a_long_poll_across_connections() -> None:
    held = polls(1, 1.5, [DATA])
    quick = polls(2, 0.01, [DATA], start=5.0)
    report = build_report([held, quick])
    assert set(report.transports) == {"long_poll"}
    assert report.transport("long_poll").connections == 2
    patient = Classifier(long_poll_threshold=2.0)
    held, quick = polls(1, 1.5, [DATA], classifier=patient), polls(2, 0.01, [DATA], start=5.0, classifier=patient)
    assert build_report([held, quick]).transports.keys() == {"short_poll"}


def test_a_rule_overrides_what_the_traffic_looked_like() -> None:
    record = polls(1, 0.01, [DATA, DATA], classifier=Classifier((TransportRule.parse("/poll=long_poll"),)))
    report = build_report([record])
    assert set(report.transports) == {"long_poll"}
    assert report.connections[0].transport == "long_poll"


def test_a_single_request_is_plain_http() -> None:
    report = build_report([polls(1, 0.01, [DATA])])
    assert set(report.transports) == {"http"}


@pytest.mark.parametrize(
    ("text", "pattern", "method", "transport"),
    [
        ("/updates=long_poll", "/updates", None, "long_poll"),
        ("POST /api/*=short_poll", "/api/*", "POST", "short_poll"),
    ],
)
def test_transport_rules_parse(text: str, pattern: str, method: str | None, transport: str) -> None:
    rule = TransportRule.parse(text)
    assert (rule.pattern, rule.method, rule.transport) == (pattern, method, transport)


@pytest.mark.parametrize("text", ["/updates", "/x=carrier_pigeon", "updates=sse", "=sse"])
def test_bad_transport_rules_say_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match="transport rule"):
        TransportRule.parse(text)


def test_sse_summary_splits_handshake_syntax_and_payload() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
    body = b": hi\n\nid: 1\ndata: abc\n\ndata: de\n\n"
    request = b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"
    record = connection(1, (0.0, C2S, request), (0.1, S2C, head), (0.2, S2C, body))
    sse = build_report([record]).transport("sse")
    assert sse.messages == PerDirection(0, 2)
    assert sse.payload_bytes == PerDirection(0, 5)
    assert sse.handshakes == 1 and sse.handshake_bytes == len(request) + len(head)
    assert sse.categories["message_syntax"].server_to_client == len(body) - 5
    assert sse.wire_bytes == PerDirection(len(request), len(head) + len(body))
    assert sse.overhead_bytes == sse.wire_bytes.total - 5
    assert sse.wire_bytes_per_message == sse.wire_bytes.total / 2
    assert sse.time_to_first_byte is not None and sse.time_to_first_byte.max == pytest.approx(0.1)


def test_every_transport_summary_adds_up() -> None:
    report = build_report([polls(1, 0.01, [DATA, EMPTY]), polls(2, 1.2, [DATA, DATA], start=3)])
    for summary in report.transports.values():
        for direction in Direction:
            assert sum(split[direction] for split in summary.categories.values()) == summary.wire_bytes[direction]


def test_websocket_figures_sum_frames_and_compression() -> None:
    from test_connection import analyse, websocket_conversation

    c2s, s2c = websocket_conversation()
    ws = build_report([analyse(c2s, s2c)]).transport("websocket")
    assert ws.websocket is not None
    assert ws.websocket.data_frames == PerDirection(5, 5)
    assert ws.websocket.control_frames == PerDirection(2, 2)
    assert ws.websocket.compressed_messages == PerDirection(5, 5)
    assert ws.websocket.frame_header_bytes.client_to_server == 7 * (2 + 4)
    assert ws.handshakes == 1
    assert ws.payload_bytes.server_to_client > ws.websocket.wire_payload_bytes.server_to_client
