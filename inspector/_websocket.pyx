# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled WebSocket reader: :class:`inspector.websocket.WebSocketStream` in C.

The same frames, events, byte categories and anomalies as the pure-Python
class in :mod:`inspector.websocket`, which is the reference: each rule here
follows its counterpart there, in the same order, with the same messages.
What is compiled is the per-frame work: header decoding and checks, payload
counting, unmasking, and the UTF-8 check of text messages (by the rules of
CPython's decoder, which the pure-Python reader calls). Inflating uses zlib,
and the events are the classes of :mod:`inspector.events`, as there.
"""

import zlib

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.object cimport PyObject_GenericSetAttr
from libc.string cimport memcpy
from wsproto.frame_protocol import Opcode

from .events import ControlFrame, WebSocketMessage
from .wire import Anomaly, ByteAccount, Category, Direction

cdef dict _OPCODES = {int(opcode): opcode for opcode in Opcode}
cdef object _TEXT = Opcode.TEXT
cdef object _CLOSE = Opcode.CLOSE
cdef object _C2S = Direction.CLIENT_TO_SERVER
cdef object _FRAME_HEADER = Category.FRAME_HEADER
cdef object _MASK_KEY = Category.MASK_KEY
cdef object _PAYLOAD = Category.PAYLOAD
cdef object _CONTROL = Category.CONTROL
cdef object _UNPARSED = Category.UNPARSED
cdef object _zlib_error = zlib.error
cdef object _new = object.__new__

# The same limits as inspector.websocket's (tests check that they agree).
MAX_CONTROL_PAYLOAD = 125
CONTENT_LIMIT = 1024 * 1024
cdef Py_ssize_t _MAX_CONTROL_PAYLOAD = MAX_CONTROL_PAYLOAD
cdef Py_ssize_t _CONTENT_LIMIT = CONTENT_LIMIT
cdef Py_ssize_t _INFLATE_BLOCK = 64 * 1024
cdef bytes _DEFLATE_TAIL = b"\x00\x00\xff\xff"


cdef inline bint _is_control(int opcode):
    return opcode >= 8


cdef inline bint _close_code_allowed(long code):
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


cdef inline bint _continuation(unsigned char byte) noexcept:
    return byte & 0xC0 == 0x80


cdef Py_ssize_t _utf8_complete(const unsigned char *s, Py_ssize_t n) noexcept:
    """How many bytes at the start of ``s[:n]`` are whole UTF-8 characters, when
    the rest may be the start of one still arriving; -1 when ``s[:n]`` is not UTF-8.

    The rules of CPython's strict decoder with ``final=False``, as
    ``codecs.utf_8_decode(data, "strict", False)`` applies them (the pure-Python
    reader's check): among them, a truncated sequence is an error as soon as its
    second byte rules it out, except ED A0..BF, which waits for its third byte.
    """
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t left
    cdef unsigned char c, c2
    while i < n:
        c = s[i]
        if c < 0x80:
            i += 1
            continue
        left = n - i
        if c < 0xC2:
            return -1
        if c < 0xE0:
            if left < 2:
                return i
            if not _continuation(s[i + 1]):
                return -1
            i += 2
        elif c < 0xF0:
            if left < 3:
                if left == 2:
                    c2 = s[i + 1]
                    if not _continuation(c2) or (c == 0xE0 if c2 < 0xA0 else c == 0xED):
                        if c == 0xED and _continuation(c2):
                            return i  # a truncated surrogate waits, as CPython's decoder lets it
                        return -1
                return i
            c2 = s[i + 1]
            if not _continuation(c2) or (c == 0xE0 and c2 < 0xA0) or (c == 0xED and c2 >= 0xA0):
                return -1
            if not _continuation(s[i + 2]):
                return -1
            i += 3
        elif c < 0xF5:
            if left < 4:
                if left >= 2:
                    c2 = s[i + 1]
                    if not _continuation(c2) or (c == 0xF0 if c2 < 0x90 else c == 0xF4):
                        return -1
                    if left == 3 and not _continuation(s[i + 2]):
                        return -1
                return i
            c2 = s[i + 1]
            if not _continuation(c2) or (c == 0xF0 and c2 < 0x90) or (c == 0xF4 and c2 >= 0x90):
                return -1
            if not _continuation(s[i + 2]) or not _continuation(s[i + 3]):
                return -1
            i += 4
        else:
            return -1
    return n


def utf8_complete(data):
    """:func:`_utf8_complete` on ``data``, for the tests that hold it to CPython's decoder."""
    cdef bytes raw = bytes(data)
    return _utf8_complete(<const unsigned char *>PyBytes_AS_STRING(raw), len(raw))


cdef class _Message:
    """A text or binary message whose final frame has not arrived yet."""

    cdef object opcode
    cdef bint text
    cdef bint compressed
    cdef object first_timestamp
    cdef object utf8_tail
    cdef object deflate_error
    cdef object utf8_error
    cdef Py_ssize_t frames
    cdef long long wire_bytes
    cdef long long wire_payload_bytes
    cdef long long payload_bytes
    cdef object content

    def __cinit__(self, object opcode, bint compressed, object first_timestamp):
        self.opcode = opcode
        self.text = opcode is _TEXT
        self.compressed = compressed
        self.first_timestamp = first_timestamp
        self.utf8_tail = b"" if self.text else None
        self.deflate_error = None
        self.utf8_error = None
        self.frames = 0
        self.wire_bytes = 0
        self.wire_payload_bytes = 0
        self.payload_bytes = 0
        self.content = None

    cdef inline object error(self):
        return self.deflate_error or self.utf8_error

    cdef receive(self, bytes content):
        cdef Py_ssize_t decoded
        self.payload_bytes += len(content)
        kept = self.content
        if kept is not None and len(kept) < _CONTENT_LIMIT:
            kept += content[: _CONTENT_LIMIT - len(kept)]
        tail = self.utf8_tail
        if tail is None or self.utf8_error is not None:
            return
        if tail:
            content = tail + content
        decoded = _utf8_complete(<const unsigned char *>PyBytes_AS_STRING(content), len(content))
        if decoded < 0:
            self.utf8_error = "invalid UTF-8 in a text message"
        elif decoded == len(content):
            self.utf8_tail = b""
        else:
            self.utf8_tail = content[decoded:]


cdef class WebSocketStream:
    """One direction of a WebSocket connection, from the first byte after the handshake
    (see :class:`inspector.websocket.WebSocketStream`)."""

    cdef readonly object direction
    cdef public bint keep_content
    cdef public object anomaly
    cdef public long long data_frames
    cdef public long long control_frames

    cdef object _deflate
    cdef bint _from_client
    cdef int _window_bits
    cdef bint _no_context_takeover
    cdef object _decompressor

    cdef long long _position
    cdef bytes _pending

    cdef long long _header_bytes
    cdef long long _mask_key_bytes
    cdef long long _payload_bytes
    cdef long long _control_bytes
    cdef long long _unparsed_bytes

    # The frame whose payload is being received; ``_opcode_number`` is -1 between frames.
    cdef int _opcode_number
    cdef object _opcode
    cdef bint _control
    cdef bint _fin
    cdef unsigned long long _frame_length
    cdef unsigned long long _frame_wire
    cdef long long _frame_offset
    cdef unsigned long long _remaining
    cdef bint _masked
    cdef unsigned char _mask_key[4]
    cdef unsigned long long _masked_so_far
    cdef bytes _control_payload

    cdef _Message _message

    def __init__(self, direction, *, offset=0, deflate=None, keep_content=False):
        self.direction = direction
        self.keep_content = keep_content
        self.anomaly = None
        self.data_frames = 0
        self.control_frames = 0
        self._deflate = deflate
        self._from_client = direction is _C2S
        if deflate is None:
            self._window_bits = 0
            self._no_context_takeover = False
        elif self._from_client:
            self._window_bits = deflate.client_max_window_bits
            self._no_context_takeover = deflate.client_no_context_takeover
        else:
            self._window_bits = deflate.server_max_window_bits
            self._no_context_takeover = deflate.server_no_context_takeover
        self._decompressor = None
        self._position = offset
        self._pending = b""
        self._header_bytes = 0
        self._mask_key_bytes = 0
        self._payload_bytes = 0
        self._control_bytes = 0
        self._unparsed_bytes = 0
        self._opcode_number = -1
        self._opcode = None
        self._control = False
        self._fin = False
        self._frame_length = 0
        self._frame_wire = 0
        self._frame_offset = 0
        self._remaining = 0
        self._masked = False
        self._masked_so_far = 0
        self._control_payload = b""
        self._message = None

    @property
    def account(self):
        """Every byte given a category so far (a snapshot)."""
        return ByteAccount(
            {
                _FRAME_HEADER: self._header_bytes,
                _MASK_KEY: self._mask_key_bytes,
                _PAYLOAD: self._payload_bytes,
                _CONTROL: self._control_bytes,
                _UNPARSED: self._unparsed_bytes,
            }
        )

    @property
    def buffered(self):
        """Bytes fed but not yet given a category: the start of an incomplete frame header."""
        return len(self._pending)

    @property
    def frames(self):
        return self.data_frames + self.control_frames

    def feed(self, data, object timestamp):
        """Take the next bytes of the stream; return the messages and control frames they completed."""
        cdef const unsigned char *view
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t end
        cdef Py_ssize_t body
        cdef Py_ssize_t size
        cdef unsigned long long remaining
        cdef list events = []
        if self.anomaly is not None:
            self._unparsed_bytes += len(data)
            return events
        if self._pending:
            data = self._pending + data
            self._pending = b""
        elif type(data) is not bytes:
            data = bytes(data)
        view = <const unsigned char *>PyBytes_AS_STRING(data)
        end = len(data)
        while pos < end:
            if self._opcode_number < 0:
                body = self._begin_frame(view, pos, end, timestamp)
                if body < 0:
                    break
                pos = body
                if self.anomaly is not None:
                    break
            remaining = self._remaining
            if remaining:
                size = end - pos
                if <unsigned long long>size > remaining:
                    size = <Py_ssize_t>remaining
                self._receive_payload(view, pos, size)
                pos += size
                self._remaining = remaining = remaining - <unsigned long long>size
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

    cdef Py_ssize_t _begin_frame(self, const unsigned char *data, Py_ssize_t pos, Py_ssize_t end, object timestamp) except -2:
        cdef unsigned int first, second
        cdef unsigned long long length
        cdef Py_ssize_t body, header_length
        cdef int opcode_number
        cdef int i
        cdef bint compressed
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
            length = (<unsigned long long>data[pos + 2]) << 8 | data[pos + 3]
        else:
            body = pos + 10
            if body > end:
                return -1
            length = 0
            for i in range(8):
                length = length << 8 | data[pos + 2 + i]
        header_length = body - pos
        violation = self._header_violation(first, second, length, header_length)
        if violation is not None:
            self._stop(self._position + pos, violation)
            self._unparsed_bytes += end - pos
            return end
        if second & 0x80:
            if end - body < 4:
                return -1
            for i in range(4):
                self._mask_key[i] = data[body + i]
            self._masked = True
            self._masked_so_far = 0
            body += 4
            self._mask_key_bytes += 4
        self._header_bytes += header_length
        opcode_number = first & 0x0F
        self._opcode_number = opcode_number
        self._opcode = _OPCODES[opcode_number]
        self._control = _is_control(opcode_number)
        self._fin = first & 0x80 != 0
        self._frame_length = self._remaining = length
        self._frame_wire = <unsigned long long>(body - pos) + length
        self._frame_offset = self._position + pos
        if opcode_number == 1 or opcode_number == 2:
            compressed = first & 0x40 != 0
            self._message = _Message(self._opcode, compressed, timestamp)
            if self.keep_content:
                self._message.content = bytearray()
            if compressed and self._decompressor is None:
                self._decompressor = zlib.decompressobj(-self._window_bits)
        return body

    def close(self, object timestamp):
        """The stream ended (see :meth:`inspector.websocket.WebSocketStream.close`)."""
        if self.anomaly is not None:
            return []
        if self._pending:
            self._stop(self._position, "stream ended inside a frame header")
            self._unparsed_bytes += len(self._pending)
            self._position += len(self._pending)
            self._pending = b""
        elif self._opcode_number >= 0:
            message = self._message
            if message is not None and message.error() is not None and not _is_control(self._opcode_number):
                self._stop(self._frame_offset, message.error())
            else:
                received = self._frame_length - self._remaining
                self._stop(
                    self._frame_offset,
                    f"stream ended inside a frame payload ({received} of {self._frame_length} bytes)",
                )
        elif self._message is not None:
            self._stop(self._position, "stream ended inside a fragmented message")
        return []

    def stop(self, reason):
        """Parse no more of the stream, for ``reason`` (see :meth:`inspector.websocket.WebSocketStream.stop`)."""
        if self.anomaly is not None:
            return
        self._stop(self._position, reason)
        self._unparsed_bytes += len(self._pending)
        self._position += len(self._pending)
        self._pending = b""

    cdef _stop(self, long long offset, reason):
        if self.anomaly is None:
            self.anomaly = Anomaly(self.direction, offset, reason)

    cdef object _header_violation(self, unsigned int first, unsigned int second, unsigned long long length, Py_ssize_t header_length):
        cdef int opcode = first & 0x0F
        cdef bint control
        if (3 <= opcode <= 7) or opcode >= 11:
            return f"reserved opcode 0x{opcode:X}"
        control = _is_control(opcode)
        if first & 0x40:
            if control:
                return "RSV1 set on a control frame"
            if opcode == 0:
                return "RSV1 set on a continuation frame"
            if self._deflate is None:
                return "RSV1 set but permessage-deflate was not negotiated"
        if first & 0x30:
            return "RSV2 or RSV3 set, but no extension defines them"
        if (second & 0x80 != 0) != self._from_client:
            return "client frame not masked" if self._from_client else "server frame masked"
        if control:
            if length > <unsigned long long>_MAX_CONTROL_PAYLOAD:
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
        if opcode == 0:
            if self._message is None:
                return "continuation frame with no message in progress"
        elif not control and self._message is not None:
            return "new data frame while a fragmented message is in progress"
        return None

    cdef int _receive_payload(self, const unsigned char *data, Py_ssize_t pos, Py_ssize_t size) except -1:
        cdef _Message message
        if self._control:
            self._control_bytes += size
            if self._opcode is _CLOSE:
                self._control_payload += self._content(data, pos, size)
            return 0
        self._payload_bytes += size
        message = self._message
        if message.deflate_error is not None:
            return 0
        if message.compressed:
            self._inflate(message, self._content(data, pos, size))
        elif message.utf8_tail is not None or message.content is not None:
            message.receive(self._content(data, pos, size))
        else:
            message.payload_bytes += size
        return 0

    cdef bytes _content(self, const unsigned char *data, Py_ssize_t pos, Py_ssize_t size):
        """The payload bytes at ``data[pos]`` as the sender meant them (unmasked)."""
        cdef bytes chunk = PyBytes_FromStringAndSize(NULL, size)
        cdef unsigned char *out = <unsigned char *>PyBytes_AS_STRING(chunk)
        cdef Py_ssize_t i
        cdef unsigned int phase
        cdef unsigned char key[4]
        if size == 0:
            return chunk
        if not self._masked:
            memcpy(out, &data[pos], size)
            return chunk
        phase = <unsigned int>(self._masked_so_far & 3)
        self._masked_so_far += <unsigned long long>size
        for i in range(4):
            key[i] = self._mask_key[(phase + i) & 3]
        for i in range(size):
            out[i] = data[pos + i] ^ key[i & 3]
        return chunk

    cdef int _inflate(self, _Message message, bytes compressed) except -1:
        decompressor = self._decompressor
        try:
            content = decompressor.decompress(compressed, _INFLATE_BLOCK)
            message.receive(content)
            while decompressor.unconsumed_tail or len(content) == _INFLATE_BLOCK:
                content = decompressor.decompress(decompressor.unconsumed_tail, _INFLATE_BLOCK)
                message.receive(content)
        except _zlib_error as error:
            message.deflate_error = f"corrupt permessage-deflate data ({error})"
        return 0

    cdef object _complete_frame(self, object timestamp):
        cdef _Message message
        cdef bint fin
        opcode = self._opcode
        self._opcode_number = -1
        self._opcode = None
        self._masked = False
        if self._control:
            self.control_frames += 1
            return self._control_frame(opcode, timestamp)
        self.data_frames += 1
        message = self._message
        message.frames += 1
        message.wire_bytes += self._frame_wire
        message.wire_payload_bytes += self._frame_length
        fin = self._fin
        if fin and message.error() is None and (message.compressed or message.utf8_tail):
            self._finish(message)
        if message.error() is not None:
            self._stop(self._frame_offset, message.error())
            return None
        if not fin:
            return None
        self._message = None
        # WebSocketMessage is a slotted dataclass whose __init__ only sets its fields: set them directly.
        event = _new(WebSocketMessage)
        PyObject_GenericSetAttr(event, "direction", self.direction)
        PyObject_GenericSetAttr(event, "opcode", message.opcode)
        PyObject_GenericSetAttr(event, "frames", message.frames)
        PyObject_GenericSetAttr(event, "wire_bytes", message.wire_bytes)
        PyObject_GenericSetAttr(event, "wire_payload_bytes", message.wire_payload_bytes)
        PyObject_GenericSetAttr(event, "payload_bytes", message.payload_bytes)
        PyObject_GenericSetAttr(event, "compressed", message.compressed)
        PyObject_GenericSetAttr(event, "first_timestamp", message.first_timestamp)
        PyObject_GenericSetAttr(event, "timestamp", timestamp)
        PyObject_GenericSetAttr(event, "content", bytes(message.content) if message.content is not None else None)
        return event

    cdef int _finish(self, _Message message) except -1:
        if message.compressed:
            self._inflate(message, _DEFLATE_TAIL)
            decompressor = self._decompressor
            if decompressor.eof:
                if message.error() is None and decompressor.unused_data != _DEFLATE_TAIL:
                    message.deflate_error = "corrupt permessage-deflate data (data after the final block)"
                self._decompressor = None
            elif self._no_context_takeover:
                self._decompressor = None
        if message.utf8_tail and message.error() is None:
            message.utf8_error = "invalid UTF-8 in a text message (it ends inside a character)"
        return 0

    cdef object _control_frame(self, object opcode, object timestamp):
        cdef bytes payload
        cdef long close_code_number
        close_code = None
        close_reason = None
        if opcode is _CLOSE:
            payload = self._control_payload
            self._control_payload = b""
            if len(payload) == 1:
                self._stop(self._frame_offset, "close frame payload of 1 byte")
                return None
            if payload:
                close_code_number = (<unsigned char>payload[0]) << 8 | (<unsigned char>payload[1])
                close_code = close_code_number
                if not _close_code_allowed(close_code_number):
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
