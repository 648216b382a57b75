"""The line stream parser: accounting, chunking and a real streaming server."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from inspector.events import StreamMessage
from inspector.ndjson import LineStream
from inspector.wire import Category

FRAGMENTS = [b"{", b"}", b'"a":1', b" ", b"x", b"\r", b"\n", b"\r\n", b"\n\n", b"\xff", b"\x00"]
streams = st.one_of(st.binary(max_size=200), st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(b"".join))


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def read(chunks: list[bytes]) -> tuple[list[StreamMessage], LineStream]:
    stream = LineStream()
    messages: list[StreamMessage] = []
    for i, chunk in enumerate(chunks):
        messages += stream.feed(chunk, 0.0)
        assert stream.account.total + stream.pending_bytes == sum(map(len, chunks[: i + 1]))
    messages += stream.close(0.0)
    return messages, stream


def expected_messages(data: bytes) -> list[tuple[int, int]]:
    """(wire_bytes, payload_bytes) of each message, by the plainest reading of the rules."""
    *lines, last = data.split(b"\n")
    result = []
    for line in lines:
        content = line.removesuffix(b"\r")
        if content:
            result.append((len(line) + 1, len(content)))
    if last:
        result.append((len(last), len(last)))
    return result


@given(streams, st.lists(st.integers(min_value=0)))
def test_messages_and_accounting(data: bytes, cuts: list[int]) -> None:
    messages, stream = read(split(data, cuts))
    assert [(m.wire_bytes, m.payload_bytes) for m in messages] == expected_messages(data)
    assert stream.account.total == len(data)
    assert stream.pending_bytes == 0
    assert stream.account[Category.PAYLOAD] == sum(m.payload_bytes for m in messages)
    assert stream.account[Category.MESSAGE_SYNTAX] == len(data) - stream.account[Category.PAYLOAD]


@given(streams, st.lists(st.integers(min_value=0)))
def test_results_do_not_depend_on_chunking(data: bytes, cuts: list[int]) -> None:
    assert read(split(data, cuts))[0] == read([data])[0]
    assert read(split(data, cuts))[1].account == read([data])[1].account


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0)))
def test_arbitrary_bytes_never_raise(data: bytes, cuts: list[int]) -> None:
    read(split(data, cuts))


def test_a_message_is_timed_by_the_chunk_that_completed_it() -> None:
    stream = LineStream()
    assert stream.feed(b'{"a":', 1.0) == []
    assert stream.feed(b"1}\r", 2.0) == []
    assert stream.feed(b'\n\n{"b":2}\n{"c"', 3.0) == [StreamMessage(9, 7, 3.0), StreamMessage(8, 7, 3.0)]
    assert stream.close(4.0) == [StreamMessage(4, 4, 4.0)]
    assert stream.account[Category.PAYLOAD] == 18
    assert stream.account[Category.MESSAGE_SYNTAX] == 4


def test_blank_lines_are_syntax_not_messages() -> None:
    messages, stream = read([b"\n\r\n\n"])
    assert messages == []
    assert stream.account[Category.MESSAGE_SYNTAX] == 4


def test_a_lone_cr_is_content() -> None:
    messages, _ = read([b"a\rb\n\r\r\n"])
    assert [(m.wire_bytes, m.payload_bytes) for m in messages] == [(4, 3), (3, 1)]


# --- a real server --------------------------------------------------------------------

RECORDS = [{"n": n, "text": "é" * n} for n in range(20)]
BODY = b"".join(json.dumps(r, ensure_ascii=False).encode() + b"\n" for r in RECORDS)
SERVER_CHUNKS = [BODY[i : i + 7] for i in range(0, len(BODY), 7)]


class NdjsonHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in SERVER_CHUNKS:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def server_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NdjsonHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/stream"
    server.shutdown()
    server.server_close()


def test_a_real_ndjson_stream_read_by_httpx(server_url: str) -> None:
    stream = LineStream()
    messages: list[StreamMessage] = []
    with httpx.stream("GET", server_url) as response:
        for chunk in response.iter_raw():
            messages += stream.feed(chunk, 0.0)
    messages += stream.close(0.0)
    assert len(messages) == len(RECORDS)
    assert [m.payload_bytes for m in messages] == [len(json.dumps(r, ensure_ascii=False).encode()) for r in RECORDS]
    assert stream.account[Category.MESSAGE_SYNTAX] == len(RECORDS)
    assert stream.account.total == len(BODY)
