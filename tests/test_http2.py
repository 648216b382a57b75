"""HTTP/2 accounting: every byte once, HPACK's effect visible, streams as
exchanges, the core's invariants (parts add up, chunking does not matter,
nothing raises) and hostile shapes flagged with bounded memory."""

from __future__ import annotations

import random

import hpack
from h2_conversations import CONVERSATIONS, Conversation, joined
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, RstStreamFrame, SettingsFrame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.capture import ConnectionOpened, TlsInfo
from inspector.connection import ConnectionAnalyzer, ConnectionRecord
from inspector.http2 import (
    CONTINUATION_LIMIT,
    OPEN_STREAM_LIMIT,
    PREFACE,
    RAPID_RESET_LIMIT,
    Http2Parser,
)
from inspector.render.json import report_to_dict
from inspector.summary import apportion, build_report
from inspector.wire import ByteAccount, Category, Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

OPENED = ConnectionOpened(1, 0.0, "127.0.0.1:50000", "127.0.0.1:8443", "reverse")
OPENED_H2 = ConnectionOpened(
    2, 0.0, "127.0.0.1:50001", "127.0.0.1:8443", "reverse", tls=TlsInfo(version="TLSv1.3", alpn="h2")
)


def analyse(
    conversation: Conversation,
    cuts: random.Random | None = None,
    opened: ConnectionOpened = OPENED,
    *,
    one_byte: bool = False,
) -> ConnectionRecord:
    """Replay the conversation in its order, each send split into reads as ``cuts`` says."""
    analyzer = ConnectionAnalyzer(opened)
    for n, (direction, data) in enumerate(conversation):
        for piece in _split(data, cuts, one_byte):
            analyzer.feed(direction, piece, 1.0 + n / 100)
    return analyzer.close(9.0, "client closed")


def _split(data: bytes, cuts: random.Random | None, one_byte: bool = False) -> list[bytes]:
    if one_byte:
        return [data[i : i + 1] for i in range(len(data))]
    if cuts is None or len(data) < 2:
        return [data] if data else []
    points = sorted(cuts.sample(range(1, len(data)), min(len(data) - 1, cuts.randint(0, 6))))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True) if b > a]


def essentials(record: ConnectionRecord) -> object:
    """A record's figures, without timing."""
    return (
        record.protocol,
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
                e.http2,
            )
            for e in record.exchanges
        ],
        [(key, [t.accounts[d].as_dict() for d in Direction], t.messages, t.http2) for key, t in record.totals.items()],
        record.http2,
        # h11's detail after "invalid response:" may name another fault of doubly malformed bytes.
        [(a.direction, a.offset, a.reason.split(":", 1)[0], a.security) for a in record.anomalies],
    )


def _frame_bytes(record: ConnectionRecord, direction: Direction) -> int:
    total = record.http2.wire_bytes(direction)  # type: ignore[union-attr]
    return total + sum(t.http2.wire_bytes(direction) for t in record.totals.values() if t.http2 is not None)


# -- accounting ---------------------------------------------------------------


def test_every_byte_is_counted_once_and_the_frame_figures_add_up() -> None:
    for name, conversation in CONVERSATIONS.items():
        record = analyse(conversation)
        assert record.protocol == "h2", name
        assert record.anomalies == (), name
        for direction in Direction:
            sent = joined(conversation, direction)
            assert record.wire_bytes(direction) == len(sent), name
            if name != "h2c_upgrade":  # its HTTP/1.1 part is not in frames
                assert _frame_bytes(record, direction) == len(sent), name


def test_hpack_makes_the_same_head_cheaper_the_second_time() -> None:
    record = analyse(CONVERSATIONS["polls_and_sse"])
    first, *later = sorted(
        (e for e in record.exchanges if e.request and e.request.method == "GET"), key=lambda e: e.index
    )
    heads = [e.accounts[C2S][Category.HEAD] for e in later[:4]]
    decoded = [e.http2.decoded_header_bytes[C2S] for e in (first, *later[:4])]  # type: ignore[union-attr]
    assert max(heads) < first.accounts[C2S][Category.HEAD] / 2
    assert max(decoded) - min(decoded) < 25  # the heads are alike; only their paths differ
    responses = [e.accounts[S2C][Category.HEAD] for e in later[:4]]
    assert max(responses[1:]) < responses[0] / 3  # the first poll's response added its content type to the table


def test_streams_are_classified_like_http1_exchanges() -> None:
    report = build_report([analyse(CONVERSATIONS["polls_and_sse"])])
    assert report.transport("sse").messages.server_to_client == 4
    assert report.transport("short_poll").messages.server_to_client == 4
    report = build_report([analyse(CONVERSATIONS["ndjson"])])
    assert report.transport("http_stream").messages.server_to_client == 5


def test_websocket_over_an_http2_stream_is_parsed_inside_its_data_frames() -> None:
    record = analyse(CONVERSATIONS["websocket"])
    (ws,) = [e for e in record.exchanges if e.request and e.request.method == "CONNECT"]
    assert ws.websocket is not None
    assert ws.stream_messages == {C2S: 3, S2C: 3}
    assert ws.websocket.control_frames == {C2S: 2, S2C: 2}
    assert ws.websocket.close_codes == {C2S: 1000, S2C: 1000}
    assert ws.accounts[C2S][Category.MASK_KEY] == 4 * 5
    report = build_report([record])
    assert report.transport("websocket").messages.total == 6
    assert report.transport("http").messages.server_to_client == 1


def test_an_h2c_upgrade_is_followed_into_http2() -> None:
    record = analyse(CONVERSATIONS["h2c_upgrade"])
    (exchange,) = record.exchanges
    assert exchange.request is not None and exchange.request.target == "/events"
    assert exchange.response is not None and exchange.response.http_version == "HTTP/2"
    assert exchange.stream_messages[S2C] == 1
    assert build_report([record]).transport("sse").connections == 1


def test_alpn_h2_is_parsed_as_http2() -> None:
    record = analyse(CONVERSATIONS["ndjson"], opened=OPENED_H2)
    assert record.protocol == "h2" and record.anomalies == ()


def test_the_report_splits_by_protocol_and_totals_the_frames() -> None:
    http1 = ConnectionAnalyzer(ConnectionOpened(3, 0.0, "127.0.0.1:50003", "127.0.0.1:8000", "reverse"))
    http1.feed(C2S, b"GET /ndjson HTTP/1.1\r\nHost: x\r\n\r\n", 1.0)
    http1.feed(S2C, b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nContent-Length: 6\r\n\r\n{}\n{}\n", 1.1)
    h2 = analyse(CONVERSATIONS["ndjson"])
    report = build_report([http1.close(2.0), h2, analyse(CONVERSATIONS["polls_and_sse"])])
    stream = report.transport("http_stream")
    assert set(stream.by_protocol) == {"http/1.1", "h2"}
    assert stream.by_protocol["h2"].messages.server_to_client == 5
    assert stream.by_protocol["http/1.1"].messages.server_to_client == 2
    assert stream.by_protocol["http/1.1"].http2 is None
    assert stream.wire_bytes == stream.by_protocol["h2"].wire_bytes + stream.by_protocol["http/1.1"].wire_bytes
    assert report.http2 is not None and report.http2.preface_bytes.client_to_server == 2 * len(PREFACE)
    # Every HTTP/2 byte outside the streams went to exactly one transport.
    shared = sum(t.http2.connection_bytes.total for t in report.transports.values() if t.http2)
    assert shared == report.http2.connection_bytes.total > 0
    as_json = report_to_dict(report)
    assert {c["protocol"] for c in as_json["connections"]} == {"http/1.1", "h2"}
    assert as_json["http2"]["frames"]["client_to_server"]["SETTINGS"] == 4
    assert set(as_json["transports"]["sse"]["http2"]) >= {"frames", "header_block_bytes", "decoded_header_bytes"}


def test_apportion_gives_every_byte_to_exactly_one_part() -> None:
    accounts = {
        C2S: ByteAccount({Category.CONTROL: 10, Category.CHUNK_FRAMING: 7}),
        S2C: ByteAccount({Category.CONTROL: 5}),
    }
    parts = apportion(accounts, [3, 1, 0])
    for direction in Direction:
        for category in Category:
            assert sum(p[direction][category] for p in parts) == accounts[direction][category]
    assert parts[0][C2S][Category.CONTROL] == 8 and parts[2][C2S].total == 0
    assert [p[C2S].total for p in apportion(accounts, [0, 0])] == [9, 8]


# -- invariants ---------------------------------------------------------------

NAMES = sorted(CONVERSATIONS)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), seed=st.integers(0, 2**32))
def test_chunking_does_not_matter(name: str, seed: int) -> None:
    conversation = CONVERSATIONS[name]
    assert essentials(analyse(conversation, cuts=random.Random(seed))) == essentials(analyse(conversation))


def test_one_byte_at_a_time_matches_one_read() -> None:
    for conversation in CONVERSATIONS.values():
        assert essentials(analyse(conversation, one_byte=True)) == essentials(analyse(conversation))


def _mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(out) + 1)
        if rng.random() < 0.5 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        else:
            out[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(out)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(NAMES), seed=st.integers(0, 2**32))
def test_damaged_traffic_still_adds_up_whatever_the_chunking(name: str, seed: int) -> None:
    rng = random.Random(seed)
    conversation = [(d, _mutate(data, rng) if rng.random() < 0.3 else data) for d, data in CONVERSATIONS[name]]
    record = analyse(conversation, cuts=rng)
    for direction in Direction:
        assert record.wire_bytes(direction) == len(joined(conversation, direction))
    assert essentials(record) == essentials(analyse(conversation))


@settings(max_examples=200, deadline=None)
@given(c2s=st.binary(max_size=300), s2c=st.binary(max_size=300))
def test_random_frames_after_the_preface_never_raise(c2s: bytes, s2c: bytes) -> None:
    record = analyse([(C2S, PREFACE + c2s), (S2C, s2c)], cuts=random.Random(0))
    assert record.wire_bytes(C2S) == len(PREFACE) + len(c2s)
    assert record.wire_bytes(S2C) == len(s2c)


# -- hostile shapes -------------------------------------------------------------

ENCODER_HEADERS = [(":method", "GET"), (":path", "/"), (":scheme", "https"), (":authority", "x")]


def _headers(stream: int, block: bytes, *flags: str) -> bytes:
    return HeadersFrame(stream, block, flags=flags).serialize()


def _settings(**values: int) -> bytes:
    return SettingsFrame(0, settings={getattr(SettingsFrame, name): v for name, v in values.items()}).serialize()


def _hostile(c2s: bytes, s2c: bytes = b"", *, opened: ConnectionOpened = OPENED) -> ConnectionRecord:
    record = analyse([(C2S, c2s), (S2C, s2c)], cuts=random.Random(1), opened=opened)
    assert record.wire_bytes(C2S) == len(c2s) and record.wire_bytes(S2C) == len(s2c)
    return record


def _reasons(record: ConnectionRecord) -> list[tuple[str, bool]]:
    return [(a.reason, a.security) for a in record.anomalies]


def test_a_bad_preface_after_alpn_h2_is_flagged() -> None:
    record = _hostile(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", opened=OPENED_H2)
    (anomaly,) = record.anomalies
    assert anomaly.offset == 0 and "preface" in anomaly.reason
    assert record.account(C2S)[Category.UNPARSED] == len(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_a_frame_over_max_frame_size_is_passed_over_not_buffered() -> None:
    block = hpack.Encoder().encode(ENCODER_HEADERS)
    big = DataFrame(1, b"x" * 20_000).serialize()
    c2s = (
        PREFACE
        + _settings()
        + _headers(1, block, "END_HEADERS")
        + big
        + _headers(3, hpack.Encoder().encode([]), "END_HEADERS")
    )
    parser = Http2Parser()
    parser.feed(C2S, c2s[: len(c2s) - 19_000], 1.0)
    assert len(parser._sides[C2S].buffer) < 100  # the oversized payload is counted as it passes
    record = _hostile(c2s)
    assert any("over SETTINGS_MAX_FRAME_SIZE" in reason for reason, _ in _reasons(record))
    assert record.account(C2S)[Category.UNPARSED] == 20_000


def test_an_hpack_error_is_flagged_and_decoding_stops() -> None:
    c2s = PREFACE + _settings() + _headers(1, b"\xff\xff\xff\xff\xff", "END_HEADERS", "END_STREAM")
    c2s += _headers(3, hpack.Encoder().encode(ENCODER_HEADERS), "END_HEADERS", "END_STREAM")
    record = _hostile(c2s)
    (reason, security), *_ = _reasons(record)
    assert "HPACK decoding failed" in reason and not security
    assert record.exchange_count == 2


def test_an_oversized_header_list_is_an_hpack_bomb() -> None:
    encoder = hpack.Encoder()
    first = encoder.encode([*ENCODER_HEADERS, ("x-big", "v" * 4000)])
    again = encoder.encode([*ENCODER_HEADERS, *[("x-big", "v" * 4000)] * 100])  # 400 kB from a few hundred bytes
    assert len(again) < 1000
    c2s = (
        PREFACE
        + _settings()
        + _headers(1, first, "END_HEADERS", "END_STREAM")
        + _headers(3, again, "END_HEADERS", "END_STREAM")
    )
    record = _hostile(c2s)
    assert [(r.split(" (")[0], s) for r, s in _reasons(record)] == [("HPACK decoding failed", True)]


def test_a_continuation_flood_is_a_security_anomaly_with_bounded_memory() -> None:
    c2s = PREFACE + _settings() + _headers(1, b"\x82")
    c2s += b"".join(ContinuationFrame(1, b"\x00" * 100).serialize() for _ in range(CONTINUATION_LIMIT * 4))
    parser = Http2Parser()
    parser.feed(C2S, c2s, 1.0)
    block = parser._sides[C2S].block
    assert block is not None and sum(len(f) for f in block.fragments) == 0
    record = _hostile(c2s)
    ((reason, security),) = _reasons(record)
    assert "CONTINUATION flood" in reason and security


def test_rapid_reset_is_a_security_anomaly() -> None:
    encoder = hpack.Encoder()
    c2s = PREFACE + _settings()
    for n in range(RAPID_RESET_LIMIT + 10):
        stream = 1 + 2 * n
        c2s += _headers(stream, encoder.encode(ENCODER_HEADERS), "END_HEADERS", "END_STREAM")
        c2s += RstStreamFrame(stream, error_code=8).serialize()
    record = _hostile(c2s)
    ((reason, security),) = _reasons(record)
    assert "rapid reset" in reason and security
    assert record.exchange_count == RAPID_RESET_LIMIT + 10


def test_streams_past_the_limit_are_counted_with_the_connection() -> None:
    encoder = hpack.Encoder()
    c2s = PREFACE + _settings()
    for n in range(OPEN_STREAM_LIMIT + 5):
        c2s += _headers(1 + 2 * n, encoder.encode(ENCODER_HEADERS), "END_HEADERS")
    parser = Http2Parser()
    parser.feed(C2S, c2s, 1.0)
    assert parser.open_streams == OPEN_STREAM_LIMIT
    record = _hostile(c2s)
    assert any("streams open at once" in reason for reason, _ in _reasons(record))


# -- renderings -----------------------------------------------------------------


def _mixed_report():  # type: ignore[no-untyped-def]
    http1 = ConnectionAnalyzer(ConnectionOpened(3, 0.0, "127.0.0.1:50003", "127.0.0.1:8000", "reverse"))
    http1.feed(C2S, b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n", 1.0)
    http1.feed(
        S2C,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 27\r\n\r\ndata: a\n\ndata: b\n\ndata: c\n\n",
        1.1,
    )
    return build_report([http1.close(2.0), analyse(CONVERSATIONS["polls_and_sse"])])


def test_renderings_show_the_protocol_and_compare_like_with_like() -> None:
    from inspector.render import render

    report = _mixed_report()
    table = render(report, "markdown", connections=True)
    assert "| sse (http/1.1) |" in table and "| sse (h2) |" in table and "| short\\_poll (h2) |" in table
    assert "over h2" in table and "sse over h2 spent" in table
    csv_rows = render(report, "csv").splitlines()
    assert csv_rows[0].startswith("transport,protocol,")
    assert any(row.startswith("sse,all,") for row in csv_rows) and any(row.startswith("sse,h2,") for row in csv_rows)
    connections = render(report, "csv", connections=True).splitlines()
    assert connections[0].startswith("id,transport,protocol,") and sum(",h2," in row for row in connections) == 1
    html = render(report, "html")
    assert "sse (h2)" in html and "over h2" in html


def test_expectations_reach_the_figures_of_one_protocol() -> None:
    import pytest

    from inspector.expectations import assert_transport

    report = _mixed_report()
    assert_transport(
        report, "sse", protocol="h2", messages_server_to_client=4, min_http2_frames_server_to_client_DATA=5
    )
    assert_transport(report, "sse", protocol="http/1.1", messages_server_to_client=3, http2=None)
    with pytest.raises(AssertionError, match="no 'short_poll' traffic over http/1.1"):
        assert_transport(report, "short_poll", protocol="http/1.1")
