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
comment line (the server's first bytes) is control.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..events import FrameworkEvent, FrameworkMessage, FrameworkProblem, SessionId
from ..wire import Direction
from .reader import APPLICATION, CONTROL, FrameworkReader, Request, malformed

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
        return self._records(direction, data, 0, 0)

    def read_body(self, direction: Direction, request: Request, data: bytes) -> list[FrameworkEvent]:
        if request.path.endswith("/negotiate"):
            return _negotiate(direction, data)
        if data.startswith(b"data:") or data.startswith(b":"):
            return self._event_stream(direction, data)
        return self._records(direction, data, 0, 0)

    def _event_stream(self, direction: Direction, data: bytes) -> list[FrameworkEvent]:
        """Records in the data of Server-Sent Events (one data line each, as the server writes them)."""
        events: list[FrameworkEvent] = []
        start = 0
        for match in _SSE_EVENT.finditer(data):
            if match.start() != start:
                events += malformed(direction, match.start() - start, "SignalR event stream: not a data event")
            if match[1] is None:
                events.append(FrameworkMessage(direction, CONTROL, "comment", match.end() - match.start()))
            else:
                events += self._records(direction, match[1], match.start(1) - match.start(), match.end() - match.end(1))
            start = match.end()
        if start < len(data):
            events += malformed(direction, len(data) - start, "SignalR event stream: not a data event")
        return events

    def _records(self, direction: Direction, data: bytes, before: int, after: int) -> list[FrameworkEvent]:
        """The records of ``data``; ``before`` and ``after`` bytes of an envelope go with the first and last."""
        events: list[FrameworkEvent] = []
        records = data.split(_RECORD_SEPARATOR)
        tail = records.pop()
        for number, record in enumerate(records, 1):
            size = (
                len(record) + 1 + (before if number == 1 else 0) + (after if number == len(records) and not tail else 0)
            )
            events += self._record(direction, record, size, number)
        if tail or (not records and before + after):
            events += malformed(
                direction, len(tail) + after + (before if not records else 0), "SignalR record without its \\x1e"
            )
        return events

    def _record(self, direction: Direction, record: bytes, size: int, number: int) -> list[FrameworkEvent]:
        try:
            message: Any = json.loads(record)
        except (ValueError, RecursionError):
            return malformed(direction, size, f"SignalR record {number}: not JSON")
        if not isinstance(message, dict):
            return malformed(direction, size, f"SignalR record {number}: not a JSON object")
        record_type = message.get("type")
        if record_type is None and direction not in self._handshaken:
            self._handshaken.add(direction)
            return [FrameworkMessage(direction, CONTROL, "handshake", size)]
        self._handshaken.add(direction)
        if type(record_type) is not int or record_type not in _RECORD_TYPES:
            return malformed(direction, size, f"SignalR record {number}: unknown type {record_type!r}")
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
