"""SockJS: frames from the server, JSON arrays of messages from the client.

The server sends ``o`` (open), ``h`` (heartbeat), ``a[...]`` (a JSON array of
messages) and ``c[code,"reason"]`` (close); the client sends a JSON array of
messages (or, over WebSocket, one JSON string). Each message of an array is
one application message: the first takes the array's opening (and the
``a``), each later one its comma, the last the closing bracket and what
follows. Everything else is control.

Over WebSocket one message is one frame. Over HTTP the request's URL,
``/prefix/{server}/{session}/{transport}``, says how frames travel:

- ``xhr`` and ``xhr_streaming`` answer with frames ended by ``\\n``, which
  goes with its frame; ``xhr_streaming`` first sends a prelude of 2048 ``h``
  and a ``\\n`` (control ``"prelude"``);
- ``eventsource`` answers with an event stream: a ``\\r\\n`` prelude, then
  ``data: <frame>\\r\\n\\r\\n``, whose field name and line ends go with the frame;
- ``xhr_send`` and ``jsonp_send`` POST a JSON array (answered by 204 without a
  body, and ``ok``);
- ``/prefix/info`` answers with the server's options (control ``"info"``).

Streamed frames are read as they arrive, each held until its end, up to
:data:`~inspector.app_protocols.reader.BODY_LIMIT` bytes; from a longer one
on, the rest of the body is one ``"unparsed"`` control message. The
``htmlfile`` and ``jsonp`` transports, which wrap frames in script, are not
read: their bodies are ``"unparsed"`` too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..events import FrameworkEvent, FrameworkMessage, FrameworkProblem
from ..wire import Direction
from .json_array import item_sizes
from .reader import APPLICATION, BODY_LIMIT, CONTROL, FrameworkReader, Request, malformed

#: The transports named by the last segment of a session's URL.
TRANSPORTS = frozenset(
    {"websocket", "xhr", "xhr_send", "xhr_streaming", "eventsource", "htmlfile", "jsonp", "jsonp_send"}
)
_UNREAD = frozenset({"htmlfile", "jsonp"})
_EVENT_STREAM_PRELUDE = b"\r\n"
_DATA_FIELD = b"data: "


def transport_in(request: Request) -> str | None:
    """The SockJS transport (or ``"info"``) that a request's URL names, if any."""
    segments = request.path.rstrip("/").split("/")
    last = segments[-1]
    if last == "info" or last in TRANSPORTS:
        return last
    return None


def server_frame(direction: Direction, frame: bytes, before: int = 0, after: int = 0) -> list[FrameworkEvent]:
    """One frame from the server; ``before`` and ``after`` bytes of an envelope go with it."""
    size = before + len(frame) + after
    if frame == b"o":
        return [FrameworkMessage(direction, CONTROL, "open", size)]
    if frame == b"h":
        return [FrameworkMessage(direction, CONTROL, "heartbeat", size)]
    if len(frame) > 1 and not frame.strip(b"h"):
        return [FrameworkMessage(direction, CONTROL, "prelude", size)]
    if frame.startswith(b"c") and item_sizes(frame[1:]) is not None:
        return [FrameworkMessage(direction, CONTROL, "close", size)]
    if frame.startswith(b"a"):
        events = _messages(direction, frame[1:], before + 1, after)
        if events is not None:
            return events
    return malformed(direction, size, f"SockJS frame {frame[:1]!r} is not o, h, a[...] or c[...]")


def client_messages(direction: Direction, data: bytes) -> list[FrameworkEvent]:
    """What the client sends: a JSON array of messages, or one JSON string."""
    events = _messages(direction, data, 0, 0)
    if events is not None:
        return events
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        message = None
    if isinstance(message, str):
        return [FrameworkMessage(direction, APPLICATION, "message", len(data))]
    return malformed(direction, len(data), "SockJS client message is neither a JSON array nor a JSON string")


def _messages(direction: Direction, array: bytes, before: int, after: int) -> list[FrameworkEvent] | None:
    """One application message per item of a JSON array, or None when ``array`` is not one."""
    sizes = item_sizes(array)
    if sizes is None:
        return None
    if not sizes:
        return [FrameworkMessage(direction, CONTROL, "empty", before + len(array) + after)]
    sizes[0] += before
    sizes[-1] += after
    return [FrameworkMessage(direction, APPLICATION, "message", size) for size in sizes]


@dataclass(slots=True)
class _Body:
    """One body in progress: the bytes of its unfinished unit, and how it is cut into units."""

    request: Request
    transport: str | None
    #: What ends a unit (a frame, an event); None to read the body whole at its end.
    terminator: bytes | None
    held: bytearray = field(default_factory=bytearray)
    #: Bytes from the first unit longer than BODY_LIMIT on, counted only.
    overflow: int = 0
    #: Whether the event stream's prelude is still to come.
    at_start: bool = True


class SockJsReader(FrameworkReader):
    """Reads SockJS frames and messages, over WebSocket and over its HTTP transports."""

    name = "sockjs"

    def __init__(self) -> None:
        super().__init__()
        self._streams: dict[Direction, _Body] = {}

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        if direction is Direction.CLIENT_TO_SERVER:
            return client_messages(direction, data)
        return server_frame(direction, data)

    def start_body(self, direction: Direction, method: str, target: str) -> None:
        request = Request(method, target)
        transport = transport_in(request)
        terminator = None
        if direction is Direction.SERVER_TO_CLIENT and transport in (None, "xhr", "xhr_streaming"):
            terminator = b"\n"
        elif direction is Direction.SERVER_TO_CLIENT and transport == "eventsource":
            terminator = b"\r\n\r\n"
        self._streams[direction] = _Body(request, transport, terminator)

    def body_data(self, direction: Direction, data: bytes) -> list[FrameworkEvent]:
        body = self._streams.get(direction)
        if body is None:
            self.start_body(direction, "", "")
            body = self._streams[direction]
        if body.overflow:
            body.overflow += len(data)
            return []
        searched = max(0, len(body.held) - len(body.terminator or b"") + 1)
        body.held += data
        if body.terminator is None:
            return self._overflow(direction, body, 0) if len(body.held) > BODY_LIMIT else []
        events: list[FrameworkEvent] = []
        start = 0
        while (end := body.held.find(body.terminator, searched)) >= 0:
            end += len(body.terminator)
            if end - start > BODY_LIMIT:
                return events + self._overflow(direction, body, start)
            events += self._unit(direction, body, bytes(body.held[start:end]), len(body.terminator))
            start = searched = end
        del body.held[:start]
        if len(body.held) > BODY_LIMIT:
            events += self._overflow(direction, body, 0)
        return events

    def _overflow(self, direction: Direction, body: _Body, start: int) -> list[FrameworkEvent]:
        """Stop holding the body: from ``start`` on, it is counted only."""
        body.overflow = len(body.held) - start
        body.held.clear()
        return [
            FrameworkProblem(direction, f"SockJS {body.transport or 'body'}: a frame longer than {BODY_LIMIT} bytes")
        ]

    def body_end(self, direction: Direction) -> list[FrameworkEvent]:
        body = self._streams.pop(direction, None)
        if body is None:
            return []
        if body.overflow:
            return [FrameworkMessage(direction, CONTROL, "unparsed", body.overflow)]
        if not body.held:
            return []
        data = bytes(body.held)
        if body.terminator is not None:
            return self._unit(direction, body, data, 0)
        return self._whole(direction, body, data)

    def _whole(self, direction: Direction, body: _Body, data: bytes) -> list[FrameworkEvent]:
        """A body read at its end: what the client sends, or an answer that is not a stream of frames."""
        transport = body.transport
        if direction is Direction.CLIENT_TO_SERVER:
            if transport in (None, "xhr_send", "jsonp_send"):
                return client_messages(direction, data)
            return [FrameworkMessage(direction, CONTROL, "http_body", len(data))]
        if transport == "info":
            return [FrameworkMessage(direction, CONTROL, "info", len(data))]
        if transport in _UNREAD:
            problem = FrameworkProblem(direction, f"SockJS {transport} transport is not read")
            return [problem, FrameworkMessage(direction, CONTROL, "unparsed", len(data))]
        if data == b"ok":
            return [FrameworkMessage(direction, CONTROL, "ok", len(data))]
        return [FrameworkMessage(direction, CONTROL, "http_body", len(data))]

    def _unit(self, direction: Direction, body: _Body, unit: bytes, terminator: int) -> list[FrameworkEvent]:
        """One frame of a stream with its terminator (``terminator`` bytes long; 0 for an unended last one)."""
        frame = unit[: len(unit) - terminator]
        if body.transport != "eventsource":
            return server_frame(direction, frame, 0, terminator)
        events: list[FrameworkEvent] = []
        if body.at_start and frame.startswith(_EVENT_STREAM_PRELUDE):
            events.append(FrameworkMessage(direction, CONTROL, "prelude", len(_EVENT_STREAM_PRELUDE)))
            frame = frame[len(_EVENT_STREAM_PRELUDE) :]
        body.at_start = False
        if not frame.startswith(_DATA_FIELD):
            return events + malformed(direction, len(frame) + terminator, "SockJS event stream: not a data event")
        return events + server_frame(direction, frame[len(_DATA_FIELD) :], len(_DATA_FIELD), terminator)
