"""The events the wire parsers speak, in one place.

Every parser takes bytes and timestamps and returns a list of these small
values: the HTTP/1.1 parser (:mod:`inspector.http1`) and the HTTP/2
parser (:mod:`inspector.http2`) speak the same message events, keyed by
exchange (a request number, or a stream id), and add their own; the
WebSocket, SSE and line-stream readers speak theirs. The per-connection
accounting (:mod:`inspector.connection`) is the one consumer.

Nothing changes an event once it is made. Those made for every message, frame
or body piece are plain slotted dataclasses all the same, not frozen ones: a
frozen dataclass costs several times as much to make (each field is set through
``object.__setattr__``), and a large capture makes millions of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from wsproto.frame_protocol import Opcode

from .wire import Anomaly, Category, Direction, Http2Counts

# -- HTTP/1.1 (and the parts of a message HTTP/2 shares) -------------------


Headers = tuple[tuple[str, str], ...]


def header_value(headers: Headers, name: str) -> str | None:
    """The first value of a header (names are lower-case), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


@dataclass(slots=True)
class RequestHead:
    """A request line and its header fields; ``exchange`` numbers requests from 0."""

    exchange: int
    method: str
    target: str
    http_version: str
    headers: Headers
    size: int
    timestamp: float

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name.lower())


@dataclass(slots=True)
class ResponseHead:
    """A status line and its header fields; ``interim`` for 1xx responses."""

    exchange: int
    status: int
    reason: str
    http_version: str
    headers: Headers
    size: int
    timestamp: float

    @property
    def interim(self) -> bool:
        return self.status < 200

    def header(self, name: str) -> str | None:
        return header_value(self.headers, name.lower())


@dataclass(slots=True)
class BodyData:
    """A piece of a message body. ``data`` is the payload after de-chunking;
    ``framing`` counts the chunk-size lines and CRLFs consumed with it."""

    direction: Direction
    #: The exchange this belongs to (None before the first request).
    exchange: int | None
    data: bytes
    framing: int
    chunk_start: bool
    chunk_end: bool
    timestamp: float


@dataclass(slots=True)
class MessageEnd:
    """The end of a request or response; ``framing`` is the last chunk and trailers."""

    direction: Direction
    #: The exchange this belongs to (None before the first request).
    exchange: int | None
    framing: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class ProtocolSwitch:
    """The connection left HTTP (101 Switching Protocols or a 2xx answer to CONNECT).

    ``data`` holds the bytes that followed the head in that direction; every
    later byte of the direction belongs to the new protocol too.
    """

    direction: Direction
    #: The exchange this belongs to (None before the first request).
    exchange: int | None
    data: bytes
    timestamp: float


@dataclass(slots=True)
class Unparsed:
    """Bytes this parser will not interpret (after an anomaly, or an incomplete tail)."""

    direction: Direction
    #: The exchange this belongs to (None before the first request).
    exchange: int | None
    size: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class ParseFailure:
    """The direction stopped parsing; ``anomaly`` says where and why."""

    anomaly: Anomaly


HttpEvent = RequestHead | ResponseHead | BodyData | MessageEnd | ProtocolSwitch | Unparsed | ParseFailure


# -- HTTP/2 ----------------------------------------------------------------


@dataclass(slots=True)
class FrameBytes:
    """Bytes of HTTP/2 frames that are neither a head nor body data.

    Frame headers and padding of HEADERS and CONTINUATION frames, trailers and
    control frames are :attr:`~inspector.wire.Category.CHUNK_FRAMING` or
    :attr:`~inspector.wire.Category.CONTROL`; ``exchange`` is the stream, or
    None for the connection's own bytes (the preface, stream 0, and streams no
    longer followed).
    """

    direction: Direction
    exchange: int | None
    category: Category
    size: int
    timestamp: float


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """A stream closed: both sides ended it, or one reset it. Nothing more will be added to it."""

    exchange: int
    reset: bool
    timestamp: float


@dataclass(frozen=True, slots=True)
class Trailers:
    """The fields of a trailer section (a header block after a message's head).

    It carries no bytes: the block's are in a :class:`FrameBytes` as framing.
    """

    direction: Direction
    exchange: int
    headers: Headers
    timestamp: float


Http2Event = (
    RequestHead | ResponseHead | BodyData | MessageEnd | FrameBytes | StreamEnd | Trailers | Unparsed | ParseFailure
)


@dataclass(frozen=True, slots=True)
class H2cUpgrade:
    """The server accepted an h2c Upgrade: HTTP/1.1 exchange ``exchange`` goes on as
    HTTP/2 stream 1, and the events that follow are HTTP/2's. ``stream_counts``
    are stream 1's running frame figures (the same object as they grow)."""

    exchange: int
    stream_counts: Http2Counts
    timestamp: float


# -- HTTP/3 and WebTransport ----------------------------------------------
#
# The HTTP/3 parser (:mod:`inspector.http3`) speaks the HTTP/2 events above,
# keyed by the request stream's id: heads, body data (a DATA frame's type and
# length are its ``framing``), each message's end when its direction of the
# stream finishes, :class:`FrameBytes` for the rest of its frames (``exchange``
# None for the control and QPACK streams), :class:`StreamEnd`. A WebTransport
# session is the exchange of its extended CONNECT; its streams' and datagrams'
# bytes come as the two events below.


@dataclass(slots=True)
class WebTransportBytes:
    """Bytes of a WebTransport session's stream or DATAGRAM.

    ``framing`` is what opened the stream (its type and session id) in the
    stream's first piece, or a datagram's quarter stream id; ``payload`` is what
    the application gets.
    """

    direction: Direction
    #: The session: the stream id of its extended CONNECT.
    exchange: int
    #: The WebTransport stream, or None for a datagram.
    stream_id: int | None
    framing: int
    payload: int
    timestamp: float


@dataclass(slots=True)
class WebTransportMessage:
    """One WebTransport message: a DATAGRAM, or one direction of a stream, once it ended.

    It carries no bytes of its own (they came as :class:`WebTransportBytes`).
    """

    direction: Direction
    exchange: int
    #: The stream, or None for a datagram.
    stream_id: int | None
    wire_bytes: int
    payload_bytes: int
    #: When its first byte arrived.
    first_timestamp: float
    timestamp: float
    #: The stream was reset, not finished.
    reset: bool = False


Http3Event = Http2Event | WebTransportBytes | WebTransportMessage

#: What :class:`~inspector.http_connection.HttpConnection` hands on: any version's events.
ConnectionEvent = HttpEvent | Http2Event | H2cUpgrade | WebTransportBytes | WebTransportMessage


# -- WebSocket -------------------------------------------------------------


@dataclass(slots=True)
class WebSocketMessage:
    """A complete text or binary message, reassembled from its frames."""

    direction: Direction
    opcode: Opcode
    frames: int
    #: All its frames as on the wire: headers, masking keys and payload.
    wire_bytes: int
    #: Payload as on the wire (compressed when ``compressed``).
    wire_payload_bytes: int
    #: Payload the application received: after inflating, when compressed.
    payload_bytes: int
    compressed: bool
    #: When the header of its first frame was complete.
    first_timestamp: float
    #: When its last frame was complete.
    timestamp: float
    #: What the application received (inflated), when the stream was asked to keep it:
    #: at most :data:`~inspector.websocket.CONTENT_LIMIT` bytes of it.
    content: bytes | None = None


@dataclass(slots=True)
class ControlFrame:
    """A ping, pong or close frame."""

    direction: Direction
    opcode: Opcode
    wire_bytes: int
    payload_bytes: int
    timestamp: float
    #: The status code of a close frame that has one.
    close_code: int | None = None
    #: The reason text of a close frame that has a status code (possibly "").
    close_reason: str | None = None


WebSocketEvent = WebSocketMessage | ControlFrame


# -- Server-Sent Events ----------------------------------------------------


@dataclass(slots=True)
class SseEvent:
    """One dispatched event, with what it cost on the wire."""

    #: ``"message"`` unless an ``event`` field named it.
    type: str
    #: The data lines joined with ``"\\n"``.
    data: str
    #: The stream's last event ID when this event was dispatched (``id`` fields persist).
    last_event_id: str
    #: The reconnection time a ``retry`` field set since the previous blank line, if any.
    retry: int | None
    #: Body bytes from the end of the previous event (or the start of the body) up to
    #: and including this event's dispatching blank line: comments and blank lines in
    #: between are part of the event that follows them.
    wire_bytes: int
    #: Bytes of :attr:`data` as they were on the wire, the joining LFs included: its
    #: :attr:`Category.PAYLOAD` (``len(data.encode())`` when the data is valid UTF-8).
    payload_bytes: int
    #: When the chunk holding the dispatching line end (its first byte) arrived.
    timestamp: float


# -- Line streams ----------------------------------------------------------


@dataclass(slots=True)
class StreamMessage:
    """One message of a non-SSE HTTP stream."""

    #: The message and its line end.
    wire_bytes: int
    #: The message without its line end.
    payload_bytes: int
    #: When the chunk that completed the message arrived.
    timestamp: float


# -- Application protocols -------------------------------------------------


class MessageKind(enum.StrEnum):
    """Whether an application protocol's message is the application's or the protocol's own."""

    #: What the application's handlers receive or send: an event, a published message.
    APPLICATION = "application"
    #: Handshakes, heartbeats, transport acknowledgements, subscription control.
    CONTROL = "control"


@dataclass(frozen=True, slots=True)
class FrameworkMessage:
    """One message of an application protocol, or a piece of one, in a carrier payload.

    The carrier is a WebSocket message or an HTTP body. The sizes of the
    messages read from one carrier add up to its length: separators, envelopes
    and bytes that could not be interpreted (``type`` ``"malformed"``) all
    belong to some message.
    """

    direction: Direction
    kind: MessageKind
    #: The protocol's own name for it: ``"EVENT"``, ``"ping"``, ``"next"``, ``"PUBLISH"``.
    type: str
    #: Bytes of the carrier it took, its separators included.
    size: int
    #: False for a piece of a message already counted: a Socket.IO binary
    #: attachment, the rest of an MQTT packet that spans WebSocket messages.
    counted: bool = True


@dataclass(frozen=True, slots=True)
class FrameworkProblem:
    """Something an application protocol reader found malformed; its bytes are still counted."""

    direction: Direction
    #: What was malformed and where.
    reason: str


@dataclass(frozen=True, slots=True)
class SessionId:
    """The protocol named the session this connection belongs to.

    Engine.IO's ``sid`` in its open packet; SignalR's connection token in the
    answer to a negotiate request. Later requests name it in their URL (see
    :func:`inspector.app_protocols.session_key`).
    """

    id: str


FrameworkEvent = FrameworkMessage | FrameworkProblem | SessionId
