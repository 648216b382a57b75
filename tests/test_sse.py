"""The event stream parser against the HTML standard, an independent decoder and a real server."""

from __future__ import annotations

import html
import itertools
import json
import random
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import httpx_sse
import pytest
from httpx_sse._decoders import SSEDecoder, SSELineDecoder
from hypothesis import given
from hypothesis import strategies as st
from servers import ScriptedServer, respond_with, running_proxy

from inspector.events import SseEvent
from inspector.replay import report_from_captures
from inspector.sse import SseStream
from inspector.wire import Category

# Fragments that make event streams with every structure the parser knows about.
FRAGMENTS = [
    b"data", b"data:", b"data: ", b"event:", b"event: ", b"id:", b"id: ", b"retry:", b"retry: ",
    b":", b" ", b"x", b"hello", b"123", b"\x00", b"\xc3\xa9", b"\xe2\x82", b"\xff", b"\xef\xbb\xbf",
    b"\r", b"\n", b"\r\n", b"\n\n", b"\r\n\r\n",
]  # fmt: skip

streams = st.one_of(st.binary(max_size=200), st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(b"".join))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def read(chunks: list[bytes], timestamps: list[float] | None = None) -> tuple[list[SseEvent], SseStream]:
    stream = SseStream()
    events: list[SseEvent] = []
    for i, chunk in enumerate(chunks):
        events += stream.feed(chunk, timestamps[i] if timestamps else 0.0)
        assert stream.account.total + stream.pending_bytes == sum(map(len, chunks[: i + 1]))
    events += stream.close(-1.0)
    return events, stream


def parse(body: bytes) -> list[SseEvent]:
    return read([body])[0]


def summary(events: list[SseEvent]) -> list[tuple[str, str, str, int | None]]:
    return [(e.type, e.data, e.last_event_id, e.retry) for e in events]


# --- properties -----------------------------------------------------------------------


@given(streams, st.lists(st.integers(min_value=0)))
def test_every_byte_is_counted_once(data: bytes, cuts: list[int]) -> None:
    events, stream = read(split(data, cuts))
    assert stream.account.total == len(data)
    assert stream.pending_bytes == 0
    assert stream.account[Category.PAYLOAD] == sum(e.payload_bytes for e in events)
    assert set(stream.account.as_dict()) >= {"payload", "message_syntax"}
    assert stream.account.total == stream.account[Category.PAYLOAD] + stream.account[Category.MESSAGE_SYNTAX]
    assert sum(e.wire_bytes for e in events) <= len(data)


@given(streams, st.lists(st.integers(min_value=0)))
def test_results_do_not_depend_on_chunking(data: bytes, cuts: list[int]) -> None:
    whole_events, whole = read([data])
    events, stream = read(split(data, cuts))
    assert events == whole_events
    assert stream.account == whole.account
    assert stream.comments == whole.comments


@given(streams, st.lists(st.integers(min_value=0)))
def test_event_time_is_when_its_line_end_arrived(data: bytes, cuts: list[int]) -> None:
    # Byte by byte, each event's time is the offset of the first byte of its dispatching line end.
    line_end_offsets = [e.timestamp for e in read([bytes([b]) for b in data], list(map(float, range(len(data)))))[0]]
    chunks = split(data, cuts)
    starts = [float(sum(map(len, chunks[:i]))) for i in range(len(chunks))]
    events, _ = read(chunks, starts)
    assert [e.timestamp for e in events] == [max(s for s in starts if s <= at) for at in line_end_offsets]


@given(streams, st.lists(st.integers(min_value=0)))
def test_chunks_that_are_not_bytes_read_alike(data: bytes, cuts: list[int]) -> None:
    # Lines are cut straight out of a chunk when no line is pending; a bytearray
    # or memoryview chunk must give what the same bytes give.
    chunks = split(data, cuts)
    expected = read(chunks)
    for kind in (bytearray, memoryview):
        events, stream = read([kind(chunk) for chunk in chunks])
        assert events == expected[0]
        assert stream.account == expected[1].account


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0)))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    read(split(data, cuts))


# --- the examples of the HTML standard ------------------------------------------------


def test_standard_example_comments_and_ids() -> None:
    body = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n"
    events, stream = read([body])
    assert summary(events) == [
        ("message", "first event", "1", None),
        ("message", "second event", "", None),
        ("message", " third event", "", None),
    ]
    assert stream.comments == 1


def test_standard_example_empty_data() -> None:
    events = parse(b"data\n\ndata\ndata\n\ndata:")
    assert [e.data for e in events] == ["", "\n"]


def test_standard_example_space_after_colon_is_optional() -> None:
    assert [e.data for e in parse(b"data:test\n\ndata: test\n\n")] == ["test", "test"]


def test_standard_example_multi_line_data() -> None:
    body = b"data: This is the first message.\n\ndata: This is the second message, it\ndata: has two lines.\n\ndata: This is the third message.\n\n"
    assert [e.data for e in parse(body)] == [
        "This is the first message.",
        "This is the second message, it\nhas two lines.",
        "This is the third message.",
    ]
    assert [e.data for e in parse(b"data: YHOO\ndata: +2\ndata: 10\n\n")] == ["YHOO\n+2\n10"]


def test_standard_example_event_types() -> None:
    body = b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\nevent: add\ndata: 113411\n\n"
    assert [(e.type, e.data) for e in parse(body)] == [("add", "73857293"), ("remove", "2153"), ("add", "113411")]


# --- field rules ----------------------------------------------------------------------


def test_line_ends_crlf_lf_and_cr_are_alike() -> None:
    for end in (b"\n", b"\r", b"\r\n"):
        body = b"event: e" + end + b"data: a" + end + b"data: b" + end + end
        events, stream = read([body])
        assert summary(events) == [("e", "a\nb", "", None)]
        # "a", the first byte of the line end after it (the LF that joins the lines), "b".
        assert events[0].payload_bytes == stream.account[Category.PAYLOAD] == len(b"a\nb")
        assert stream.account[Category.MESSAGE_SYNTAX] == len(body) - len(b"a\nb")


def test_the_lf_joining_data_lines_is_payload_whatever_lies_between_them() -> None:
    # A comment and an event line between two data lines; the line end of the
    # last data line, and of the line that only resets the type, join nothing.
    body = b"data: one\r\n: note\r\nevent: e\r\ndata: two\r\n\r\ndata: solo\r\n\r\n"
    events, stream = read([body])
    assert [(e.data, e.payload_bytes) for e in events] == [("one\ntwo", 7), ("solo", 4)]
    assert stream.account[Category.PAYLOAD] == 11
    assert stream.account[Category.MESSAGE_SYNTAX] == len(body) - 11


def test_a_data_line_ended_by_a_crlf_split_across_chunks_joins_the_next() -> None:
    stream = SseStream()
    assert stream.feed(b"data: a\r", 1.0) == []
    assert stream.pending_bytes == len(b"data: a\r")
    assert stream.feed(b"\ndata: b\r", 2.0) == []
    assert stream.account.total + stream.pending_bytes == len(b"data: a\r\ndata: b\r")
    assert stream.feed(b"\r\n", 3.0) == [SseEvent("message", "a\nb", "", None, 19, 3, 3.0)]
    assert stream.account[Category.PAYLOAD] == 3
    assert stream.account[Category.MESSAGE_SYNTAX] == 16


def test_blank_line_without_data_resets_the_event_type_and_retry() -> None:
    assert summary(parse(b"event: x\nretry: 5\n\ndata: a\n\n")) == [("message", "a", "", None)]


def test_an_id_persists_across_events_and_one_with_nul_is_ignored() -> None:
    events = parse(b"id: 7\n\ndata: a\n\nid: 8\x009\ndata: b\n\nid\ndata: c\n\n")
    assert [e.last_event_id for e in events] == ["7", "7", ""]


def test_retry_only_from_ascii_digits() -> None:
    body = (
        b"retry: 1000\ndata: a\n\nretry: 1s\ndata: b\n\nretry: \xd9\xa3\ndata: c\n\nretry: "
        + b"9" * 5000
        + b"\ndata: d\n\n"
    )
    assert [e.retry for e in parse(body)] == [1000, None, None, None]


def test_unknown_fields_are_ignored() -> None:
    assert summary(parse(b"foo: bar\ndata: a\nDATA: b\n\n")) == [("message", "a", "", None)]


def test_bom_is_skipped_once() -> None:
    body = b"\xef\xbb\xbfdata: a\n\n\xef\xbb\xbfdata: b\n\n"
    events, stream = read([bytes([b]) for b in body])
    assert [e.data for e in events] == ["a"]
    assert events[0].wire_bytes == 12
    assert stream.account[Category.PAYLOAD] == 1


def test_invalid_utf8_becomes_replacement_characters_and_keeps_wire_counts() -> None:
    events = parse(b"data: \xff\xe2\x82\n\n")
    assert events[0].data == "\ufffd\ufffd"
    assert events[0].payload_bytes == 3


def test_unfinished_event_is_discarded_as_syntax() -> None:
    body = b"data: first\n\ndata: lost\ndata: partial line"
    events, stream = read([body])
    assert [e.data for e in events] == ["first"]
    assert stream.account[Category.PAYLOAD] == 5
    assert stream.account[Category.MESSAGE_SYNTAX] == len(body) - 5


# --- accounting -----------------------------------------------------------------------


def test_accounting_of_an_event_with_a_heartbeat_before_it() -> None:
    events, stream = read([b': ping\n\nevent: tick\nid: 3\ndata: {"n": 1}\ndata:2\n\n'])
    (event,) = events
    assert event.payload_bytes == len(b'{"n": 1}\n2')
    assert event.wire_bytes == len(b': ping\n\nevent: tick\nid: 3\ndata: {"n": 1}\ndata:2\n\n')
    assert stream.account[Category.PAYLOAD] == 10
    assert stream.account[Category.MESSAGE_SYNTAX] == event.wire_bytes - 10
    assert stream.comments == 1


def test_a_cr_at_a_chunk_end_is_held_until_the_next_byte() -> None:
    stream = SseStream()
    assert stream.feed(b"data: a\n\r", 1.0) == []
    assert stream.feed(b"\ndata: b\n\n", 2.0) == [
        SseEvent("message", "a", "", None, wire_bytes=10, payload_bytes=1, timestamp=1.0),
        SseEvent("message", "b", "", None, wire_bytes=9, payload_bytes=1, timestamp=2.0),
    ]
    assert stream.feed(b"data: c\r\r", 3.0) == []
    assert stream.close(4.0) == [SseEvent("message", "c", "", None, wire_bytes=9, payload_bytes=1, timestamp=3.0)]
    assert stream.account.total == 28


def test_position_counts_from_the_offset_of_the_body() -> None:
    stream = SseStream(offset=120)
    stream.feed(b"data: a\n", 0.0)
    assert stream.position == 128


# --- an independent decoder -----------------------------------------------------------


class StandardSSEDecoder(SSEDecoder):
    """httpx-sse's decoder, except that (as the HTML standard says) a blank line
    dispatches only when the data buffer holds something."""

    def decode(self, line: str) -> httpx_sse.ServerSentEvent | None:
        if not line and not self._data:
            self._event, self._retry = "", None
            return None
        return super().decode(line)


def reference(text: str) -> list[tuple[str, str, str, int | None]]:
    lines_decoder, decoder = SSELineDecoder(), StandardSSEDecoder()
    lines = lines_decoder.decode(text) if text else []
    if lines_decoder.trailing_cr:
        lines += lines_decoder.flush()
    events = [decoder.decode(line) for line in lines]
    return [(e.event, e.data, e.id, e.retry) for e in events if e is not None]


TEXT_FRAGMENTS = [
    "data", "data:", "data: ", "event:", "event: ", "id:", "id: ", "retry:", "retry: ", "other:",
    ":", " ", "x", "hello", "123", "\x00", "é", "☃", "\r", "\n", "\r\n", "\n\n",
]  # fmt: skip


# Whole lines, so that events of several data lines are common: a field (or a
# comment, or nothing: a blank line) and a value, then any line end.
text_lines = st.lists(
    st.tuples(
        st.sampled_from(["data", "data:", "data: ", "event: ", "id: ", "retry: ", ": ", ""]),
        st.sampled_from(["", "x", "hello", "é", "☃", " two", "1"]),
        st.sampled_from(["\n", "\r\n", "\r"]),
    ).map("".join),
    max_size=30,
).map("".join)
texts = st.one_of(st.lists(st.sampled_from(TEXT_FRAGMENTS), max_size=60).map("".join), text_lines)


@given(texts, st.lists(st.integers(min_value=0)))
def test_events_agree_with_httpx_sse(text: str, cuts: list[int]) -> None:
    events, stream = read(split(text.encode(), cuts))
    assert summary(events) == reference(text)
    # The payload is the data the application gets, byte for byte.
    assert [e.payload_bytes for e in events] == [len(e.data.encode()) for e in events]
    assert stream.account[Category.PAYLOAD] == sum(len(data.encode()) for _, data, _, _ in reference(text))


# --- a real server --------------------------------------------------------------------

# Chunks as the server writes them: CRLF split across chunks, a heartbeat, UTF-8 split mid-character.
SERVER_CHUNKS = [
    b": heartbeat\r",
    b"\n\r\nretry: 3000\r",
    b"\nid: 1\r\nevent: tick\r\ndata: caf\xc3",
    b"\xa9\r\ndata: two\r",
    b"\n\r",
    b"\ndata: last\n\n",
]


class EventStreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in SERVER_CHUNKS:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), EventStreamHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/events"
    server.shutdown()
    server.server_close()


def test_a_real_event_stream_read_by_httpx(server_url: str) -> None:
    with httpx.Client() as client:
        with httpx_sse.connect_sse(client, "GET", server_url) as source:
            expected = [(e.event, e.data, e.id, e.retry) for e in source.iter_sse()]
        stream = SseStream()
        events: list[SseEvent] = []
        with client.stream("GET", server_url) as response:
            for chunk in response.iter_raw():
                events += stream.feed(chunk, 0.0)
        events += stream.close(0.0)
    assert summary(events) == expected == [("tick", "café\ntwo", "1", 3000), ("message", "last", "1", None)]
    assert stream.account.total == sum(map(len, SERVER_CHUNKS))
    assert stream.account[Category.PAYLOAD] == len("café\ntwo".encode() + b"last")


# Multi-line events with every line end, sent in pieces that split CRLFs and characters.
LINE_ENDS = (b"\n", b"\r\n", b"\r")


def multi_line_events(count: int) -> bytes:
    """``count`` events of 1 to 4 data lines, every fifth with a comment among them."""
    body = b""
    for i in range(count):
        lines = [b"data: %d.%d caf\xc3\xa9 \xe2\x98\x83" % (i, n) for n in range(1 + i % 4)]
        if i % 5 == 0:
            lines.insert(1, b": heartbeat")
        for n, line in enumerate(lines):
            body += line + LINE_ENDS[(i + n) % 3]
        # The blank line that dispatches the event (after a CR, an LF would end no line).
        body += b"\r\n" if body.endswith(b"\r") else LINE_ENDS[i % 3]
    return body


MULTI_LINE_BODY = multi_line_events(120)
MULTI_LINE_PIECES = [MULTI_LINE_BODY[i : i + 97] for i in range(0, len(MULTI_LINE_BODY), 97)]
MULTI_LINE_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
    *(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in MULTI_LINE_PIECES),
    b"0\r\n\r\n",
)


def test_the_payload_of_multi_line_events_is_what_httpx_sse_delivers(confdir: Path, tmp_path: Path) -> None:
    """httpx-sse reads multi-line events through the proxy; the report's SSE payload
    is the UTF-8 bytes of the data strings it delivered, joining LFs included."""
    assert any(piece.endswith(b"\r") for piece in MULTI_LINE_PIECES)  # a CRLF or CR line end split across chunks
    capture = tmp_path / "sse.rtcap"
    with ScriptedServer(respond_with(*MULTI_LINE_RESPONSE)) as server:
        with running_proxy(server.url, confdir=confdir, capture=capture) as proxy:
            with httpx.Client() as client:
                with httpx_sse.connect_sse(client, "GET", f"http://127.0.0.1:{proxy.port}/events") as source:
                    delivered = [event.data for event in source.iter_sse()]
            assert proxy.stop() == 0, proxy.stderr
    assert len(delivered) == 120 and sum(data.count("\n") for data in delivered) == 120 * 3 // 2
    sse = report_from_captures([capture]).transport("sse")
    assert sse.messages.server_to_client == len(delivered)
    assert sse.payload_bytes.server_to_client == sum(len(data.encode()) for data in delivered)
    syntax = sse.categories[Category.MESSAGE_SYNTAX].server_to_client
    assert sse.payload_bytes.server_to_client + syntax == len(MULTI_LINE_BODY)


# --- a real browser -------------------------------------------------------------------

BROWSER_BODIES = [
    b"\xef\xbb\xbfretry: 10\n\nevent: tick\ndata: a\r\rdata\n\nid: 5\ndata: b\r\n\r\ndata: unfinished",
    b"event: x\nid: 1\n\ndata: after a block without data\n\n",
    b"data: \xff\xe2\x82 \xc3\xa9\n\nid: a\x00b\ndata: nul\n\n:comment\ndata:  two spaces\n\n",
] + [b"".join(random.Random(seed).choices(FRAGMENTS, k=40)) for seed in range(40)]

PAGE = """<!doctype html><pre id=out></pre><script>
const bodies = %s, results = [];
function next(i) {
  if (i === bodies.length) { document.getElementById("out").textContent = JSON.stringify(results); return; }
  const got = [], source = new EventSource("/events/" + i);
  const record = e => got.push([e.type, e.data, e.lastEventId]);
  for (const type of bodies[i]) source.addEventListener(type, record);
  source.onerror = () => { source.close(); results.push(got); next(i + 1); };
}
next(0);
</script>"""


def event_types(body: bytes) -> list[str]:
    """Every name an ``event`` line of the body could give, so the page can listen for it."""
    types = {"message"}
    for line in re.split(rb"\r\n|\r|\n", body.removeprefix(b"\xef\xbb\xbf")):
        if line.startswith(b"event:"):
            types.add(line[6:].removeprefix(b" ").decode("utf-8", "replace"))
    return sorted(types)


class BrowserHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path == "/":
            body, kind = (PAGE % json.dumps([event_types(b) for b in BROWSER_BODIES])).encode(), "text/html"
        else:
            body, kind = BROWSER_BODIES[int(self.path.rsplit("/", 1)[1])], "text/event-stream"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_events_agree_with_chromium_eventsource(tmp_path: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BrowserHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path}"]
        command += ["--virtual-time-budget=20000", "--dump-dom", f"http://127.0.0.1:{server.server_address[1]}/"]
        dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    finally:
        server.shutdown()
        server.server_close()
    found = re.search(r'<pre id="out">(.*?)</pre>', dom, re.DOTALL)
    assert found and found.group(1), dom
    browser = json.loads(html.unescape(found.group(1)))
    ours = [[[e.type, e.data, e.last_event_id] for e in parse(body)] for body in BROWSER_BODIES]
    assert ours == browser
