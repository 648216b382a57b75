"""The three invariants of the core, on whole connections (both directions,
interleaved): the parts add up, chunking does not matter, nothing raises."""

from __future__ import annotations

import random
import zlib
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_http1 import FRAMING_PLACES, oversized_framing

from inspector.capture import ConnectionOpened
from inspector.connection import BodyKind, ConnectionAnalyzer, ConnectionRecord
from inspector.http1 import LONGEST_FRAMING
from inspector.wire import Category, Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

OPENED = ConnectionOpened(1, 0.0, "127.0.0.1:50000", "127.0.0.1:8000", "reverse")

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)
ACCEPT = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
)


def _masked(opcode: int, payload: bytes, rsv1: bool = False) -> bytes:
    key = b"\x01\x02\x03\x04"
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | (0x40 if rsv1 else 0) | opcode, 0x80 | len(payload)]) + key + masked


def _deflated(payload: bytes, compressor: zlib._Compress) -> bytes:
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def websocket_conversation() -> tuple[bytes, bytes]:
    server = zlib.compressobj(wbits=-15)
    client = zlib.compressobj(wbits=-15)
    s2c = ACCEPT
    c2s = UPGRADE
    for i in range(5):
        body = _deflated(b'{"seq": %d, "payload": "hello hello hello"}' % i, server)
        s2c += bytes([0xC1, len(body)]) + body
        c2s += _masked(0x1, _deflated(b"ack %d" % i, client), rsv1=True)
    s2c += b"\x89\x00"  # ping
    c2s += _masked(0xA, b"")  # pong
    c2s += _masked(0x8, b"\x03\xe8bye")
    s2c += b"\x88\x02\x03\xe8"
    return c2s, s2c


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


def http_conversation() -> tuple[bytes, bytes]:
    c2s = (
        b"GET /poll?after=0 HTTP/1.1\r\nHost: x\r\n\r\n"
        b"POST /send HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
        b"GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    s2c = (
        b"HTTP/1.1 204 No Content\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;ext=1\r\nok\r\n0\r\nX-Trailer: 1\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        + _chunk(b": heartbeat\r\ndata: \r")
        + _chunk(b"\nx\nid: 7\r\n\r\ndata:y\n")
        + _chunk(b"\n")
        + _chunk(b"data: multi\r")  # a data line whose CRLF ends in the next chunk...
        + _chunk(b"\ndata: line\r")  # ...joined by its CR to this one
        + _chunk(b"\r")
        + b"0\r\n\r\n"
    )
    return c2s, s2c


def analyse(c2s: bytes, s2c: bytes, cuts: random.Random | None = None, one_byte: bool = False) -> ConnectionRecord:
    """Feed both directions interleaved (client first, as on the wire), split as asked."""
    return analyse_pieces({C2S: _split(c2s, cuts, one_byte), S2C: _split(s2c, cuts, one_byte)})


def analyse_pieces(pieces: dict[Direction, list[bytes]]) -> ConnectionRecord:
    """Feed the pieces of both directions interleaved, client first."""
    analyzer = ConnectionAnalyzer(OPENED)
    while pieces[C2S] or pieces[S2C]:
        for direction in (C2S, S2C):
            if pieces[direction]:
                analyzer.feed(direction, pieces[direction].pop(0), 1.0)
    return analyzer.close(2.0, "client closed")


def _split(data: bytes, cuts: random.Random | None, one_byte: bool) -> list[bytes]:
    if one_byte:
        return [data[i : i + 1] for i in range(len(data))]
    if cuts is None:
        return [data] if data else []
    points = sorted(cuts.sample(range(1, len(data)), min(len(data) - 1, cuts.randint(0, 12)))) if len(data) > 1 else []
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


def essentials(record: ConnectionRecord) -> object:
    """Everything in a record except timing, which follows the chunks by design."""
    return (
        [record.account(d).as_dict() for d in Direction],
        [
            (
                e.index,
                e.request.target if e.request else None,
                e.response.status if e.response else None,
                e.body_kind,
                [e.accounts[d].as_dict() for d in Direction],
                e.stream_messages,
                e.stream_payload,
                sorted(e.stream_message_sizes.values()),
                e.websocket.data_frames if e.websocket else None,
                e.websocket.control_frames if e.websocket else None,
            )
            for e in record.exchanges
        ],
        [
            (
                key,
                [totals.accounts[d].as_dict() for d in Direction],
                totals.messages,
                totals.payload,
                totals.exchanges,
                totals.empty_responses,
                sorted(totals.sizes.values()),
            )
            for key, totals in record.totals.items()
        ],
        # h11's detail after "invalid request:" can name a different fault of
        # doubly malformed bytes depending on how they arrived; the kind and offset cannot.
        [(a.direction, a.offset, a.reason.split(":", 1)[0]) for a in record.anomalies],
    )


def test_websocket_connection_is_accounted_to_the_byte() -> None:
    c2s, s2c = websocket_conversation()
    record = analyse(c2s, s2c)
    assert record.anomalies == ()
    (exchange,) = record.exchanges
    assert exchange.body_kind is BodyKind.WEBSOCKET
    assert exchange.websocket is not None and exchange.websocket.deflate is not None
    assert exchange.stream_messages == {C2S: 5, S2C: 5}
    assert exchange.websocket.compressed_messages == {C2S: 5, S2C: 5}
    assert exchange.websocket.control_frames == {C2S: 2, S2C: 2}
    assert exchange.websocket.close_codes == {C2S: 1000, S2C: 1000}
    assert exchange.accounts[C2S][Category.HEAD] == len(UPGRADE)
    assert exchange.accounts[S2C][Category.HEAD] == len(ACCEPT)
    assert exchange.accounts[C2S][Category.MASK_KEY] == 4 * 7
    assert exchange.accounts[C2S][Category.CONTROL] == len(b"\x03\xe8bye")
    assert exchange.stream_payload[S2C] == sum(
        len(b'{"seq": %d, "payload": "hello hello hello"}' % i) for i in range(5)
    )
    for direction, data in ((C2S, c2s), (S2C, s2c)):
        assert record.wire_bytes(direction) == len(data)


def test_http_exchanges_are_accounted_to_the_byte() -> None:
    c2s, s2c = http_conversation()
    record = analyse(c2s, s2c)
    assert record.anomalies == ()
    poll, send, sse = record.exchanges
    assert poll.response is not None and poll.response.status == 204
    assert poll.accounts[S2C].as_dict()["payload"] == 0
    assert send.accounts[C2S][Category.PAYLOAD] == 5
    assert send.accounts[S2C][Category.PAYLOAD] == 2
    # "2;ext=1\r\n" + "\r\n" + "0\r\n" + "X-Trailer: 1\r\n" + "\r\n"
    assert send.accounts[S2C][Category.CHUNK_FRAMING] == 9 + 2 + 3 + 14 + 2
    assert sse.body_kind is BodyKind.SSE
    assert sse.stream_messages[S2C] == 3
    # The events' data: "" (the line "x" is a field of no meaning), "y", then "multi\nline",
    # whose LF is the first byte of the CRLF after "multi".
    assert sse.stream_payload[S2C] == sse.accounts[S2C][Category.PAYLOAD] == len("y" + "multi\nline")
    for direction, data in ((C2S, c2s), (S2C, s2c)):
        assert record.wire_bytes(direction) == len(data)


def test_smuggling_shape_is_a_security_anomaly_and_the_rest_is_unparsed() -> None:
    c2s = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\n\r\n"
    record = analyse(c2s, b"")
    (anomaly,) = record.anomalies
    assert anomaly.security and anomaly.offset == 0 and anomaly.direction is C2S
    head = c2s.index(b"\r\n\r\n") + 4
    assert record.account(C2S)[Category.HEAD] == head
    assert record.account(C2S)[Category.UNPARSED] == len(c2s) - head


def test_garbage_after_a_101_is_an_anomaly_with_its_offset() -> None:
    s2c = ACCEPT + b"\x83\x00garbage"  # reserved opcode 3
    record = analyse(UPGRADE, s2c)
    (anomaly,) = record.anomalies
    assert anomaly.direction is S2C and anomaly.offset == len(ACCEPT)
    assert record.account(S2C)[Category.UNPARSED] == len(s2c) - len(ACCEPT)


CONVERSATIONS = [websocket_conversation(), http_conversation()]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from([0, 1]), seed=st.integers(0, 2**32))
def test_chunking_does_not_matter(which: int, seed: int) -> None:
    c2s, s2c = CONVERSATIONS[which]
    whole = essentials(analyse(c2s, s2c))
    assert essentials(analyse(c2s, s2c, cuts=random.Random(seed))) == whole


def test_one_byte_at_a_time_matches_one_chunk() -> None:
    for c2s, s2c in CONVERSATIONS:
        assert essentials(analyse(c2s, s2c, one_byte=True)) == essentials(analyse(c2s, s2c))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    where=st.sampled_from(FRAMING_PLACES),
    size=st.integers(LONGEST_FRAMING - 1, LONGEST_FRAMING + 2),
    direction=st.sampled_from(Direction),
    data=st.data(),
)
def test_chunking_does_not_matter_for_chunk_size_lines_and_trailers_near_16_kib(
    where: str, size: int, direction: Direction, data: st.DataObject
) -> None:
    """h11 refuses a chunk-size line or trailer section once it holds more than 16 KiB
    of it, so a cut just before its end is the split that matters."""
    before, framing, after = oversized_framing(where, size)
    request = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    if direction is C2S:
        c2s, s2c = request + before + framing + after, response + b"0\r\n\r\n"
    else:
        c2s, s2c = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", response + before + framing + after
    sent = c2s if direction is C2S else s2c
    end = sent.index(framing) + len(framing)
    near_the_end = st.integers(end - 3, end - 1)
    points = data.draw(st.lists(st.one_of(st.integers(1, len(sent) - 1), near_the_end), max_size=6))
    points = sorted({0, len(sent), *points})
    pieces = {C2S: [c2s], S2C: [s2c]}
    pieces[direction] = [sent[a:b] for a, b in pairwise(points)]
    whole = analyse(c2s, s2c)
    record = analyse_pieces(pieces)
    assert essentials(record) == essentials(whole)
    assert record.anomalies == whole.anomalies
    if size > LONGEST_FRAMING:
        (anomaly,) = whole.anomalies
        assert anomaly.offset == end - len(framing) and anomaly.reason.endswith("Receive buffer too long")
    else:
        assert whole.anomalies == ()


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randrange(len(out) + 1)
        if choice < 0.4 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        elif choice < 0.7:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        else:
            del out[at : at + rng.randint(1, 16)]
    return bytes(out)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(which=st.sampled_from([0, 1]), seed=st.integers(0, 2**32), raw=st.binary(max_size=200))
def test_any_bytes_yield_a_record_whose_parts_add_up(which: int, seed: int, raw: bytes) -> None:
    rng = random.Random(seed)
    c2s, s2c = CONVERSATIONS[which]
    c2s, s2c = _mutate(c2s, rng), _mutate(s2c, rng) + raw
    record = analyse(c2s, s2c, cuts=rng)
    for direction, data in ((C2S, c2s), (S2C, s2c)):
        assert record.account(direction).total == len(data)
    assert essentials(analyse(c2s, s2c)) == essentials(record)


@settings(max_examples=200, deadline=None)
@given(c2s=st.binary(max_size=300), s2c=st.binary(max_size=300))
def test_random_bytes_never_raise(c2s: bytes, s2c: bytes) -> None:
    record = analyse(c2s, s2c, cuts=random.Random(0))
    assert record.wire_bytes(C2S) == len(c2s)
    assert record.wire_bytes(S2C) == len(s2c)


def test_snapshot_adds_up_while_open() -> None:
    c2s, s2c = http_conversation()
    analyzer = ConnectionAnalyzer(OPENED)
    analyzer.feed(C2S, c2s, 1.0)
    analyzer.feed(S2C, s2c[:-20], 1.5)
    snapshot = analyzer.snapshot()
    assert snapshot.wire_bytes(C2S) == len(c2s)
    assert snapshot.wire_bytes(S2C) == len(s2c) - 20
