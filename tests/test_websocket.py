"""WebSocket framing and permessage-deflate: byte accounting, messages and anomalies.

Frames come from wsproto (an independent encoder) and, end to end, from a real
``websockets`` server and client talking through a recording TCP relay.
"""

from __future__ import annotations

import socket
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol, Opcode
from wsproto.handshake import server_extensions_handshake

from inspector.events import ControlFrame, WebSocketMessage
from inspector.websocket import DeflateParams, FrameHeader, WebSocketStream, parse_frame_header
from inspector.wire import Anomaly, ByteAccount, Category, Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
MASK = b"\x37\xfa\x21\x3d"


def header_length(payload_length: int) -> int:
    if payload_length < 126:
        return 2
    if payload_length < 65536:
        return 4
    return 10


def sender(direction: Direction, deflate: DeflateParams | None = None) -> FrameProtocol:
    """A wsproto encoder for ``direction``, with permessage-deflate as negotiated."""
    extensions = []
    if deflate is not None:
        extension = PerMessageDeflate()
        extension.finalize(
            "permessage-deflate"
            + "; client_no_context_takeover" * deflate.client_no_context_takeover
            + "; server_no_context_takeover" * deflate.server_no_context_takeover
            + f"; client_max_window_bits={deflate.client_max_window_bits}"
            + f"; server_max_window_bits={deflate.server_max_window_bits}"
        )
        extensions.append(extension)
    return FrameProtocol(client=direction is C2S, extensions=extensions)


def run(
    direction: Direction,
    data: bytes,
    *,
    deflate: DeflateParams | None = None,
    offset: int = 0,
    chunks: list[int] | None = None,
) -> tuple[WebSocketStream, list[WebSocketMessage | ControlFrame]]:
    """Feed ``data`` (split after each position in ``chunks``), then end the stream."""
    stream = WebSocketStream(direction, offset=offset, deflate=deflate)
    events: list[WebSocketMessage | ControlFrame] = []
    cuts = [0, *sorted(chunks or []), len(data)]
    for start, stop in pairwise(cuts):
        events += stream.feed(data[start:stop], 0.0)
    events += stream.close(0.0)
    return stream, events


def masked(first: int, payload: bytes, key: bytes = MASK) -> bytes:
    """A client frame with a short payload, masked by hand."""
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([first, 0x80 | len(payload)]) + key + body


# --- Frame headers -------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 1 << 40])
def test_parse_frame_header_lengths(length: int) -> None:
    if length < 126:
        raw = bytes([0x82, length])
    elif length < 65536:
        raw = bytes([0x82, 126]) + struct.pack("!H", length)
    else:
        raw = bytes([0x82, 127]) + struct.pack("!Q", length)
    header = parse_frame_header(raw)
    assert header == FrameHeader(
        fin=True,
        rsv1=False,
        rsv2=False,
        rsv3=False,
        opcode=Opcode.BINARY,
        masked=False,
        payload_length=length,
        header_length=header_length(length),
    )
    assert header.wire_length == header_length(length) + length
    assert parse_frame_header(raw[:-1]) is None


def test_parse_frame_header_keeps_reserved_opcodes_and_bits() -> None:
    header = parse_frame_header(b"\x7b\x85")
    assert header is not None
    assert (header.fin, header.rsv1, header.rsv2, header.rsv3) == (False, True, True, True)
    assert header.opcode == 0xB and not isinstance(header.opcode, Opcode)
    assert header.masked and header.wire_length == 2 + 4 + 5


# --- Byte accounting of valid streams ---------------------------------------------

SIZES = [0, 1, 125, 126, 65535, 65536, 70000]


@pytest.mark.parametrize("direction", [C2S, S2C])
def test_single_frame_messages_are_counted_exactly(direction: Direction) -> None:
    proto = sender(direction)
    data = b"".join(bytes(proto.send_data(b"\x00" * n)) for n in SIZES)
    data += bytes(proto.send_data("é" * 100))
    stream, events = run(direction, data)

    frames = len(SIZES) + 1
    headers = sum(map(header_length, [*SIZES, 200]))
    payload = sum(SIZES) + 200
    masks = 4 * frames if direction is C2S else 0
    assert stream.anomaly is None
    assert stream.account == ByteAccount(
        {Category.FRAME_HEADER: headers, Category.MASK_KEY: masks, Category.PAYLOAD: payload}
    )
    assert stream.account.total == len(data)
    assert (stream.data_frames, stream.control_frames, stream.frames) == (frames, 0, frames)
    assert [(e.opcode, e.payload_bytes, e.wire_payload_bytes) for e in events] == [
        *((Opcode.BINARY, n, n) for n in SIZES),
        (Opcode.TEXT, 200, 200),
    ]
    for event, n in zip(events, [*SIZES, 200], strict=True):
        assert isinstance(event, WebSocketMessage)
        assert event.direction is direction and event.frames == 1 and not event.compressed
        assert event.wire_bytes == header_length(n) + masks // frames + n


def test_fragmented_message_with_interleaved_ping() -> None:
    proto = sender(C2S)
    frames = [
        bytes(proto.send_data("ab", fin=False)),
        bytes(proto.ping(b"are you there")),
        bytes(proto.send_data("c" * 300, fin=False)),
        bytes(proto.send_data("€", fin=True)),
    ]
    stream = WebSocketStream(C2S)
    events = []
    for timestamp, frame in enumerate(frames, start=1):
        events += stream.feed(frame, float(timestamp))
    assert stream.close(9.0) == []

    ping, message = events
    assert ping == ControlFrame(C2S, Opcode.PING, wire_bytes=2 + 4 + 13, payload_bytes=13, timestamp=2.0)
    assert message == WebSocketMessage(
        direction=C2S,
        opcode=Opcode.TEXT,
        frames=3,
        wire_bytes=(2 + 4 + 2) + (4 + 4 + 300) + (2 + 4 + 3),
        wire_payload_bytes=305,
        payload_bytes=305,
        compressed=False,
        first_timestamp=1.0,
        timestamp=4.0,
    )
    assert stream.account[Category.CONTROL] == 13
    assert stream.account[Category.PAYLOAD] == 305
    assert stream.account[Category.MASK_KEY] == 16
    assert (stream.data_frames, stream.control_frames) == (3, 1)


def test_first_timestamp_is_when_the_header_completed() -> None:
    frame = bytes(sender(S2C).send_data(b"x" * 10))
    stream = WebSocketStream(S2C)
    assert stream.feed(frame[:1], 1.0) == []
    assert stream.buffered == 1
    assert stream.feed(frame[1:5], 2.0) == []
    assert stream.buffered == 0 and stream.account.total == 5
    (message,) = stream.feed(frame[5:], 3.0)
    assert (message.first_timestamp, message.timestamp) == (2.0, 3.0)


@pytest.mark.parametrize("direction", [C2S, S2C])
def test_control_frames(direction: Direction) -> None:
    proto = sender(direction)
    data = bytes(proto.ping(b"p" * 125)) + bytes(proto.pong()) + bytes(proto.close(1001, "going àway"))
    data += bytes(sender(direction).close())
    stream, events = run(direction, data)
    ping, pong, close, bare_close = events
    mask = 4 if direction is C2S else 0
    assert ping == ControlFrame(direction, Opcode.PING, 2 + mask + 125, 125, 0.0)
    assert pong == ControlFrame(direction, Opcode.PONG, 2 + mask, 0, 0.0)
    reason = "going àway".encode()
    assert close == ControlFrame(
        direction,
        Opcode.CLOSE,
        2 + mask + 2 + len(reason),
        2 + len(reason),
        0.0,
        close_code=1001,
        close_reason="going àway",
    )
    assert bare_close == ControlFrame(direction, Opcode.CLOSE, 2 + mask, 0, 0.0)
    assert stream.account[Category.CONTROL] == 125 + 2 + len(reason)
    assert stream.account[Category.PAYLOAD] == 0
    assert (stream.data_frames, stream.control_frames) == (0, 4)
    assert stream.anomaly is None


# --- permessage-deflate ---------------------------------------------------------


@pytest.mark.parametrize("direction", [C2S, S2C])
@pytest.mark.parametrize("no_context_takeover", [False, True])
@pytest.mark.parametrize("window_bits", [9, 12, 15])
def test_deflate_messages(direction: Direction, no_context_takeover: bool, window_bits: int) -> None:
    deflate = DeflateParams(
        client_no_context_takeover=no_context_takeover,
        server_no_context_takeover=no_context_takeover,
        client_max_window_bits=window_bits,
        server_max_window_bits=window_bits,
    )
    proto = sender(direction, deflate)
    contents: list[bytes | str] = ["hello world " * 50, "hello world " * 50, b"\x00\x01" * 3000, ""]
    frames = [bytes(proto.send_data(content)) for content in contents]
    # A compressed message in three fragments: only the first frame has RSV1.
    fragments = [bytes(proto.send_data("abc" * 100, fin=False)), bytes(proto.send_data("def", fin=False))]
    fragments.append(bytes(proto.send_data("ghi" * 100, fin=True)))
    assert fragments[0][0] & 0x40 and not fragments[1][0] & 0x40
    data = b"".join(frames + fragments)

    stream, events = run(direction, data, deflate=deflate, chunks=list(range(1, len(data), 97)))

    assert stream.anomaly is None
    assert all(isinstance(e, WebSocketMessage) and e.compressed for e in events)
    assert [e.payload_bytes for e in events] == [600, 600, 6000, 0, 603]
    mask = 4 if direction is C2S else 0
    wire_payloads = [len(f) - 2 - mask for f in frames]  # all short enough for 2-byte headers
    assert [e.wire_payload_bytes for e in events[:4]] == wire_payloads
    assert events[4].frames == 3 and events[4].wire_bytes == sum(map(len, fragments))
    # With context takeover the repeated message refers back to the first one.
    assert (wire_payloads[1] < wire_payloads[0]) is not no_context_takeover
    assert stream.account[Category.PAYLOAD] == sum(e.wire_payload_bytes for e in events)
    assert stream.account.total == len(data)


def test_deflate_context_takeover_is_per_direction_sender() -> None:
    """The sender kept its context; a receiver told it would not must fail on the second message."""
    kept = DeflateParams()
    proto = sender(S2C, kept)
    first, second = bytes(proto.send_data("same " * 100)), bytes(proto.send_data("same " * 100))
    data = first + second

    stream, events = run(S2C, data, deflate=DeflateParams(server_no_context_takeover=True))
    assert len(events) == 1
    assert stream.anomaly is not None and stream.anomaly.offset == len(first)
    assert "corrupt permessage-deflate data" in stream.anomaly.reason
    # The client's parameter does not apply to the server's frames.
    stream, events = run(S2C, data, deflate=DeflateParams(client_no_context_takeover=True))
    assert stream.anomaly is None and len(events) == 2


def test_deflate_final_block_starts_a_new_stream() -> None:
    compressor = zlib.compressobj(wbits=-15)
    whole = compressor.compress(b"x" * 1000) + compressor.flush()  # BFINAL set
    first = bytes([0xC2, len(whole)]) + whole
    stream, events = run(S2C, first + first, deflate=DeflateParams())
    assert stream.anomaly is None
    assert [e.payload_bytes for e in events] == [1000, 1000]


def test_uncompressed_message_on_a_deflate_connection() -> None:
    stream, (event,) = run(S2C, b"\x81\x02hi", deflate=DeflateParams())
    assert not event.compressed and event.payload_bytes == 2 and stream.anomaly is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("x-webkit-deflate-frame", None),
        ("permessage-deflate", DeflateParams()),
        ("Permessage-Deflate ;server_no_context_takeover", DeflateParams(server_no_context_takeover=True)),
        (
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=10; client_no_context_takeover",
            DeflateParams(client_no_context_takeover=True, client_max_window_bits=10, server_max_window_bits=12),
        ),
        ('permessage-deflate; client_max_window_bits="9"', DeflateParams(client_max_window_bits=9)),
        ("foo, permessage-deflate; server_max_window_bits=9", DeflateParams(server_max_window_bits=9)),
        ("permessage-deflate; server_max_window_bits=20", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; server_max_window_bits=é", None),
    ],
)
def test_deflate_params_from_response_header(value: str | None, expected: DeflateParams | None) -> None:
    assert DeflateParams.from_response_header(value) == expected


def test_deflate_params_from_a_wsproto_server_answer() -> None:
    offer = PerMessageDeflate(client_max_window_bits=11, server_no_context_takeover=True).offer()
    accepted = server_extensions_handshake([f"permessage-deflate; {offer}"], [PerMessageDeflate()])
    assert accepted is not None
    assert DeflateParams.from_response_header(accepted.decode()) == DeflateParams(
        server_no_context_takeover=True, client_max_window_bits=11, server_max_window_bits=15
    )


# --- Anomalies --------------------------------------------------------------------

DEFLATE = DeflateParams()


@dataclass(frozen=True)
class Violation:
    direction: Direction
    data: bytes
    offset: int
    reason: str
    #: Bytes that stay in their categories (the rest are UNPARSED).
    parsed: int
    deflate: DeflateParams | None = None


def corrupt_close(code: int) -> Violation:
    return Violation(S2C, b"\x88\x02" + struct.pack("!H", code), 0, f"invalid close code {code}", 4)


VIOLATIONS = {
    "reserved data opcode": Violation(S2C, b"\x83\x00tail", 0, "reserved opcode 0x3", 0),
    "reserved control opcode": Violation(S2C, b"\x82\x00\x8f\x00", 2, "reserved opcode 0xF", 2),
    "rsv1 without deflate": Violation(S2C, b"\xc1\x01x", 0, "RSV1 set but permessage-deflate was not negotiated", 0),
    "rsv1 on continuation": Violation(
        S2C, b"\x41\x01\x4b\xc0\x01\x00", 3, "RSV1 set on a continuation frame", 3, DEFLATE
    ),
    "rsv1 on control": Violation(S2C, b"\xc9\x00", 0, "RSV1 set on a control frame", 0, DEFLATE),
    "rsv2": Violation(S2C, b"\xa2\x00", 0, "RSV2 or RSV3 set, but no extension defines them", 0),
    "rsv3": Violation(S2C, b"\x92\x00", 0, "RSV2 or RSV3 set, but no extension defines them", 0, DEFLATE),
    "client frame not masked": Violation(C2S, b"\x82\x01x", 0, "client frame not masked", 0),
    "server frame masked": Violation(S2C, b"\x82\x81" + MASK + b"x", 0, "server frame masked", 0),
    "control frame too long": Violation(
        S2C, b"\x89\x7e\x00\x7e" + b"p" * 126, 0, "control frame payload of 126 bytes (at most 125 allowed)", 0
    ),
    "fragmented control frame": Violation(S2C, b"\x09\x00", 0, "fragmented control frame (FIN not set)", 0),
    "non-minimal 16-bit length": Violation(
        S2C, b"\x82\x7e\x00\x7d" + b"x" * 125, 0, "payload length 125 encoded in 16 bits (not minimal)", 0
    ),
    "non-minimal 64-bit length": Violation(
        S2C, b"\x82\x7f" + struct.pack("!Q", 65535), 0, "payload length 65535 encoded in 64 bits (not minimal)", 0
    ),
    "64-bit length msb": Violation(
        S2C, b"\x82\x7f" + struct.pack("!Q", 1 << 63), 0, "64-bit payload length with the most significant bit set", 0
    ),
    "continuation without message": Violation(S2C, b"\x80\x00", 0, "continuation frame with no message in progress", 0),
    "data frame inside fragmented message": Violation(
        C2S, masked(0x01, b"a") + masked(0x82, b"b"), 7, "new data frame while a fragmented message is in progress", 7
    ),
    "close with 1 byte": Violation(S2C, b"\x88\x01\x03more", 0, "close frame payload of 1 byte", 3),
    "close reason not utf-8": Violation(
        C2S, masked(0x88, b"\x03\xe8\xff\xfe") + b"\x00", 0, "invalid UTF-8 in a close reason", 10
    ),
    "text not utf-8": Violation(S2C, b"\x81\x02\xff\xfe\x81\x00", 0, "invalid UTF-8 in a text message", 4),
    "text ends inside a character": Violation(
        S2C,
        b"\x01\x01\xe2\x80\x01\x82\x89\x00",
        3,
        "invalid UTF-8 in a text message (it ends inside a character)",
        6,
    ),
    "masked text not utf-8 in second fragment": Violation(
        C2S, masked(0x01, b"ok") + masked(0x80, b"\xc0\xaf"), 8, "invalid UTF-8 in a text message", 16
    ),
    "corrupt deflate": Violation(
        S2C,
        b"\xc2\x01\x07\x82\x00",
        0,
        "corrupt permessage-deflate data (Error -3 while decompressing data: invalid block type)",
        3,
        DEFLATE,
    ),
    "data after final deflate block": Violation(
        S2C, b"\xc2\x04\x03\x00\x00\x00", 0, "corrupt permessage-deflate data (data after the final block)", 6, DEFLATE
    ),
    **{f"close code {code}": corrupt_close(code) for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535)},
}


@pytest.mark.parametrize("case", VIOLATIONS.values(), ids=VIOLATIONS.keys())
@pytest.mark.parametrize("split", ["whole", "bytewise"])
def test_violation(case: Violation, split: str) -> None:
    chunks = list(range(1, len(case.data))) if split == "bytewise" else []
    stream, _ = run(case.direction, case.data, deflate=case.deflate, offset=1000, chunks=chunks)
    assert stream.anomaly == Anomaly(case.direction, 1000 + case.offset, case.reason)
    assert stream.account[Category.UNPARSED] == len(case.data) - case.parsed
    assert stream.account.total == len(case.data)
    # Parsing has stopped: later bytes are only counted.
    before = stream.account
    assert stream.feed(b"\x82\x00", 1.0) == []
    assert stream.account[Category.UNPARSED] == before[Category.UNPARSED] + 2


@pytest.mark.parametrize("code", [1000, 1003, 1007, 1011, 1014, 3000, 4999])
def test_allowed_close_codes(code: int) -> None:
    stream, (close,) = run(S2C, b"\x88\x02" + struct.pack("!H", code))
    assert stream.anomaly is None
    assert (close.close_code, close.close_reason) == (code, "")


def test_offending_payload_frame_is_counted_but_not_delivered() -> None:
    stream, events = run(S2C, b"\x82\x01a" + b"\x81\x02\xff\xfe" + b"\x82\x01b")
    assert [e.payload_bytes for e in events] == [1]
    assert stream.anomaly == Anomaly(S2C, 3, "invalid UTF-8 in a text message")
    assert stream.account == ByteAccount({Category.FRAME_HEADER: 4, Category.PAYLOAD: 3, Category.UNPARSED: 3})
    assert stream.data_frames == 2


# --- End of stream ------------------------------------------------------------------


def test_clean_end_after_complete_frames() -> None:
    stream, events = run(S2C, b"\x82\x01a\x89\x00")
    assert stream.anomaly is None and len(events) == 2


def test_end_inside_a_frame_header() -> None:
    stream, _ = run(C2S, masked(0x82, b"abc") + b"\x82\x83\x01\x02", offset=10)
    assert stream.anomaly == Anomaly(C2S, 10 + 9, "stream ended inside a frame header")
    assert stream.account[Category.UNPARSED] == 4
    assert stream.buffered == 0


def test_end_inside_a_frame_payload_keeps_its_bytes_counted() -> None:
    stream, _ = run(S2C, b"\x82\x01a\x82\x05abc")
    assert stream.anomaly == Anomaly(S2C, 3, "stream ended inside a frame payload (3 of 5 bytes)")
    assert stream.account == ByteAccount({Category.FRAME_HEADER: 4, Category.PAYLOAD: 4})


def test_end_inside_a_fragmented_message() -> None:
    stream, events = run(S2C, b"\x02\x01a\x89\x00\x00\x01b")
    assert [type(e) for e in events] == [ControlFrame]
    assert stream.anomaly == Anomaly(S2C, 8, "stream ended inside a fragmented message")
    assert stream.account == ByteAccount({Category.FRAME_HEADER: 6, Category.PAYLOAD: 2})
    assert stream.data_frames == 2


def test_frame_claiming_a_huge_length_takes_the_rest_as_payload() -> None:
    data = b"\x82\x7f" + struct.pack("!Q", 1 << 62)
    stream = WebSocketStream(S2C)
    stream.feed(data, 0.0)
    for _ in range(100):
        stream.feed(b"\x00" * 10000, 0.0)
    stream.close(0.0)
    assert stream.account == ByteAccount({Category.FRAME_HEADER: 10, Category.PAYLOAD: 1_000_000})
    assert stream.anomaly == Anomaly(S2C, 0, f"stream ended inside a frame payload (1000000 of {1 << 62} bytes)")


def test_bad_utf8_in_an_unfinished_frame_is_reported_at_the_end() -> None:
    stream, _ = run(S2C, b"\x82\x00\x81\x05\xff")
    assert stream.anomaly == Anomaly(S2C, 2, "invalid UTF-8 in a text message")


# --- Properties -------------------------------------------------------------------


@st.composite
def conversations(draw: st.DrawFn) -> tuple[Direction, DeflateParams | None, bytes, list[int]]:
    """A valid stream of frames for one direction, and what its messages carried."""
    direction = draw(st.sampled_from([C2S, S2C]))
    deflate = None
    if draw(st.booleans()):
        bits = draw(st.integers(9, 15))
        keep = draw(st.booleans())
        deflate = DeflateParams(
            client_no_context_takeover=keep,
            server_no_context_takeover=keep,
            client_max_window_bits=bits,
            server_max_window_bits=bits,
        )
    proto = sender(direction, deflate)
    data = bytearray()
    sizes = []
    content = st.one_of(st.text(max_size=300), st.binary(max_size=300))
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["message", "fragmented", "ping", "close"]))
        if kind == "message":
            payload = draw(content)
            data += proto.send_data(payload)
            sizes.append(len(payload.encode() if isinstance(payload, str) else payload))
        elif kind == "fragmented":
            pieces = draw(st.lists(content, min_size=2, max_size=4))
            text = isinstance(pieces[0], str)
            pieces = [p if isinstance(p, str) == text else (str(p) if text else p.encode()) for p in pieces]
            for i, piece in enumerate(pieces):
                data += proto.send_data(piece, fin=i == len(pieces) - 1)
                if draw(st.booleans()):
                    data += proto.ping(draw(st.binary(max_size=125)))
            sizes.append(sum(len(p.encode() if isinstance(p, str) else p) for p in pieces))
        elif kind == "ping":
            data += proto.pong(draw(st.binary(max_size=125)))
        else:
            data += proto.close(draw(st.sampled_from([1000, 1001, 1011, 3000, 4999])), draw(st.text(max_size=20)))
    return direction, deflate, bytes(data), sizes


def splits(size: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(0, size), max_size=20) if size else st.just([])


def outcome(stream: WebSocketStream, events: list) -> tuple:
    return (stream.account, stream.anomaly, stream.data_frames, stream.control_frames, events)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conversation=conversations(), data=st.data())
def test_valid_streams_whatever_the_split(conversation: tuple, data: st.DataObject) -> None:
    direction, deflate, raw, sizes = conversation
    whole_stream, whole_events = run(direction, raw, deflate=deflate)
    assert whole_stream.anomaly is None
    assert whole_stream.account.total == len(raw)
    assert whole_stream.account[Category.UNPARSED] == 0
    assert [e.payload_bytes for e in whole_events if isinstance(e, WebSocketMessage)] == sizes

    cuts = data.draw(splits(len(raw)))
    stream, events = run(direction, raw, deflate=deflate, chunks=cuts)
    assert outcome(stream, events) == outcome(whole_stream, whole_events)
    stream, events = run(direction, raw, deflate=deflate, chunks=list(range(1, len(raw))))
    assert outcome(stream, events) == outcome(whole_stream, whole_events)


@settings(max_examples=300, deadline=None)
@given(
    direction=st.sampled_from([C2S, S2C]),
    deflate=st.sampled_from([None, DEFLATE]),
    raw=st.binary(max_size=200),
    data=st.data(),
)
def test_arbitrary_bytes_whatever_the_split(
    direction: Direction, deflate: DeflateParams | None, raw: bytes, data: st.DataObject
) -> None:
    whole_stream, whole_events = run(direction, raw, deflate=deflate)
    assert whole_stream.account.total == len(raw)
    cuts = data.draw(splits(len(raw)))
    stream = WebSocketStream(direction, deflate=deflate)
    events = []
    fed = 0
    for start, stop in zip([0, *sorted(cuts)], [*sorted(cuts), len(raw)], strict=True):
        events += stream.feed(raw[start:stop], 0.0)
        fed += stop - start
        assert stream.account.total + stream.buffered == fed
    events += stream.close(0.0)
    assert stream.account.total == len(raw)
    assert outcome(stream, events) == outcome(whole_stream, whole_events)


@settings(max_examples=150, deadline=None)
@given(first=st.text(max_size=40), garbage=st.binary(max_size=60), last=st.text(max_size=40), data=st.data())
def test_near_valid_bytes_whatever_the_split(first: str, garbage: bytes, last: str, data: st.DataObject) -> None:
    """Compressed client frames with garbage between them, so parsing gets past the first header."""
    proto = sender(C2S, DEFLATE)
    raw = bytes(proto.send_data(first, fin=False)) + garbage + bytes(proto.send_data(last))
    whole = outcome(*run(C2S, raw, deflate=DEFLATE))
    assert whole[0].total == len(raw)
    cuts = data.draw(splits(len(raw)))
    assert outcome(*run(C2S, raw, deflate=DEFLATE, chunks=cuts)) == whole


@st.composite
def frame_soup(draw: st.DrawFn) -> bytes:
    """Client frames that mostly follow the rules and sometimes break one, deep in a stream."""

    def mistake() -> bool:
        return draw(st.integers(0, 14)) == 0

    frames = bytearray()
    in_message = False
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["data", "data", "control"]))
        if kind == "data":
            opcode = 0x0 if in_message != mistake() else draw(st.sampled_from([0x1, 0x2]))
            fin = draw(st.booleans())
            payload = draw(st.one_of(st.binary(max_size=140), st.text(max_size=60).map(str.encode)))
            in_message = not fin
        else:
            opcode = draw(st.sampled_from([0x8, 0x9, 0xA]))
            fin = not mistake()
            payload = draw(st.binary(max_size=20))
            if opcode == 0x8 and not mistake():
                payload = struct.pack("!H", draw(st.sampled_from([1000, 1001, 4000]))) + b"bye"
        if mistake():
            opcode = draw(st.sampled_from([0x3, 0xB]))
        rsv1 = mistake()
        key = draw(st.binary(min_size=4, max_size=4))
        frames += bytes([fin << 7 | rsv1 << 6 | opcode])
        if len(payload) < 126:
            frames += bytes([(not mistake()) << 7 | len(payload)])
        else:
            frames += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        frames += key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(frames)


@settings(max_examples=200, deadline=None)
@given(raw=frame_soup(), deflate=st.sampled_from([None, DEFLATE]), data=st.data())
def test_frame_soup_whatever_the_split(raw: bytes, deflate: DeflateParams | None, data: st.DataObject) -> None:
    whole = outcome(*run(C2S, raw, deflate=deflate))
    assert whole[0].total == len(raw)
    cuts = data.draw(splits(len(raw)))
    assert outcome(*run(C2S, raw, deflate=deflate, chunks=cuts)) == whole


# --- A real server and client -----------------------------------------------------


class RecordingRelay:
    """A TCP relay on 127.0.0.1 that keeps every byte each side sent."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent = {C2S: bytearray(), S2C: bytearray()}
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        client, _ = self.listener.accept()
        server = socket.create_connection(self.upstream)
        pumps = [
            threading.Thread(target=self._pump, args=(client, server, C2S)),
            threading.Thread(target=self._pump, args=(server, client, S2C)),
        ]
        for pump in pumps:
            pump.start()
        for pump in pumps:
            pump.join()
        client.close()
        server.close()
        self.listener.close()

    def _pump(self, source: socket.socket, sink: socket.socket, direction: Direction) -> None:
        while chunk := source.recv(65536):
            self.sent[direction] += chunk
            sink.sendall(chunk)
        sink.shutdown(socket.SHUT_WR)


def echo(connection: ServerConnection) -> None:
    for message in connection:
        connection.send(message)


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    with serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server.socket.getsockname()
        server.shutdown()
        thread.join()


def test_real_websockets_conversation_with_deflate(echo_server: tuple[str, int]) -> None:
    relay = RecordingRelay(echo_server)
    sent: list[str | bytes] = ["hello " * 200, "hello " * 200, bytes(range(256)) * 40, "ünïcödé", "x" * 70000]
    with connect(f"ws://127.0.0.1:{relay.port}/") as client:
        for message in sent:
            client.send(message)
            assert client.recv() == message
        client.ping(b"ping!")
    relay.thread.join(timeout=10)

    request = bytes(relay.sent[C2S])
    response = bytes(relay.sent[S2C])
    request_head = request.index(b"\r\n\r\n") + 4
    response_head = response.index(b"\r\n\r\n") + 4
    extensions = [
        line.split(b":", 1)[1].strip().decode()
        for line in response[:response_head].split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-extensions:")
    ]
    deflate = DeflateParams.from_response_header(extensions[0])
    assert deflate is not None

    sizes = [len(m.encode() if isinstance(m, str) else m) for m in sent]
    for direction, raw, head in ((C2S, request, request_head), (S2C, response, response_head)):
        stream = WebSocketStream(direction, offset=head, deflate=deflate)
        events = []
        for start in range(head, len(raw), 1000):
            events += stream.feed(raw[start : start + 1000], 0.0)
        events += stream.close(0.0)
        assert stream.anomaly is None
        assert stream.account.total == len(raw) - head
        messages = [e for e in events if isinstance(e, WebSocketMessage)]
        assert [m.payload_bytes for m in messages] == sizes
        assert any(m.compressed for m in messages)
        assert stream.account[Category.PAYLOAD] == sum(m.wire_payload_bytes for m in messages)
        assert stream.account[Category.FRAME_HEADER] + stream.account[Category.MASK_KEY] == sum(
            m.wire_bytes - m.wire_payload_bytes for m in messages
        ) + sum(c.wire_bytes - c.payload_bytes for c in events if isinstance(c, ControlFrame))
        assert stream.account[Category.MASK_KEY] == (4 * stream.frames if direction is C2S else 0)
        controls = [(c.opcode, c.close_code) for c in events if isinstance(c, ControlFrame)]
        expected_ping = (Opcode.PING, None) if direction is C2S else (Opcode.PONG, None)
        assert controls == [expected_ping, (Opcode.CLOSE, 1000)]


@given(data=st.binary(max_size=300), key=st.binary(min_size=4, max_size=4))
def test_the_python_unmask_matches_the_one_in_use(data: bytes, key: bytes) -> None:
    from inspector.websocket import _unmask, _unmask_in_python

    assert _unmask_in_python(data, key) == _unmask(data, key)


@given(
    frames=st.lists(
        st.tuples(
            st.sampled_from([Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG]),
            st.sampled_from([0, 1, 125, 126, 127, 65535, 65536]),
        ),
        max_size=8,
    ),
    direction=st.sampled_from([C2S, S2C]),
    data=st.data(),
)
@settings(suppress_health_check=[HealthCheck.too_slow])
def test_the_stream_reads_headers_as_parse_frame_header_does(
    frames: list[tuple[Opcode, int]], direction: Direction, data: st.DataObject
) -> None:
    """The stream decodes headers itself (no FrameHeader per frame); its counts
    must be those the public header parser gives for the same frames."""
    proto = sender(direction)
    raw = b""
    for opcode, size in frames:
        if opcode is Opcode.PING:
            raw += bytes(proto.ping(b"p" * min(size, 125)))
        elif opcode is Opcode.PONG:
            raw += bytes(proto.pong(b"p" * min(size, 125)))
        else:
            raw += bytes(proto.send_data(("x" if opcode is Opcode.TEXT else b"\x00") * size))
    expected = {Category.FRAME_HEADER: 0, Category.MASK_KEY: 0, Category.PAYLOAD: 0, Category.CONTROL: 0}
    pos = 0
    while pos < len(raw):
        header = parse_frame_header(raw, pos)
        assert header is not None
        expected[Category.FRAME_HEADER] += header.header_length
        expected[Category.MASK_KEY] += 4 * header.masked
        kind = Category.CONTROL if header.opcode in (Opcode.PING, Opcode.PONG) else Category.PAYLOAD
        expected[kind] += header.payload_length
        pos += header.wire_length
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(raw)), max_size=6))
    stream, events = run(direction, raw, chunks=cuts)
    assert stream.anomaly is None
    assert stream.frames == len(frames) == len(events)
    assert {category: stream.account[category] for category in expected} == expected
