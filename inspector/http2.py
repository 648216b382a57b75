"""HTTP/2 as seen from the wire: both directions of one connection, passively.

hyperframe splits each direction into frames and hpack decodes the header
blocks, with one decoder per direction fed every block in order, as the
receiving endpoint's own decoder is; so the dynamic table's effect shows in
the wire size of each head. Each stream is an exchange: the parser speaks the
events of :mod:`inspector.http1` (a request head, response heads, body data,
the end of each message) keyed by stream id, plus :class:`FrameBytes` for the
frame bytes that are neither a head nor body data and :class:`StreamEnd` when a
stream closes. The connection's own frames (the preface and everything on
stream 0) come back as :class:`FrameBytes` without an exchange, and so do the
frames of a stream that is not open when they arrive: a PRIORITY frame naming a
stream before the request that opens it (RFC 9113 lets a client send one for
an idle stream), or a WINDOW_UPDATE or RST_STREAM after the stream has closed.
They belong to no exchange, so they are counted in the connection's figures
(the report's ``connection_bytes``), where Wireshark lists them under their
stream id; the totals of every figure are the same either way. A trailer
section also comes back as :class:`Trailers`, its fields only (its bytes are
framing, in :class:`FrameBytes`).

:func:`speaks_http2` is the rule that tells an HTTP/2 connection from an
HTTP/1.1 one (TLS ALPN, or the client's first bytes), and
:func:`is_websocket_connect` tells the request that runs WebSocket on a
stream; the accounting and the exports both decide by them.

Every byte fed comes back in exactly one event: in a head's ``size`` (its
header block as on the wire), a body piece's ``data`` plus ``framing`` (the
DATA frame's 9-byte header and padding), a :class:`FrameBytes`' ``size`` or an
:class:`~inspector.http1.Unparsed`'s ``size``. :class:`Http2Counts` keeps the
frame-level figures, per stream and for the connection, the way Wireshark's
``http2`` dissector counts them.

Hostile shapes are anomalies, never exceptions, and what is kept stays
bounded: a frame over the receiver's SETTINGS_MAX_FRAME_SIZE is passed over
without being buffered; a header block is kept up to :data:`HEADER_BLOCK_LIMIT`
bytes and :data:`CONTINUATION_LIMIT` frames; a decoded header list up to
:data:`HEADER_LIST_LIMIT`; at most :data:`OPEN_STREAM_LIMIT` streams at a time.
"""

from __future__ import annotations

import hpack
from hpack.exceptions import HPACKError
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    HeadersFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
)

from .events import (
    BodyData,
    FrameBytes,
    Headers,
    Http2Event,
    MessageEnd,
    ParseFailure,
    RequestHead,
    ResponseHead,
    StreamEnd,
    Trailers,
    Unparsed,
)
from .pseudo_headers import is_websocket_connect as is_websocket_connect
from .pseudo_headers import request_head, response_head
from .wire import Anomaly, Category, Direction, Http2Counts

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

#: The client connection preface (RFC 9113, section 3.4).
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: What a client's first bytes start with when it speaks HTTP/2 (with prior knowledge, or after ALPN).
PREFACE_START = PREFACE[:14]
#: The ``http_version`` of the heads this parser reads.
HTTP_VERSION = "HTTP/2"
#: Bytes of a connection held while it is not yet known whether the client speaks HTTP/2.
SNIFF_LIMIT = 64 * 1024
FRAME_HEADER_SIZE = 9
DEFAULT_MAX_FRAME_SIZE = 16_384
DEFAULT_HEADER_TABLE_SIZE = 4_096
#: Wire bytes of one header block (HEADERS or PUSH_PROMISE plus CONTINUATION frames) kept for decoding.
HEADER_BLOCK_LIMIT = 256 * 1024
#: CONTINUATION frames one header block may take before it is a flood.
CONTINUATION_LIMIT = 64
#: Decoded size (names plus values) of the largest header list decoded.
HEADER_LIST_LIMIT = 256 * 1024
#: Streams followed at once; frames of streams past it count with the connection's own.
OPEN_STREAM_LIMIT = 1_000
#: Streams a client may reset before they were answered before it is a rapid-reset shape.
RAPID_RESET_LIMIT = 100

#: Frame type names, as RFC 9113 and its extensions (and Wireshark) spell them.
FRAME_TYPE_NAMES = {
    0x0: "DATA",
    0x1: "HEADERS",
    0x2: "PRIORITY",
    0x3: "RST_STREAM",
    0x4: "SETTINGS",
    0x5: "PUSH_PROMISE",
    0x6: "PING",
    0x7: "GOAWAY",
    0x8: "WINDOW_UPDATE",
    0x9: "CONTINUATION",
    0xA: "ALTSVC",
    0xC: "ORIGIN",
    0x10: "PRIORITY_UPDATE",
}

_SETTINGS_HEADER_TABLE_SIZE = 0x1
_SETTINGS_MAX_FRAME_SIZE = 0x5
_PRIORITY_FIELDS = 5

_ATTACK_SHAPE = " (denial-of-service shape)"


def frame_type_name(frame_type: int) -> str:
    return FRAME_TYPE_NAMES.get(frame_type, f"UNKNOWN_0x{frame_type:02X}")


def speaks_http2(alpn: str | None, client_start: bytes, *, held: int = 0, ended: bool = False) -> bool | None:
    """Whether a connection speaks HTTP/2 from its start: True or False, or None while it cannot tell yet.

    ``alpn`` is the protocol TLS negotiated with the client (None without
    TLS or ALPN): "h2" is HTTP/2, any other is not. Without it the client's
    first bytes tell: HTTP/2 when they are :data:`PREFACE_START`. ``held`` is
    how many bytes (both directions) wait for the answer: past
    :data:`SNIFF_LIMIT` it is HTTP/1.1. When the connection has ``ended``
    first, a start of the preface is HTTP/2 and no bytes are HTTP/1.1. (An
    h2c Upgrade starts as HTTP/1.1; its parser follows it.)
    """
    if alpn is not None:
        return alpn == "h2"
    first = client_start[: len(PREFACE_START)]
    if len(first) == len(PREFACE_START) or not PREFACE_START.startswith(first):
        return first == PREFACE_START
    if ended:
        return bool(first)
    if held > SNIFF_LIMIT:
        return False
    return None


class _Stream:
    """One stream while it is open."""

    __slots__ = ("answered", "counts", "ended", "id", "requested")

    def __init__(self, stream_id: int, *, requested: bool) -> None:
        self.id = stream_id
        self.counts = Http2Counts()
        self.requested = requested
        #: A final (non-1xx) response head arrived.
        self.answered = False
        self.ended = {C2S: False, S2C: False}


class _HeaderBlock:
    """A header block while its CONTINUATION frames arrive."""

    __slots__ = ("continuations", "control", "end_stream", "fragments", "framing", "promised", "size", "stream_id")

    def __init__(self, stream_id: int, end_stream: bool, promised: int | None) -> None:
        self.stream_id = stream_id
        self.end_stream = end_stream
        self.promised = promised
        self.fragments: list[bytes] = []
        self.size = 0
        #: Frame header and padding bytes of the block's frames.
        self.framing = 0
        #: Priority fields, or the promised stream id, of its first frame.
        self.control = 0
        self.continuations = 0


class _Side:
    """Parsing state of one direction."""

    __slots__ = ("block", "buffer", "decoder", "failed", "max_frame_size", "offset", "preface", "skip")

    def __init__(self, offset: int, *, preface: bool) -> None:
        self.buffer = bytearray()
        #: Bytes of this direction of the TCP connection consumed so far.
        self.offset = offset
        #: The client preface is still to be read.
        self.preface = preface
        self.decoder: hpack.Decoder | None = hpack.Decoder(max_header_list_size=HEADER_LIST_LIMIT)
        self.block: _HeaderBlock | None = None
        #: Bytes of an oversized frame still to pass over.
        self.skip = 0
        #: The most a frame sent this way may carry, as the receiver set it.
        self.max_frame_size = DEFAULT_MAX_FRAME_SIZE
        self.failed = False


class Http2Parser:
    """Both directions of one HTTP/2 connection, fed passively.

    ``offsets`` are the bytes each direction carried before HTTP/2 began (an
    h2c Upgrade), so anomalies say where they are in the TCP stream. After an
    Upgrade, ``upgraded`` is True: stream 1 is the upgraded request, already
    sent, and its response comes over HTTP/2.
    """

    def __init__(self, *, offsets: dict[Direction, int] | None = None, upgraded: bool = False) -> None:
        offsets = offsets or {}
        self._sides = {C2S: _Side(offsets.get(C2S, 0), preface=True), S2C: _Side(offsets.get(S2C, 0), preface=False)}
        self._streams: dict[int, _Stream] = {}
        self.connection = Http2Counts()
        self._resets_unanswered = 0
        self._flagged: set[str] = set()
        if upgraded:
            stream = self._streams[1] = _Stream(1, requested=True)
            stream.ended[C2S] = True

    def stream_counts(self, stream_id: int) -> Http2Counts | None:
        """The running figures of an open stream (the same object as it grows)."""
        stream = self._streams.get(stream_id)
        return stream.counts if stream is not None else None

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    def feed(self, direction: Direction, data: bytes, timestamp: float) -> list[Http2Event]:
        side = self._sides[direction]
        events: list[Http2Event] = []
        if side.failed:
            events.append(Unparsed(direction, None, len(data), timestamp))
            side.offset += len(data)
            return events
        side.buffer += data
        if side.preface and not self._preface(direction, side, timestamp, events):
            return events
        self._frames(direction, side, timestamp, events)
        return events

    def stop(self, direction: Direction, reason: str, timestamp: float) -> list[Http2Event]:
        """Parse no more of ``direction``, for ``reason`` (its stream has a hole):
        the frame being read and every later byte are unparsed."""
        events: list[Http2Event] = []
        side = self._sides[direction]
        if not side.failed:
            if side.block is not None:
                events += self._block_bytes(direction, side.block, timestamp)
                side.block = None
            self._fail(direction, side, reason, timestamp, events)
        return events

    def close(self, timestamp: float) -> list[Http2Event]:
        """The connection ended: incomplete frames are unparsed, open streams end."""
        events: list[Http2Event] = []
        for direction, side in self._sides.items():
            tail = len(side.buffer)
            if side.block is not None:
                events += self._block_bytes(direction, side.block, timestamp)
                side.block = None
            if tail:
                events.append(Unparsed(direction, None, tail, timestamp))
                side.offset += tail
                side.buffer.clear()
        for stream_id in list(self._streams):
            events.append(StreamEnd(stream_id, reset=False, timestamp=timestamp))
        self._streams.clear()
        return events

    # -- bytes to frames ------------------------------------------------------

    def _preface(self, direction: Direction, side: _Side, timestamp: float, events: list[Http2Event]) -> bool:
        """Read the client preface; False while it is incomplete or when it is not one."""
        seen = bytes(side.buffer[: len(PREFACE)])
        if not PREFACE.startswith(seen):
            self._fail(direction, side, "not the HTTP/2 client connection preface", timestamp, events)
            return False
        if len(seen) < len(PREFACE):
            return False
        del side.buffer[: len(PREFACE)]
        side.offset += len(PREFACE)
        side.preface = False
        self.connection.preface_bytes[direction] += len(PREFACE)
        events.append(FrameBytes(direction, None, Category.CONTROL, len(PREFACE), timestamp))
        return True

    def _fail(self, direction: Direction, side: _Side, reason: str, timestamp: float, events: list[Http2Event]) -> None:
        """The direction cannot be read as HTTP/2 any more: the rest is unparsed."""
        events.append(ParseFailure(Anomaly(direction, side.offset, reason)))
        side.failed = True
        if side.buffer:
            events.append(Unparsed(direction, None, len(side.buffer), timestamp))
            side.offset += len(side.buffer)
            side.buffer.clear()

    def _frames(self, direction: Direction, side: _Side, timestamp: float, events: list[Http2Event]) -> None:
        buffer = side.buffer
        start = 0
        while True:
            if side.skip:
                n = min(side.skip, len(buffer) - start)
                if n:
                    events.append(Unparsed(direction, None, n, timestamp))
                    side.skip -= n
                    side.offset += n
                    start += n
                if side.skip:
                    break
            if len(buffer) - start < FRAME_HEADER_SIZE:
                break
            length = int.from_bytes(buffer[start : start + 3])
            if length > side.max_frame_size:
                self._oversized(
                    direction, side, bytes(buffer[start : start + FRAME_HEADER_SIZE]), length, timestamp, events
                )
                start += FRAME_HEADER_SIZE
                side.skip = length
                continue
            end = start + FRAME_HEADER_SIZE + length
            if len(buffer) < end:
                break
            self._frame(direction, side, memoryview(bytes(buffer[start:end])), length, timestamp, events)
            side.offset += end - start
            start = end
        if start:
            del buffer[:start]

    def _oversized(
        self, direction: Direction, side: _Side, header: bytes, length: int, timestamp: float, events: list[Http2Event]
    ) -> None:
        frame_type = header[3]
        stream_id = int.from_bytes(header[5:9]) & 0x7FFFFFFF
        events.append(
            ParseFailure(
                Anomaly(
                    direction,
                    side.offset,
                    f"{frame_type_name(frame_type)} frame of {length:,} bytes is over "
                    f"SETTINGS_MAX_FRAME_SIZE ({side.max_frame_size:,}); its payload is not parsed",
                )
            )
        )
        counts, exchange = self._counts_for(stream_id)
        counts.frames[direction][frame_type_name(frame_type)] += 1
        counts.frame_header_bytes[direction] += FRAME_HEADER_SIZE
        events.append(FrameBytes(direction, exchange, Category.CHUNK_FRAMING, FRAME_HEADER_SIZE, timestamp))
        side.offset += FRAME_HEADER_SIZE

    def _counts_for(self, stream_id: int) -> tuple[Http2Counts, int | None]:
        stream = self._streams.get(stream_id) if stream_id else None
        if stream is None:
            return self.connection, None
        return stream.counts, stream_id

    def _frame(
        self,
        direction: Direction,
        side: _Side,
        raw: memoryview,
        length: int,
        timestamp: float,
        events: list[Http2Event],
    ) -> None:
        """Account one whole frame."""
        frame_type = raw[3]
        stream_id = int.from_bytes(raw[5:9]) & 0x7FFFFFFF
        name = frame_type_name(frame_type)
        try:
            frame, _ = Frame.parse_frame_header(raw[:FRAME_HEADER_SIZE])
            frame.parse_body(raw[FRAME_HEADER_SIZE:])
        except (HyperframeError, ValueError) as e:
            self._malformed(direction, side, stream_id, name, length, f"malformed {name} frame: {e}", timestamp, events)
            return
        if side.block is not None and not isinstance(frame, ContinuationFrame):
            self._abandon_block(direction, side, f"{name} frame inside a header block", timestamp, events)
        if isinstance(frame, DataFrame):
            self._data(direction, frame, length, timestamp, events)
        elif isinstance(frame, (HeadersFrame, PushPromiseFrame)):
            self._block_start(direction, side, frame, length, timestamp, events)
        elif isinstance(frame, ContinuationFrame):
            self._continuation(direction, side, frame, timestamp, events)
        else:
            self._control(direction, frame, name, length, timestamp, events)

    def _malformed(
        self,
        direction: Direction,
        side: _Side,
        stream_id: int,
        name: str,
        length: int,
        reason: str,
        timestamp: float,
        events: list[Http2Event],
    ) -> None:
        """A frame hyperframe refuses: its header is framing, its payload unparsed."""
        events.append(ParseFailure(Anomaly(direction, side.offset, reason)))
        counts, exchange = self._counts_for(stream_id)
        counts.frames[direction][name] += 1
        counts.frame_header_bytes[direction] += FRAME_HEADER_SIZE
        events.append(FrameBytes(direction, exchange, Category.CHUNK_FRAMING, FRAME_HEADER_SIZE, timestamp))
        if length:
            events.append(Unparsed(direction, exchange, length, timestamp))

    # -- frames -------------------------------------------------------------

    def _data(
        self, direction: Direction, frame: DataFrame, length: int, timestamp: float, events: list[Http2Event]
    ) -> None:
        padding = length - len(frame.data)
        stream = self._streams.get(frame.stream_id)
        counts = stream.counts if stream is not None else self.connection
        counts.frames[direction]["DATA"] += 1
        counts.frame_header_bytes[direction] += FRAME_HEADER_SIZE
        counts.data_bytes[direction] += len(frame.data)
        counts.padding_bytes[direction] += padding
        if stream is None:
            events.append(FrameBytes(direction, None, Category.CHUNK_FRAMING, FRAME_HEADER_SIZE + padding, timestamp))
            if frame.data:
                events.append(Unparsed(direction, None, len(frame.data), timestamp))
            return
        events.append(BodyData(direction, stream.id, frame.data, FRAME_HEADER_SIZE + padding, True, True, timestamp))
        if "END_STREAM" in frame.flags:
            self._end(direction, stream, timestamp, events)

    def _end(self, direction: Direction, stream: _Stream, timestamp: float, events: list[Http2Event]) -> None:
        if stream.ended[direction]:
            return
        stream.ended[direction] = True
        events.append(MessageEnd(direction, stream.id, 0, timestamp))
        if stream.ended[direction.opposite]:
            del self._streams[stream.id]
            events.append(StreamEnd(stream.id, reset=False, timestamp=timestamp))

    def _block_start(
        self,
        direction: Direction,
        side: _Side,
        frame: HeadersFrame | PushPromiseFrame,
        length: int,
        timestamp: float,
        events: list[Http2Event],
    ) -> None:
        promised = frame.promised_stream_id if isinstance(frame, PushPromiseFrame) else None
        block = _HeaderBlock(frame.stream_id, "END_STREAM" in frame.flags, promised)
        fragment = len(frame.data)
        # Everything in the frame but the fragment: its header, padding, priority or promised stream fields.
        extra = length - fragment
        padding = (1 + frame.pad_length) if "PADDED" in frame.flags else 0
        control = extra - padding
        block.framing = FRAME_HEADER_SIZE + padding
        block.control = control
        side.block = block
        stream = self._open(direction, frame.stream_id, promised, timestamp, events)
        counts = stream.counts if stream is not None else self.connection
        counts.frames[direction][frame_type_name(frame.type)] += 1
        counts.frame_header_bytes[direction] += FRAME_HEADER_SIZE
        counts.padding_bytes[direction] += padding
        counts.control_bytes[direction] += control
        self._fragment(direction, side, block, frame.data, counts, "END_HEADERS" in frame.flags, timestamp, events)

    def _continuation(
        self, direction: Direction, side: _Side, frame: ContinuationFrame, timestamp: float, events: list[Http2Event]
    ) -> None:
        block = side.block
        if block is None or block.stream_id != frame.stream_id:
            if block is not None:
                self._abandon_block(direction, side, "CONTINUATION frame on another stream", timestamp, events)
            events.append(ParseFailure(Anomaly(direction, side.offset, "CONTINUATION frame outside a header block")))
            counts, exchange = self._counts_for(frame.stream_id)
            counts.frames[direction]["CONTINUATION"] += 1
            counts.frame_header_bytes[direction] += FRAME_HEADER_SIZE
            counts.header_block_bytes[direction] += len(frame.data)
            events.append(FrameBytes(direction, exchange, Category.CHUNK_FRAMING, FRAME_HEADER_SIZE, timestamp))
            events.append(FrameBytes(direction, exchange, Category.HEAD, len(frame.data), timestamp))
            return
        stream = self._streams.get(block.stream_id)
        counts = stream.counts if stream is not None else self.connection
        counts.frames[direction]["CONTINUATION"] += 1
        counts.frame_header_bytes[direction] += FRAME_HEADER_SIZE
        block.framing += FRAME_HEADER_SIZE
        block.continuations += 1
        self._fragment(direction, side, block, frame.data, counts, "END_HEADERS" in frame.flags, timestamp, events)

    def _fragment(
        self,
        direction: Direction,
        side: _Side,
        block: _HeaderBlock,
        fragment: bytes,
        counts: Http2Counts,
        last: bool,
        timestamp: float,
        events: list[Http2Event],
    ) -> None:
        counts.header_block_bytes[direction] += len(fragment)
        block.size += len(fragment)
        if block.fragments is not None:
            block.fragments.append(fragment)
        flood = block.size > HEADER_BLOCK_LIMIT or block.continuations > CONTINUATION_LIMIT
        if flood and "flood" not in self._flagged:
            self._flagged.add("flood")
            events.append(
                ParseFailure(
                    Anomaly(
                        direction,
                        side.offset,
                        f"a header block of over {block.continuations:,} CONTINUATION frames or "
                        f"{HEADER_BLOCK_LIMIT:,} bytes (CONTINUATION flood){_ATTACK_SHAPE}",
                        security=True,
                    )
                )
            )
        if flood:
            # Its headers can no longer be decoded, nor any later block this way.
            block.fragments = []
            side.decoder = None
            events += self._block_bytes(direction, block, timestamp)
            block.framing = block.size = block.control = 0
        if last:
            side.block = None
            self._block_end(direction, side, block, counts, timestamp, events)

    def _abandon_block(
        self, direction: Direction, side: _Side, reason: str, timestamp: float, events: list[Http2Event]
    ) -> None:
        """A header block ended without END_HEADERS: its bytes are counted, and decoding stops."""
        block = side.block
        assert block is not None
        side.block = None
        side.decoder = None
        events.append(ParseFailure(Anomaly(direction, side.offset, f"{reason}; header blocks are no longer decoded")))
        events += self._block_bytes(direction, block, timestamp)

    def _block_bytes(self, direction: Direction, block: _HeaderBlock, timestamp: float) -> list[Http2Event]:
        """The bytes of a header block that yields no head, on its stream if that has one."""
        target = block.promised if block.promised is not None else block.stream_id
        stream = self._streams.get(target)
        exchange = target if stream is not None and (stream.requested or stream.answered) else None
        parts = (
            (Category.CHUNK_FRAMING, block.framing),
            (Category.CONTROL, block.control),
            (Category.HEAD, block.size),
        )
        return [FrameBytes(direction, exchange, category, size, timestamp) for category, size in parts if size]

    def _decode(
        self, direction: Direction, side: _Side, block: _HeaderBlock, counts: Http2Counts
    ) -> tuple[Headers, Anomaly | None]:
        """The block's header list, or () and why when it cannot be decoded."""
        if side.decoder is None:
            return (), None
        try:
            fields = side.decoder.decode(b"".join(block.fragments), raw=True)
        except HPACKError as e:
            side.decoder = None
            kind = type(e).__name__
            bomb = kind == "OversizedHeaderListError"
            shape = f" (HPACK bomb){_ATTACK_SHAPE}" if bomb else ""
            reason = f"HPACK decoding failed ({kind}: {e}){shape}; header blocks are no longer decoded"
            return (), Anomaly(direction, side.offset, reason, security=bomb)
        counts.decoded_header_bytes[direction] += sum(len(name) + len(value) for name, value in fields)
        return tuple((name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in fields), None

    def _block_end(
        self,
        direction: Direction,
        side: _Side,
        block: _HeaderBlock,
        counts: Http2Counts,
        timestamp: float,
        events: list[Http2Event],
    ) -> None:
        headers, failure = self._decode(direction, side, block, counts)
        if failure is not None:
            events.append(ParseFailure(failure))
        if block.promised is not None:
            # A pushed request: its head travels from the server, on the stream that promised it.
            pushed = self._streams.get(block.promised)
            if pushed is not None and not pushed.answered:
                events.append(_request(pushed.id, headers, 0, timestamp))
            events += self._block_bytes(direction, block, timestamp)
            return
        stream = self._streams.get(block.stream_id)
        if stream is None:
            events += self._block_bytes(direction, block, timestamp)
            return
        if direction is C2S and not stream.requested:
            stream.requested = True
            events.append(_request(stream.id, headers, block.size, timestamp))
            block.size = 0
        elif direction is S2C and not stream.answered:
            head = _response(stream.id, headers, block.size, timestamp)
            stream.answered = not head.interim
            events.append(head)
            block.size = 0
        else:
            # Trailers count as framing, as they do in HTTP/1.1's chunked coding.
            if headers:
                events.append(Trailers(direction, stream.id, headers, timestamp))
            block.framing += block.size
            block.size = 0
        events += self._block_bytes(direction, block, timestamp)
        if block.end_stream:
            self._end(direction, stream, timestamp, events)

    def _open(
        self, direction: Direction, stream_id: int, promised: int | None, timestamp: float, events: list[Http2Event]
    ) -> _Stream | None:
        """The stream a HEADERS or PUSH_PROMISE frame belongs to, opened if it is new."""
        stream = self._streams.get(stream_id)
        new_id = promised if promised is not None else (stream_id if stream is None else None)
        if new_id is None or not new_id or new_id in self._streams:
            return stream
        if promised is None and direction is S2C:
            return stream  # a response on a stream that was never requested (or is no longer followed)
        if len(self._streams) >= OPEN_STREAM_LIMIT:
            if "streams" not in self._flagged:
                self._flagged.add("streams")
                events.append(
                    ParseFailure(
                        Anomaly(
                            direction,
                            self._sides[direction].offset,
                            f"over {OPEN_STREAM_LIMIT:,} streams open at once; the frames of streams past that "
                            "are counted with the connection's own",
                        )
                    )
                )
            return stream
        opened = self._streams[new_id] = _Stream(new_id, requested=False)
        if promised is not None:
            opened.requested = True
            opened.ended[C2S] = True
            return stream
        return opened

    def _control(
        self, direction: Direction, frame: Frame, name: str, length: int, timestamp: float, events: list[Http2Event]
    ) -> None:
        stream = self._streams.get(frame.stream_id) if frame.stream_id else None
        counts = stream.counts if stream is not None else self.connection
        counts.frames[direction][name] += 1
        counts.frame_header_bytes[direction] += FRAME_HEADER_SIZE
        counts.control_bytes[direction] += length
        exchange = stream.id if stream is not None else None
        events.append(FrameBytes(direction, exchange, Category.CHUNK_FRAMING, FRAME_HEADER_SIZE, timestamp))
        if length:
            events.append(FrameBytes(direction, exchange, Category.CONTROL, length, timestamp))
        if isinstance(frame, SettingsFrame):
            self._settings(direction, frame)
        elif isinstance(frame, RstStreamFrame) and stream is not None:
            if direction is C2S and not stream.answered:
                self._rapid_reset(timestamp, events)
            del self._streams[stream.id]
            events.append(StreamEnd(stream.id, reset=True, timestamp=timestamp))

    def _settings(self, direction: Direction, frame: SettingsFrame) -> None:
        """The sender's settings bind what the other direction may send."""
        other = self._sides[direction.opposite]
        size = frame.settings.get(_SETTINGS_MAX_FRAME_SIZE)
        if size is not None and DEFAULT_MAX_FRAME_SIZE <= size < 1 << 24:
            other.max_frame_size = size
        table = frame.settings.get(_SETTINGS_HEADER_TABLE_SIZE)
        if table is not None and other.decoder is not None:
            other.decoder.max_allowed_table_size = table

    def _rapid_reset(self, timestamp: float, events: list[Http2Event]) -> None:
        self._resets_unanswered += 1
        if self._resets_unanswered == RAPID_RESET_LIMIT:
            events.append(
                ParseFailure(
                    Anomaly(
                        C2S,
                        self._sides[C2S].offset,
                        f"the client reset {RAPID_RESET_LIMIT:,} streams before they were answered "
                        f"(rapid reset, CVE-2023-44487){_ATTACK_SHAPE}",
                        security=True,
                    )
                )
            )


def _request(stream_id: int, headers: Headers, size: int, timestamp: float) -> RequestHead:
    return request_head(stream_id, headers, size, timestamp, HTTP_VERSION)


def _response(stream_id: int, headers: Headers, size: int, timestamp: float) -> ResponseHead:
    return response_head(stream_id, headers, size, timestamp, HTTP_VERSION)
