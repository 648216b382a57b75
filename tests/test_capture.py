"""The capture file: what is written reads back, whole or cut short."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inspector.capture import (
    CAPTURE_VERSION,
    MAGIC,
    CaptureError,
    CaptureWriter,
    ConnectionClosed,
    ConnectionOpened,
    DataChunk,
    DatagramChunk,
    Event,
    Record,
    StreamChunk,
    StreamEnded,
    TlsInfo,
    read_capture,
)
from inspector.wire import Direction

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT

RECORDS: list[Record] = [
    ConnectionOpened(
        1,
        1700000000.25,
        client="127.0.0.1:50000",
        server="example.com:443",
        mode="reverse:https://example.com:443",
        tls=TlsInfo("TLSv1.3", "example.com", "http/1.1", "TLS_AES_128_GCM_SHA256", 1700000000.26, 1700000000.3),
        upstream_tls=TlsInfo(
            "TLSv1.2", "example.com", None, "ECDHE-RSA-AES128-GCM-SHA256", 1700000000.27, 1700000000.29
        ),
    ),
    DataChunk(1, 1700000000.5, C2S, b"GET /sse HTTP/1.1\r\nHost: example.com\r\n\r\n"),
    DataChunk(1, 1700000000.75, S2C, b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"),
    ConnectionOpened(2, 1700000001.0, client="[::1]:50001", server="127.0.0.1:8000", mode="regular"),
    DataChunk(2, 1700000001.5, C2S, b""),
    DataChunk(1, 1700000002.0, S2C, bytes(range(256)) * 256),
    Event(0, 1700000002.5, "note", {"text": "ünïcode", "n": 3}),
    ConnectionClosed(2, 1700000003.0, "server closed"),
    ConnectionOpened(
        3,
        1700000003.5,
        client="[::1]:50002",
        server="localhost:4433",
        mode="reverse:quic://localhost:4433",
        tls=TlsInfo("QUICv1", "localhost", "h3", None, 1700000003.5, 1700000003.6),
        transport="quic",
    ),
    StreamChunk(3, 1700000003.7, C2S, 0, b"\x01\x05headers"),
    StreamChunk(3, 1700000003.7, S2C, 3, b""),
    StreamChunk(3, 1700000003.8, S2C, 2**62 - 1, b"\x00"),
    DatagramChunk(3, 1700000003.9, S2C, b"\x00payload"),
    DatagramChunk(3, 1700000003.9, C2S, b""),
    StreamEnded(3, 1700000004.0, C2S, 0),
    StreamEnded(3, 1700000004.1, S2C, 0, reset=True, error_code=0x10C),
    ConnectionClosed(3, 1700000004.2, "client closed"),
    ConnectionClosed(1, 1700000004.5, "error: connection reset by peer"),
]


def write(path: Path, records: list[Record]) -> None:
    with CaptureWriter(path) as writer:
        for record in records:
            writer.write(record)


def test_records_read_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "all.rtcap"
    write(path, RECORDS)
    with read_capture(path) as capture:
        assert capture.version == CAPTURE_VERSION
        assert capture.truncated_tail == 0
        assert list(capture) == RECORDS
        assert list(capture) == RECORDS, "a capture can be iterated more than once"


def test_file_starts_with_magic_and_version(tmp_path: Path) -> None:
    path = tmp_path / "empty.rtcap"
    write(path, [])
    assert path.read_bytes() == MAGIC + CAPTURE_VERSION.to_bytes(4, "little")
    assert list(read_capture(path)) == []


@given(
    st.lists(
        st.builds(
            DataChunk,
            st.integers(0, 2**32 - 1),
            st.floats(allow_nan=False),
            st.sampled_from(Direction),
            st.binary(max_size=300),
        ),
        max_size=20,
    ),
    st.integers(1, 4096),
)
def test_any_data_round_trips_whatever_the_buffer_size(records: list[Record], buffer_limit: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "data.rtcap"
        with CaptureWriter(path, buffer_limit=buffer_limit) as writer:
            for record in records:
                writer.write(record)
        assert list(read_capture(path)) == records


def test_a_cut_anywhere_in_the_last_record_keeps_the_records_before_it(tmp_path: Path) -> None:
    path = tmp_path / "whole.rtcap"
    records = RECORDS[:3] + [ConnectionClosed(1, 1700000009.0, "client closed")]
    write(path, records)
    whole = path.read_bytes()
    write(path, records[:-1])
    end_of_complete = len(path.read_bytes())
    cut = tmp_path / "cut.rtcap"
    for length in range(end_of_complete, len(whole)):
        cut.write_bytes(whole[:length])
        capture = read_capture(cut)
        assert list(capture) == records[:-1]
        assert capture.truncated_tail == length - end_of_complete
        capture.close()


def test_a_cut_inside_a_large_data_record(tmp_path: Path) -> None:
    path = tmp_path / "big.rtcap"
    write(path, RECORDS[:6])
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    capture = read_capture(path)
    assert list(capture) == RECORDS[:5]
    assert capture.truncated_tail == 17 + 65536 - 1000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not an rtinspect capture"),
        (b"\x89RTCA", "not an rtinspect capture"),
        (b"GET / HTTP/1.1\r\n\r\n", "not an rtinspect capture"),
        (MAGIC + (99).to_bytes(4, "little"), "capture version 99 is not supported"),
    ],
)
def test_files_that_are_not_captures_are_refused_in_one_line(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "other.rtcap"
    path.write_bytes(content)
    with pytest.raises(CaptureError, match=message) as error:
        read_capture(path)
    assert "\n" not in str(error.value)


def test_unreadable_paths_are_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="cannot read .*missing.rtcap"):
        read_capture(tmp_path / "missing.rtcap")
    with pytest.raises(CaptureError, match="cannot read"):
        read_capture(tmp_path)


def test_a_damaged_json_record_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "damaged.rtcap"
    write(path, [ConnectionClosed(1, 1.0, "client closed")])
    data = bytearray(path.read_bytes())
    data[-1] = ord("!")
    path.write_bytes(bytes(data))
    with pytest.raises(CaptureError, match="damaged record at byte 12"):
        list(read_capture(path))


def test_unknown_record_types_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "newer.rtcap"
    write(path, RECORDS[1:3])
    data = path.read_bytes()
    unknown = bytes([200]) + (1).to_bytes(4, "little") + bytes(8) + (3).to_bytes(4, "little") + b"abc"
    path.write_bytes(data[:12] + unknown + data[12:])
    assert list(read_capture(path)) == RECORDS[1:3]


def test_capture_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "private.rtcap"
    path.write_bytes(b"older content")
    path.chmod(0o644)
    write(path, RECORDS[:2])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(read_capture(path)) == RECORDS[:2]


def test_readers_see_what_was_flushed_while_writing_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "live.rtcap"
    with CaptureWriter(path) as writer:
        assert list(read_capture(path)) == []
        writer.write(RECORDS[0])
        writer.write(RECORDS[1])
        assert list(read_capture(path)) == [], "nothing is flushed yet"
        writer.flush()
        early = read_capture(path)
        writer.write(RECORDS[2])
        writer.flush()
        assert list(early) == RECORDS[:2], "a capture is the file as it was when opened"
        assert list(read_capture(path)) == RECORDS[:3]
        assert read_capture(path).truncated_tail == 0


def test_the_writer_flushes_by_itself_past_its_buffer_limit(tmp_path: Path) -> None:
    path = tmp_path / "busy.rtcap"
    chunk = DataChunk(1, 1.0, S2C, b"x" * 1000)
    with CaptureWriter(path, buffer_limit=10_000) as writer:
        for _ in range(25):
            writer.write(chunk)
        assert 10 <= len(list(read_capture(path))) < 25


def test_writing_after_close_is_an_error(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path / "closed.rtcap")
    writer.close()
    writer.close()
    assert writer.closed
    with pytest.raises(ValueError, match="closed"):
        writer.write(RECORDS[1])
