"""Rails Action Cable over WebSocket (``actioncable-v1-json``).

Every message is one JSON object. The server's ``type`` names its control
messages: ``welcome``, ``ping`` (every three seconds), ``confirm_subscription``,
``reject_subscription``, ``disconnect``; a message without a ``type`` that has
an ``identifier`` and a ``message`` is a broadcast to a subscription, the
application's (type ``"message"``). The client's ``command`` is ``subscribe``
or ``unsubscribe`` (control) or ``message`` (the application's: it performs a
channel action).
"""

from __future__ import annotations

import json
from typing import Any

from ..events import FrameworkEvent, FrameworkMessage, FrameworkProblem
from ..wire import Direction
from .reader import APPLICATION, CONTROL, FrameworkReader, malformed

_SERVER_TYPES = frozenset({"welcome", "ping", "confirm_subscription", "reject_subscription", "disconnect"})
_CLIENT_COMMANDS = frozenset({"subscribe", "unsubscribe"})


class ActionCableReader(FrameworkReader):
    """Reads Action Cable messages from WebSocket messages."""

    name = "actioncable"

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        try:
            message: Any = json.loads(data)
        except (ValueError, RecursionError):
            message = None
        if not isinstance(message, dict):
            return malformed(direction, len(data), "Action Cable message is not a JSON object")
        size = len(data)
        if direction is Direction.SERVER_TO_CLIENT:
            name = message.get("type")
            if name is None and "identifier" in message and "message" in message:
                return [FrameworkMessage(direction, APPLICATION, "message", size)]
            known = name in _SERVER_TYPES
        else:
            name = message.get("command")
            if name == "message":
                return [FrameworkMessage(direction, APPLICATION, "message", size)]
            known = name in _CLIENT_COMMANDS
        if not isinstance(name, str):
            return malformed(direction, size, "Action Cable message names no type, command or subscription")
        problems: list[FrameworkEvent] = (
            [] if known else [FrameworkProblem(direction, f"Action Cable: unknown {name!r}")]
        )
        return [*problems, FrameworkMessage(direction, CONTROL, name, size)]
