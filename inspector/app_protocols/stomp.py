"""STOMP 1.0 to 1.2 over WebSocket: frames and heart-beats in a byte stream per direction.

A frame is a command line, header lines, a blank line, a body and a NUL; the
end-of-line bytes that follow its NUL in the same WebSocket message are part
of it (the grammar allows any number). A body ends at the first NUL, or, when
a ``content-length`` header says how long it is, after that many bytes (held
never: they are only counted). A heart-beat is an end of line outside a frame.

The WebSocket messages are only a carrier: one may hold several frames and
heart-beats, and a frame may span messages. A frame is counted in the message
where its command line ends; its other pieces are ``counted`` False, and the
pieces of a command line not yet complete when a message ended are control
``"partial"`` pieces, since what the frame is is not known yet.

Which end-of-line bytes are heart-beats depends on the messages: ``\\n`` after
a frame's NUL in the same message ends the frame, and in a message of its own
it is a heart-beat (as brokers send them, often after frames that end in NUL
and LF).

SEND and MESSAGE carry the application's data; every other frame, and every
heart-beat, is control. A frame whose command is not STOMP's is a
``"malformed"`` control message that ends at the next NUL.
"""

from __future__ import annotations

from ..events import FrameworkEvent, FrameworkMessage, FrameworkProblem
from ..wire import Direction
from .reader import APPLICATION, CONTROL, FrameworkReader

_COMMANDS = frozenset(
    {
        "CONNECT",
        "STOMP",
        "CONNECTED",
        "SEND",
        "SUBSCRIBE",
        "UNSUBSCRIBE",
        "ACK",
        "NACK",
        "BEGIN",
        "COMMIT",
        "ABORT",
        "DISCONNECT",
        "MESSAGE",
        "RECEIPT",
        "ERROR",
    }
)
_APPLICATION_COMMANDS = frozenset({"SEND", "MESSAGE"})
#: The most bytes of a frame's command and header lines held.
HEAD_LIMIT = 64 * 1024

# Where a direction is.
_IDLE = "idle"  # between frames
_HEARTBEAT_CR = "heartbeat_cr"  # after the CR of a heart-beat
_HEAD = "head"  # in a frame's command or header lines
_BODY = "body"  # in a frame's body, which ends at a NUL
_SIZED_BODY = "sized_body"  # in a frame's body whose content-length is known
_TRAILER = "trailer"  # after a frame's NUL, in the same message
_NUL = 0
_LF = 0x0A
_CR = 0x0D


class _Stream:
    __slots__ = ("command", "counted", "head", "phase", "remaining")

    def __init__(self) -> None:
        self.phase = _IDLE
        #: What the frame (or heart-beat) in progress is, once known: its type.
        self.command: str | None = None
        #: Whether a piece of it was counted already.
        self.counted = False
        #: The frame's command and header lines so far, in the head.
        self.head = bytearray()
        #: The body bytes still to come, in a sized body.
        self.remaining = 0


class StompReader(FrameworkReader):
    """Reads STOMP frames and heart-beats from WebSocket messages, per direction."""

    name = "stomp"

    def __init__(self) -> None:
        super().__init__()
        self._streams = {direction: _Stream() for direction in Direction}

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        stream = self._streams[direction]
        events: list[FrameworkEvent] = []
        i = 0
        if stream.phase == _HEARTBEAT_CR:
            if data[:1] == b"\n":
                events.append(FrameworkMessage(direction, CONTROL, "heartbeat", 1, counted=False))
                i = 1
            stream.phase = _IDLE
        while i < len(data):
            start = i
            if stream.phase == _IDLE:
                if data[i] == _LF:
                    events.append(FrameworkMessage(direction, CONTROL, "heartbeat", 1))
                    i += 1
                    continue
                if data[i] == _CR:
                    lf = data[i + 1 : i + 2] == b"\n"
                    events.append(FrameworkMessage(direction, CONTROL, "heartbeat", 1 + lf))
                    i += 1 + lf
                    if i == len(data) and not lf:
                        stream.phase = _HEARTBEAT_CR
                    continue
                stream.phase = _HEAD
                stream.command = None
                stream.counted = False
            i = self._advance(stream, direction, data, i, events)
            events.append(self._piece(stream, direction, i - start))
        if stream.phase == _TRAILER:
            stream.phase = _IDLE
        return events

    @staticmethod
    def _piece(stream: _Stream, direction: Direction, size: int) -> FrameworkMessage:
        if stream.command is None:
            return FrameworkMessage(direction, CONTROL, "partial", size, counted=False)
        kind = APPLICATION if stream.command in _APPLICATION_COMMANDS else CONTROL
        counted = not stream.counted
        stream.counted = True
        return FrameworkMessage(direction, kind, stream.command, size, counted)

    def _advance(self, stream: _Stream, direction: Direction, data: bytes, i: int, events: list[FrameworkEvent]) -> int:
        """Consume the frame in progress from ``data[i:]`` up to its end or the message's; where it stopped."""
        if stream.phase == _HEAD:
            i = self._head(stream, direction, data, i, events)
        if stream.phase == _SIZED_BODY:
            taken = min(stream.remaining, len(data) - i)
            stream.remaining -= taken
            i += taken
            if not stream.remaining and i < len(data):
                if data[i] == _NUL:
                    stream.phase = _TRAILER
                    i += 1
                else:
                    events.append(
                        FrameworkProblem(direction, f"STOMP {stream.command} frame: no NUL after its content-length")
                    )
                    stream.phase = _BODY
        if stream.phase == _BODY:
            nul = data.find(b"\x00", i)
            if nul < 0:
                return len(data)
            stream.phase = _TRAILER
            i = nul + 1
        if stream.phase == _TRAILER:
            while i < len(data) and data[i] in (_LF, _CR):
                i += 1
            if i < len(data):
                stream.phase = _IDLE
        return i

    def _head(self, stream: _Stream, direction: Direction, data: bytes, i: int, events: list[FrameworkEvent]) -> int:
        """Consume command and header lines; parse them when the blank line after them arrives."""
        head = stream.head
        before = len(head)
        searched = max(0, before - 2)
        # Take no more than the head could be: up to the limit, or to the first NUL.
        stop = min(len(data), i + HEAD_LIMIT + 1 - before)
        nul = data.find(b"\x00", i, stop)
        head += data[i : stop if nul < 0 else nul + 1]
        if stream.command is None and (lf := head.find(b"\n")) >= 0:
            command = head[:lf].rstrip(b"\r").decode("latin-1")
            stream.command = command if command in _COMMANDS else "malformed"
            if stream.command == "malformed":
                events.append(FrameworkProblem(direction, f"STOMP frame with an unknown command {command[:40]!r}"))
        blank = _blank_line(head, searched)
        nul = head.find(b"\x00", searched)
        end = len(head)
        if 0 <= nul and (blank is None or nul < blank):
            end = nul + 1
            stream.phase = _TRAILER
            if stream.command != "malformed":
                events.append(FrameworkProblem(direction, "STOMP frame ends before its blank line"))
            stream.command = "malformed"
        elif blank is not None:
            end = blank
            length = _content_length(head[:blank])
            stream.phase = _BODY
            if length is not None and length < 0:
                events.append(
                    FrameworkProblem(direction, f"STOMP {stream.command} frame: content-length is not a number")
                )
            elif length is not None:
                stream.phase = _SIZED_BODY
                stream.remaining = length
        elif len(head) > HEAD_LIMIT:
            events.append(FrameworkProblem(direction, f"STOMP frame's headers longer than {HEAD_LIMIT} bytes"))
            stream.phase = _BODY
            stream.command = stream.command or "malformed"
        if stream.phase != _HEAD:
            head.clear()
        return i + end - before


def _blank_line(head: bytearray, start: int) -> int | None:
    """Where the blank line that ends the header lines ends, if ``head`` has it."""
    ends = [at + len(eol) for eol in (b"\n\n", b"\n\r\n") if (at := head.find(eol, start)) >= 0]
    return min(ends) if ends else None


def _content_length(head: bytearray) -> int | None:
    """The first ``content-length`` header's value: None without one, -1 when it is not a number."""
    for line in bytes(head).split(b"\n")[1:]:
        name, colon, value = line.rstrip(b"\r").partition(b":")
        if colon and name == b"content-length":
            return int(value) if value.isdigit() and len(value) <= 12 else -1
    return None
