"""The compiled parsers give exactly what the pure-Python ones give.

The pure-Python modules are the reference. Here both implementations read the
same streams side by side (valid ones, rule-breaking ones, random bytes; split
anywhere), and after every chunk they must agree on every event, count and
anomaly. Then the whole suite's view of it: ``test_pure_path.py`` runs the
reports and the parsers' own tests again with ``RTINSPECT_NO_EXTENSIONS=1``.
"""

from __future__ import annotations

import codecs
import importlib
import os
import shutil
import subprocess
import sys
import sysconfig
from itertools import pairwise
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_capture import RECORDS
from test_websocket import DEFLATE, conversations, frame_soup

from inspector import capture as capture_module
from inspector import speedups
from inspector import websocket as websocket_module
from inspector.capture import CaptureWriter, DataChunk, read_capture
from inspector.websocket import DeflateParams, PureWebSocketStream, WebSocketStream
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
ROOT = Path(__file__).parent.parent


def _built(name: str) -> ModuleType | None:
    """A compiled module where it is built, whether or not it is in use (so that the
    comparisons run with RTINSPECT_NO_EXTENSIONS set too)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


compiled_websocket = _built(speedups.EXTENSIONS["websocket"])
compiled_capture = _built(speedups.EXTENSIONS["capture"])
needs_compiled = pytest.mark.skipif(
    compiled_websocket is None or compiled_capture is None, reason="the compiled modules are not built"
)


def _compiler() -> str | None:
    """The C compiler an install would build the compiled modules with, if there is one."""
    configured = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(configured) or shutil.which("cc") or shutil.which("gcc")


# --- Which implementation is in use ---------------------------------------------


def test_the_compiled_modules_are_built_where_a_compiler_exists() -> None:
    """So that a run cannot test the pure-Python path alone without saying so."""
    if speedups.DISABLED:
        pytest.skip(f"{speedups.ENVIRONMENT_VARIABLE} is set: the pure-Python modules are asked for")
    if _compiler() is None:
        pytest.skip("no C compiler: the install builds no compiled modules")
    assert speedups.ACTIVE == set(speedups.EXTENSIONS), speedups.describe()


def test_the_reader_in_use_is_the_one_the_environment_asks_for() -> None:
    if speedups.DISABLED or not speedups.ACTIVE:
        assert WebSocketStream is PureWebSocketStream
        assert "pure Python" in speedups.describe()
    else:
        assert WebSocketStream is getattr(compiled_websocket, "WebSocketStream", None)
        assert speedups.describe() == "compiled: " + ", ".join(sorted(speedups.EXTENSIONS))


def test_the_version_says_which_parsers_are_in_use() -> None:
    from click.testing import CliRunner

    from inspector.cli import main

    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert f"(parsers: {speedups.describe()})" in result.output


@needs_compiled
def test_the_environment_variable_forces_the_pure_python_modules() -> None:
    script = (
        "from inspector import speedups; from inspector.websocket import WebSocketStream, PureWebSocketStream; "
        "print(speedups.ACTIVE == frozenset(), WebSocketStream is PureWebSocketStream, speedups.describe())"
    )
    env = {**os.environ, speedups.ENVIRONMENT_VARIABLE: "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split(maxsplit=2) == [
        "True",
        "True",
        f"pure Python ({speedups.ENVIRONMENT_VARIABLE} is set)\n",
    ]


@needs_compiled
def test_the_limits_agree() -> None:
    assert compiled_websocket.MAX_CONTROL_PAYLOAD == websocket_module.MAX_CONTROL_PAYLOAD
    assert compiled_websocket.CONTENT_LIMIT == websocket_module.CONTENT_LIMIT


# --- Both WebSocket readers on the same streams ---------------------------------


def state(stream: PureWebSocketStream) -> tuple:
    """Everything a reader shows of itself."""
    return (
        stream.account,
        stream.buffered,
        stream.anomaly,
        stream.data_frames,
        stream.control_frames,
        stream.frames,
        stream.keep_content,
    )


def side_by_side(
    direction: Direction,
    raw: bytes,
    cuts: list[int],
    *,
    deflate: DeflateParams | None = None,
    offset: int = 0,
    keep_content: bool = False,
    drop_content_at: int | None = None,
    wrap: type = bytes,
) -> None:
    """Feed ``raw`` split at ``cuts`` to both readers, each chunk at its own time, and compare all along."""
    pure = PureWebSocketStream(direction, offset=offset, deflate=deflate, keep_content=keep_content)
    fast = compiled_websocket.WebSocketStream(direction, offset=offset, deflate=deflate, keep_content=keep_content)
    for n, (start, stop) in enumerate(pairwise([0, *sorted(cuts), len(raw)])):
        if n == drop_content_at:
            pure.keep_content = fast.keep_content = False
        timestamp = 1_700_000_000.0 + n / 8
        expected = pure.feed(wrap(raw[start:stop]), timestamp)
        assert fast.feed(wrap(raw[start:stop]), timestamp) == expected
        assert state(fast) == state(pure)
    assert fast.close(1_800_000_000.0) == pure.close(1_800_000_000.0)
    assert state(fast) == state(pure)
    fast.stop("a hole in the capture")
    pure.stop("a hole in the capture")
    assert fast.feed(b"more", 0.0) == pure.feed(b"more", 0.0)
    assert state(fast) == state(pure)


def splits(size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, size), max_size=12) if size else st.just([])


@needs_compiled
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=conversations(), data=st.data())
def test_valid_streams(conversation: tuple, data: st.DataObject) -> None:
    direction, deflate, raw, _ = conversation
    side_by_side(
        direction,
        raw,
        data.draw(splits(len(raw))),
        deflate=deflate,
        offset=data.draw(st.integers(0, 500)),
        keep_content=data.draw(st.booleans()),
        drop_content_at=data.draw(st.none() | st.integers(0, 4)),
        wrap=data.draw(st.sampled_from([bytes, bytearray, memoryview])),
    )


@needs_compiled
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=conversations(), data=st.data())
def test_mutated_streams(conversation: tuple, data: st.DataObject) -> None:
    """Valid streams with a few bytes changed, cut out or repeated: every rule's edge, deep in a stream."""
    direction, deflate, raw, _ = conversation
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 4))):
        if not mutated:
            break
        at = data.draw(st.integers(0, len(mutated) - 1))
        how = data.draw(st.sampled_from(["xor", "delete", "repeat"]))
        if how == "xor":
            mutated[at] ^= data.draw(st.integers(1, 255))
        elif how == "delete":
            del mutated[at : at + data.draw(st.integers(1, 8))]
        else:
            mutated[at:at] = mutated[at : at + data.draw(st.integers(1, 8))]
    raw = bytes(mutated)
    side_by_side(direction, raw, data.draw(splits(len(raw))), deflate=deflate, keep_content=data.draw(st.booleans()))


@needs_compiled
@settings(max_examples=200, deadline=None)
@given(raw=frame_soup(), deflate=st.sampled_from([None, DEFLATE]), keep=st.booleans(), data=st.data())
def test_frame_soup(raw: bytes, deflate: DeflateParams | None, keep: bool, data: st.DataObject) -> None:
    side_by_side(C2S, raw, data.draw(splits(len(raw))), deflate=deflate, keep_content=keep)


@needs_compiled
@settings(max_examples=200, deadline=None)
@given(
    direction=st.sampled_from([C2S, S2C]),
    deflate=st.sampled_from([None, DEFLATE]),
    raw=st.binary(max_size=300),
    data=st.data(),
)
def test_arbitrary_bytes(direction: Direction, deflate: DeflateParams | None, raw: bytes, data: st.DataObject) -> None:
    side_by_side(direction, raw, data.draw(splits(len(raw))), deflate=deflate)


@needs_compiled
@pytest.mark.parametrize("direction", [C2S, S2C])
@pytest.mark.parametrize(
    "head",
    [
        b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x00",  # 64-bit length with the top bit set
        b"\x82\x7f\x00\x00\x00\x00\x00\x00\xff\xff",  # 64 bits for a 16-bit length
        b"\x82\x7f\x00\x00\x00\x01\x00\x00\x00\x00",  # a huge frame: the rest is its payload
        b"\x82\x7e\x00\x7d",  # 16 bits for a 7-bit length
        b"\x89\x7e\x00\x7e",  # a control frame too long
        b"\x88\x01",  # a close frame of one byte
        b"\x88\x02\x03\xe8",  # a close frame, well formed (server side)
        b"\x88\x04\x03\xe8\xff\xfe",  # a close reason that is not UTF-8
        b"\x88\x02\x03\xec",  # close code 1004
        b"\x81\x02\xc3\x28",  # not UTF-8
        b"\x01\x01\xe2\x80\x81\x80",  # a character split across fragments
        b"\x81\x01\xe2",  # ends inside a character
    ],
)
def test_edge_frames(direction: Direction, head: bytes) -> None:
    """Each as sent (unmasked) and masked, whole and byte by byte."""
    second = head[1]
    masked = bytes([head[0], second | 0x80]) + head[2 : 2 + _extra(second)]
    body = head[2 + _extra(second) :]
    key = b"\x01\x02\x03\x04"
    masked += key + bytes(b ^ key[i % 4] for i, b in enumerate(body))
    for raw in (head, masked, head + b"\x00" * 70_000):
        side_by_side(direction, raw, [])
        side_by_side(direction, raw[:64], list(range(1, min(len(raw), 64))))


def _extra(second: int) -> int:
    return {126: 2, 127: 8}.get(second & 0x7F, 0)


# --- The compiled reader's UTF-8 check is CPython's decoder's ----------------


def decoder_says(data: bytes) -> int:
    """What the pure-Python reader asks of CPython: bytes decoded, or -1 for an error."""
    try:
        return codecs.utf_8_decode(data, "strict", False)[1]
    except UnicodeDecodeError:
        return -1


@needs_compiled
def test_utf8_check_on_every_short_sequence() -> None:
    """Every sequence of one or two bytes, and every three- and four-byte one whose bytes
    are at the edges of what a lead or continuation byte may be."""
    check = compiled_websocket.utf8_complete
    edges = [0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xED, 0xEF]
    edges += [0xF0, 0xF4, 0xF5, 0xFF]
    samples = [bytes([a]) for a in range(256)] + [bytes([a, b]) for a in range(256) for b in range(256)]
    samples += [bytes([a, b, c]) for a in range(0xC0, 0x100) for b in edges for c in edges]
    tails = [0x41, 0x80, 0xBF, 0xC0]  # past the second byte, only "continuation or not" matters
    samples += [bytes([a, b, c, d]) for a in range(0xE0, 0xF8) for b in edges for c in tails for d in tails]
    differing = [data for data in samples if check(data) != decoder_says(data)]
    assert differing == []


@needs_compiled
@settings(max_examples=500, deadline=None)
@given(
    text=st.text(),
    cut=st.integers(0, 1000),
    noise=st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=3),
)
def test_utf8_check_on_text_cut_and_garbled(text: str, cut: int, noise: list) -> None:
    data = bytearray(text.encode("utf-8", "surrogatepass"))
    for at, byte in noise:
        if data:
            data[at % len(data)] = byte
    for piece in (bytes(data), bytes(data[:cut])):
        assert compiled_websocket.utf8_complete(piece) == decoder_says(piece)


# --- Both capture readers on the same files ------------------------------------


def read_both(path: Path, part: int = 0, parts: int = 1, owners: dict[int, int] | None = None) -> None:
    """Read ``path`` with the compiled and the pure-Python loop of ``Capture.select``, and compare
    the records (values and types), where each stopped, the latest time and any error."""
    outcomes = []
    in_use = capture_module._compiled
    for compiled in (compiled_capture, None):
        capture_module._compiled = compiled
        records: list[tuple[int, str]] = []
        error = None
        try:
            with read_capture(path) as capture:
                try:
                    for offset, record in capture.select(part, parts, owners):
                        records.append((offset, repr(record)))
                except capture_module.CaptureError as raised:
                    error = str(raised)
                last = capture.last_timestamp
        except capture_module.CaptureError as raised:
            error, last = f"opening: {raised}", None
        outcomes.append((records, error, last))
    capture_module._compiled = in_use
    assert outcomes[0] == outcomes[1]


capture_records = st.lists(
    st.one_of(
        st.sampled_from(RECORDS),
        st.builds(
            DataChunk,
            st.integers(0, 2**32 - 1),
            st.floats(allow_nan=False),
            st.sampled_from(Direction),
            st.binary(max_size=300),
        ),
    ),
    max_size=30,
)


@needs_compiled
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=capture_records, data=st.data())
def test_captures_read_alike(
    records: list, data: st.DataObject, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any records, any share of the connections, pages given back every few records, and
    the same files damaged: a byte changed anywhere, or the end cut off."""
    monkeypatch.setattr(capture_module, "_RELEASE_STEP", data.draw(st.sampled_from([4096, 16 << 20])))
    path = tmp_path / "records.rtcap"
    with CaptureWriter(path, buffer_limit=data.draw(st.integers(1, 8192))) as writer:
        for record in records:
            writer.write(record)
    parts = data.draw(st.integers(1, 3))
    part = data.draw(st.integers(0, parts - 1))
    owners = data.draw(st.none() | st.dictionaries(st.sampled_from([0, 1, 2, 3, 2**32 - 1]), st.integers(0, 2)))
    read_both(path, part, parts, owners)
    raw = bytearray(path.read_bytes())
    if len(raw) > 12:
        at = data.draw(st.integers(12, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(raw))
        read_both(path, part, parts, owners)
        path.write_bytes(bytes(raw[: data.draw(st.integers(12, len(raw)))]))
        read_both(path, part, parts, owners)


@needs_compiled
@pytest.mark.parametrize(
    "path", sorted(ROOT.glob("tests/recordings/**/*.rtcap")) + sorted(ROOT.glob("tests/corpus/*.rtcap")), ids=str
)
def test_recordings_read_alike(path: Path) -> None:
    read_both(path)
    read_both(path, 1, 2)
