"""The HTTP/1.1 scanner against h11 alone: the same events, read for read.

:class:`~inspector.http1.Http1Parser` reads well-formed messages with its own
scanner and hands everything else to h11 (see the module's "fast path"). Here
every stream is parsed both ways, fed in the same pieces, and each ``feed``,
``stop`` and ``close`` must return equal event lists: heads, body pieces with
their framing, message ends, anomalies and their offsets. The streams are
well-formed conversations, the same with random bytes changed, inserted or
removed, the corpus of malformed cases, and all of them cut at random places
or fed a byte at a time.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_connection import essentials

from inspector.capture import ConnectionOpened
from inspector.connection import ConnectionAnalyzer
from inspector.events import HttpEvent
from inspector.http1 import SCAN_VARIABLE, Http1Parser
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
OPENED = ConnectionOpened(1, 0.0, "127.0.0.1:50000", "127.0.0.1:8000", "reverse")
CORPUS = json.loads((Path(__file__).resolve().parent / "corpus" / "cases.json").read_text(encoding="utf-8"))

Feed = tuple[Direction, bytes]


def run(feeds: list[Feed], *, scan: bool, stop: Direction | None = None) -> list[list[HttpEvent]]:
    """The events of each call, feeding ``feeds`` in order, then stopping ``stop`` (if
    given) and closing."""
    parser = Http1Parser(scan=scan)
    calls = [parser.feed(direction, data, float(i)) for i, (direction, data) in enumerate(feeds)]
    if stop is not None:
        calls.append(parser.stop(stop, "a hole in the stream", 1e6))
    calls.append(parser.close(2e6))
    return calls


def assert_same(feeds: list[Feed], stop: Direction | None = None) -> list[list[HttpEvent]]:
    scanned = run(feeds, scan=True, stop=stop)
    assert scanned == run(feeds, scan=False, stop=stop)
    return scanned


def cut(data: bytes, points: list[int]) -> list[bytes]:
    marks = sorted({p % (len(data) + 1) for p in points} | {0, len(data)})
    return [data[a:b] for a, b in zip(marks, marks[1:], strict=False) if b > a]


def interleave(c2s: list[bytes], s2c: list[bytes], order: random.Random) -> list[Feed]:
    """Both directions' pieces, each in its order, the two mixed at random."""
    feeds: list[Feed] = []
    left, right = list(c2s), list(s2c)
    while left or right:
        if left and (not right or order.random() < 0.5):
            feeds.append((C2S, left.pop(0)))
        else:
            feeds.append((S2C, right.pop(0)))
    return feeds


# -- messages --------------------------------------------------------------

FIELD_SHAPES = [
    b"Accept: */*",
    b"X-Spaced:   padded value  ",
    b"X-Tab:\tvalue\t",
    b"X-Empty:",
    b"X-Obs: caf\xe9",
    b"Connection: keep-alive",
    b"Connection: close",
    b"Connection: Upgrade",
    b"Upgrade: websocket",
    b"Expect: 100-continue",
    b"Host: second.example",
    b"content-length: 3",
    b"Content-Length: 0004",
    b"Transfer-Encoding: Chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"X-Folded: a\r\n  continued",
    b"Content-Length : 3",
    b"X-Bare: lf\nX-After: lf",
]


@st.composite
def body(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A framing header (or none) and the body it frames."""
    kind = draw(st.sampled_from(["none", "length", "chunked", "chunked-odd"]))
    if kind == "none":
        return b"", b""
    if kind == "length":
        data = draw(st.binary(max_size=40))
        return b"Content-Length: %d\r\n" % len(data), data
    chunks = draw(st.lists(st.binary(min_size=1, max_size=20), max_size=4))
    parts = []
    for chunk in chunks:
        size = b"%x" % len(chunk)
        if kind == "chunked-odd":
            size = draw(st.sampled_from([size, size.upper(), b"00" + size, size + b";ext=1", size + b" "]))
        parts.append(size + b"\r\n" + chunk + b"\r\n")
    last = b"0\r\n"
    if kind == "chunked-odd":
        last = draw(st.sampled_from([last, b"000\r\n", b"0;x\r\n"]))
    trailer = draw(st.sampled_from([b"\r\n", b"X-Trailer: 1\r\n\r\n"])) if kind == "chunked-odd" else b"\r\n"
    return b"Transfer-Encoding: chunked\r\n", b"".join(parts) + last + trailer


@st.composite
def request(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"CONNECT", b"OPTIONS", b"PRI"]))
    version = draw(st.sampled_from([b"1.1", b"1.1", b"1.1", b"1.0", b"2.0"]))
    target = draw(st.sampled_from([b"/", b"/poll?since=5", b"*", b"example.com:443"]))
    fields = [b"Host: example.com"] if draw(st.booleans()) or draw(st.booleans()) else []
    fields += draw(st.lists(st.sampled_from(FIELD_SHAPES), max_size=3))
    framing, data = draw(body())
    return (
        method
        + b" "
        + target
        + b" HTTP/"
        + version
        + b"\r\n"
        + b"".join(f + b"\r\n" for f in fields)
        + framing
        + (b"\r\n" + data)
    )


@st.composite
def response(draw: st.DrawFn) -> bytes:
    status = draw(st.sampled_from([b"200 OK", b"200 OK", b"404 Not Found", b"500 ", b"101 Switching Protocols"]))
    status = draw(st.sampled_from([status, status, b"100 Continue\r\n\r\nHTTP/1.1 " + status, b"204 No Content"]))
    fields = draw(st.lists(st.sampled_from(FIELD_SHAPES), max_size=3))
    framing, data = draw(body())
    return b"HTTP/1.1 " + status + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + framing + b"\r\n" + data


@st.composite
def conversation(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A few exchanges, well-formed more often than not."""
    plain = st.builds(
        lambda framing_body, target: (
            b"POST /" + target + b" HTTP/1.1\r\nHost: x\r\n" + framing_body[0] + b"\r\n" + framing_body[1]
        ),
        body(),
        st.sampled_from([b"a", b"poll"]),
    )
    answered = st.builds(lambda fb: b"HTTP/1.1 200 OK\r\n" + fb[0] + b"\r\n" + fb[1], body())
    requests = draw(st.lists(st.one_of(plain, plain, request()), min_size=1, max_size=4))
    responses = draw(st.lists(st.one_of(answered, answered, response()), min_size=0, max_size=len(requests) + 1))
    return b"".join(requests), b"".join(responses)


def mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """``data`` with bytes changed, inserted or removed: (where, what, byte) each."""
    out = bytearray(data)
    for where, what, byte in edits:
        at = where % (len(out) + 1)
        if what == 0 and at < len(out):
            out[at] = byte
        elif what == 1:
            out[at:at] = bytes([byte])
        else:
            del out[at : at + 1]
    return bytes(out)


edits = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.integers(0, 2),
        st.sampled_from([0x0D, 0x0A, 0x20, 0x09, 0x3A, 0x3B, 0x30, 0x61, 0x00, 0xFF]) | st.integers(0, 255),
    ),
    max_size=3,
)
cuts = st.lists(st.integers(0, 10_000), max_size=8)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation(), edits, edits, cuts, cuts, st.randoms(use_true_random=False))
def test_random_splits_of_mutated_conversations_give_h11s_events(
    talk: tuple[bytes, bytes],
    c2s_edits: list[tuple[int, int, int]],
    s2c_edits: list[tuple[int, int, int]],
    c2s_cuts: list[int],
    s2c_cuts: list[int],
    order: random.Random,
) -> None:
    c2s, s2c = mutate(talk[0], c2s_edits), mutate(talk[1], s2c_edits)
    feeds = interleave(cut(c2s, c2s_cuts), cut(s2c, s2c_cuts), order)
    assert_same(feeds)
    assert_same(feeds, stop=order.choice([C2S, S2C]))


@settings(max_examples=60, deadline=None)
@given(conversation(), edits, edits)
def test_conversations_fed_a_byte_at_a_time_give_h11s_events(
    talk: tuple[bytes, bytes], c2s_edits: list[tuple[int, int, int]], s2c_edits: list[tuple[int, int, int]]
) -> None:
    c2s, s2c = mutate(talk[0], c2s_edits), mutate(talk[1], s2c_edits)
    bytewise = [(C2S, c2s[i : i + 1]) for i in range(len(c2s))] + [(S2C, s2c[i : i + 1]) for i in range(len(s2c))]
    assert_same(bytewise)
    # Each response byte right after the request bytes before it: the scanner reads
    # responses as they come.
    assert_same([(C2S, c2s)] + [(S2C, s2c[i : i + 1]) for i in range(len(s2c))])


@pytest.mark.parametrize("described", CORPUS["cases"], ids=[c["name"] for c in CORPUS["cases"]])
def test_the_corpus_gives_h11s_events_however_it_is_cut(described: dict[str, str]) -> None:
    c2s = described["client_to_server"].encode("latin-1")
    s2c = described["server_to_client"].encode("latin-1")
    assert_same([(C2S, c2s), (S2C, s2c)])
    assert_same([(C2S, c2s[i : i + 1]) for i in range(len(c2s))] + [(S2C, s2c[i : i + 1]) for i in range(len(s2c))])
    generator = random.Random(described["name"])
    for _ in range(20):
        points = [generator.randrange(0, 4096) for _ in range(generator.randrange(0, 10))]
        assert_same(interleave(cut(c2s, points), cut(s2c, points[::-1]), generator))


# -- handing over -----------------------------------------------------------

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
POLL = b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n"


def answered(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize(
    "odd",
    [
        b"5;name=value\r\nhello\r\n",  # a chunk extension
        b"5 \r\nhello\r\n",  # whitespace after the size
        b"5\r\nhelloXY",  # no CRLF after the data
        b"0\r\nX-Trailer: 1\r\n\r\n",  # a trailer field
        b"0\n\n",  # bare line feeds
    ],
)
@pytest.mark.parametrize("piece", [1, 3, 7, 10_000])
def test_a_response_handed_to_h11_inside_its_body_reads_as_h11_reads_it_from_the_start(odd: bytes, piece: int) -> None:
    """h11 takes over where the scanner stopped, mid-body, and reads what follows as
    if it had read everything; the next exchange is scanned again."""
    s2c = SSE_HEAD + b"3\r\nabc\r\n" + b"a\r\n0123456789\r\n" + odd + b"2\r\nok\r\n0\r\n\r\n" + answered(b"next")
    feeds = [(C2S, POLL + POLL)] + [(S2C, s2c[i : i + piece]) for i in range(0, len(s2c), piece)]
    assert_same(feeds)
    parser = Http1Parser(scan=True)
    parser.feed(C2S, POLL + POLL, 0.0)
    parser.feed(S2C, SSE_HEAD + b"3\r\nabc\r\n", 0.0)
    assert parser._s2c.scan is not None and parser._s2c.conn is None
    parser.feed(S2C, s2c[len(SSE_HEAD) + 8 :], 0.0)
    assert parser._s2c.scan is None  # h11 read the odd chunk; the next response is done too


@pytest.mark.parametrize("where", range(0, 120, 7))
def test_a_connection_cut_anywhere_closes_as_with_h11(where: int) -> None:
    """A close, or a hole, inside a head, a body, a chunk line or a chunk's CRLF."""
    c2s = POLL + b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789" + POLL
    s2c = SSE_HEAD + b"3\r\nabc\r\n" + b"a\r\n0123456789\r\n0\r\n\r\n" + answered(b"x" * 40) + answered(b"")
    for direction in (C2S, S2C):
        whole = c2s if direction is C2S else s2c
        other = s2c if direction is C2S else c2s
        feeds = [(S2C if direction is C2S else C2S, other), (direction, whole[:where])]
        assert_same(feeds)
        assert_same(feeds, stop=direction)


def test_the_scanner_reads_well_formed_keep_alive_exchanges_itself() -> None:
    feeds = [(C2S, POLL * 3), (S2C, answered(b"one") + answered(b"two"))]
    parser = Http1Parser(scan=True)
    events = [parser.feed(direction, data, float(i)) for i, (direction, data) in enumerate(feeds)]
    assert parser._c2s.conn is None and parser._s2c.conn is None
    assert events == run(feeds, scan=False)[:2]


def test_the_environment_variable_chooses_h11_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SCAN_VARIABLE, "h11")
    parser = Http1Parser()
    parser.feed(C2S, POLL, 0.0)
    assert parser._c2s.scan is None and parser._c2s.conn is not None
    monkeypatch.delenv(SCAN_VARIABLE)
    parser = Http1Parser()
    parser.feed(C2S, POLL, 0.0)
    assert parser._c2s.scan is not None


@pytest.mark.parametrize("piece", [1, 5, 64, 100_000])
def test_a_connection_handed_to_h11_mid_stream_is_accounted_as_with_h11_alone(
    monkeypatch: pytest.MonkeyPatch, piece: int
) -> None:
    """The whole connection's record: exchanges, byte accounts and anomalies, with the
    scanner handing over inside a request body, inside an event stream, and at a close
    inside a response body."""
    upload = b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n4;x=y\r\nwxyz\r\n0\r\n\r\n"
    c2s = POLL + upload + POLL + POLL
    events = b"".join(b"%x\r\n" % len(e) + e + b"\r\n" for e in (b"data: 1\n\n", b"data: 22\n\n"))
    s2c = SSE_HEAD + events + b"5;odd\r\nda: 3\r\n0\r\n\r\n" + answered(b"ok") + answered(b"x" * 30)[:-10]
    records = []
    for mode in ("", "h11"):
        monkeypatch.setenv(SCAN_VARIABLE, mode)
        analyzer = ConnectionAnalyzer(OPENED)
        feeds = interleave(
            cut(c2s, list(range(0, len(c2s), piece))), cut(s2c, list(range(0, len(s2c), piece))), random.Random(piece)
        )
        for i, (direction, data) in enumerate(feeds):
            analyzer.feed(direction, data, float(i))
        record = analyzer.close(1e6)
        records.append((essentials(record), record.anomalies, [record.account(d).as_dict() for d in Direction]))
    assert records[0] == records[1]
    assert records[0][1]  # the cut response is an anomaly, the same both ways
