"""HTTP/1.1 shapes, each pinned with a small byte literal: where every byte went."""

from __future__ import annotations

import tracemalloc

import pytest

from inspector.capture import ConnectionOpened
from inspector.connection import ConnectionAnalyzer, ConnectionRecord
from inspector.events import BodyData, HttpEvent, ParseFailure, ProtocolSwitch, ResponseHead, Unparsed
from inspector.http1 import LONGEST_FRAMING, LONGEST_HEAD, PIPELINE_LIMIT, Http1Parser
from inspector.wire import Category, Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
OPENED = ConnectionOpened(1, 0.0, "127.0.0.1:50000", "127.0.0.1:8000", "reverse")


def run(*chunks: tuple[Direction, bytes]) -> ConnectionRecord:
    analyzer = ConnectionAnalyzer(OPENED)
    for i, (direction, data) in enumerate(chunks):
        analyzer.feed(direction, data, float(i))
    return analyzer.close(float(len(chunks)), "client closed")


def test_expect_100_continue_counts_the_interim_response_as_a_head() -> None:
    head = b"POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
    interim = b"HTTP/1.1 100 Continue\r\n\r\n"
    final = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"
    record = run((C2S, head), (S2C, interim), (C2S, b"abc"), (S2C, final))
    (exchange,) = record.exchanges
    assert [h.status for h in exchange.interim] == [100]
    assert exchange.response is not None and exchange.response.status == 201
    assert exchange.accounts[S2C][Category.HEAD] == len(interim) + len(final)
    assert exchange.accounts[C2S][Category.PAYLOAD] == 3
    assert record.anomalies == ()


def test_pipelined_requests_are_paired_with_their_responses_in_order() -> None:
    requests = (
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nHEAD /b HTTP/1.1\r\nHost: x\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    responses = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
        b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"  # HEAD: the length describes a body that is not sent
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc"
    )
    record = run((C2S, requests), (S2C, responses))
    assert [e.request.target for e in record.exchanges if e.request] == ["/a", "/b", "/c"]
    assert [e.accounts[S2C][Category.PAYLOAD] for e in record.exchanges] == [1, 0, 1]
    assert record.wire_bytes(S2C) == len(responses)
    assert record.anomalies == ()


def test_a_response_that_ends_at_connection_close() -> None:
    record = run((C2S, b"GET / HTTP/1.0\r\n\r\n"), (S2C, b"HTTP/1.0 200 OK\r\n\r\nall of it"))
    (exchange,) = record.exchanges
    assert exchange.accounts[S2C][Category.PAYLOAD] == len(b"all of it")
    assert exchange.response_ended_at is not None
    assert record.anomalies == ()


def test_a_truncated_body_is_an_anomaly_and_its_bytes_still_count() -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    record = run((C2S, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), (S2C, response))
    (anomaly,) = record.anomalies
    assert anomaly.direction is S2C
    assert record.wire_bytes(S2C) == len(response)


def test_bad_chunk_size_stops_parsing_at_the_chunk() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"zz\r\nhello\r\n0\r\n\r\n"
    record = run((C2S, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), (S2C, head + body))
    (anomaly,) = record.anomalies
    assert anomaly.direction is S2C and anomaly.offset == len(head)
    assert record.account(S2C)[Category.UNPARSED] == len(body)


def test_a_refused_upgrade_leaves_the_connection_speaking_http() -> None:
    upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    refusal = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 2\r\n\r\nno"
    again = b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n"
    ok = b"HTTP/1.1 204 No Content\r\n\r\n"
    record = run((C2S, upgrade), (S2C, refusal), (C2S, again), (S2C, ok))
    assert [e.response.status for e in record.exchanges if e.response] == [400, 204]
    assert record.anomalies == ()


def test_tls_on_a_plain_port_is_named() -> None:
    hello = bytes.fromhex("160301020001000200") + b"\x03\x03" + bytes(40)
    record = run((C2S, hello))
    (anomaly,) = record.anomalies
    assert anomaly.offset == 0 and "TLS" in anomaly.reason
    assert record.account(C2S)[Category.UNPARSED] == len(hello)


def test_a_chunked_stream_cut_between_chunks_is_not_an_anomaly() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"9\r\ndata: a\n\n\r\n"
    record = run((C2S, b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"), (S2C, head), (S2C, chunk))
    assert record.anomalies == ()
    (exchange,) = record.exchanges
    assert exchange.accounts[S2C][Category.CHUNK_FRAMING] == len(b"9\r\n\r\n")
    assert exchange.accounts[S2C][Category.UNPARSED] == 0
    assert exchange.response_ended_at is None


SMUGGLING_HEADS = {
    "content-length-and-transfer-encoding": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
    "conflicting-content-lengths": b"Content-Length: 5\r\nContent-Length: 6\r\n",
    "conflicting-content-length-list": b"Content-Length: 5, 6\r\n",
    "content-length-with-a-sign": b"Content-Length: +5\r\n",
    "transfer-encoding-twice": b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    "chunked-then-identity": b"Transfer-Encoding: chunked, identity\r\n",
    "identity-alone": b"Transfer-Encoding: identity\r\n",
    "transfer-encoding-folded": b"Transfer-Encoding:\r\n chunked\r\n",
    "content-length-folded": b"Content-Length:\r\n\t5\r\n",
    "transfer-encoding-hidden-in-a-fold": b"Content-Length: 5\r\nX-Pad: x\r\n Transfer-Encoding: chunked\r\n",
    "transfer-encoding-space-before-colon": b"Transfer-Encoding : chunked\r\n",
    "content-length-tab-before-colon": b"Content-Length\t: 5\r\n",
    "space-before-colon-beside-a-content-length": b"Content-Length: 5\r\ntransfer-encoding  : chunked\r\n",
}


@pytest.mark.parametrize("fields", SMUGGLING_HEADS.values(), ids=SMUGGLING_HEADS.keys())
@pytest.mark.parametrize("direction", [C2S, S2C], ids=["request", "response"])
def test_an_ambiguous_message_length_is_a_security_anomaly_at_its_head(fields: bytes, direction: Direction) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    if direction is C2S:
        first = request
        sent = b"POST /up HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n0\r\n\r\n"
        record = run((C2S, first + sent))
    else:
        first = b"HTTP/1.1 204 No Content\r\n\r\n"
        sent = b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n0\r\n\r\n"
        record = run((C2S, request + request), (S2C, first + sent))
    (anomaly,) = record.anomalies
    assert anomaly.direction is direction and anomaly.offset == len(first)
    assert anomaly.security and anomaly.reason.endswith("(request smuggling shape)")
    # No byte of the ambiguous message is read as body: its head is a head or unparsed, the rest unparsed.
    account = record.account(direction)
    assert account[Category.HEAD] + account[Category.UNPARSED] == account.total == len(first + sent)
    assert account[Category.UNPARSED] >= len(b"0\r\n\r\n")


def test_whitespace_before_the_colon_of_an_ordinary_field_is_refused_but_not_a_smuggling_shape() -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Transfer-Encoding : chunked\r\n\r\n"
    record = run((C2S, request))
    (anomaly,) = record.anomalies
    assert (anomaly.offset, anomaly.reason, anomaly.security) == (0, "invalid request: illegal header line", False)
    assert record.account(C2S)[Category.UNPARSED] == len(request)


def test_obsolete_line_folding_in_an_ordinary_field_is_unfolded_and_accepted() -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Note: one\r\n two\r\n\r\n"
    record = run((C2S, request), (S2C, b"HTTP/1.1 204 No Content\r\n\r\n"))
    assert record.anomalies == ()
    (exchange,) = record.exchanges
    assert exchange.request is not None and exchange.request.header("x-note") == "one two"
    assert exchange.accounts[C2S][Category.HEAD] == len(request)


@pytest.mark.parametrize("size", [LONGEST_HEAD, LONGEST_HEAD + 1])
def test_a_head_over_16_kib_is_refused_however_it_arrives(size: int) -> None:
    start = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: "
    head = start + b"a" * (size - len(start) - 4) + b"\r\n\r\n"
    assert len(head) == size
    results = []
    for piece in (1, 1000, size):
        analyzer = ConnectionAnalyzer(OPENED)
        for i in range(0, size, piece):
            analyzer.feed(C2S, head[i : i + piece], 0.0)
        record = analyzer.close(1.0)
        results.append((record.anomalies, record.account(C2S)))
    assert results[0] == results[1] == results[2]
    anomalies, account = results[0]
    if size > LONGEST_HEAD:
        assert [(a.offset, a.reason) for a in anomalies] == [(0, "invalid request: Receive buffer too long")]
        assert account[Category.UNPARSED] == size
    else:
        assert anomalies == () and account[Category.HEAD] == size


@pytest.mark.parametrize(
    "fault", [b"Bad Name: x\r\n", b"Content-Length: 5\r\nContent-Length: 6\r\n"], ids=["bad-field", "two-lengths"]
)
def test_a_malformed_head_over_16_kib_is_refused_for_its_length_however_it_arrives(fault: bytes) -> None:
    """In pieces, h11 refuses the head for its length before it reads the fault; whole, it reads the fault."""
    start = b"POST / HTTP/1.1\r\nHost: x\r\n" + fault + b"X-Pad: "
    head = start + b"a" * (LONGEST_HEAD + 1 - len(start) - 4) + b"\r\n\r\n"
    sent = head + b"0\r\n\r\n"
    for piece in (1, 1000, len(sent)):
        analyzer = ConnectionAnalyzer(OPENED)
        for i in range(0, len(sent), piece):
            analyzer.feed(C2S, sent[i : i + piece], 0.0)
        record = analyzer.close(1.0)
        assert [(a.offset, a.reason, a.security) for a in record.anomalies] == [
            (0, "invalid request: Receive buffer too long", False)
        ]
        assert record.account(C2S)[Category.UNPARSED] == len(sent)


def oversized_framing(where: str, size: int) -> tuple[bytes, bytes, bytes]:
    """A chunked body with a chunk-size line or trailer section of ``size`` bytes:
    (the body before it, it, the rest)."""
    if where == "first chunk-size line":
        return b"", b"5;pad=" + b"p" * (size - 8) + b"\r\n", b"hello\r\n0\r\n\r\n"
    if where == "chunk-size line":
        return b"3\r\nabc\r\n", b"5;pad=" + b"p" * (size - 8) + b"\r\n", b"hello\r\n0\r\n\r\n"
    if where == "last chunk's line":
        return b"3\r\nabc\r\n", b"0;pad=" + b"p" * (size - 8) + b"\r\n", b"X-Trailer: 1\r\n\r\n"
    assert where == "trailers"
    return b"3\r\nabc\r\n0\r\n", b"X-Pad: " + b"p" * (size - 11) + b"\r\n\r\n", b""


FRAMING_PLACES = ["first chunk-size line", "chunk-size line", "last chunk's line", "trailers"]


@pytest.mark.parametrize("size", [LONGEST_FRAMING, LONGEST_FRAMING + 1])
@pytest.mark.parametrize("where", FRAMING_PLACES)
@pytest.mark.parametrize("direction", [C2S, S2C], ids=["request", "response"])
def test_a_chunk_size_line_or_trailers_over_16_kib_are_refused_however_they_arrive(
    direction: Direction, where: str, size: int
) -> None:
    before, framing, after = oversized_framing(where, size)
    assert len(framing) == size
    request = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    head = request if direction is C2S else b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    sent = head + before + framing + after
    results = []
    for piece in (1, 1000, len(sent)):
        analyzer = ConnectionAnalyzer(OPENED)
        if direction is S2C:
            analyzer.feed(C2S, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
        for i in range(0, len(sent), piece):
            analyzer.feed(direction, sent[i : i + piece], 0.0)
        record = analyzer.close(1.0)
        results.append(([(a.direction, a.offset, a.reason) for a in record.anomalies], record.account(direction)))
    assert results[0] == results[1] == results[2]
    anomalies, account = results[0]
    what = "request" if direction is C2S else "response"
    if size > LONGEST_FRAMING:
        # Refused at its first byte, whole: everything from there on is unparsed.
        assert anomalies == [(direction, len(head + before), f"invalid {what}: Receive buffer too long")]
        assert account[Category.UNPARSED] == len(framing + after)
        parsed = account[Category.HEAD] + account[Category.PAYLOAD] + account[Category.CHUNK_FRAMING]
        assert parsed == len(head + before)
    else:
        assert anomalies == []
        assert account[Category.CHUNK_FRAMING] == len(sent) - len(head) - account[Category.PAYLOAD]


def test_bad_chunk_size_after_a_chunk_is_placed_at_the_size_line() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    first = b"5\r\nhello\r\n"
    rest = b"zz\r\nworld\r\n0\r\n\r\n"
    for piece in (1, len(head + first + rest)):
        response = head + first + rest
        chunks = [(S2C, response[i : i + piece]) for i in range(0, len(response), piece)]
        record = run((C2S, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), *chunks)
        (anomaly,) = record.anomalies
        assert anomaly.offset == len(head + first)
        account = record.account(S2C)
        assert account[Category.CHUNK_FRAMING] == len(b"5\r\n\r\n")
        assert account[Category.UNPARSED] == len(rest)


def test_a_response_seen_before_its_request_is_still_paired_with_it() -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    record = run((S2C, response[:10]), (C2S, b"GET /early HTTP/1.1\r\nHost: x\r\n\r\n"), (S2C, response[10:]))
    (exchange,) = record.exchanges
    assert exchange.response is not None and exchange.response.status == 200
    assert exchange.accounts[S2C][Category.PAYLOAD] == 2
    assert record.anomalies == ()


def test_a_request_left_unanswered_at_close_is_not_an_anomaly() -> None:
    record = run((C2S, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"))
    (exchange,) = record.exchanges
    assert exchange.response is None
    assert record.anomalies == ()


def test_each_response_is_framed_by_its_own_request() -> None:
    """Responses are read as answers to the method and Upgrade proposal of their
    request, whatever requests came before on the connection."""
    requests = [
        b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /b HTTP/1.1\r\nHost: y\r\n\r\n",
        b"HEAD /c HTTP/1.1\r\nHost: z\r\n\r\n",
        b"GET /d HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    ]
    refusal = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"
    parser = Http1Parser()
    events: list[HttpEvent] = []
    for request in requests:
        events += parser.feed(C2S, request, 0.0)
        events += parser.feed(S2C, refusal + (b"" if request.startswith(b"HEAD") else b"abc"), 0.0)
    events += parser.feed(C2S, b"GET /e HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 0.0)
    events += parser.feed(
        S2C, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 0.0
    )
    events += parser.close(1.0)
    body = [0] * 5
    for event in events:
        if isinstance(event, BodyData) and event.direction is S2C:
            body[event.exchange] += len(event.data)
    assert body == [0, 3, 0, 3, 0]
    assert [e.status for e in events if isinstance(e, ResponseHead)] == [200, 200, 200, 200, 101]
    assert sum(isinstance(e, ProtocolSwitch) for e in events) == 2
    assert not any(isinstance(e, ParseFailure) for e in events)


@pytest.mark.parametrize("tail", [b"5\r\nhello\r", b"5\r\nhello\r\n", b"5\r\nhel"])
def test_a_chunked_request_cut_by_the_client_is_an_anomaly_not_a_crash(tail: bytes) -> None:
    """Only a response cut between chunks is how a stream ends; a request cut anywhere is incomplete."""
    request = b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + tail
    record = run((C2S, request))
    (anomaly,) = record.anomalies
    assert anomaly.direction is C2S and "incomplete chunked read" in anomaly.reason
    assert record.wire_bytes(C2S) == len(request)


def test_a_hole_in_a_response_stops_that_direction_behind_one_anomaly() -> None:
    """A packet capture lost bytes of the body: what follows is counted, unparsed, and never read
    as the rest of the body or as the next response."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    analyzer = ConnectionAnalyzer(OPENED)
    analyzer.feed(C2S, request, 0.0)
    analyzer.feed(S2C, head + b"abc", 1.0)
    analyzer.gap(S2C, 4, 2.0)
    analyzer.feed(S2C, b"hij" + b"HTTP/1.1 204 No Content\r\n\r\n", 3.0)
    record = analyzer.close(4.0, "server closed")
    assert record.opened.reconstructed
    (anomaly,) = record.anomalies
    assert anomaly.direction is S2C and anomaly.offset == len(head) + 3
    assert anomaly.reason == f"4 bytes missing from the packet capture at byte {len(head) + 3}; not parsed from there"
    assert len(record.exchanges) == 1 and record.account(S2C)[Category.PAYLOAD] == 3
    assert record.wire_bytes(S2C) == len(head) + 3 + 3 + len(b"HTTP/1.1 204 No Content\r\n\r\n")


def test_a_hole_after_a_whole_chunk_leaves_its_crlf_framing_and_the_anomaly_at_the_hole() -> None:
    """An SSE stream whose capture lost bytes just after a chunk: h11 holds that chunk's CRLF until the
    next size line, but it is the chunk's framing, and the hole, not the CRLF, is where parsing stops."""
    request = b"GET /sse HTTP/1.1\r\nHost: x\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"d\r\ndata: hello\n\n\r\n"
    analyzer = ConnectionAnalyzer(OPENED)
    analyzer.feed(C2S, request, 0.0)
    analyzer.feed(S2C, head + chunk, 1.0)
    at = len(head) + len(chunk)
    analyzer.gap(S2C, 18, 2.0)
    after = b"data: again\n\n\r\n0\r\n\r\n"
    analyzer.feed(S2C, after, 3.0)
    record = analyzer.close(4.0, "server closed")
    (anomaly,) = record.anomalies
    assert anomaly.offset == at
    assert anomaly.reason == f"18 bytes missing from the packet capture at byte {at}; not parsed from there"
    account = record.account(S2C)
    assert account[Category.CHUNK_FRAMING] == len(b"d\r\n") + len(b"\r\n")
    assert account[Category.UNPARSED] == len(after)
    assert record.wire_bytes(S2C) == len(head) + len(chunk) + len(after)


def test_a_hole_inside_a_head_says_where_the_head_began() -> None:
    """The anomaly is where parsing stopped (the start of the head the hole cut), and its reason
    says so beside where the hole is."""
    request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    analyzer = ConnectionAnalyzer(OPENED)
    analyzer.feed(C2S, request, 0.0)
    analyzer.feed(S2C, b"HTTP/1.1 200 OK\r\nContent-", 1.0)
    analyzer.gap(S2C, 10, 2.0)
    analyzer.feed(S2C, b"Length: 0\r\n\r\n", 3.0)
    record = analyzer.close(4.0, "server closed")
    (anomaly,) = record.anomalies
    assert anomaly.offset == 0
    assert anomaly.reason == (
        "10 bytes missing from the packet capture at byte 25, inside what began at byte 0; not parsed from there"
    )


def test_responses_no_request_can_answer_are_not_held() -> None:
    """Once the request direction has stopped, response bytes that have no request fail at once
    (counted as unparsed while the connection is open), instead of waiting for one to the end."""
    analyzer = ConnectionAnalyzer(OPENED)
    analyzer.feed(C2S, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0.0)
    analyzer.feed(S2C, b"HTTP/1.1 204 No Content\r\n\r\n", 1.0)
    analyzer.gap(C2S, 100, 2.0)
    late = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    analyzer.feed(S2C, late, 3.0)
    assert analyzer.snapshot().account(S2C)[Category.UNPARSED] == len(late)
    record = analyzer.close(4.0, "client closed")
    assert [a.reason for a in record.anomalies if a.direction is S2C] == ["response bytes with no request to answer"]


PIPELINED = b"GET /p HTTP/1.1\r\nHost: x\r\n\r\n"


def test_pipelined_requests_never_answered_stop_at_a_bound_and_every_byte_is_counted() -> None:
    """A client that pipelines and a server that never answers: the parser keeps at most
    PIPELINE_LIMIT requests waiting, flags the first past them once, and counts the rest as unparsed.
    The responses that do come answer the requests kept, in order."""
    parser = Http1Parser()
    events: list[HttpEvent] = []
    extra = 500
    for i in range(PIPELINE_LIMIT + extra):
        events += parser.feed(C2S, PIPELINED, float(i))
    assert len(parser._unanswered) == PIPELINE_LIMIT
    (failure,) = [e for e in events if isinstance(e, ParseFailure)]
    assert failure.anomaly.direction is C2S and failure.anomaly.offset == PIPELINE_LIMIT * len(PIPELINED)
    assert "over 1,000 pipelined requests waiting for responses" in failure.anomaly.reason
    assert sum(e.size for e in events if isinstance(e, Unparsed)) == extra * len(PIPELINED)
    answered = parser.feed(S2C, b"HTTP/1.1 204 No Content\r\n\r\n" * PIPELINE_LIMIT, 1e4)
    assert [e.exchange for e in answered if isinstance(e, ResponseHead)] == list(range(PIPELINE_LIMIT))
    assert not parser._unanswered


def _peak_memory_of_pipelining(requests: int) -> tuple[int, ConnectionRecord]:
    tracemalloc.start()
    try:
        analyzer = ConnectionAnalyzer(OPENED)
        for i in range(requests):
            analyzer.feed(C2S, PIPELINED, i * 1e-3)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, analyzer.close(1e3, "client closed")


def test_the_memory_of_unanswered_pipelining_does_not_grow_with_the_requests() -> None:
    # Unbounded, 8,000 more requests kept about 26 MB more (some 3 KB each); bounded, the same.
    (few, _), (many, record) = _peak_memory_of_pipelining(2 * PIPELINE_LIMIT), _peak_memory_of_pipelining(10_000)
    assert many - few < 1_000_000, (few, many)
    assert record.wire_bytes(C2S) == 10_000 * len(PIPELINED)
    assert record.account(C2S)[Category.UNPARSED] == (10_000 - PIPELINE_LIMIT) * len(PIPELINED)
    assert len(record.anomalies) == 1
