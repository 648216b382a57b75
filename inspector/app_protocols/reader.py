"""What every application protocol reader shares: the interface, and bodies held to their end.

A reader sees one connection, both directions. It is fed whole WebSocket
messages, or HTTP bodies piece by piece; it returns
:class:`~inspector.events.FrameworkMessage` values whose sizes add up to what
it was fed (for a WebSocket message, that message's length; for a body, the
body's length over all its pieces).

Most HTTP transports of these protocols answer a request with a short body
(a poll's packets, a POST's ``ok``), so the default is to hold a body until
its end, up to :data:`BODY_LIMIT` bytes, and read it whole. Streams (SockJS's
frames, SignalR's records) are cut into units as they arrive, each held until
its terminator. A body, or a unit, longer than the limit is counted from its
start on as one ``"unparsed"`` control message.
"""

from __future__ import annotations

from dataclasses import dataclass
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


class Units:
    """A body cut into units that each end with ``terminator``, only the unfinished one held.

    Without a terminator the whole body is one unit. A unit longer than
    :data:`BODY_LIMIT` ends the cutting: from its start on, the body is only
    counted (:attr:`overflow`). Which units come out, and where an overflow
    starts, does not depend on how the body was split into pieces.
    """

    __slots__ = ("_held", "_searched", "overflow", "terminator")

    def __init__(self, terminator: bytes | None = None) -> None:
        self.terminator = terminator
        #: Bytes counted from the start of a unit longer than BODY_LIMIT (0 until there is one).
        self.overflow = 0
        self._held = bytearray()
        # Where the search for the terminator resumes within the held bytes.
        self._searched = 0

    def feed(self, data: bytes) -> tuple[list[bytes], bool]:
        """The units ``data`` completed, and whether a unit longer than BODY_LIMIT began to be counted."""
        if self.overflow:
            self.overflow += len(data)
            return [], False
        held = self._held
        held += data
        units: list[bytes] = []
        start = 0
        if self.terminator is not None:
            while (end := held.find(self.terminator, self._searched)) >= 0:
                end += len(self.terminator)
                if end - start > BODY_LIMIT:
                    break
                units.append(bytes(held[start:end]))
                start = self._searched = end
            del held[:start]
            self._searched = max(0, len(held) - len(self.terminator) + 1)
        if len(held) > BODY_LIMIT:
            self.overflow = len(held)
            held.clear()
            return units, True
        return units, False

    def rest(self) -> bytes:
        """The unfinished unit, at the body's end (the whole body without a terminator)."""
        return bytes(self._held)


@dataclass(slots=True)
class Body:
    """One body in progress: the request it belongs to, and its units."""

    request: Request
    units: Units
    #: Bytes fed so far.
    size: int = 0
    #: Units read so far.
    read: int = 0


class FrameworkReader:
    """Reads one connection's messages of one application protocol.

    Subclasses read WebSocket messages (:meth:`websocket_message`) and bodies
    (:meth:`read_body`, given whole or unit by unit as :meth:`body_terminator`
    says); the default :meth:`read_body` counts a body as one control message,
    for protocols that carry nothing of theirs over plain HTTP.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self._bodies: dict[Direction, Body] = {}

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
        request = Request(method, target)
        self._bodies[direction] = Body(request, Units(self.body_terminator(direction, request)))

    def body_data(self, direction: Direction, data: bytes) -> list[FrameworkEvent]:
        """Take the next piece of the body in ``direction``."""
        body = self._bodies.get(direction)
        if body is None:
            self.start_body(direction, "", "")
            body = self._bodies[direction]
        if not body.size and data:
            self.body_starts(body, data)
        body.size += len(data)
        units, overflowed = body.units.feed(data)
        events: list[FrameworkEvent] = []
        for unit in units:
            events += self.read_body(direction, body, unit)
            body.read += 1
        if overflowed:
            events.append(
                FrameworkProblem(direction, f"{self.name}: more than {BODY_LIMIT} bytes of a body in one piece")
            )
        return events

    def body_end(self, direction: Direction) -> list[FrameworkEvent]:
        """The body in ``direction`` ended; the next one starts afresh."""
        body = self._bodies.pop(direction, None)
        if body is None:
            return []
        if body.units.overflow:
            return [FrameworkMessage(direction, CONTROL, "unparsed", body.units.overflow)]
        rest = body.units.rest()
        return self.read_body(direction, body, rest) if rest else []

    def body_terminator(self, direction: Direction, request: Request) -> bytes | None:
        """What ends each unit of a body, to read it as it arrives; None to read it whole at its end."""
        return None

    def body_starts(self, body: Body, data: bytes) -> None:
        """A body's first bytes arrived: a reader may choose its terminator by them."""

    def read_body(self, direction: Direction, body: Body, data: bytes) -> list[FrameworkEvent]:
        """Read a whole body, or one unit of it (its terminator included; unended at the body's end)."""
        return [FrameworkMessage(direction, CONTROL, "http_body", len(data))]
