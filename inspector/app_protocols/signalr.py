"""ASP.NET Core SignalR's JSON hub protocol.

Records are JSON objects, each ended by ``\\x1e``; a WebSocket message, a
long poll's answer, a POST or a Server-Sent Event's data may hold several.
Each direction starts with a handshake record: the client's
``{"protocol":"json","version":1}``, the server's ``{}`` (or one with an
``error``). After it every record has a numeric ``type``.

The application's records are 1 Invocation, 2 StreamItem and 4
StreamInvocation, and a 3 Completion that carries a ``result``: the value a
hub method returned, which the caller's code receives. A Completion without
one (a void method's, or an ``error``) only closes the invocation and is
control, as are 5 CancelInvocation, 6 Ping, 7 Close, the handshake and the
acknowledgements of stateful reconnect (8 Ack, 9 Sequence).

The answer to ``…/negotiate`` is control; it names the connection token that
later requests carry as ``id=``, given as a :class:`~inspector.events.SessionId`.
Over Server-Sent Events each event's ``data:`` field carries records: the
event's field name and line ends go with its first and last record, and a
comment line (the server's first bytes) is control. Bodies are read as they
arrive, a record (or an event) at a time: a response to a Server-Sent Events
request lasts as long as the connection. A body that starts with ``:`` or
``data:`` is an event stream; the answer to a negotiate request is read whole.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..events import FrameworkEvent, FrameworkMessage, FrameworkProblem, SessionId
from ..wire import Direction
from .reader import APPLICATION, CONTROL, Body, FrameworkReader, Request, malformed

_RECORD_SEPARATOR = b"\x1e"
_RECORD_TYPES = {
    1: "Invocation",
    2: "StreamItem",
    3: "Completion",
    4: "StreamInvocation",
    5: "CancelInvocation",
    6: "Ping",
    7: "Close",
    8: "Ack",
    9: "Sequence",
}
_APPLICATION_TYPES = frozenset({1, 2, 4})
#: What ends a Server-Sent Event as the server writes them.
_EVENT_END = b"\r\n\r\n"
#: A Server-Sent Event of one data line (its value in group 1) and the blank line after it, or a comment line.
_SSE_EVENT = re.compile(rb"data: ?([^\r\n]*)(?:\r\n|\n)(?:\r\n|\n)|:[^\r\n]*(?:\r\n|\n)")


class SignalRReader(FrameworkReader):
    """Reads SignalR JSON hub protocol records, per direction."""

    name = "signalr"

    def __init__(self) -> None:
        super().__init__()
        self._handshaken: set[Direction] = set()

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        if not text:
            return malformed(direction, len(data), "SignalR binary message (MessagePack hub protocol is not read)")
        return self._records(direction, data, "a WebSocket message")

    def body_terminator(self, direction: Direction, request: Request) -> bytes | None:
        return None if request.path.endswith("/negotiate") else _RECORD_SEPARATOR

    def body_starts(self, body: Body, data: bytes) -> None:
        if body.units.terminator is not None and data[:1] in (b":", b"d"):
            body.units.terminator = _EVENT_END

    def read_body(self, direction: Direction, body: Body, data: bytes) -> list[FrameworkEvent]:
        if body.units.terminator is None:
            return _negotiate(direction, data)
        if body.units.terminator == _EVENT_END:
            return self._event_stream(direction, data, body.read + 1)
        return self._records(direction, data, "a body", first=body.read + 1)

    def _event_stream(self, direction: Direction, data: bytes, number: int) -> list[FrameworkEvent]:
        """Records in the data of Server-Sent Events (one data line each, as the server writes them)."""
        events: list[FrameworkEvent] = []
        start = 0
        for match in _SSE_EVENT.finditer(data):
            if match.start() != start:
                events += malformed(direction, match.start() - start, "SignalR event stream: not a data event")
            if match[1] is None:
                events.append(FrameworkMessage(direction, CONTROL, "comment", match.end() - match.start()))
            else:
                before, after = match.start(1) - match.start(), match.end() - match.end(1)
                events += self._records(direction, match[1], f"event {number}", before=before, after=after)
            start = match.end()
        if start < len(data):
            events += malformed(direction, len(data) - start, "SignalR event stream: not a data event")
        return events

    def _records(
        self, direction: Direction, data: bytes, where: str, *, first: int = 1, before: int = 0, after: int = 0
    ) -> list[FrameworkEvent]:
        """The records of ``data`` (in ``where``, numbered from ``first``); ``before`` and ``after``
        bytes of an envelope go with the first and last."""
        records = data.split(_RECORD_SEPARATOR)
        tail = records.pop()
        sizes = [len(record) + 1 for record in records]
        if tail:
            sizes.append(len(tail))
        if not sizes:
            if not before + after:
                return []
            sizes.append(0)
        sizes[0] += before
        sizes[-1] += after
        events: list[FrameworkEvent] = []
        for number, (record, size) in enumerate(zip(records, sizes, strict=False), first):
            events += self._record(direction, record, size, f"SignalR record {number} of {where}")
        if len(sizes) > len(records):
            events += malformed(
                direction, sizes[-1], f"SignalR record {first + len(records)} of {where}: no \\x1e ends it"
            )
        return events

    def _record(self, direction: Direction, record: bytes, size: int, where: str) -> list[FrameworkEvent]:
        try:
            message: Any = json.loads(record)
        except (ValueError, RecursionError):
            return malformed(direction, size, f"{where}: not JSON")
        if not isinstance(message, dict):
            return malformed(direction, size, f"{where}: not a JSON object")
        record_type = message.get("type")
        if record_type is None and direction not in self._handshaken:
            self._handshaken.add(direction)
            return [FrameworkMessage(direction, CONTROL, "handshake", size)]
        self._handshaken.add(direction)
        if type(record_type) is not int or record_type not in _RECORD_TYPES:
            return malformed(direction, size, f"{where}: unknown type {record_type!r}")
        name = _RECORD_TYPES[record_type]
        application = record_type in _APPLICATION_TYPES or (record_type == 3 and "result" in message)
        return [FrameworkMessage(direction, APPLICATION if application else CONTROL, name, size)]


def _negotiate(direction: Direction, data: bytes) -> list[FrameworkEvent]:
    """The negotiate request or its answer; the answer names the connection's token."""
    events: list[FrameworkEvent] = []
    if direction is Direction.SERVER_TO_CLIENT:
        try:
            answer = json.loads(data)
        except (ValueError, RecursionError):
            answer = None
        if isinstance(answer, dict):
            token = answer.get("connectionToken") or answer.get("connectionId")
            if isinstance(token, str):
                events.append(SessionId(token))
        else:
            events.append(FrameworkProblem(direction, "SignalR negotiate answer is not a JSON object"))
    events.append(FrameworkMessage(direction, CONTROL, "negotiate", len(data)))
    return events
