"""What every application protocol reader shares: the interface, and bodies held to their end.

A reader sees one connection, both directions. It is fed whole WebSocket
messages, or HTTP bodies piece by piece; it returns
:class:`~inspector.events.FrameworkMessage` values whose sizes add up to what
it was fed (for a WebSocket message, that message's length; for a body, the
body's length over all its pieces).

Most HTTP transports of these protocols answer a request with a short body
(a poll's packets, a POST's ``ok``), so the default is to hold a body until
its end, up to :data:`BODY_LIMIT` bytes, and read it whole. A longer body is
counted as one ``"unparsed"`` control message. Readers that read streams as
they arrive (SockJS) override :meth:`FrameworkReader.body_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qsl, urlsplit

from ..events import FrameworkEvent, FrameworkMessage, FrameworkProblem, MessageKind
from ..wire import Direction

#: The most bytes of one body a reader holds.
BODY_LIMIT = 1024 * 1024

APPLICATION = MessageKind.APPLICATION
CONTROL = MessageKind.CONTROL


@dataclass(frozen=True, slots=True)
class Request:
    """The request an HTTP body belongs to (the body of the request itself, or of its response).

    Empty strings when the reader was not told (:meth:`FrameworkReader.start_body`
    was not called): the body is then read by its shape.
    """

    method: str = ""
    target: str = ""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    def query(self, name: str) -> str | None:
        """The first value of a query parameter, or None."""
        return query_value(self.target, name)


def query_value(target: str, name: str) -> str | None:
    """The first value of the query parameter ``name`` of a request target, or None."""
    for key, value in parse_qsl(urlsplit(target).query, keep_blank_values=True):
        if key == name:
            return value
    return None


def malformed(direction: Direction, size: int, reason: str) -> list[FrameworkEvent]:
    """A problem, and the bytes it concerns counted as a control message."""
    return [FrameworkProblem(direction, reason), FrameworkMessage(direction, CONTROL, "malformed", size)]


@dataclass(slots=True)
class _HeldBody:
    request: Request
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    #: The body outgrew :data:`BODY_LIMIT`; chunks are no longer kept.
    too_long: bool = False


class FrameworkReader:
    """Reads one connection's messages of one application protocol.

    Subclasses read WebSocket messages (:meth:`websocket_message`) and whole
    bodies (:meth:`read_body`); the default :meth:`read_body` counts a body as
    one control message, for protocols that carry nothing of theirs over plain
    HTTP.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self._bodies: dict[Direction, _HeldBody] = {}

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        """Read one whole (decompressed) WebSocket message."""
        raise NotImplementedError

    def start_body(self, direction: Direction, method: str, target: str) -> None:
        """Say which request the next body in ``direction`` belongs to.

        Call it before the body's first :meth:`body_data` (also for an empty
        body), with the request's method and target, for the request's body and
        for its response's. Without it a body is read by its shape alone, which
        cannot tell everything: Engine.IO's answer to a polling POST (``ok``),
        or which SockJS transport a response streams.
        """
        self._bodies[direction] = _HeldBody(Request(method, target))

    def body_data(self, direction: Direction, data: bytes) -> list[FrameworkEvent]:
        """Take the next piece of the body in ``direction``."""
        body = self._bodies.get(direction)
        if body is None:
            body = self._bodies[direction] = _HeldBody(Request())
        body.size += len(data)
        if body.too_long:
            return []
        if body.size > BODY_LIMIT:
            body.too_long = True
            body.chunks.clear()
            return [FrameworkProblem(direction, f"{self.name} body longer than {BODY_LIMIT} bytes: not read")]
        body.chunks.append(data)
        return []

    def body_end(self, direction: Direction) -> list[FrameworkEvent]:
        """The body in ``direction`` ended; the next one starts afresh."""
        body = self._bodies.pop(direction, None)
        if body is None or not body.size:
            return []
        if body.too_long:
            return [FrameworkMessage(direction, CONTROL, "unparsed", body.size)]
        return self.read_body(direction, body.request, b"".join(body.chunks))

    def read_body(self, direction: Direction, request: Request, data: bytes) -> list[FrameworkEvent]:
        """Read one whole, non-empty body."""
        return [FrameworkMessage(direction, CONTROL, "http_body", len(data))]
