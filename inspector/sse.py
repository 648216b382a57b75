"""Server-Sent Events: the body of a ``text/event-stream`` response, as EventSource reads it.

The interpretation follows the HTML standard's event stream parser: UTF-8 with a
leading BOM skipped once, lines ended by CRLF, LF or CR, the fields ``data``,
``event``, ``id`` and ``retry``, comment lines (heartbeats), and a blank line
that dispatches the event being read. The HTML parser gives every byte sequence
a meaning (invalid UTF-8 becomes U+FFFD), so an event stream has no anomalies.

Every body byte is counted once. An event's :attr:`Category.PAYLOAD` is its
data string, what the application gets: the values of its ``data`` fields,
joined by LF. On the wire each joining LF is the line end of a data line that
another data line of the event follows, one byte of it: the first, so that a
CRLF is one byte of payload and one of syntax. Everything else (field names,
colons, the space after a colon, other line ends, comments,
``event``/``id``/``retry`` lines, the BOM, blank lines, and the data of an event
the stream ended inside) is :attr:`Category.MESSAGE_SYNTAX`.
"""

from __future__ import annotations

import re
from itertools import repeat

from .events import SseEvent
from .wire import ByteAccount, Category

_BOM = b"\xef\xbb\xbf"
_CR = 0x0D
_LF = 0x0A
_COLON = 0x3A
_LINE_END = re.compile(rb"(\r\n|\r|\n)")


def _split_lines(region: bytes) -> tuple[list[bytes], list[int] | None]:
    """The lines of ``region``, which ends with a line end, and the length of each line end.

    The lengths are None when every line ends in a lone LF, the usual case,
    which needs no regular expression.
    """
    if b"\r" in region:
        parts = _LINE_END.split(region)
        return parts[0:-1:2], [len(end) for end in parts[1::2]]
    lines = region.split(b"\n")
    lines.pop()
    return lines, None


class SseStream:
    """Reads one event stream body, fed in chunks as they arrived.

    Results do not depend on how the body was split into chunks. A line that ends
    in CR at the very end of a chunk is held until the next byte shows whether an
    LF completes its line end, so an event dispatched by such a line is returned by
    the next :meth:`feed` (or by :meth:`close`), still with the time of the CR.

    ``offset`` is where the body starts within the server-to-client byte stream of
    the connection; :attr:`position` adds it to the bytes fed so far.
    """

    __slots__ = (
        "_at_start",
        "_buf",
        "_data",
        "_event_wire",
        "_fed",
        "_held_cr_timestamp",
        "_last_event_id",
        "_pending_payload",
        "_retry",
        "_type",
        "account",
        "comments",
        "offset",
    )

    def __init__(self, *, offset: int = 0) -> None:
        self.offset = offset
        #: Body bytes by category, for every byte whose category is settled.
        self.account = ByteAccount()
        #: Comment lines seen (heartbeats).
        self.comments = 0
        self._fed = 0
        # Bytes of the line being read (plus a held CR, or a partial BOM at the start).
        self._buf = bytearray()
        self._at_start = True
        self._held_cr_timestamp: float | None = None
        # Bytes consumed since the last dispatch.
        self._event_wire = 0
        # The data buffer: values of the data fields of the event being read.
        self._data: list[bytes] = []
        # Bytes of those values, each with the first byte of its line end: the LF
        # that joins it to the next one, if the event gets another data line.
        self._pending_payload = 0
        self._type = ""
        self._last_event_id = ""
        self._retry: int | None = None

    @property
    def position(self) -> int:
        """Offset within the server-to-client stream of the next byte to be fed."""
        return self.offset + self._fed

    @property
    def pending_bytes(self) -> int:
        """Bytes fed whose category is not settled yet: the line being read, and the
        data values of the event being read with the first byte of each one's line
        end. ``account.total + pending_bytes`` is always the number of bytes fed;
        after :meth:`close` it is zero."""
        return len(self._buf) + self._pending_payload

    def feed(self, data: bytes, timestamp: float) -> list[SseEvent]:
        """Consume the next chunk of the body; return the events it dispatched."""
        events: list[SseEvent] = []
        if not data:
            return events
        if type(data) is not bytes:
            data = bytes(data)
        self._fed += len(data)
        buf = self._buf
        if self._held_cr_timestamp is not None:
            crlf = data[0] == _LF
            self._end_held_line(self._held_cr_timestamp, 2 if crlf else 1, events)
            if crlf:
                data = data[1:]
                if not data:
                    return events
        # Lines are cut straight out of ``data`` unless a line started in an
        # earlier chunk (or the BOM is still undecided): most chunks end their
        # last line, and copying them through the line buffer costs.
        text: bytes | bytearray = data
        searched_from = 0
        if buf or self._at_start:
            searched_from = len(buf)
            buf += data
            text = buf
            if self._at_start:
                if len(buf) < len(_BOM) and _BOM.startswith(buf):
                    return events
                self._at_start = False
                if buf.startswith(_BOM):
                    del buf[: len(_BOM)]
                    self.account.add(Category.MESSAGE_SYNTAX, len(_BOM))
                    self._event_wire += len(_BOM)
                    searched_from = 0
        cut = max(text.rfind(b"\n", searched_from), text.rfind(b"\r", searched_from)) + 1
        if not cut:
            if text is data:
                buf += data
            return events
        held_cr = cut == len(text) and text[-1] == _CR
        if text is data:
            region = data if cut == len(data) else data[:cut]
            buf += data[cut:]
        else:
            region = bytes(buf[:cut])
            del buf[:cut]
        lines, ends = _split_lines(region)
        consumed = cut
        if held_cr:
            line = lines.pop()
            buf += line + b"\r"
            consumed -= len(line) + 1
            if ends is not None:
                ends.pop()
            self._held_cr_timestamp = timestamp
        self._consume(lines, ends, consumed, timestamp, events)
        return events

    def close(self, timestamp: float) -> list[SseEvent]:
        """End of the body: a held CR ends its line; an unfinished line or event is
        discarded (its bytes are :attr:`Category.MESSAGE_SYNTAX`)."""
        events: list[SseEvent] = []
        if self._held_cr_timestamp is not None:
            self._end_held_line(self._held_cr_timestamp, 1, events)
        self.account.add(Category.MESSAGE_SYNTAX, len(self._buf) + self._pending_payload)
        self._buf.clear()
        self._at_start = False
        self._data = []
        self._pending_payload = 0
        return events

    def _end_held_line(self, timestamp: float, end: int, events: list[SseEvent]) -> None:
        """Interpret the held line now that its line end is known to be ``end`` bytes long."""
        line = bytes(self._buf[:-1])
        self._buf.clear()
        self._held_cr_timestamp = None
        self._consume([line], [end], len(line) + end, timestamp, events)

    def _consume(
        self, lines: list[bytes], ends: list[int] | None, consumed: int, timestamp: float, events: list[SseEvent]
    ) -> None:
        """Interpret complete lines, ``consumed`` bytes with their line ends.

        ``ends`` holds the length of each line's line end; None when every one is a lone LF.
        """
        payload = 0
        wire = self._event_wire
        data = self._data
        pending_before = pending = self._pending_payload
        event_type, last_event_id, retry = self._type, self._last_event_id, self._retry
        for line, end in zip(lines, repeat(1) if ends is None else ends):  # noqa: B905 - ends may be endless
            wire += len(line) + end
            if not line:
                if data:
                    # The last data line's line end joins nothing: it stays syntax.
                    payload += pending - 1
                    events.append(
                        SseEvent(
                            event_type or "message",
                            b"\n".join(data).decode("utf-8", "replace"),
                            last_event_id,
                            retry,
                            wire,
                            pending - 1,
                            timestamp,
                        )
                    )
                    wire = 0
                    data = []
                    pending = 0
                event_type, retry = "", None
            elif line[0] == _COLON:
                self.comments += 1
            elif line.startswith(b"data:"):
                # The usual line, read with one copy of its value instead of two.
                value = line[6:] if line[5:6] == b" " else line[5:]
                data.append(value)
                pending += len(value) + 1
            else:
                name, _, value = line.partition(b":")
                if value[:1] == b" ":
                    value = value[1:]
                if name == b"data":
                    data.append(value)
                    pending += len(value) + 1
                elif name == b"event":
                    event_type = value.decode("utf-8", "replace")
                elif name == b"id":
                    if b"\0" not in value:
                        last_event_id = value.decode("utf-8", "replace")
                elif name == b"retry" and value.isdigit():
                    try:
                        retry = int(value)
                    except ValueError:
                        pass  # too many digits for int(): ignored, as an overflowing value is by browsers
        self._type, self._last_event_id, self._retry = event_type, last_event_id, retry
        self._event_wire = wire
        self._data = data
        self._pending_payload = pending
        self.account.add(Category.PAYLOAD, payload)
        self.account.add(Category.MESSAGE_SYNTAX, consumed - payload - (pending - pending_before))
