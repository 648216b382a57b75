"""WebSocket framing (RFC 6455) and permessage-deflate (RFC 7692), one direction at a time.

A :class:`WebSocketStream` takes the bytes one side sent after the Upgrade
handshake and assigns each of them to a :class:`~inspector.wire.Category`:
frame headers, masking keys, data-frame payload as it travelled, control-frame
payload, and whatever could not be parsed. Along the way it reassembles
messages and reports control frames.

Results do not depend on how the stream was split into chunks (timestamps
aside: events carry the timestamp of the chunk that completed them). Payload is
counted as it arrives and never kept whole, so a frame that claims an enormous
length simply takes the rest of the stream as payload. Payload content is only
looked at where a rule needs it: text messages (UTF-8), compressed messages
(inflated to count their size) and close frames (code and reason).

The first protocol violation becomes the stream's :class:`~inspector.wire.Anomaly`
and parsing stops there: every later byte is ``UNPARSED``. A violation seen in a
frame header makes the whole frame ``UNPARSED``. A violation in payload content
(text that is not UTF-8, a bad close code, corrupt deflate data) is reported
when its frame completes; that frame keeps its categories, and it yields no
message or control frame, since a receiver would not deliver it.
"""

from __future__ import annotations

import codecs
import struct
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import Opcode
from wsproto.utilities import split_comma_header

from . import speedups
from .events import ControlFrame, WebSocketEvent, WebSocketMessage
from .wire import Anomaly, ByteAccount, Category, Direction

__all__ = [
    "DeflateParams",
    "FrameHeader",
    "PureWebSocketStream",
    "WebSocketStream",
    "parse_frame_header",
]

_OPCODES: dict[int, Opcode] = {int(opcode): opcode for opcode in Opcode}
_CONTROL_OPCODES = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")

#: Longest payload a control frame may carry (RFC 6455 5.5).
MAX_CONTROL_PAYLOAD = 125
_MASK_KEY_LENGTH = 4
#: What a permessage-deflate sender strips from the end of each message (RFC 7692 7.2.1).
_DEFLATE_TAIL = b"\x00\x00\xff\xff"
#: Most inflated bytes held in memory at once.
_INFLATE_BLOCK = 64 * 1024
#: Most bytes of a message's content kept for an application protocol's reader.
CONTENT_LIMIT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """The fixed part of a frame as it was on the wire, valid or not."""

    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    #: An :class:`Opcode` when the value is defined, otherwise the raw (reserved) number.
    opcode: int
    masked: bool
    payload_length: int
    #: 2, 4 or 10: the header without the masking key.
    header_length: int

    @property
    def wire_length(self) -> int:
        """The whole frame: header, masking key and payload."""
        return self.header_length + _MASK_KEY_LENGTH * self.masked + self.payload_length


@dataclass(frozen=True, slots=True)
class DeflateParams:
    """The permessage-deflate parameters a server accepted (RFC 7692 7.1)."""

    client_no_context_takeover: bool = False
    server_no_context_takeover: bool = False
    client_max_window_bits: int = PerMessageDeflate.DEFAULT_CLIENT_MAX_WINDOW_BITS
    server_max_window_bits: int = PerMessageDeflate.DEFAULT_SERVER_MAX_WINDOW_BITS

    @classmethod
    def from_response_header(cls, value: str | None) -> DeflateParams | None:
        """The parameters in a 101 response's ``Sec-WebSocket-Extensions`` value.

        None when the server did not accept permessage-deflate, or accepted it
        with parameters that cannot be honoured (window bits outside 9..15, as
        wsproto and zlib allow).
        """
        if not value:
            return None
        try:
            accepted = split_comma_header(value.encode("latin-1"))
        except ValueError:
            return None
        for extension in accepted:
            if extension.split(";", 1)[0].strip().lower() != PerMessageDeflate.name:
                continue
            deflate = PerMessageDeflate()
            try:
                # Parameter values may be quoted strings (RFC 7692 7.1).
                deflate.finalize(extension.replace('"', ""))
            except (ValueError, IndexError):
                return None
            return cls(
                client_no_context_takeover=deflate.client_no_context_takeover,
                server_no_context_takeover=deflate.server_no_context_takeover,
                client_max_window_bits=deflate.client_max_window_bits,
                server_max_window_bits=deflate.server_max_window_bits,
            )
        return None


def parse_frame_header(data: bytes | bytearray | memoryview, pos: int = 0) -> FrameHeader | None:
    """Decode the frame header that starts at ``data[pos]``; None if ``data`` ends inside it.

    Every header decodes; whether it is allowed is a separate question.
    """
    available = len(data) - pos
    if available < 2:
        return None
    first, second = data[pos], data[pos + 1]
    payload_length = second & 0x7F
    if payload_length < 126:
        key = first << 8 | second
        header = _SHORT_HEADERS.get(key)
        if header is None:
            header = _SHORT_HEADERS[key] = _decode_header(first, second, payload_length, 2)
        return header
    if payload_length == 126:
        if available < 4:
            return None
        return _decode_header(first, second, _U16.unpack_from(data, pos + 2)[0], 4)
    if available < 10:
        return None
    return _decode_header(first, second, _U64.unpack_from(data, pos + 2)[0], 10)


def _decode_header(first: int, second: int, payload_length: int, header_length: int) -> FrameHeader:
    opcode = first & 0x0F
    return FrameHeader(
        fin=first & 0x80 != 0,
        rsv1=first & 0x40 != 0,
        rsv2=first & 0x20 != 0,
        rsv3=first & 0x10 != 0,
        opcode=_OPCODES.get(opcode, opcode),
        masked=second & 0x80 != 0,
        payload_length=payload_length,
        header_length=header_length,
    )


#: Two-byte headers by their value: there are only 2**16 of them, and streams repeat them.
_SHORT_HEADERS: dict[int, FrameHeader] = {}


def _unmask_in_python(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeated four-byte ``key``."""
    size = len(data)
    stream = key * (size // _MASK_KEY_LENGTH + 1)
    # Little-endian, so the key stream's extra bytes land past the end of ``data``.
    unmasked = int.from_bytes(data, "little") ^ int.from_bytes(stream, "little")
    return unmasked.to_bytes(len(stream), "little")[:size]


try:
    # The websockets library's C implementation of the same XOR, where it is built.
    from websockets.speedups import apply_mask as _unmask
except ImportError:  # pragma: no cover - a pure-Python install of websockets
    _unmask = _unmask_in_python  # type: ignore[assignment]


def _close_code_allowed(code: int) -> bool:
    """Whether a close frame may carry ``code`` (RFC 6455 7.4 and the IANA registry)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class _Message:
    """A text or binary message whose final frame has not arrived yet."""

    __slots__ = (
        "compressed",
        "content",
        "deflate_error",
        "utf8_error",
        "first_timestamp",
        "frames",
        "opcode",
        "payload_bytes",
        "utf8_tail",
        "wire_bytes",
        "wire_payload_bytes",
    )

    def __init__(self, opcode: Opcode, compressed: bool, first_timestamp: float) -> None:
        self.opcode = opcode
        self.compressed = compressed
        self.first_timestamp = first_timestamp
        #: The end of a text message's content that may be the start of a UTF-8
        #: sequence still arriving; None for binary messages.
        self.utf8_tail: bytes | None = b"" if opcode is Opcode.TEXT else None
        #: Content violations found so far. Inflating goes on after a UTF-8
        #: error, so which one is reported does not depend on how bytes arrived.
        self.deflate_error: str | None = None
        self.utf8_error: str | None = None
        self.frames = 0
        self.wire_bytes = 0
        self.wire_payload_bytes = 0
        self.payload_bytes = 0
        #: The content received so far, when it is kept (at most CONTENT_LIMIT bytes).
        self.content: bytearray | None = None

    @property
    def error(self) -> str | None:
        """The violation to report: corrupt deflate data outranks the UTF-8 it garbled."""
        return self.deflate_error or self.utf8_error

    def receive(self, content: bytes) -> None:
        """Take application bytes (unmasked and inflated)."""
        self.payload_bytes += len(content)
        kept = self.content
        if kept is not None and len(kept) < CONTENT_LIMIT:
            kept += content[: CONTENT_LIMIT - len(kept)]
        tail = self.utf8_tail
        if tail is None or self.utf8_error is not None:
            return
        if tail:
            content = tail + content
        try:
            _, decoded = codecs.utf_8_decode(content, "strict", False)
        except UnicodeDecodeError:
            self.utf8_error = "invalid UTF-8 in a text message"
        else:
            self.utf8_tail = content[decoded:]


class WebSocketStream:
    """One direction of a WebSocket connection, from the first byte after the handshake.

    ``offset`` is how many bytes this direction carried before the WebSocket
    began (the HTTP heads), so that anomaly offsets count from the start of
    the TCP direction. ``deflate`` is the negotiated permessage-deflate, if any.
    With ``keep_content``, each message carries its content (for an application
    protocol's reader; see :mod:`inspector.app_protocols`).
    """

    def __init__(
        self,
        direction: Direction,
        *,
        offset: int = 0,
        deflate: DeflateParams | None = None,
        keep_content: bool = False,
    ) -> None:
        self.direction = direction
        self.keep_content = keep_content
        #: The first protocol violation; nothing after it is parsed.
        self.anomaly: Anomaly | None = None
        self.data_frames = 0
        self.control_frames = 0
        self._deflate = deflate
        self._from_client = direction is Direction.CLIENT_TO_SERVER
        if deflate is None:
            self._window_bits = 0
            self._no_context_takeover = False
        elif self._from_client:
            self._window_bits = deflate.client_max_window_bits
            self._no_context_takeover = deflate.client_no_context_takeover
        else:
            self._window_bits = deflate.server_max_window_bits
            self._no_context_takeover = deflate.server_no_context_takeover
        self._decompressor: zlib._Decompress | None = None

        #: Stream offset of the first byte not yet given a category.
        self._position = offset
        #: Bytes of a frame header (and masking key) that has not fully arrived.
        self._pending = b""

        self._header_bytes = 0
        self._mask_key_bytes = 0
        self._payload_bytes = 0
        self._control_bytes = 0
        self._unparsed_bytes = 0

        # The frame whose payload is being received, kept as plain values
        # rather than a FrameHeader: building one per frame costs more than the
        # rest of the frame's bookkeeping. ``_opcode`` is None between frames.
        self._opcode: Opcode | None = None
        self._control = False
        self._fin = False
        self._frame_length = 0
        self._frame_wire = 0
        self._frame_offset = 0
        self._remaining = 0
        self._mask_key = b""
        self._masked_so_far = 0
        self._control_payload = b""

        self._message: _Message | None = None

    @property
    def account(self) -> ByteAccount:
        """Every byte given a category so far (a snapshot)."""
        return ByteAccount(
            {
                Category.FRAME_HEADER: self._header_bytes,
                Category.MASK_KEY: self._mask_key_bytes,
                Category.PAYLOAD: self._payload_bytes,
                Category.CONTROL: self._control_bytes,
                Category.UNPARSED: self._unparsed_bytes,
            }
        )

    @property
    def buffered(self) -> int:
        """Bytes fed but not yet given a category: the start of an incomplete frame header."""
        return len(self._pending)

    @property
    def frames(self) -> int:
        return self.data_frames + self.control_frames

    def feed(self, data: bytes, timestamp: float) -> list[WebSocketEvent]:
        """Take the next bytes of the stream; return the messages and control frames they completed."""
        if self.anomaly is not None:
            self._unparsed_bytes += len(data)
            return []
        if self._pending:
            data = self._pending + data
            self._pending = b""
        events: list[WebSocketEvent] = []
        pos = 0
        end = len(data)
        while pos < end:
            if self._opcode is None:
                body = self._begin_frame(data, pos, end, timestamp)
                if body < 0:
                    break
                pos = body
                if self.anomaly is not None:
                    break
            remaining = self._remaining
            if remaining:
                size = end - pos
                if size > remaining:
                    size = remaining
                self._receive_payload(data, pos, size)
                pos += size
                self._remaining = remaining = remaining - size
                if remaining:
                    break
            event = self._complete_frame(timestamp)
            if event is not None:
                events.append(event)
            elif self.anomaly is not None:
                self._unparsed_bytes += end - pos
                pos = end
                break
        if pos < end:
            self._pending = bytes(data[pos:])
        self._position += pos
        return events

    def _begin_frame(self, data: bytes, pos: int, end: int, timestamp: float) -> int:
        """Read the frame header (and masking key) at ``data[pos]``; return where its payload starts.

        -1 when ``data`` ends inside the header. A header that breaks a rule
        stops the stream: the rest of ``data`` is unparsed and ``end`` is returned.
        """
        if end - pos < 2:
            return -1
        first = data[pos]
        second = data[pos + 1]
        length = second & 0x7F
        if length < 126:
            body = pos + 2
        elif length == 126:
            body = pos + 4
            if body > end:
                return -1
            length = data[pos + 2] << 8 | data[pos + 3]
        else:
            body = pos + 10
            if body > end:
                return -1
            (length,) = _U64.unpack_from(data, pos + 2)
        header_length = body - pos
        violation = self._header_violation(first, second, length, header_length)
        if violation is not None:
            self._stop(self._position + pos, violation)
            self._unparsed_bytes += end - pos
            return end
        masked = second & 0x80
        if masked:
            if end - body < _MASK_KEY_LENGTH:
                return -1
            self._mask_key = bytes(data[body : body + _MASK_KEY_LENGTH])
            self._masked_so_far = 0
            body += _MASK_KEY_LENGTH
            self._mask_key_bytes += _MASK_KEY_LENGTH
        self._header_bytes += header_length
        opcode = _OPCODES[first & 0x0F]
        self._opcode = opcode
        self._control = opcode in _CONTROL_OPCODES
        self._fin = first & 0x80 != 0
        self._frame_length = self._remaining = length
        self._frame_wire = body - pos + length
        self._frame_offset = self._position + pos
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            compressed = first & 0x40 != 0
            self._message = _Message(opcode, compressed, timestamp)
            if self.keep_content:
                self._message.content = bytearray()
            if compressed and self._decompressor is None:
                self._decompressor = zlib.decompressobj(-self._window_bits)
        return body

    def close(self, timestamp: float) -> list[WebSocketEvent]:
        """The stream ended.

        Buffered bytes of an incomplete frame header become ``UNPARSED``. The
        payload of an incomplete frame stays counted as it arrived, as do the
        frames of a message whose final fragment never came; both are anomalies.
        A stream that ends right after a complete message or control frame is not.
        Nothing completes at the end of a stream, so no events are returned.
        """
        if self.anomaly is not None:
            return []
        if self._pending:
            self._stop(self._position, "stream ended inside a frame header")
            self._unparsed_bytes += len(self._pending)
            self._position += len(self._pending)
            self._pending = b""
        elif self._opcode is not None:
            message = self._message
            if message is not None and message.error is not None and self._opcode not in _CONTROL_OPCODES:
                self._stop(self._frame_offset, message.error)
            else:
                received = self._frame_length - self._remaining
                self._stop(
                    self._frame_offset,
                    f"stream ended inside a frame payload ({received} of {self._frame_length} bytes)",
                )
        elif self._message is not None:
            self._stop(self._position, "stream ended inside a fragmented message")
        return []

    def stop(self, reason: str) -> None:
        """Parse no more of the stream, for ``reason`` (it has a hole): the bytes of
        an incomplete frame header and every later byte are ``UNPARSED``; payload
        already received stays counted as it arrived."""
        if self.anomaly is not None:
            return
        self._stop(self._position, reason)
        self._unparsed_bytes += len(self._pending)
        self._position += len(self._pending)
        self._pending = b""

    def _stop(self, offset: int, reason: str) -> None:
        if self.anomaly is None:
            self.anomaly = Anomaly(self.direction, offset, reason)

    def _header_violation(self, first: int, second: int, length: int, header_length: int) -> str | None:
        """Why a frame with this header may not follow the frames before it, if it may not.

        ``first`` and ``second`` are the header's first two bytes; ``length`` is
        the payload length it encodes in ``header_length`` bytes (2, 4 or 10).
        """
        opcode = _OPCODES.get(first & 0x0F)
        if opcode is None:
            return f"reserved opcode 0x{first & 0x0F:X}"
        control = opcode in _CONTROL_OPCODES
        if first & 0x40:
            if control:
                return "RSV1 set on a control frame"
            if opcode is Opcode.CONTINUATION:
                return "RSV1 set on a continuation frame"
            if self._deflate is None:
                return "RSV1 set but permessage-deflate was not negotiated"
        if first & 0x30:
            return "RSV2 or RSV3 set, but no extension defines them"
        if (second & 0x80 != 0) != self._from_client:
            return "client frame not masked" if self._from_client else "server frame masked"
        if control:
            if length > MAX_CONTROL_PAYLOAD:
                return f"control frame payload of {length} bytes (at most {MAX_CONTROL_PAYLOAD} allowed)"
            if not first & 0x80:
                return "fragmented control frame (FIN not set)"
        if header_length == 4 and length < 126:
            return f"payload length {length} encoded in 16 bits (not minimal)"
        if header_length == 10:
            if length >> 63:
                return "64-bit payload length with the most significant bit set"
            if length <= 0xFFFF:
                return f"payload length {length} encoded in 64 bits (not minimal)"
        if opcode is Opcode.CONTINUATION:
            if self._message is None:
                return "continuation frame with no message in progress"
        elif not control and self._message is not None:
            return "new data frame while a fragmented message is in progress"
        return None

    def _receive_payload(self, data: bytes, pos: int, size: int) -> None:
        """Count ``size`` payload bytes at ``data[pos]``, and read them where a rule needs it."""
        if self._control:
            self._control_bytes += size
            if self._opcode is Opcode.CLOSE:
                self._control_payload += self._content(data, pos, size)
            return
        self._payload_bytes += size
        message = self._message
        assert message is not None
        if message.deflate_error is not None:
            return
        if message.compressed:
            self._inflate(message, self._content(data, pos, size))
        elif message.utf8_tail is not None or message.content is not None:
            message.receive(self._content(data, pos, size))
        else:
            message.payload_bytes += size

    def _content(self, data: bytes, pos: int, size: int) -> bytes:
        """The payload bytes at ``data[pos]`` as the sender meant them (unmasked)."""
        chunk = bytes(data[pos : pos + size])
        key = self._mask_key
        if not key:
            return chunk
        phase = self._masked_so_far % _MASK_KEY_LENGTH
        self._masked_so_far += size
        if phase:
            key = key[phase:] + key[:phase]
        return _unmask(chunk, key)

    def _inflate(self, message: _Message, compressed: bytes) -> None:
        decompressor = self._decompressor
        assert decompressor is not None
        try:
            content = decompressor.decompress(compressed, _INFLATE_BLOCK)
            message.receive(content)
            while decompressor.unconsumed_tail or len(content) == _INFLATE_BLOCK:
                content = decompressor.decompress(decompressor.unconsumed_tail, _INFLATE_BLOCK)
                message.receive(content)
        except zlib.error as error:
            message.deflate_error = f"corrupt permessage-deflate data ({error})"

    def _complete_frame(self, timestamp: float) -> WebSocketEvent | None:
        """The current frame's payload is all here: close the frame, and the message if it was final."""
        opcode = self._opcode
        self._opcode = None
        self._mask_key = b""
        if self._control:
            self.control_frames += 1
            return self._control_frame(opcode, timestamp)  # type: ignore[arg-type]
        self.data_frames += 1
        message = self._message
        assert message is not None
        message.frames += 1
        message.wire_bytes += self._frame_wire
        message.wire_payload_bytes += self._frame_length
        fin = self._fin
        if fin and message.error is None and (message.compressed or message.utf8_tail):
            self._finish(message)
        if message.error is not None:
            self._stop(self._frame_offset, message.error)
            return None
        if not fin:
            return None
        self._message = None
        # Positional: this runs once per message, and keywords cost.
        return WebSocketMessage(
            self.direction,
            message.opcode,
            message.frames,
            message.wire_bytes,
            message.wire_payload_bytes,
            message.payload_bytes,
            message.compressed,
            message.first_timestamp,
            timestamp,
            bytes(message.content) if message.content is not None else None,
        )

    def _finish(self, message: _Message) -> None:
        """Take the end of a message: the deflate tail, the last of its UTF-8."""
        if message.compressed:
            self._inflate(message, _DEFLATE_TAIL)
            decompressor = self._decompressor
            assert decompressor is not None
            if decompressor.eof:
                # The sender ended the deflate stream (BFINAL); the next message starts a new one.
                if message.error is None and decompressor.unused_data != _DEFLATE_TAIL:
                    message.deflate_error = "corrupt permessage-deflate data (data after the final block)"
                self._decompressor = None
            elif self._no_context_takeover:
                self._decompressor = None
        if message.utf8_tail and message.error is None:
            message.utf8_error = "invalid UTF-8 in a text message (it ends inside a character)"

    def _control_frame(self, opcode: Opcode, timestamp: float) -> ControlFrame | None:
        """The control frame just completed, or None when its close payload breaks a rule."""
        close_code: int | None = None
        close_reason: str | None = None
        if opcode is Opcode.CLOSE:
            payload = self._control_payload
            self._control_payload = b""
            if len(payload) == 1:
                self._stop(self._frame_offset, "close frame payload of 1 byte")
                return None
            if payload:
                (close_code,) = _U16.unpack_from(payload)
                if not _close_code_allowed(close_code):
                    self._stop(self._frame_offset, f"invalid close code {close_code}")
                    return None
                try:
                    close_reason = payload[2:].decode("utf-8")
                except UnicodeDecodeError:
                    self._stop(self._frame_offset, "invalid UTF-8 in a close reason")
                    return None
        return ControlFrame(
            direction=self.direction,
            opcode=opcode,
            wire_bytes=self._frame_wire,
            payload_bytes=self._frame_length,
            timestamp=timestamp,
            close_code=close_code,
            close_reason=close_reason,
        )


#: The pure-Python reader, the reference for the compiled one (and what is used without it).
PureWebSocketStream = WebSocketStream

_compiled = speedups.compiled("websocket")
if _compiled is not None and not TYPE_CHECKING:
    # The same reader compiled (inspector/_websocket.pyx): the same events, counts and anomalies.
    WebSocketStream = _compiled.WebSocketStream
