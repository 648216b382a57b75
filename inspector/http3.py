"""HTTP/3 as seen from its QUIC streams: both directions of one connection, passively.

The proxy hands over each QUIC stream's decrypted bytes by stream id and each
DATAGRAM frame's payload; this parser reads HTTP/3 (RFC 9114) and WebTransport
(draft-02, as Chromium and aioquic speak it) from them and speaks the events
of :mod:`inspector.http2`, keyed by the request stream's id.

What the streams are, from their ids and first bytes:

- A client-initiated bidirectional stream is a **request stream** (an
  exchange, keyed by its id) unless it starts with WEBTRANSPORT_STREAM
  (0x41) and a session id. HEADERS frames carry QPACK field sections: the
  first in each direction is the head (:class:`RequestHead`,
  :class:`ResponseHead`, 1xx interim heads allowed), whose ``size`` is the
  field section as on the wire; a later one is a trailer section
  (:class:`Trailers`, its bytes framing). DATA frames are
  :class:`BodyData`, with the frame's type and length varints as ``framing``
  of the piece that completes them. The type and length of every other
  frame are :attr:`~Category.CHUNK_FRAMING` and its payload
  :attr:`~Category.CONTROL`, in :class:`FrameBytes`. When a direction
  finishes, its message ends (:class:`MessageEnd`); when both did, or
  either was reset, the stream ends (:class:`StreamEnd`).
- The **control stream** of each side (unidirectional type 0x00): its type
  and every frame on it (SETTINGS, GOAWAY, MAX_PUSH_ID, CANCEL_PUSH,
  PRIORITY_UPDATE, reserved and unknown frames) are the connection's
  :attr:`~Category.CONTROL` bytes (:class:`FrameBytes` with no exchange).
- The **QPACK encoder and decoder streams** (0x02, 0x03) are the
  connection's :attr:`~Category.HEAD` bytes: what a dynamic table saves in
  the field sections, it costs here.
- **Push streams** (0x01) belong to no request this parser follows: their
  type and push id are CONTROL, frame types and lengths CHUNK_FRAMING, field
  sections HEAD (not decoded) and DATA payload
  :attr:`~Category.PAYLOAD`, all with no exchange. A PUSH_PROMISE frame on a
  request stream is CONTROL.
- **WebTransport**: a request stream whose extended CONNECT names
  ``:protocol`` webtransport is a session. Its bidirectional streams (0x41
  and the session id, opened by either side) and unidirectional streams
  (type 0x54 and the session id), and the DATAGRAMs whose quarter stream id
  names it, come as :class:`WebTransportBytes` keyed by the session (the
  stream header or the quarter stream id is ``framing``, the rest
  ``payload``), and as one :class:`WebTransportMessage` per datagram and per
  stream direction when it ends. A DATAGRAM naming another request stream
  is counted on that stream the same way; one naming no stream is the
  connection's (:class:`Unparsed`), and a WebTransport stream naming no
  session is the connection's CONTROL, each with an anomaly.
- Reserved and unknown unidirectional stream types, a second control or
  QPACK stream, a server-initiated bidirectional stream that is not
  WebTransport: their bytes are counted as the connection's CONTROL, not
  read. Bytes of a stream no longer followed (after it ended or was reset,
  past the limits below, the receiving side of a unidirectional stream)
  are the connection's :class:`Unparsed`.

Each unidirectional stream's type (and a push or WebTransport stream's id
after it) is counted in ``stream_type_bytes``, whatever its category; the rest
of the QPACK streams in ``qpack_stream_bytes``.

Streams are seen in the order the proxy read them, not as either endpoint
did: a response's field section may name QPACK inserts read later, a request
may come before the SETTINGS that size its decoder, a response before its
request, a WebTransport stream or datagram before its session, a stream's
server side before its client side said what the stream is. What cannot be
read yet waits, its stream's later bytes (and its end) held, up to
:data:`HOLD_LIMIT` bytes in all (see :mod:`inspector.qpack`); so a head
always comes before its body, a request before its response, and the results
are the same whatever the order and the split of the reads. A head that
waited keeps the time its field section arrived; held bytes keep theirs.

Every byte fed comes back in exactly one event: a head's ``size``, a body
piece's ``data`` plus ``framing``, a :class:`FrameBytes`' ``size``, a
:class:`WebTransportBytes`' ``framing`` plus ``payload`` or an
:class:`Unparsed`'s ``size``. :class:`Http3Counts` keeps the frame-level
figures, for each request stream (a session's with its WebTransport streams
and datagrams) and for the connection (everything else: control, QPACK and
push streams, streams not followed), the way Wireshark's ``http3`` dissector
names them; their byte figures add up to the same total.

Hostile shapes are anomalies (:class:`ParseFailure`, the offset counted in
the bytes of that direction of that stream), never exceptions, and what is
kept stays bounded: a field section is kept up to :data:`FIELD_SECTION_LIMIT`
bytes and decoded up to :data:`~inspector.qpack.HEADER_LIST_LIMIT`; DATA and
every other frame payload is passed on as it arrives, never buffered; at most
:data:`OPEN_STREAM_LIMIT` request streams and :data:`FLOW_LIMIT` stream
directions are followed at once; floods of reserved or unknown frames are
counted, flagged past :data:`UNKNOWN_FRAME_LIMIT`.
"""

from __future__ import annotations

import enum

from .events import (
    BodyData,
    FrameBytes,
    Http3Event,
    MessageEnd,
    ParseFailure,
    StreamEnd,
    Trailers,
    Unparsed,
    WebTransportBytes,
    WebTransportMessage,
)
from .pseudo_headers import extended_connect_protocol, request_head, response_head
from .qpack import DecodedSection, FieldSectionDecoder
from .wire import Anomaly, Category, Direction, Http3Counts

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

#: The ``http_version`` of the heads this parser reads.
HTTP_VERSION = "HTTP/3"
#: Wire bytes of one field section kept for decoding.
FIELD_SECTION_LIMIT = 256 * 1024
#: Payload of a SETTINGS frame read.
SETTINGS_LIMIT = 16 * 1024
#: Request streams followed at once; the bytes of streams past it count with the connection's own.
OPEN_STREAM_LIMIT = 1_000
#: Stream directions followed at once, of every kind.
FLOW_LIMIT = 4 * OPEN_STREAM_LIMIT
#: Bytes held, in all, for streams that wait (for QPACK inserts, a session, what their stream is).
HOLD_LIMIT = 1024 * 1024
#: Reserved and unknown frames a connection may send before it is a flood.
UNKNOWN_FRAME_LIMIT = 1_000
#: Stream ids remembered beyond the ones every earlier id of their type was seen below.
SEEN_LIMIT = 10_000

DATA = 0x0
HEADERS = 0x1
CANCEL_PUSH = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
GOAWAY = 0x7
MAX_PUSH_ID = 0xD
WEBTRANSPORT_STREAM = 0x41

#: Frame type names, as RFC 9114, RFC 9218 and WebTransport (and Wireshark) spell them.
FRAME_TYPE_NAMES = {
    DATA: "DATA",
    HEADERS: "HEADERS",
    CANCEL_PUSH: "CANCEL_PUSH",
    SETTINGS: "SETTINGS",
    PUSH_PROMISE: "PUSH_PROMISE",
    GOAWAY: "GOAWAY",
    MAX_PUSH_ID: "MAX_PUSH_ID",
    0xF0700: "PRIORITY_UPDATE",
    0xF0701: "PRIORITY_UPDATE",
    WEBTRANSPORT_STREAM: "WEBTRANSPORT_STREAM",
}
#: Frames that belong on the control stream only.
_CONTROL_ONLY = frozenset({CANCEL_PUSH, SETTINGS, GOAWAY, MAX_PUSH_ID, 0xF0700, 0xF0701})
#: Frames that never belong on the control stream.
_NOT_ON_CONTROL = frozenset({DATA, HEADERS, PUSH_PROMISE, WEBTRANSPORT_STREAM})

STREAM_TYPE_CONTROL = 0x00
STREAM_TYPE_PUSH = 0x01
STREAM_TYPE_QPACK_ENCODER = 0x02
STREAM_TYPE_QPACK_DECODER = 0x03
STREAM_TYPE_WEBTRANSPORT = 0x54

SETTINGS_QPACK_MAX_TABLE_CAPACITY = 0x1
SETTINGS_QPACK_BLOCKED_STREAMS = 0x7

_ATTACK_SHAPE = " (denial-of-service shape)"


def is_reserved(code: int) -> bool:
    """A reserved frame or stream type (0x1f * N + 0x21), sent to exercise the rule that unknown ones are ignored."""
    return code >= 0x21 and (code - 0x21) % 0x1F == 0


def frame_type_name(frame_type: int) -> str:
    """The name a frame type is counted under: a known name, "reserved" or "unknown"."""
    name = FRAME_TYPE_NAMES.get(frame_type)
    if name is not None:
        return name
    return "reserved" if is_reserved(frame_type) else "unknown"


def read_varint(data: bytes | bytearray, pos: int = 0) -> tuple[int, int] | None:
    """A QUIC variable-length integer at ``pos``: its value and size, or None if it is cut short."""
    if pos >= len(data):
        return None
    first = data[pos]
    size = 1 << (first >> 6)
    if pos + size > len(data):
        return None
    value = first & 0x3F
    for i in range(pos + 1, pos + size):
        value = (value << 8) | data[i]
    return value, size


class _Kind(enum.Enum):
    REQUEST = "request"
    CONTROL = "control"
    PUSH = "push"
    ENCODER = "qpack encoder"
    DECODER = "qpack decoder"
    WEBTRANSPORT = "webtransport"
    #: Counted, not read.
    OTHER = "other"


class _Mode(enum.Enum):
    """What the payload of the frame being read is."""

    BODY = "body"
    SECTION = "section"
    SETTINGS = "settings"
    CONTROL = "control"
    PUSH_HEAD = "push head"
    PUSH_DATA = "push data"
    LOST_DATA = "lost data"


class _Wait(enum.Enum):
    """Why a stream direction holds its bytes."""

    KIND = "what the stream is"
    SESSION = "its WebTransport session"
    SECTION = "QPACK inserts"
    REQUEST = "the request head"


class _Stream:
    """A request stream (or WebTransport session) while it is followed."""

    __slots__ = ("answered", "counts", "ended", "id", "protocol", "requested")

    def __init__(self, stream_id: int) -> None:
        self.id = stream_id
        self.counts = Http3Counts()
        self.requested = False
        #: A final (non-1xx) response head arrived.
        self.answered = False
        self.ended = {C2S: False, S2C: False}
        #: The ``:protocol`` of its extended CONNECT.
        self.protocol: str | None = None


class _Flow:
    """One direction of one QUIC stream while it is followed."""

    __slots__ = (
        "broken",
        "buffer",
        "direction",
        "end_pending",
        "ended",
        "first_timestamp",
        "frame_header",
        "frames",
        "heads",
        "held",
        "kind",
        "mode",
        "offset",
        "pending",
        "releasing",
        "remaining",
        "section",
        "section_framing",
        "section_size",
        "section_timestamp",
        "session",
        "stream_id",
        "waiting",
        "wt_framing",
        "wt_payload",
        "wt_wire",
    )

    def __init__(self, stream_id: int, direction: Direction, kind: _Kind | None) -> None:
        self.stream_id = stream_id
        self.direction = direction
        self.kind = kind
        #: It broke a rule it cannot be read past: its later bytes are unparsed.
        self.broken = False
        #: A frame header or stream header not yet complete.
        self.buffer = bytearray()
        #: Bytes of this direction of the stream consumed so far.
        self.offset = 0
        #: The frame being read (None between frames) and how much of its payload is still to come.
        self.mode: _Mode | None = None
        self.remaining = 0
        self.frame_header = 0
        self.frames = 0
        self.heads = 0
        self.section: bytearray | None = None
        #: The type and length of the HEADERS frame whose field section is being read: they
        #: are counted after its head, so that they land in the exchange the head opens.
        self.section_framing = 0
        #: A response's field section, decoded, while it waits for its request's head.
        self.pending: DecodedSection | None = None
        self.section_size = 0
        self.section_timestamp = 0.0
        self.waiting: _Wait | None = None
        self.held: list[tuple[bytes, float]] = []
        self.end_pending: tuple[bool, int | None, float] | None = None
        self.releasing = False
        self.ended = False
        #: WebTransport: the session (None when it has none), the header still to report, the figures so far.
        self.session: int | None = None
        self.wt_framing = 0
        self.wt_wire = 0
        self.wt_payload = 0
        self.first_timestamp: float | None = None


class _Datagram:
    """A DATAGRAM waiting for the session its quarter stream id names."""

    __slots__ = ("data", "direction", "timestamp")

    def __init__(self, direction: Direction, data: bytes, timestamp: float) -> None:
        self.direction = direction
        self.data = data
        self.timestamp = timestamp


class _SeenStreams:
    """The stream ids seen so far, in bounded memory: QUIC opens each type's ids in order,
    so an id is remembered alone only while some lower id of its type is unseen."""

    __slots__ = ("_above", "_below")

    def __init__(self) -> None:
        self._below = [0, 0, 0, 0]
        self._above: set[int] = set()

    def __contains__(self, stream_id: int) -> bool:
        return (stream_id >> 2) < self._below[stream_id & 3] or stream_id in self._above

    def add(self, stream_id: int) -> None:
        kind = stream_id & 3
        self._above.add(stream_id)
        while (self._below[kind] << 2 | kind) in self._above:
            self._above.remove(self._below[kind] << 2 | kind)
            self._below[kind] += 1
        if len(self._above) > SEEN_LIMIT:
            for seen in self._above:
                self._below[seen & 3] = max(self._below[seen & 3], (seen >> 2) + 1)
            self._above.clear()


def _initiator(stream_id: int) -> Direction:
    return S2C if stream_id & 1 else C2S


def _bidirectional(stream_id: int) -> bool:
    return not stream_id & 2


class Http3Parser:
    """Both directions of one QUIC connection's HTTP/3, passively."""

    def __init__(self) -> None:
        self._flows: dict[tuple[int, Direction], _Flow] = {}
        self._streams: dict[int, _Stream] = {}
        self._seen = _SeenStreams()
        #: Sections sent each way are decoded as their receiver decodes them.
        self._decoders = {C2S: FieldSectionDecoder(), S2C: FieldSectionDecoder()}
        self._critical: dict[Direction, set[_Kind]] = {C2S: set(), S2C: set()}
        #: Streams and datagrams waiting for the session they name.
        self._awaiting: dict[int, list[_Flow | _Datagram]] = {}
        self._held = 0
        #: The figures of the streams the last call ended.
        self._ended: dict[int, Http3Counts] = {}
        self._unknown_frames = 0
        self._flagged: set[str] = set()
        #: The connection's own figures: control, QPACK and push streams, streams not followed.
        self.connection_counts = Http3Counts()
        #: Each side's SETTINGS (identifier to value), as it sent them.
        self.settings: dict[Direction, dict[int, int]] = {C2S: {}, S2C: {}}

    def stream_counts(self, stream_id: int) -> Http3Counts | None:
        """The running figures of a followed request stream or session (the same object as they grow),
        while it is open or until the next call after the one whose events ended it."""
        stream = self._streams.get(stream_id)
        return stream.counts if stream is not None else self._ended.get(stream_id)

    def open_streams(self) -> int:
        return len(self._streams)

    # -- the interface --------------------------------------------------------

    def feed(self, direction: Direction, stream_id: int, data: bytes, timestamp: float) -> list[Http3Event]:
        self._ended.clear()
        events: list[Http3Event] = []
        if not data:
            return events
        flow = self._flow(direction, stream_id, timestamp, events)
        if flow is None:
            self._unfollowed(direction, len(data), timestamp, events)
        else:
            self._feed_flow(flow, data, timestamp, events)
        return events

    def end_stream(
        self, direction: Direction, stream_id: int, reset: bool, error_code: int | None, timestamp: float
    ) -> list[Http3Event]:
        self._ended.clear()
        events: list[Http3Event] = []
        flow = self._flows.get((stream_id, direction))
        if flow is None and stream_id not in self._seen and direction is _initiator(stream_id):
            flow = self._flow(direction, stream_id, timestamp, events)
        if flow is None or flow.ended:
            return events
        if flow.waiting is not None and (not reset or flow.waiting in (_Wait.SESSION, _Wait.KIND)):
            # It ends once it has read what it holds (a reset request stream ends at once, unread).
            flow.end_pending = (reset, error_code, timestamp)
            return events
        self._end_flow(flow, reset, timestamp, events)
        return events

    def datagram(self, direction: Direction, data: bytes, timestamp: float) -> list[Http3Event]:
        self._ended.clear()
        events: list[Http3Event] = []
        quarter = read_varint(data)
        if quarter is None:
            self._flag("datagram", direction, 0, "a DATAGRAM without a quarter stream id", events)
            self.connection_counts.datagram_bytes[direction] += len(data)
            events.append(Unparsed(direction, None, len(data), timestamp))
            return events
        session = quarter[0] * 4
        if self._session_unknown(session):
            self._awaiting.setdefault(session, []).append(_Datagram(direction, data, timestamp))
            self._held += len(data)
            if self._held > HOLD_LIMIT:
                self._flag_hold(direction, events)
                self._no_session(session, timestamp, events)
            return events
        self._datagram(direction, session, data, timestamp, events)
        return events

    def close(self, timestamp: float) -> list[Http3Event]:
        """The connection ended: what waits is given up, tails are unparsed, open streams end."""
        self._ended.clear()
        events: list[Http3Event] = []
        # What a stream held may wait again (a later section, a later response): each round reads more of it.
        while waiting := [flow for flow in self._flows.values() if flow.waiting is not None]:
            for flow in waiting:
                if flow.waiting is not None:
                    self._give_up(flow, timestamp, events)
        for session in list(self._awaiting):
            self._no_session(session, timestamp, events)
        for flow in list(self._flows.values()):
            if not flow.ended:
                self._tail(flow, timestamp, events, cut=False)
                if flow.kind is _Kind.WEBTRANSPORT and flow.wt_wire:
                    self._wt_message(flow, False, timestamp, events)
        self._flows.clear()
        for stream in self._streams.values():
            self._ended[stream.id] = stream.counts
            events.append(StreamEnd(stream.id, reset=False, timestamp=timestamp))
        self._streams.clear()
        return events

    # -- streams --------------------------------------------------------------

    def _flow(self, direction: Direction, stream_id: int, timestamp: float, events: list[Http3Event]) -> _Flow | None:
        """The stream direction ``stream_id`` names, opened if it is new, or None when it is not followed."""
        flow = self._flows.get((stream_id, direction))
        if flow is not None:
            return flow
        initiator = _initiator(stream_id)
        if direction is not initiator and not _bidirectional(stream_id):
            self._flag(
                f"wrong-way:{direction}",
                direction,
                0,
                f"bytes from the receiving side of unidirectional stream {stream_id}",
                events,
            )
            return None
        if stream_id in self._seen:
            return None  # ended, reset, or never followed
        self._seen.add(stream_id)
        if len(self._flows) >= FLOW_LIMIT:
            self._flag(
                "flows",
                direction,
                0,
                f"over {FLOW_LIMIT:,} stream directions open at once; the bytes of streams past that "
                "are counted with the connection's own",
                events,
                security=True,
            )
            return None
        first = self._flows[(stream_id, initiator)] = _Flow(stream_id, initiator, None)
        if _bidirectional(stream_id):
            other = self._flows[(stream_id, initiator.opposite)] = _Flow(stream_id, initiator.opposite, None)
            other.waiting = _Wait.KIND
        return first if direction is initiator else self._flows[(stream_id, direction)]

    def _unfollowed(self, direction: Direction, size: int, timestamp: float, events: list[Http3Event]) -> None:
        self.connection_counts.unparsed_bytes[direction] += size
        events.append(Unparsed(direction, None, size, timestamp))

    def _feed_flow(self, flow: _Flow, data: bytes, timestamp: float, events: list[Http3Event]) -> None:
        if flow.waiting is not None:
            self._hold(flow, data, timestamp, events)
            return
        if flow.ended:
            self._flag(
                f"after-end:{flow.direction}",
                flow.direction,
                flow.offset,
                f"bytes after the end of stream {flow.stream_id}",
                events,
            )
            self._unfollowed(flow.direction, len(data), timestamp, events)
            return
        if flow.kind is None:
            flow.buffer += data
            data = b""
            if not self._classify(flow, timestamp, events):
                return
            if flow.waiting is not None:
                rest = bytes(flow.buffer)
                flow.buffer.clear()
                if rest:
                    self._hold(flow, rest, timestamp, events)
                return
            if flow.kind not in (_Kind.REQUEST, _Kind.CONTROL, _Kind.PUSH):
                data = bytes(flow.buffer)
                flow.buffer.clear()
        if flow.broken:
            self._broken(flow, data, timestamp, events)
            return
        kind = flow.kind
        if kind in (_Kind.REQUEST, _Kind.CONTROL, _Kind.PUSH):
            self._frames(flow, data, timestamp, events)
        elif kind is _Kind.WEBTRANSPORT:
            self._wt_data(flow, data, timestamp, events)
        elif data:
            self._opaque(flow, data, timestamp, events)

    def _classify(self, flow: _Flow, timestamp: float, events: list[Http3Event]) -> bool:
        """Read what an initiator's stream is from its first bytes; False while they are too few."""
        buffer = flow.buffer
        first = read_varint(buffer)
        if first is None:
            return False
        code, size = first
        stream_id = flow.stream_id
        direction = flow.direction
        if _bidirectional(stream_id):
            if code == WEBTRANSPORT_STREAM:
                return self._wt_header(flow, size, timestamp, events)
            if direction is C2S:
                flow.kind = _Kind.REQUEST
                stream = self._open_stream(flow, timestamp, events)
                self._partner_kind(flow, timestamp, events)
                self._session_known(stream_id, stream, timestamp, events)
                return True
            self._flag(
                "server-bidi",
                direction,
                0,
                f"server-initiated bidirectional stream {stream_id} is not WebTransport; its bytes are not read",
                events,
            )
            self._make_opaque(flow, 0, timestamp, events)
            self._partner_kind(flow, timestamp, events)
            return True
        if code == STREAM_TYPE_PUSH:
            push_id = read_varint(buffer, size)
            if push_id is None:
                return False
            size += push_id[1]
            kind = _Kind.PUSH
        elif code == STREAM_TYPE_WEBTRANSPORT:
            return self._wt_header(flow, size, timestamp, events)
        else:
            kind = {
                STREAM_TYPE_CONTROL: _Kind.CONTROL,
                STREAM_TYPE_QPACK_ENCODER: _Kind.ENCODER,
                STREAM_TYPE_QPACK_DECODER: _Kind.DECODER,
            }.get(code, _Kind.OTHER)
        if kind in (_Kind.CONTROL, _Kind.ENCODER, _Kind.DECODER):
            if kind in self._critical[direction]:
                self._flag(
                    f"second:{kind.value}:{direction}",
                    direction,
                    0,
                    f"a second {kind.value} stream ({stream_id}); its bytes are not read",
                    events,
                )
                kind = _Kind.OTHER
            else:
                self._critical[direction].add(kind)
        if kind is _Kind.OTHER:
            self._make_opaque(flow, size, timestamp, events)
            return True
        flow.kind = kind
        self.connection_counts.stream_type_bytes[direction] += size
        category = Category.HEAD if kind in (_Kind.ENCODER, _Kind.DECODER) else Category.CONTROL
        events.append(FrameBytes(direction, None, category, size, timestamp))
        del buffer[:size]
        flow.offset += size
        return True

    def _make_opaque(self, flow: _Flow, header: int, timestamp: float, events: list[Http3Event]) -> None:
        """The stream is counted, not read: its type (if any) and everything after it."""
        flow.kind = _Kind.OTHER
        if header:
            self.connection_counts.stream_type_bytes[flow.direction] += header
            events.append(FrameBytes(flow.direction, None, Category.CONTROL, header, timestamp))
            del flow.buffer[:header]
            flow.offset += header
        rest = bytes(flow.buffer)
        flow.buffer.clear()
        if rest:
            self._opaque(flow, rest, timestamp, events)

    def _opaque(self, flow: _Flow, data: bytes, timestamp: float, events: list[Http3Event]) -> None:
        if flow.kind in (_Kind.ENCODER, _Kind.DECODER):
            self.connection_counts.qpack_stream_bytes[flow.direction] += len(data)
            events.append(FrameBytes(flow.direction, None, Category.HEAD, len(data), timestamp))
            flow.offset += len(data)
            if flow.kind is _Kind.ENCODER:
                decoder = self._decoders[flow.direction]
                done = decoder.encoder(data)
                if decoder.problem is not None:
                    self._flag(f"qpack:{flow.direction}", flow.direction, flow.offset, decoder.problem, events)
                self._sections_done(flow.direction, done, events)
            return
        self.connection_counts.control_bytes[flow.direction] += len(data)
        events.append(FrameBytes(flow.direction, None, Category.CONTROL, len(data), timestamp))
        flow.offset += len(data)

    def _open_stream(self, flow: _Flow, timestamp: float, events: list[Http3Event]) -> _Stream | None:
        if len(self._streams) >= OPEN_STREAM_LIMIT:
            self._flag(
                "streams",
                flow.direction,
                0,
                f"over {OPEN_STREAM_LIMIT:,} request streams open at once; the bytes of streams past that "
                "are counted with the connection's own",
                events,
                security=True,
            )
            return None
        stream = self._streams[flow.stream_id] = _Stream(flow.stream_id)
        return stream

    def _partner_kind(self, flow: _Flow, timestamp: float, events: list[Http3Event]) -> None:
        """The other direction of a bidirectional stream is what its initiator made it."""
        partner = self._flows.get((flow.stream_id, flow.direction.opposite))
        if partner is None or partner.waiting is not _Wait.KIND:
            return
        partner.waiting = None
        partner.kind = flow.kind
        partner.session = flow.session
        self._release(partner, events)

    def _target(self, flow: _Flow) -> tuple[Http3Counts, int | None]:
        """Where a stream direction's bytes are counted: its request stream's figures, or the connection's."""
        if flow.kind is _Kind.REQUEST:
            stream = self._streams.get(flow.stream_id)
            if stream is not None:
                return stream.counts, stream.id
        return self.connection_counts, None

    # -- waiting --------------------------------------------------------------

    def _hold(self, flow: _Flow, data: bytes, timestamp: float, events: list[Http3Event]) -> None:
        flow.held.append((data, timestamp))
        self._held += len(data)
        if self._held > HOLD_LIMIT:
            self._flag_hold(flow.direction, events)
            self._give_up(flow, timestamp, events)

    def _flag_hold(self, direction: Direction, events: list[Http3Event]) -> None:
        self._flag(
            "hold",
            direction,
            0,
            f"over {HOLD_LIMIT:,} bytes held for streams that wait; they are read without what they wait for",
            events,
            security=True,
        )

    def _release(self, flow: _Flow, events: list[Http3Event]) -> None:
        """What a stream direction held, read now that it no longer waits."""
        if flow.releasing:
            return  # the release under way reads it, in order
        flow.releasing = True
        while flow.held and flow.waiting is None:
            held = flow.held
            flow.held = []
            for data, timestamp in held:
                self._held -= len(data)
                self._feed_flow(flow, data, timestamp, events)
        flow.releasing = False
        if flow.end_pending is not None and flow.waiting is None:
            reset, _, timestamp = flow.end_pending
            flow.end_pending = None
            self._end_flow(flow, reset, timestamp, events)

    def _give_up(self, flow: _Flow, timestamp: float, events: list[Http3Event]) -> None:
        """Stop waiting: the stream direction is read without what it waited for."""
        waiting = flow.waiting
        if waiting is _Wait.SECTION:
            decoded = self._decoders[flow.direction].abandon(flow.stream_id)
            if decoded is None:
                decoded = DecodedSection(flow.stream_id, (), 0)
            self._section_ready(flow, decoded, events)
            if flow.waiting is None:
                self._release(flow, events)
        elif waiting is _Wait.SESSION:
            assert flow.session is not None
            self._no_session(flow.session, timestamp, events)
            if flow.waiting is _Wait.SESSION:  # not found under its session: never expected, never looped on
                flow.waiting = None
                self._no_session_flow(flow, timestamp, events)
                self._release(flow, events)
        elif waiting is _Wait.KIND:
            flow.waiting = None
            if flow.held:
                self._flag(
                    f"no-kind:{flow.direction}",
                    flow.direction,
                    0,
                    f"stream {flow.stream_id}'s initiator never said what it is; its bytes are not read",
                    events,
                )
            flow.kind = _Kind.OTHER
            self._release(flow, events)
        elif waiting is _Wait.REQUEST:
            self._answer(flow, events)

    # -- frames ---------------------------------------------------------------

    def _frames(self, flow: _Flow, data: bytes, timestamp: float, events: list[Http3Event]) -> None:
        buffer = flow.buffer
        buffer += data
        pos = 0
        while pos < len(buffer) and flow.waiting is None and not flow.broken:
            if flow.mode is not None:
                n = min(flow.remaining, len(buffer) - pos)
                piece = bytes(buffer[pos : pos + n])
                pos += n
                flow.remaining -= n
                self._payload(flow, piece, timestamp, events)
                flow.offset += n
                if not flow.remaining:
                    self._frame_end(flow, timestamp, events)
                continue
            header = read_varint(buffer, pos)
            if header is None:
                break
            length = read_varint(buffer, pos + header[1])
            if length is None:
                break
            size = header[1] + length[1]
            pos += size
            self._frame_start(flow, header[0], length[0], size, timestamp, events)
            flow.offset += size
            if flow.mode is not None and not flow.remaining:
                self._frame_end(flow, timestamp, events)
            elif flow.mode is _Mode.BODY and pos == len(buffer):
                # The DATA frame's header is complete, its payload still to come: the header counts now.
                _, exchange = self._target(flow)
                assert exchange is not None
                events.append(BodyData(flow.direction, exchange, b"", size, True, False, timestamp))
                flow.frame_header = 0
        rest = bytes(buffer[pos:])
        del buffer[:]
        if flow.broken:
            if rest:
                self._broken(flow, rest, timestamp, events)
        elif flow.waiting is not None:
            if rest:
                self._hold(flow, rest, timestamp, events)
        else:
            buffer += rest

    def _broken(self, flow: _Flow, data: bytes, timestamp: float, events: list[Http3Event]) -> None:
        counts, exchange = self._target(flow)
        counts.unparsed_bytes[flow.direction] += len(data)
        events.append(Unparsed(flow.direction, exchange, len(data), timestamp))
        flow.offset += len(data)

    def _frame_start(
        self, flow: _Flow, frame_type: int, length: int, size: int, timestamp: float, events: list[Http3Event]
    ) -> None:
        direction = flow.direction
        name = frame_type_name(frame_type)
        counts, exchange = self._target(flow)
        counts.frames[direction][name] += 1
        counts.frame_header_bytes[direction] += size
        flow.frame_header = size
        flow.remaining = length
        flow.frames += 1
        if name in ("reserved", "unknown"):
            self._unknown_frames += 1
            if self._unknown_frames > UNKNOWN_FRAME_LIMIT:
                self._flag(
                    "unknown-frames",
                    direction,
                    flow.offset,
                    f"over {UNKNOWN_FRAME_LIMIT:,} reserved or unknown frames (flood){_ATTACK_SHAPE}",
                    events,
                    security=True,
                )
        if flow.kind is _Kind.CONTROL:
            events.append(FrameBytes(direction, None, Category.CONTROL, size, timestamp))
            flow.mode = _Mode.CONTROL
            if frame_type == SETTINGS and flow.frames == 1:
                if length > SETTINGS_LIMIT:
                    self._flag(
                        f"settings-size:{direction}",
                        direction,
                        flow.offset,
                        f"a SETTINGS frame of {length:,} bytes, over {SETTINGS_LIMIT:,}; it is not read",
                        events,
                    )
                else:
                    flow.mode = _Mode.SETTINGS
                    flow.section = bytearray()
            elif flow.frames == 1:
                self._flag(
                    f"settings-first:{direction}",
                    direction,
                    flow.offset,
                    f"the control stream starts with {name}, not SETTINGS",
                    events,
                )
            elif frame_type == SETTINGS or frame_type in _NOT_ON_CONTROL:
                self._flag(
                    f"control:{name}:{direction}",
                    direction,
                    flow.offset,
                    f"a {'second ' if frame_type == SETTINGS else ''}{name} frame on the control stream",
                    events,
                )
            return
        if frame_type == WEBTRANSPORT_STREAM:
            # No length follows its type, only a session id: the rest cannot be read as frames.
            self._flag(
                f"wt-frame:{direction}",
                direction,
                flow.offset,
                f"a WEBTRANSPORT_STREAM frame inside stream {flow.stream_id}; the rest of it is not read",
                events,
            )
            events.append(FrameBytes(direction, exchange, Category.CHUNK_FRAMING, size, timestamp))
            flow.broken = True
            return
        if flow.kind is _Kind.PUSH:
            events.append(FrameBytes(direction, None, Category.CHUNK_FRAMING, size, timestamp))
            flow.mode = {DATA: _Mode.PUSH_DATA, HEADERS: _Mode.PUSH_HEAD}.get(frame_type, _Mode.CONTROL)
            return
        # A request stream.
        if frame_type == DATA and exchange is not None and flow.heads:
            flow.mode = _Mode.BODY
            if not length:
                events.append(BodyData(direction, exchange, b"", size, True, True, timestamp))
            return
        if frame_type == HEADERS and exchange is not None:
            flow.section_framing = size
        else:
            events.append(FrameBytes(direction, exchange, Category.CHUNK_FRAMING, size, timestamp))
        if frame_type == DATA:
            if exchange is None:
                flow.mode = _Mode.LOST_DATA
            else:
                self._flag(
                    f"data-first:{direction}",
                    direction,
                    flow.offset,
                    f"a DATA frame before HEADERS on stream {flow.stream_id}",
                    events,
                )
                flow.mode = _Mode.CONTROL
        elif frame_type == HEADERS:
            flow.mode = _Mode.SECTION
            flow.section_size = 0
            flow.section = bytearray() if exchange is not None and length <= FIELD_SECTION_LIMIT else None
            if exchange is not None and length > FIELD_SECTION_LIMIT:
                self._flag(
                    f"section-size:{direction}",
                    direction,
                    flow.offset,
                    f"a field section of {length:,} bytes, over {FIELD_SECTION_LIMIT:,}; it is not decoded"
                    f"{_ATTACK_SHAPE}",
                    events,
                    security=True,
                )
        else:
            flow.mode = _Mode.CONTROL
            if frame_type in _CONTROL_ONLY:
                self._flag(
                    f"request:{name}:{direction}",
                    direction,
                    flow.offset,
                    f"a {name} frame on request stream {flow.stream_id}",
                    events,
                )

    def _payload(self, flow: _Flow, piece: bytes, timestamp: float, events: list[Http3Event]) -> None:
        direction = flow.direction
        mode = flow.mode
        counts, exchange = self._target(flow)
        n = len(piece)
        if mode is _Mode.BODY:
            counts.data_bytes[direction] += n
            assert exchange is not None
            framing = flow.frame_header
            flow.frame_header = 0
            events.append(BodyData(direction, exchange, piece, framing, bool(framing), not flow.remaining, timestamp))
        elif mode is _Mode.SECTION:
            flow.section_size += n
            if flow.section is not None:
                flow.section += piece
            elif exchange is None:
                counts.header_block_bytes[direction] += n
                events.append(FrameBytes(direction, None, Category.HEAD, n, timestamp))
        elif mode is _Mode.PUSH_HEAD:
            counts.header_block_bytes[direction] += n
            events.append(FrameBytes(direction, None, Category.HEAD, n, timestamp))
        elif mode is _Mode.PUSH_DATA:
            counts.data_bytes[direction] += n
            events.append(FrameBytes(direction, None, Category.PAYLOAD, n, timestamp))
        elif mode is _Mode.LOST_DATA:
            counts.data_bytes[direction] += n
            events.append(Unparsed(direction, None, n, timestamp))
        else:
            if mode is _Mode.SETTINGS:
                assert flow.section is not None
                flow.section += piece
            counts.control_bytes[direction] += n
            events.append(FrameBytes(direction, exchange, Category.CONTROL, n, timestamp))

    def _frame_end(self, flow: _Flow, timestamp: float, events: list[Http3Event]) -> None:
        mode = flow.mode
        flow.mode = None
        flow.frame_header = 0
        if mode is _Mode.SECTION:
            self._section_end(flow, timestamp, events)
        elif mode is _Mode.SETTINGS:
            section = flow.section
            flow.section = None
            assert section is not None
            self._settings(flow, bytes(section), events)

    def _settings(self, flow: _Flow, payload: bytes, events: list[Http3Event]) -> None:
        """A side's SETTINGS size the decoder of what the other side sends."""
        direction = flow.direction
        settings = self.settings[direction]
        pos = 0
        while pos < len(payload):
            identifier = read_varint(payload, pos)
            value = read_varint(payload, pos + identifier[1]) if identifier is not None else None
            if identifier is None or value is None:
                self._flag(f"settings:{direction}", direction, flow.offset, "a malformed SETTINGS frame", events)
                break
            settings.setdefault(identifier[0], value[0])
            pos += identifier[1] + value[1]
        decoder = self._decoders[direction.opposite]
        done = decoder.configure(
            settings.get(SETTINGS_QPACK_MAX_TABLE_CAPACITY, 0), settings.get(SETTINGS_QPACK_BLOCKED_STREAMS, 0)
        )
        if decoder.problem is not None:
            self._flag(f"qpack:{direction.opposite}", direction, flow.offset, decoder.problem, events)
        self._sections_done(direction.opposite, done, events)

    # -- heads ----------------------------------------------------------------

    def _section_end(self, flow: _Flow, timestamp: float, events: list[Http3Event]) -> None:
        section = flow.section
        flow.section = None
        flow.section_timestamp = timestamp
        if flow.kind is not _Kind.REQUEST or flow.stream_id not in self._streams:
            return  # its bytes went by as they came
        # Decoded at once, as the receiver did: the inserts read later may evict what it names.
        if section is None:
            decoded: DecodedSection | None = DecodedSection(flow.stream_id, (), 0)
        else:
            decoded = self._decoders[flow.direction].section(flow.stream_id, bytes(section))
        if decoded is None:
            flow.waiting = _Wait.SECTION
            return
        self._section_ready(flow, decoded, events)

    def _sections_done(self, direction: Direction, done: list[DecodedSection], events: list[Http3Event]) -> None:
        for decoded in done:
            flow = self._flows.get((decoded.stream_id, direction))
            if flow is not None and flow.waiting is _Wait.SECTION:
                self._section_ready(flow, decoded, events)
                if flow.waiting is None:
                    self._release(flow, events)

    def _section_ready(self, flow: _Flow, decoded: DecodedSection, events: list[Http3Event]) -> None:
        """A field section was decoded: a response read before its request waits for the request's head."""
        flow.waiting = None
        stream = self._streams.get(flow.stream_id)
        if flow.direction is S2C and stream is not None and not stream.requested:
            flow.pending = decoded
            flow.waiting = _Wait.REQUEST
            return
        self._section_done(flow, decoded, events)

    def _answer(self, flow: _Flow, events: list[Http3Event]) -> None:
        """A response that waited for its request's head goes on."""
        decoded = flow.pending
        assert decoded is not None
        flow.pending = None
        flow.waiting = None
        self._section_done(flow, decoded, events)
        self._release(flow, events)

    def _section_done(self, flow: _Flow, decoded: DecodedSection, events: list[Http3Event]) -> None:
        """A field section was decoded (or given up on): it is the head, or trailers."""
        flow.waiting = None
        direction = flow.direction
        size = flow.section_size
        timestamp = flow.section_timestamp
        if decoded.problem is not None:
            self._flag(
                f"section:{decoded.security}:{direction}",
                direction,
                flow.offset,
                decoded.problem,
                events,
                security=decoded.security,
            )
        stream = self._streams.get(flow.stream_id)
        if stream is None:
            self.connection_counts.header_block_bytes[direction] += size
            events.append(FrameBytes(direction, None, Category.HEAD, size, timestamp))
        else:
            stream.counts.header_block_bytes[direction] += size
            stream.counts.decoded_header_bytes[direction] += decoded.decoded_size
            headers = decoded.headers
            if direction is C2S and not stream.requested:
                stream.requested = True
                request = request_head(stream.id, headers, size, timestamp, HTTP_VERSION)
                stream.protocol = extended_connect_protocol(request)
                events.append(request)
                answer = self._flows.get((stream.id, S2C))
                if answer is not None and answer.waiting is _Wait.REQUEST:
                    self._answer(answer, events)
            elif direction is S2C and not stream.answered:
                response = response_head(stream.id, headers, size, timestamp, HTTP_VERSION)
                stream.answered = not response.interim
                events.append(response)
            else:
                # Trailers count as framing, as they do in HTTP/1.1's chunked coding.
                if headers:
                    events.append(Trailers(direction, stream.id, headers, timestamp))
                events.append(FrameBytes(direction, stream.id, Category.CHUNK_FRAMING, size, timestamp))
            flow.heads += 1
        framing, flow.section_framing = flow.section_framing, 0
        if framing:
            exchange = flow.stream_id if stream is not None else None
            events.append(FrameBytes(direction, exchange, Category.CHUNK_FRAMING, framing, timestamp))

    # -- WebTransport ---------------------------------------------------------

    def _wt_header(self, flow: _Flow, type_size: int, timestamp: float, events: list[Http3Event]) -> bool:
        """A WebTransport stream's type and session id; False while they are incomplete."""
        session = read_varint(flow.buffer, type_size)
        if session is None:
            return False
        size = type_size + session[1]
        del flow.buffer[:size]
        flow.offset += size
        flow.kind = _Kind.WEBTRANSPORT
        flow.session = session[0]
        flow.wt_framing = size
        flow.wt_wire = size
        flow.first_timestamp = timestamp
        if session[0] not in self._streams:
            if self._session_unknown(session[0]):
                flow.waiting = _Wait.SESSION
                self._awaiting.setdefault(session[0], []).append(flow)
            else:
                self._no_session_flow(flow, timestamp, events)
        partner = self._flows.get((flow.stream_id, flow.direction.opposite))
        if partner is not None and partner.waiting is _Wait.KIND:
            partner.kind = _Kind.WEBTRANSPORT
            partner.session = flow.session
            if flow.waiting is _Wait.SESSION:
                partner.waiting = _Wait.SESSION
                self._awaiting[session[0]].append(partner)
            else:
                partner.waiting = None
                self._release(partner, events)
        return True

    def _wt_data(self, flow: _Flow, data: bytes, timestamp: float, events: list[Http3Event]) -> None:
        direction = flow.direction
        if flow.first_timestamp is None:
            flow.first_timestamp = timestamp
        framing = flow.wt_framing
        flow.wt_framing = 0
        if not data and not framing:
            return
        flow.wt_wire += len(data)
        flow.wt_payload += len(data)
        flow.offset += len(data)
        stream = self._streams.get(flow.session) if flow.session is not None else None
        counts = stream.counts if stream is not None else self.connection_counts
        if framing and _bidirectional(flow.stream_id):
            counts.frames[direction]["WEBTRANSPORT_STREAM"] += 1
        if stream is None:
            counts.stream_type_bytes[direction] += framing
            counts.webtransport_bytes[direction] += len(data)
            events.append(FrameBytes(direction, None, Category.CONTROL, framing + len(data), timestamp))
            return
        counts.stream_type_bytes[direction] += framing
        counts.webtransport_bytes[direction] += len(data)
        events.append(WebTransportBytes(direction, stream.id, flow.stream_id, framing, len(data), timestamp))

    def _wt_message(self, flow: _Flow, reset: bool, timestamp: float, events: list[Http3Event]) -> None:
        if flow.session is None or flow.session not in self._streams:
            return
        if flow.wt_framing:
            self._wt_data(flow, b"", timestamp, events)
        first = flow.first_timestamp if flow.first_timestamp is not None else timestamp
        events.append(
            WebTransportMessage(
                flow.direction, flow.session, flow.stream_id, flow.wt_wire, flow.wt_payload, first, timestamp, reset
            )
        )

    def _session_unknown(self, session: int) -> bool:
        """Whether ``session`` may yet open as a request stream: not seen, or seen but not yet told apart."""
        if session & 3 or session in self._streams:
            return False
        if session not in self._seen:
            return True
        flow = self._flows.get((session, C2S))
        return flow is not None and flow.kind is None and not flow.ended

    def _session_known(self, session: int, stream: _Stream | None, timestamp: float, events: list[Http3Event]) -> None:
        """A request stream opened (or was not followed): what waited for it as a session goes on."""
        waiting = self._awaiting.pop(session, None)
        if not waiting:
            return
        if stream is None:
            self._awaiting[session] = waiting
            self._no_session(session, timestamp, events)
            return
        for item in waiting:
            if isinstance(item, _Datagram):
                self._held -= len(item.data)
                self._datagram(item.direction, session, item.data, item.timestamp, events)
            elif item.waiting is _Wait.SESSION:
                item.waiting = None
                if item.wt_framing:
                    self._wt_data(item, b"", timestamp, events)
                self._release(item, events)

    def _no_session(self, session: int, timestamp: float, events: list[Http3Event]) -> None:
        """No session will come for what waits for ``session``: it is the connection's."""
        for item in self._awaiting.pop(session, []):
            if isinstance(item, _Datagram):
                self._held -= len(item.data)
                self._datagram(item.direction, session, item.data, item.timestamp, events)
            elif item.waiting is _Wait.SESSION:
                item.waiting = None
                self._no_session_flow(item, timestamp, events)
                self._release(item, events)

    def _no_session_flow(self, flow: _Flow, timestamp: float, events: list[Http3Event]) -> None:
        self._flag(
            f"no-session:{flow.direction}",
            flow.direction,
            flow.offset,
            f"WebTransport stream {flow.stream_id} names {flow.session}, which is no session",
            events,
        )
        flow.session = None
        if flow.wt_framing:
            self._wt_data(flow, b"", timestamp, events)

    def _datagram(
        self, direction: Direction, session: int, data: bytes, timestamp: float, events: list[Http3Event]
    ) -> None:
        stream = self._streams.get(session)
        if stream is None:
            self._flag(
                f"datagram-stream:{direction}", direction, 0, f"a DATAGRAM for stream {session}, not open", events
            )
            self.connection_counts.datagram_bytes[direction] += len(data)
            events.append(Unparsed(direction, None, len(data), timestamp))
            return
        quarter = read_varint(data)
        assert quarter is not None
        stream.counts.datagram_bytes[direction] += len(data)
        payload = len(data) - quarter[1]
        events.append(WebTransportBytes(direction, session, None, quarter[1], payload, timestamp))
        events.append(WebTransportMessage(direction, session, None, len(data), payload, timestamp, timestamp))

    # -- ends -----------------------------------------------------------------

    def _tail(self, flow: _Flow, timestamp: float, events: list[Http3Event], *, cut: bool) -> None:
        """What a stream direction had not yet accounted when it ended is unparsed: a frame or stream
        header not complete, a field section never decoded, the bytes it held."""
        tail = len(flow.buffer)
        flow.buffer.clear()
        if flow.waiting in (_Wait.SECTION, _Wait.REQUEST):
            self._decoders[flow.direction].abandon(flow.stream_id)
            flow.pending = None
            tail += flow.section_size
        elif flow.mode is _Mode.SECTION and (flow.section is not None or flow.stream_id in self._streams):
            tail += flow.section_size
        elif flow.waiting is _Wait.SESSION:
            tail += flow.wt_framing
            flow.wt_framing = 0
        for data, _ in flow.held:
            self._held -= len(data)
            tail += len(data)
        flow.held = []
        flow.waiting = None
        if flow.section_framing:
            _, exchange = self._target(flow)
            events.append(FrameBytes(flow.direction, exchange, Category.CHUNK_FRAMING, flow.section_framing, timestamp))
            flow.section_framing = 0
        incomplete = tail or flow.mode is not None or (flow.kind is _Kind.WEBTRANSPORT and flow.wt_framing)
        if tail:
            counts, exchange = self._target(flow)
            counts.unparsed_bytes[flow.direction] += tail
            events.append(Unparsed(flow.direction, exchange, tail, timestamp))
            flow.offset += tail
        if cut and incomplete and flow.kind is not _Kind.OTHER and not flow.broken:
            self._flag(
                f"cut:{flow.direction}",
                flow.direction,
                flow.offset,
                f"a frame cut short by the end of stream {flow.stream_id}",
                events,
            )
        flow.mode = None
        flow.section = None

    def _end_flow(self, flow: _Flow, reset: bool, timestamp: float, events: list[Http3Event]) -> None:
        flow.ended = True
        direction = flow.direction
        self._tail(flow, timestamp, events, cut=not reset)
        kind = flow.kind
        if kind is None:
            partner = self._flows.get((flow.stream_id, direction.opposite))
            if partner is not None and partner.waiting is _Wait.KIND:
                self._give_up(partner, timestamp, events)
        elif kind is _Kind.WEBTRANSPORT:
            self._wt_message(flow, reset, timestamp, events)
        elif kind in (_Kind.CONTROL, _Kind.ENCODER, _Kind.DECODER):
            self._flag(
                f"critical:{kind.value}:{direction}",
                direction,
                flow.offset,
                f"the {kind.value} stream ({flow.stream_id}) was closed",
                events,
            )
        elif kind is _Kind.REQUEST:
            stream = self._streams.get(flow.stream_id)
            if stream is not None:
                if reset:
                    self._stream_end(stream, True, timestamp, events)
                    return
                stream.ended[direction] = True
                events.append(MessageEnd(direction, stream.id, 0, timestamp))
                if stream.ended[direction.opposite]:
                    self._stream_end(stream, False, timestamp, events)
                    return
        self._forget(flow)

    def _stream_end(self, stream: _Stream, reset: bool, timestamp: float, events: list[Http3Event]) -> None:
        """A request stream ends: nothing more of it is read."""
        for direction in Direction:
            flow = self._flows.get((stream.id, direction))
            if flow is not None and not flow.ended:
                flow.ended = True
                self._tail(flow, timestamp, events, cut=False)
            self._flows.pop((stream.id, direction), None)
        del self._streams[stream.id]
        self._ended[stream.id] = stream.counts
        events.append(StreamEnd(stream.id, reset=reset, timestamp=timestamp))

    def _forget(self, flow: _Flow) -> None:
        """Drop an ended stream direction once nothing more of its stream can be read."""
        partner = self._flows.get((flow.stream_id, flow.direction.opposite))
        if partner is not None and not partner.ended:
            return
        self._flows.pop((flow.stream_id, flow.direction), None)
        if partner is not None:
            self._flows.pop((flow.stream_id, flow.direction.opposite), None)

    # -- anomalies ------------------------------------------------------------

    def _flag(
        self,
        key: str,
        direction: Direction,
        offset: int,
        reason: str,
        events: list[Http3Event],
        *,
        security: bool = False,
    ) -> None:
        """An anomaly, reported the first time its kind is seen on the connection."""
        if key in self._flagged:
            return
        self._flagged.add(key)
        events.append(ParseFailure(Anomaly(direction, offset, reason, security=security)))
