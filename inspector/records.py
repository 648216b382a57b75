"""What the per-connection accounting hands on for each exchange.

An :class:`ExchangeRecord` is one request and its response (or one HTTP/2
stream, or a WebSocket session after its Upgrade), accounted to the byte. The
classifier decides its transport from it and the totals fold it; neither
needs anything else from the connection that produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .checked import fields, whole
from .events import RequestHead, ResponseHead
from .stats import Distribution
from .websocket import DeflateParams
from .wire import BodyKind, ByteAccount, Category, Direction, Http2Counts, Http3Counts, counts_from_json, counts_to_json

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


class MessageTime(NamedTuple):
    """When a message arrived and the wire bytes that carried it (a point on the time line)."""

    time: float
    direction: Direction
    wire_bytes: int


@dataclass(frozen=True, slots=True)
class WebSocketCounts:
    """Frame counts of one WebSocket session, by direction."""

    data_frames: dict[Direction, int]
    control_frames: dict[Direction, int]
    compressed_messages: dict[Direction, int]
    deflate: DeflateParams | None
    close_codes: dict[Direction, int | None]


def _per_direction() -> dict[Direction, int]:
    return {C2S: 0, S2C: 0}


@dataclass(slots=True)
class WebTransportCounts:
    """WebTransport sessions' streams and DATAGRAMs, by the direction they carried data."""

    sessions: int = 0
    streams: dict[Direction, int] = field(default_factory=_per_direction)
    datagrams: dict[Direction, int] = field(default_factory=_per_direction)
    #: DATAGRAM payloads the application got.
    datagram_bytes: dict[Direction, int] = field(default_factory=_per_direction)

    def merge(self, other: WebTransportCounts) -> None:
        self.sessions += other.sessions
        for direction in Direction:
            self.streams[direction] += other.streams[direction]
            self.datagrams[direction] += other.datagrams[direction]
            self.datagram_bytes[direction] += other.datagram_bytes[direction]

    def copy(self) -> WebTransportCounts:
        twin = WebTransportCounts()
        twin.merge(self)
        return twin

    def to_json(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "streams": counts_to_json(self.streams),
            "datagrams": counts_to_json(self.datagrams),
            "datagram_bytes": counts_to_json(self.datagram_bytes),
        }

    @classmethod
    def from_json(cls, state: object) -> WebTransportCounts:
        state = fields(state, "WebTransport figures")
        return cls(
            sessions=whole(state.get("sessions"), "sessions"),
            streams=counts_from_json(state.get("streams"), "streams"),
            datagrams=counts_from_json(state.get("datagrams"), "datagrams"),
            datagram_bytes=counts_from_json(state.get("datagram_bytes"), "datagram_bytes"),
        )


@dataclass(slots=True)
class ExchangeRecord:
    """One request and its response (and, after an Upgrade, the WebSocket session).

    ``stream_messages`` are the messages inside the response body (SSE events,
    NDJSON lines, transfer-coding chunks) or the WebSocket messages; whether
    they or the exchange itself count as the messages depends on the transport.

    Nothing changes a record once it is made; it is not a frozen dataclass only
    because one is made for every exchange, and a frozen one costs several times
    as much to make.
    """

    index: int
    request: RequestHead | None
    response: ResponseHead | None
    interim: tuple[ResponseHead, ...]
    body_kind: BodyKind
    accounts: dict[Direction, ByteAccount]
    request_ended_at: float | None
    response_ended_at: float | None
    first_body_at: float | None
    last_body_at: float | None
    #: Messages inside the body or WebSocket session, by direction.
    stream_messages: dict[Direction, int]
    #: Payload the application received from those messages (decompressed for WebSocket).
    stream_payload: dict[Direction, int]
    #: Wire bytes attributed to each stream message.
    stream_message_sizes: Distribution
    #: Messages the application received, by direction (see :mod:`inspector.app_messages`).
    app_messages: dict[Direction, int]
    #: Seconds between consecutive server-to-client stream messages.
    inter_arrival: Distribution
    first_server_message_at: float | None
    timeline: tuple[MessageTime, ...]
    websocket: WebSocketCounts | None = None
    #: HTTP/2 frame figures of the stream (None over HTTP/1.1).
    http2: Http2Counts | None = None
    #: HTTP/3 figures of the stream, and of a WebTransport session's streams and DATAGRAMs (None unless HTTP/3).
    http3: Http3Counts | None = None
    webtransport: WebTransportCounts | None = None
    #: The application protocol its messages spoke (``socket.io``, ``graphql-ws``, ...), if one was recognised.
    app_protocol: str | None = None
    #: That protocol's messages of its own (handshakes, heartbeats, acknowledgements), by direction.
    control_messages: dict[Direction, int] = field(default_factory=lambda: {C2S: 0, S2C: 0})
    #: The session the exchange belongs to, as the protocol names it (an Engine.IO sid, a SockJS session).
    session: str | None = None
    #: The transport the protocol's URL says the exchange is (Engine.IO's ``transport=polling``: long_poll).
    app_transport: str | None = None

    @property
    def wire_bytes(self) -> int:
        return self.accounts[C2S].total + self.accounts[S2C].total

    def stream_messages_total(self) -> int:
        return self.stream_messages[C2S] + self.stream_messages[S2C]

    def head_bytes(self) -> int:
        return self.accounts[C2S][Category.HEAD] + self.accounts[S2C][Category.HEAD]

    @property
    def response_wait(self) -> float | None:
        """Seconds the server held the request before its response head."""
        if self.response is None or self.request is None:
            return None
        asked = self.request_ended_at if self.request_ended_at is not None else self.request.timestamp
        return max(0.0, self.response.timestamp - asked)
