"""Phoenix channels over WebSocket, with the V2 serializer (and V1's objects).

A V2 text message is ``[join_ref, ref, topic, event, payload]``; V1 sends the
same as an object with ``topic``, ``event``, ``payload`` and ``ref``. A V2
binary message starts with its kind: 0 push, 1 reply, 2 broadcast, then the
lengths of its strings, the strings, and the payload.

Control is the channel machinery: everything on the ``phoenix`` topic (the
heartbeat) and the events ``phx_join``, ``phx_leave``, ``phx_reply``,
``phx_error`` and ``phx_close``. Every other event (a push the client sends,
a broadcast or push from the server) is the application's, named by its event.
"""

from __future__ import annotations

import json
from typing import Any

from ..events import FrameworkEvent, FrameworkMessage
from ..wire import Direction
from .reader import APPLICATION, CONTROL, FrameworkReader, malformed

_CONTROL_EVENTS = frozenset({"phx_join", "phx_leave", "phx_reply", "phx_error", "phx_close"})
_PUSH, _REPLY, _BROADCAST = 0, 1, 2


def topic_and_event(data: bytes) -> tuple[str, str] | None:
    """The topic and event of a text message, V2 or V1, or None when it is neither."""
    try:
        message: Any = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if isinstance(message, list) and len(message) == 5:
        topic, event = message[2], message[3]
    elif isinstance(message, dict):
        topic, event = message.get("topic"), message.get("event")
    else:
        return None
    if not isinstance(topic, str) or not isinstance(event, str):
        return None
    return topic, event


def _binary_event(direction: Direction, data: bytes) -> str | None:
    """The event of a V2 binary message, or None when it is not one.

    A client's push carries a join_ref, a ref, a topic and an event (four
    lengths); a server's push has no ref (three); a broadcast has a topic and
    an event (two); a reply's event is ``phx_reply``.
    """
    kind = data[0] if data else None
    if kind == _REPLY and len(data) >= 5:
        return "phx_reply"
    if kind == _PUSH and direction is Direction.CLIENT_TO_SERVER and len(data) >= 5:
        start = 5 + data[1] + data[2] + data[3]
        end = start + data[4]
    elif kind == _PUSH and len(data) >= 4:
        start = 4 + data[1] + data[2]
        end = start + data[3]
    elif kind == _BROADCAST and len(data) >= 3:
        start = 3 + data[1]
        end = start + data[2]
    else:
        return None
    if end > len(data):
        return None
    return data[start:end].decode("utf-8", "replace")


class PhoenixReader(FrameworkReader):
    """Reads Phoenix channel messages from WebSocket messages."""

    name = "phoenix"

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        if text:
            found = topic_and_event(data)
            if found is None:
                return malformed(direction, len(data), "Phoenix message is not [join_ref, ref, topic, event, payload]")
            topic, event = found
        else:
            binary_event = _binary_event(direction, data)
            if binary_event is None:
                return malformed(direction, len(data), "Phoenix binary message of an unknown kind or too short")
            topic, event = "", binary_event
        kind = CONTROL if topic == "phoenix" or event in _CONTROL_EVENTS else APPLICATION
        return [FrameworkMessage(direction, kind, event, len(data))]
