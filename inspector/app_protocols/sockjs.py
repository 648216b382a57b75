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
- ``xhr_send`` POSTs a JSON array (answered by 204 without a body), and
  ``jsonp_send`` one in a form field ``d`` (answered by ``ok``);
- ``/prefix/info`` answers with the server's options (control ``"info"``).

Streamed frames are read as they arrive, each held until its end, up to
:data:`~inspector.app_protocols.reader.BODY_LIMIT` bytes; from a longer one
on, the rest of the body is one ``"unparsed"`` control message. The
``htmlfile`` and ``jsonp`` transports, which wrap frames in script, are not
read: their bodies are ``"unparsed"`` too.
"""

from __future__ import annotations

import itertools
import json

from ..events import FrameworkEvent, FrameworkMessage, FrameworkProblem
from ..wire import Direction
from .json_array import item_sizes
from .reader import APPLICATION, CONTROL, Body, FrameworkReader, Request, malformed

#: The transports named by the last segment of a session's URL.
TRANSPORTS = frozenset(
    {"websocket", "xhr", "xhr_send", "xhr_streaming", "eventsource", "htmlfile", "jsonp", "jsonp_send"}
)
_UNREAD = frozenset({"htmlfile", "jsonp"})
_FRAME_END = b"\n"
_EVENT_END = b"\r\n\r\n"
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


def form_messages(direction: Direction, data: bytes) -> list[FrameworkEvent]:
    """What a ``jsonp_send`` form carries: a JSON array of messages, URL-encoded as the field ``d``.

    Each message takes the encoded bytes of its share of the decoded array;
    the first also takes ``d=``.
    """
    decoded = bytearray()
    # Where in ``data`` each decoded byte began.
    origins: list[int] = []
    i = 2
    while i < len(data):
        origins.append(i)
        if data[i] == 0x25 and _is_hex(data[i + 1 : i + 3]):
            decoded.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            decoded.append(0x20 if data[i] == 0x2B else data[i])
            i += 1
    sizes = item_sizes(bytes(decoded))
    if sizes is None:
        return malformed(direction, len(data), "SockJS jsonp_send form: d is not a JSON array")
    if not sizes:
        return [FrameworkMessage(direction, CONTROL, "empty", len(data))]
    cuts = list(itertools.accumulate(sizes[:-1]))
    bounds = [0, *(origins[cut] for cut in cuts), len(data)]
    return [FrameworkMessage(direction, APPLICATION, "message", b - a) for a, b in itertools.pairwise(bounds)]


def _is_hex(digits: bytes) -> bool:
    return len(digits) == 2 and all(d in b"0123456789abcdefABCDEF" for d in digits)


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


class SockJsReader(FrameworkReader):
    """Reads SockJS frames and messages, over WebSocket and over its HTTP transports."""

    name = "sockjs"

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        if direction is Direction.CLIENT_TO_SERVER:
            return client_messages(direction, data)
        return server_frame(direction, data)

    def body_terminator(self, direction: Direction, request: Request) -> bytes | None:
        if direction is Direction.CLIENT_TO_SERVER:
            return None
        transport = transport_in(request)
        if transport in (None, "xhr", "xhr_streaming"):
            return _FRAME_END
        if transport == "eventsource":
            return _EVENT_END
        return None

    def read_body(self, direction: Direction, body: Body, data: bytes) -> list[FrameworkEvent]:
        terminator = body.units.terminator
        if terminator is None:
            return _whole_body(direction, transport_in(body.request), data)
        end = len(terminator) if data.endswith(terminator) else 0
        frame = data[: len(data) - end]
        if terminator == _FRAME_END:
            return server_frame(direction, frame, 0, end)
        events: list[FrameworkEvent] = []
        if not body.read and frame.startswith(_EVENT_STREAM_PRELUDE):
            events.append(FrameworkMessage(direction, CONTROL, "prelude", len(_EVENT_STREAM_PRELUDE)))
            frame = frame[len(_EVENT_STREAM_PRELUDE) :]
        if not frame.startswith(_DATA_FIELD):
            return events + malformed(direction, len(frame) + end, "SockJS event stream: not a data event")
        return events + server_frame(direction, frame[len(_DATA_FIELD) :], len(_DATA_FIELD), end)


def _whole_body(direction: Direction, transport: str | None, data: bytes) -> list[FrameworkEvent]:
    """A body read at its end: what the client sends, or an answer that is not a stream of frames."""
    if direction is Direction.CLIENT_TO_SERVER:
        if transport == "jsonp_send" and data.startswith(b"d="):
            return form_messages(direction, data)
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
