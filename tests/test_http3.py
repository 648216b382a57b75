"""HTTP/3 accounting: real conversations made by aioquic read back as they were
sent (heads through QPACK's dynamic table, bodies, 1xx, trailers, RFC 9220
WebSocket, WebTransport streams and datagrams), every byte once, the same
results however the streams are split and interleaved, and hostile shapes
flagged with bounded memory."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace

import pylsqpack
import pytest
from aioquic.buffer import encode_uint_var
from h3_conversations import SCENARIOS, Datagram, Record, StreamBytes, StreamFinished, conversation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.events import (
    BodyData,
    FrameBytes,
    Http3Event,
    MessageEnd,
    ParseFailure,
    RequestHead,
    ResponseHead,
    StreamEnd,
    Trailers,
    Unparsed,
    WebTransportBytes,
    WebTransportMessage,
)
from inspector.http3 import (
    FIELD_SECTION_LIMIT,
    OPEN_STREAM_LIMIT,
    UNKNOWN_FRAME_LIMIT,
    Http3Parser,
    frame_type_name,
    read_varint,
)
from inspector.pseudo_headers import is_websocket_connect
from inspector.qpack import WAITING_SECTION_LIMIT, decoded_size_bound, required_insert_count
from inspector.wire import Category, Direction, Http3Counts

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


# -- feeding and summing up ---------------------------------------------------


class Run:
    """A parser fed records, with every event and every stream's figures kept."""

    def __init__(self) -> None:
        self.parser = Http3Parser()
        self.events: list[Http3Event] = []
        self.counts: dict[int, Http3Counts] = {}
        self.fed = {C2S: 0, S2C: 0}

    def _keep(self, events: list[Http3Event]) -> None:
        self.events += events
        for event in events:
            exchange = getattr(event, "exchange", None)
            if isinstance(exchange, int) and exchange not in self.counts:
                counts = self.parser.stream_counts(exchange)
                if counts is not None:
                    self.counts[exchange] = counts

    def record(self, record: Record, timestamp: float = 1.0) -> None:
        if isinstance(record, StreamBytes):
            self.fed[record.direction] += len(record.data)
            self._keep(self.parser.feed(record.direction, record.stream_id, record.data, timestamp))
        elif isinstance(record, StreamFinished):
            self._keep(
                self.parser.end_stream(record.direction, record.stream_id, record.reset, record.error_code, timestamp)
            )
        else:
            self.fed[record.direction] += len(record.data)
            self._keep(self.parser.datagram(record.direction, record.data, timestamp))

    def feed(self, direction: Direction, stream_id: int, data: bytes) -> None:
        self.record(StreamBytes(direction, stream_id, data))

    def end(self, direction: Direction, stream_id: int, reset: bool = False) -> None:
        self.record(StreamFinished(direction, stream_id, reset, 0x10C if reset else None))

    def close(self) -> Run:
        self._keep(self.parser.close(9.0))
        return self

    def anomalies(self) -> list[str]:
        return [e.anomaly.reason for e in self.events if isinstance(e, ParseFailure)]

    def check_every_byte_once(self) -> None:
        """Every byte fed is in exactly one event, and in the figures."""
        counted = {C2S: 0, S2C: 0}
        for event in self.events:
            if isinstance(event, RequestHead):
                counted[C2S] += event.size
            elif isinstance(event, ResponseHead):
                counted[S2C] += event.size
            elif isinstance(event, BodyData):
                counted[event.direction] += len(event.data) + event.framing
            elif isinstance(event, FrameBytes | Unparsed):
                counted[event.direction] += event.size
            elif isinstance(event, WebTransportBytes):
                counted[event.direction] += event.framing + event.payload
        assert counted == self.fed
        total = self.parser.connection_counts.copy()
        for counts in self.counts.values():
            total.merge(counts)
        assert {d: total.wire_bytes(d) for d in Direction} == self.fed


def replay(records: Iterable[Record]) -> Run:
    run = Run()
    for n, record in enumerate(records):
        run.record(record, 1.0 + n / 1000)
    return run.close()


def digest(run: Run) -> object:
    """What a run found, whatever the split and the order of the reads."""
    heads: dict[int, list[object]] = {}
    bodies: dict[tuple[Direction, int | None], bytearray] = {}
    framing: Counter[tuple[Direction, int | None]] = Counter()
    frame_bytes: Counter[tuple[Direction, int | None, Category]] = Counter()
    unparsed: Counter[tuple[Direction, int | None]] = Counter()
    webtransport: Counter[tuple[Direction, int, int | None, str]] = Counter()
    messages: list[tuple[object, ...]] = []
    ends: list[tuple[object, ...]] = []
    for event in run.events:
        if isinstance(event, RequestHead | ResponseHead | Trailers):
            fields = (type(event).__name__, getattr(event, "size", None), event.headers)
            heads.setdefault(event.exchange, []).append(fields)
        elif isinstance(event, BodyData):
            bodies.setdefault((event.direction, event.exchange), bytearray()).extend(event.data)
            framing[(event.direction, event.exchange)] += event.framing
        elif isinstance(event, FrameBytes):
            frame_bytes[(event.direction, event.exchange, event.category)] += event.size
        elif isinstance(event, Unparsed):
            unparsed[(event.direction, event.exchange)] += event.size
        elif isinstance(event, WebTransportBytes):
            webtransport[(event.direction, event.exchange, event.stream_id, "framing")] += event.framing
            webtransport[(event.direction, event.exchange, event.stream_id, "payload")] += event.payload
        elif isinstance(event, WebTransportMessage):
            messages.append((event.direction, event.exchange, event.stream_id, event.wire_bytes, event.payload_bytes))
        elif isinstance(event, MessageEnd | StreamEnd):
            ends.append((type(event).__name__, event.exchange, getattr(event, "direction", None)))
    counts = {stream_id: (c.frames, [c.figure(name) for name in c.BYTE_FIGURES]) for stream_id, c in run.counts.items()}
    connection = run.parser.connection_counts
    return (
        heads,
        {key: bytes(value) for key, value in bodies.items()},
        +framing,
        +frame_bytes,
        +unparsed,
        +webtransport,
        sorted(messages, key=repr),
        sorted(ends, key=repr),
        counts,
        (connection.frames, [connection.figure(name) for name in connection.BYTE_FIGURES]),
        sorted(run.anomalies()),
    )


def decoded(headers: list[tuple[bytes, bytes]]) -> tuple[tuple[str, str], ...]:
    return tuple((name.decode().lower(), value.decode()) for name, value in headers)


# -- real conversations -------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_conversation_reads_back_as_it_was_sent(name: str) -> None:
    sent = conversation(name)
    run = replay(sent.records)
    assert run.anomalies() == []
    run.check_every_byte_once()
    requests = {e.exchange: e for e in run.events if isinstance(e, RequestHead)}
    assert {stream: head.headers for stream, head in requests.items()} == {
        stream: decoded(headers) for stream, headers in sent.requests.items()
    }
    assert all(head.http_version == "HTTP/3" for head in requests.values())
    responses: dict[int, list[object]] = {}
    for event in run.events:
        if isinstance(event, ResponseHead):
            responses.setdefault(event.exchange, []).append(event.headers)
    assert responses == {stream: [decoded(h) for h in heads] for stream, heads in sent.responses.items()}
    trailers = {e.exchange: e.headers for e in run.events if isinstance(e, Trailers)}
    assert trailers == {stream: decoded(headers) for stream, headers in sent.trailers.items()}
    bodies: dict[tuple[Direction, int | None], bytes] = {}
    for event in run.events:
        if isinstance(event, BodyData):
            bodies[(event.direction, event.exchange)] = bodies.get((event.direction, event.exchange), b"") + event.data
    assert {key: body for key, body in bodies.items() if body} == {
        key: body for key, body in sent.bodies.items() if body
    }
    # Each head's size is its field section as on the wire; the figures say the same.
    for stream_id, counts in run.counts.items():
        heads = [e for e in run.events if isinstance(e, RequestHead | ResponseHead) and e.exchange == stream_id]
        trailer_bytes = sum(
            e.size
            for e in run.events
            if isinstance(e, FrameBytes)
            and e.exchange == stream_id
            and e.category is Category.CHUNK_FRAMING
            and e.size > 3
        )
        assert sum(head.size for head in heads) + trailer_bytes == sum(counts.header_block_bytes.values())
        assert sum(counts.decoded_header_bytes.values()) == sum(
            len(n) + len(v) for head in heads for n, v in head.headers
        ) + sum(len(n) + len(v) for n, v in trailers.get(stream_id, ()))


def test_the_dynamic_table_carries_repeated_fields_on_the_encoder_stream() -> None:
    run = replay(conversation("get").records)
    first, second = (e for e in run.events if isinstance(e, RequestHead))
    assert first.header("cookie") == second.header("cookie") == "session=" + "c" * 300
    # The cookie went to the dynamic table once: the second head names it in a byte or two.
    assert run.parser.connection_counts.qpack_stream_bytes[C2S] > 200
    assert second.size < 20 < 200 < first.size
    assert run.counts[0].frames[S2C] == Counter({"HEADERS": 1, "DATA": 2})
    assert run.counts[0].data_bytes[S2C] == 5_000
    assert run.counts[0].frame_header_bytes[S2C] == 2 + 3 + 3
    assert run.parser.settings[S2C][0x1] == 4096


def test_sse_events_come_as_data_frames_of_one_body() -> None:
    run = replay(conversation("sse").records)
    pieces = [e for e in run.events if isinstance(e, BodyData) and e.direction is S2C]
    assert len(pieces) == 21  # 20 events and an empty DATA frame... of aioquic's end of stream
    assert all(piece.chunk_start and piece.chunk_end for piece in pieces)
    assert sum(piece.framing for piece in pieces) == run.counts[0].frame_header_bytes[S2C] - 2


def test_a_websocket_connect_carries_its_frames_as_body_data() -> None:
    run = replay(conversation("websocket").records)
    request = next(e for e in run.events if isinstance(e, RequestHead))
    assert is_websocket_connect(request)
    body = b"".join(e.data for e in run.events if isinstance(e, BodyData) and e.direction is S2C)
    assert body == b"\x81\x05hello\x81\x05world\x88\x00"


def test_a_webtransport_session_counts_its_streams_and_datagrams() -> None:
    run = replay(conversation("webtransport").records)
    messages = [e for e in run.events if isinstance(e, WebTransportMessage)]
    by_stream = {(m.direction, m.stream_id): (m.wire_bytes, m.payload_bytes, m.reset) for m in messages if m.stream_id}
    assert by_stream == {
        (C2S, 4): (3 + 32, 32, False),  # 0x41 as a two-byte varint, and session 0
        (S2C, 4): (38, 38, False),
        (C2S, 14): (3 + 3000, 3000, False),  # 0x54 likewise
        (S2C, 15): (3 + 50, 50, False),
        (S2C, 1): (3 + 15, 15, False),
        (C2S, 1): (6, 6, False),
        (C2S, 18): (3 + 7, 7, True),
    }
    datagrams = [m for m in messages if m.stream_id is None]
    assert [(m.direction, m.wire_bytes, m.payload_bytes) for m in datagrams] == [
        (direction, 1 + size, size) for _ in range(3) for direction, size in ((C2S, 10), (S2C, 60))
    ]
    session = run.counts[0]
    assert session.datagram_bytes == {C2S: 33, S2C: 183}
    assert session.webtransport_bytes == {C2S: 32 + 3000 + 6 + 7, S2C: 38 + 50 + 15}
    assert session.stream_type_bytes == {C2S: 3 + 3 + 3, S2C: 3 + 3}
    assert session.frames == {
        C2S: Counter({"HEADERS": 1, "WEBTRANSPORT_STREAM": 1}),
        S2C: Counter({"HEADERS": 1, "WEBTRANSPORT_STREAM": 1}),
    }
    assert all(e.exchange == 0 for e in run.events if isinstance(e, WebTransportBytes))


# -- however the reads are split and ordered ----------------------------------


def _flows(records: list[Record]) -> list[list[Record]]:
    """The records in queues that keep their own order: one per stream direction, one per direction's datagrams."""
    queues: dict[object, list[Record]] = {}
    for record in records:
        key: object = (
            ("datagram", record.direction) if isinstance(record, Datagram) else (record.stream_id, record.direction)
        )
        queues.setdefault(key, []).append(record)
    return list(queues.values())


def shuffled(records: list[Record], rng: random.Random, *, one_byte: bool = False) -> list[Record]:
    """The same records, each stream's bytes split anew, the queues interleaved at random."""
    queues = []
    for queue in _flows(records):
        split: list[Record] = [r for r in queue if isinstance(r, Datagram)]
        data = b"".join(r.data for r in queue if isinstance(r, StreamBytes))
        if data:
            first = next(r for r in queue if isinstance(r, StreamBytes))
            if one_byte:
                cuts = list(range(1, len(data)))
            else:
                cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 8))))
            for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True):
                split.append(StreamBytes(first.direction, first.stream_id, data[a:b]))
        # A stream direction's end comes after its bytes.
        split += [r for r in queue if isinstance(r, StreamFinished)]
        queues.append(split)
    out: list[Record] = []
    while queues:
        queue = rng.choice(queues)
        out.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return out


#: Conversations whose QPACK encoder evicts entries: a field section read after the inserts that evicted
#: what it names cannot be decoded. A proxy reads causally (those inserts follow the receiver's
#: acknowledgement of the section, which follows the section), so here their streams are only split anew.
EVICTING = {"many"}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(set(SCENARIOS) - EVICTING)), seed=st.integers(0, 2**32))
def test_any_split_and_interleaving_gives_the_same_results(name: str, seed: int) -> None:
    records = conversation(name).records
    expected = replay(records)
    run = replay(shuffled(records, random.Random(seed)))
    run.check_every_byte_once()
    assert digest(run) == digest(expected)


def test_a_table_that_evicts_still_decodes_every_head() -> None:
    records = conversation("many").records
    run = replay(records)
    heads = [e for e in run.events if isinstance(e, RequestHead | ResponseHead)]
    assert len(heads) == 80 and all(len(head.headers) > 1 for head in heads)
    # Twenty 240-byte fields each way, each sent twice, do not fit aioquic's 4,096-byte table at once.
    assert run.parser.connection_counts.qpack_stream_bytes[C2S] > 3_000
    assert run.anomalies() == []
    rng = random.Random(3)
    split: list[Record] = []
    for record in records:
        if isinstance(record, StreamBytes) and len(record.data) > 1:
            cut = rng.randint(1, len(record.data) - 1)
            split += [replace(record, data=record.data[:cut]), replace(record, data=record.data[cut:])]
        else:
            split.append(record)
    again = replay(split)
    again.check_every_byte_once()
    assert digest(again) == digest(run)


@pytest.mark.parametrize("name", ["get", "webtransport"])
def test_byte_by_byte_gives_the_same_results(name: str) -> None:
    records = conversation(name).records
    expected = replay(records)
    run = replay(shuffled(records, random.Random(7), one_byte=True))
    run.check_every_byte_once()
    assert digest(run) == digest(expected)


def test_a_request_read_before_the_peers_settings_and_inserts_waits_for_them() -> None:
    records = conversation("get").records
    # The request streams first, then every other stream: the heads wait for SETTINGS and inserts.
    late = [r for r in records if isinstance(r, StreamBytes | StreamFinished) and r.stream_id in (0, 4)]
    early = [r for r in records if r not in late]
    run = replay(late + early)
    assert run.anomalies() == []
    run.check_every_byte_once()
    assert digest(run) == digest(replay(records))


# -- hand-made shapes ---------------------------------------------------------


def varint(n: int) -> bytes:
    return bytes(encode_uint_var(n))


def frame(frame_type: int, payload: bytes) -> bytes:
    return varint(frame_type) + varint(len(payload)) + payload


SETTINGS_NO_TABLE = varint(0) + frame(0x4, b"")


def static_section(headers: list[tuple[bytes, bytes]]) -> bytes:
    encoder = pylsqpack.Encoder()
    encoder.apply_settings(0, 0)
    _, section = encoder.encode(0, headers)
    return section


GET = static_section([(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")])
OK = static_section([(b":status", b"200")])


def test_frames_of_the_wrong_stream_and_a_second_control_stream_are_flagged_and_counted() -> None:
    run = Run()
    run.feed(C2S, 2, varint(0) + frame(0x0, b"data") + frame(0x4, b""))
    run.feed(C2S, 6, varint(0) + frame(0x4, b""))
    run.feed(C2S, 0, frame(0x1, GET) + frame(0x7, varint(4)))
    run.close()
    anomalies = run.anomalies()
    assert "the control stream starts with DATA, not SETTINGS" in anomalies
    assert "a second control stream (6); its bytes are not read" in anomalies
    assert "a GOAWAY frame on request stream 0" in anomalies
    run.check_every_byte_once()
    assert run.parser.connection_counts.frames[C2S] == Counter({"DATA": 1, "SETTINGS": 1})
    assert all(e.category is Category.CONTROL for e in run.events if isinstance(e, FrameBytes) and e.exchange is None)


def test_a_field_section_over_the_limit_is_passed_over_not_kept() -> None:
    run = Run()
    run.feed(S2C, 3, SETTINGS_NO_TABLE)
    run.feed(C2S, 0, varint(0x1) + varint(FIELD_SECTION_LIMIT + 1))
    piece = b"\x00" * 65536
    for _ in range(FIELD_SECTION_LIMIT // len(piece)):
        run.feed(C2S, 0, piece)
        flow = run.parser._flows[(0, C2S)]
        assert flow.section is None and len(flow.buffer) < 16
    run.feed(C2S, 0, b"\x00")
    run.close()
    head = next(e for e in run.events if isinstance(e, RequestHead))
    assert head.headers == () and head.size == FIELD_SECTION_LIMIT + 1
    assert any("over 262,144; it is not decoded" in a for a in run.anomalies())
    run.check_every_byte_once()


def _encoder_insert(name: bytes, value: bytes) -> bytes:
    """Insert With Literal Name (no Huffman), names and values under 31 and 127 bytes... or longer."""

    def prefixed(n: int, bits: int, flags: int) -> bytes:
        limit = (1 << bits) - 1
        if n < limit:
            return bytes([flags | n])
        out = [flags | limit]
        n -= limit
        while n >= 128:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    return prefixed(len(name), 5, 0x40) + name + prefixed(len(value), 7, 0) + value


def test_a_qpack_bomb_is_not_decoded() -> None:
    run = Run()
    run.feed(C2S, 2, varint(0) + frame(0x4, varint(0x1) + varint(8192)))  # the client allows a table
    run.feed(S2C, 3, varint(0) + frame(0x4, b""))
    # The server inserts one 4,000-byte entry, then names it 500 times in one field section.
    run.feed(S2C, 7, varint(2) + b"\x3f\xe1\x3f" + _encoder_insert(b"x", b"v" * 4000))
    run.feed(C2S, 0, frame(0x1, GET))
    section = bytes([0x02, 0x00]) + b"\x80" * 500  # Required Insert Count 1, base 1, index 0 relative
    run.feed(S2C, 0, frame(0x1, section))
    run.close()
    response = next(e for e in run.events if isinstance(e, ResponseHead))
    assert response.headers == () and response.size == len(section)
    bomb = [e.anomaly for e in run.events if isinstance(e, ParseFailure) and "QPACK bomb" in e.anomaly.reason]
    assert len(bomb) == 1 and bomb[0].security
    run.check_every_byte_once()


def test_a_small_section_naming_a_dynamic_entry_decodes() -> None:
    run = Run()
    run.feed(C2S, 2, varint(0) + frame(0x4, varint(0x1) + varint(8192)))
    run.feed(S2C, 3, varint(0) + frame(0x4, b""))
    run.feed(C2S, 0, frame(0x1, GET))
    section = bytes([0x02, 0x00]) + b"\x80" * 3
    # The section arrives before the insert it names: it waits for it.
    run.feed(S2C, 0, frame(0x1, section) + frame(0x0, b"body"))
    assert not any(isinstance(e, ResponseHead) for e in run.events)
    run.feed(S2C, 7, varint(2) + b"\x3f\xe1\x3f" + _encoder_insert(b"x-name", b"value"))
    run.close()
    response = next(e for e in run.events if isinstance(e, ResponseHead))
    assert response.headers == (("x-name", "value"),) * 3
    assert b"".join(e.data for e in run.events if isinstance(e, BodyData)) == b"body"
    assert run.anomalies() == []
    run.check_every_byte_once()


def test_sections_waiting_for_inserts_that_never_come_are_bounded() -> None:
    run = Run()
    run.feed(C2S, 2, varint(0) + frame(0x4, varint(0x1) + varint(8192)))
    run.feed(S2C, 3, varint(0) + frame(0x4, b""))
    streams = range(0, 4 * (WAITING_SECTION_LIMIT + 5), 4)
    for stream_id in streams:
        run.feed(C2S, stream_id, frame(0x1, GET))
        run.feed(S2C, stream_id, frame(0x1, bytes([0x02, 0x00, 0x80])))
    assert run.parser._decoders[S2C].waiting == WAITING_SECTION_LIMIT
    assert any("waiting for encoder inserts" in a for a in run.anomalies())
    run.close()
    assert len([e for e in run.events if isinstance(e, ResponseHead)]) == len(streams)
    assert len([e for e in run.events if isinstance(e, StreamEnd)]) == len(streams)
    run.check_every_byte_once()


def test_a_flood_of_reserved_frames_is_counted_and_flagged_once() -> None:
    run = Run()
    run.feed(C2S, 2, SETTINGS_NO_TABLE + frame(0x21 + 0x1F * 3, b"") * (UNKNOWN_FRAME_LIMIT + 10))
    run.feed(C2S, 2, frame(0x2A, b"?") * 5)
    run.close()
    assert run.parser.connection_counts.frames[C2S]["reserved"] == UNKNOWN_FRAME_LIMIT + 10
    assert run.parser.connection_counts.frames[C2S]["unknown"] == 5
    assert len([a for a in run.anomalies() if "flood" in a]) == 1
    assert frame_type_name(0xF0700) == "PRIORITY_UPDATE"
    run.check_every_byte_once()


def test_a_data_frame_of_absurd_length_is_streamed_not_buffered() -> None:
    run = Run()
    run.feed(C2S, 0, frame(0x1, GET) + varint(0x0) + varint(1 << 40))
    for _ in range(16):
        run.feed(C2S, 0, b"d" * 65536)
        assert len(run.parser._flows[(0, C2S)].buffer) == 0
    run.end(C2S, 0)
    run.close()
    assert sum(len(e.data) for e in run.events if isinstance(e, BodyData)) == 16 * 65536
    assert "a frame cut short by the end of stream 0" in run.anomalies()
    run.check_every_byte_once()


def test_streams_past_the_limit_count_with_the_connection() -> None:
    run = Run()
    run.feed(S2C, 3, SETTINGS_NO_TABLE)
    for n in range(OPEN_STREAM_LIMIT + 3):
        run.feed(C2S, 4 * n, frame(0x1, GET) + frame(0x0, b"x"))
    assert run.parser.open_streams() == OPEN_STREAM_LIMIT
    assert run.parser.stream_counts(4 * OPEN_STREAM_LIMIT) is None
    assert any("request streams open at once" in a for a in run.anomalies())
    run.close()
    assert len([e for e in run.events if isinstance(e, RequestHead)]) == OPEN_STREAM_LIMIT
    run.check_every_byte_once()


def test_streams_left_open_end_at_close_with_their_tails_unparsed() -> None:
    run = Run()
    run.feed(S2C, 3, SETTINGS_NO_TABLE)
    run.feed(C2S, 0, frame(0x1, GET))
    run.feed(S2C, 0, frame(0x1, OK) + frame(0x0, b"partial")[:-3])
    run.feed(C2S, 4, b"\x41")  # a varint cut short
    run.close()
    assert [e for e in run.events if isinstance(e, StreamEnd)] == [StreamEnd(0, reset=False, timestamp=9.0)]
    assert run.anomalies() == []
    run.check_every_byte_once()
    # A truncated varint at FIN is a frame cut short.
    run = Run()
    run.feed(C2S, 0, frame(0x1, GET) + b"\x40")
    run.end(C2S, 0)
    assert "a frame cut short by the end of stream 0" in run.anomalies()
    assert Unparsed(C2S, None, 1, 1.0) not in run.events
    run.close().check_every_byte_once()


def test_a_reset_ends_the_stream_and_later_bytes_are_the_connections() -> None:
    run = Run()
    run.feed(S2C, 3, SETTINGS_NO_TABLE)
    run.feed(C2S, 0, frame(0x1, GET))
    run.end(C2S, 0, reset=True)
    run.feed(S2C, 0, frame(0x1, OK))
    run.close()
    assert [e for e in run.events if isinstance(e, StreamEnd)] == [StreamEnd(0, reset=True, timestamp=1.0)]
    assert run.events[-1] == Unparsed(S2C, None, len(frame(0x1, OK)), 1.0)
    run.check_every_byte_once()


def test_datagrams_for_no_stream_and_bytes_the_wrong_way_are_flagged() -> None:
    run = Run()
    run.feed(C2S, 0, frame(0x1, GET))
    run.record(Datagram(C2S, b""))
    run.record(Datagram(C2S, varint(0) + b"for stream 0"))
    run.feed(S2C, 2, b"the wrong way")  # the client's unidirectional stream
    run.record(Datagram(S2C, varint(25) + b"for stream 100"))  # waits for a stream 100 that never opens
    run.close()
    assert run.counts[0].datagram_bytes[C2S] == 13
    anomalies = run.anomalies()
    assert "a DATAGRAM without a quarter stream id" in anomalies
    assert "bytes from the receiving side of unidirectional stream 2" in anomalies
    assert "a DATAGRAM for stream 100, not open" in anomalies
    run.check_every_byte_once()


def test_a_webtransport_stream_naming_no_session_is_the_connections() -> None:
    run = Run()
    run.feed(C2S, 2, varint(0x54) + varint(7) + b"to nowhere")  # 7 is no client bidirectional stream
    run.feed(S2C, 1, varint(0x41) + varint(0) + b"session 0 never opens")
    run.close()
    assert any("which is no session" in a for a in run.anomalies())
    assert not any(isinstance(e, WebTransportBytes) for e in run.events)
    assert run.parser.connection_counts.webtransport_bytes == {C2S: 10, S2C: 21}
    run.check_every_byte_once()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 14, 15]),
            st.sampled_from(list(Direction)),
            st.one_of(
                st.binary(max_size=40),
                st.sampled_from(
                    [
                        frame(0x1, GET),
                        frame(0x1, OK),
                        frame(0x0, b"abc"),
                        frame(0x1, bytes([0x02, 0x00, 0x80])),
                        frame(0x21, b"r"),
                        SETTINGS_NO_TABLE,
                        varint(0) + frame(0x4, varint(0x1) + varint(4096) + varint(0x7) + varint(10)),
                        _encoder_insert(b"name", b"value"),
                        b"\x3f\xe1\x1f",
                    ]
                ),
                st.sampled_from([varint(0x41) + varint(0), varint(0x54) + varint(0), varint(1), varint(2), varint(3)]),
            ),
            st.integers(0, 9),
        ),
        max_size=30,
    )
)
def test_arbitrary_bytes_never_raise_and_every_byte_is_counted(pieces: list[tuple[int, Direction, bytes, int]]) -> None:
    run = Run()
    for stream_id, direction, data, action in pieces:
        if action == 0:
            run.end(direction, stream_id, reset=bool(stream_id & 1))
        elif action == 1:
            run.record(Datagram(direction, data))
        else:
            run.feed(direction, stream_id, data)
    run.close()
    run.check_every_byte_once()
    assert run.parser._held == 0 and not run.parser._flows and not run.parser._awaiting


def test_varints() -> None:
    assert read_varint(bytes.fromhex("c2197c5eff14e88c")) == (151288809941952652, 8)
    assert read_varint(bytes.fromhex("9d7f3e7d")) == (494878333, 4)
    assert read_varint(bytes.fromhex("7bbd")) == (15293, 2)
    assert read_varint(bytes.fromhex("25")) == (37, 1)
    assert read_varint(bytes.fromhex("7b")) is None


def test_a_push_stream_is_the_connections_by_category() -> None:
    run = Run()
    run.feed(S2C, 15, varint(0x01) + varint(0) + frame(0x1, OK) + frame(0x0, b"pushed"))
    run.end(S2C, 15)
    run.close()
    counts = run.parser.connection_counts
    assert counts.stream_type_bytes[S2C] == 2
    assert counts.header_block_bytes[S2C] == len(OK)
    assert counts.data_bytes[S2C] == 6
    sizes = Counter()
    for event in run.events:
        assert isinstance(event, FrameBytes) and event.exchange is None
        sizes[event.category] += event.size
    assert sizes == {Category.CONTROL: 2, Category.CHUNK_FRAMING: 4, Category.HEAD: len(OK), Category.PAYLOAD: 6}
    run.check_every_byte_once()


def test_data_on_the_control_stream_and_a_broken_encoder_stream_are_flagged() -> None:
    run = Run()
    run.feed(C2S, 2, SETTINGS_NO_TABLE + frame(0x0, b"no"))
    run.feed(S2C, 3, varint(0) + frame(0x4, varint(0x1) + varint(100)))
    run.feed(C2S, 6, varint(2) + b"\x3f\xff\x7f")  # a capacity over the 100 the server allows
    run.feed(C2S, 0, frame(0x1, GET))
    run.close()
    anomalies = run.anomalies()
    assert "a DATA frame on the control stream" in anomalies
    assert any(a.startswith("QPACK encoder stream error") for a in anomalies)
    # Sections from the static table still decode.
    assert next(e for e in run.events if isinstance(e, RequestHead)).method == "GET"
    run.check_every_byte_once()


def test_the_required_insert_count_and_the_decoded_size_bound() -> None:
    # RFC 9204, section 4.5.1.1: the count is sent modulo twice the table's entries.
    assert required_insert_count(0, 4096, 10) == 0
    assert required_insert_count(10, 4096, 10) == 9
    assert required_insert_count(290 % 256 + 1, 4096, 300) == 290
    assert required_insert_count(300, 4096, 10) is None  # over the full range
    assert required_insert_count(1, 0, 0) is None  # no table, yet an entry named
    # A literal name and value (7 and 5 bytes, no Huffman), then an entry named three times.
    section = bytes([0x02, 0x00, 0x27, 0x00]) + b"x-field" + bytes([0x05]) + b"value" + b"\x80" * 3
    assert decoded_size_bound(section, largest_entry=100) == 12 + 3 * 100
    assert decoded_size_bound(section[:-4], largest_entry=100) is None


def test_a_data_frames_header_counts_in_the_read_that_completes_it() -> None:
    run = Run()
    run.feed(S2C, 3, SETTINGS_NO_TABLE)
    run.feed(C2S, 0, frame(0x1, GET))
    run.feed(S2C, 0, frame(0x1, OK) + varint(0x0) + varint(300))
    assert run.events[-1] == BodyData(S2C, 0, b"", 3, True, False, 1.0)
    run.feed(S2C, 0, b"a" * 100)
    run.feed(S2C, 0, b"b" * 200)
    assert run.events[-2:] == [
        BodyData(S2C, 0, b"a" * 100, 0, False, False, 1.0),
        BodyData(S2C, 0, b"b" * 200, 0, False, True, 1.0),
    ]
    run.close().check_every_byte_once()
