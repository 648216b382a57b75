"""GraphQL over WebSocket, in both subprotocols a server may accept.

Every message is one JSON object whose ``type`` names it. The application's
messages are the results an operation delivers: ``next`` in
``graphql-transport-ws`` (the graphql-ws library), ``data`` in the older
``graphql-ws`` (subscriptions-transport-ws). The rest is control: the
connection's handshake and keep-alives, and the starting and stopping of
operations (``subscribe``, ``start``, ``stop``, ``complete``), ``error``
included.
"""

from __future__ import annotations

import json

from ..events import FrameworkEvent, FrameworkMessage, FrameworkProblem
from ..wire import Direction
from .reader import APPLICATION, CONTROL, FrameworkReader, malformed


def _message_type(direction: Direction, data: bytes, protocol: str) -> tuple[str | None, list[FrameworkEvent]]:
    """The ``type`` of a message, or None and the problem when it has none."""
    try:
        message = json.loads(data)
    except (ValueError, RecursionError):
        return None, [FrameworkProblem(direction, f"{protocol} message is not JSON")]
    kind = message.get("type") if isinstance(message, dict) else None
    if not isinstance(kind, str):
        return None, [FrameworkProblem(direction, f"{protocol} message has no type")]
    return kind, []


class _GraphQLReader(FrameworkReader):
    #: The message types that carry results; every other known type is control.
    results: frozenset[str]
    known: frozenset[str]

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        if not text:
            return malformed(direction, len(data), f"{self.name}: a binary message")
        kind, problems = _message_type(direction, data, self.name)
        if kind is None:
            return [*problems, FrameworkMessage(direction, CONTROL, "malformed", len(data))]
        if kind in self.results:
            return [FrameworkMessage(direction, APPLICATION, kind, len(data))]
        if kind not in self.known:
            problems.append(FrameworkProblem(direction, f"{self.name}: unknown message type {kind!r}"))
        return [*problems, FrameworkMessage(direction, CONTROL, kind, len(data))]


class GraphQLTransportWsReader(_GraphQLReader):
    """``graphql-transport-ws``: ``next`` is the application's."""

    name = "graphql-transport-ws"
    results = frozenset({"next"})
    known = frozenset({"connection_init", "connection_ack", "ping", "pong", "subscribe", "error", "complete"})


class GraphQLWsReader(_GraphQLReader):
    """The older ``graphql-ws`` (subscriptions-transport-ws): ``data`` is the application's."""

    name = "graphql-ws"
    results = frozenset({"data"})
    known = frozenset(
        {
            "connection_init",
            "connection_ack",
            "connection_error",
            "connection_terminate",
            "ka",
            "start",
            "stop",
            "error",
            "complete",
        }
    )
