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


class _GraphQLReader(FrameworkReader):
    """One JSON object per WebSocket message, named by its ``type``."""

    #: The message types that carry results; every other known type is control.
    results: frozenset[str]
    known: frozenset[str]

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        if not text:
            return malformed(direction, len(data), f"{self.name}: a binary message")
        try:
            message = json.loads(data)
        except (ValueError, RecursionError):
            message = None
        kind = message.get("type") if isinstance(message, dict) else None
        if not isinstance(kind, str):
            return malformed(direction, len(data), f"{self.name} message is not a JSON object with a type")
        if kind in self.results:
            return [FrameworkMessage(direction, APPLICATION, kind, len(data))]
        events: list[FrameworkEvent] = [FrameworkMessage(direction, CONTROL, kind, len(data))]
        if kind not in self.known:
            events.insert(0, FrameworkProblem(direction, f"{self.name}: unknown message type {kind!r}"))
        return events


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
