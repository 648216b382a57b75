"""TCP connections put back together from their segments, as capture records.

Segments go in, one at a time in the order a packet file holds them; the
records a capture would hold come out (:class:`~inspector.capture.ConnectionOpened`,
:class:`~inspector.capture.DataChunk`, :class:`~inspector.capture.ConnectionClosed`),
so the core reads a packet capture as it reads a capture. Nothing here reads
a file: :mod:`.packets` does, and hands over :class:`Segment` values.

- The server is the side whose port is one of ``server_ports``: its segments
  are server to client. Where both ports are, the side that sent the SYN is
  the client.
- Each direction is a byte stream numbered by sequence number from its SYN;
  where the capture missed the server's SYN-ACK, from the acknowledgement
  number the client sent first. A connection already open when the capture
  began is read from the first byte captured of each direction, and marked
  reconstructed: its first bytes are not in the file. A segment's new bytes
  are handed on as soon as every byte before them has been; bytes seen before
  (retransmissions, overlaps) are counted once, the first time; a segment
  that arrives early is held. Sequence numbers wrap.
- A direction holds at most ``hold_limit`` bytes (1 MiB by default) of early
  segments. Past that, the bytes before the first held segment are declared
  missing: the capture lost them. So are the bytes before a FIN or a reset
  that never came, and the part of a packet that the capture cut short (its
  snap length) when no other segment carries it. Missing bytes are never made
  up: a ``"missing bytes"`` event (:func:`~inspector.capture.missing_bytes`)
  says how many, and the bytes after them follow.
- A connection closes when both directions have ended with a FIN and every
  byte before each FIN has been handed on (or declared missing at the end of
  the file), at a reset, or when a new SYN takes its addresses and ports.
  The close reason is the side that stopped first: ``client closed``,
  ``server reset``, ... A connection still open at the end of the file gets
  no "closed" record. Connections that ended are remembered (the last
  65,536), so their last ACKs and retransmissions open nothing.
- Every packet of a connection is counted with its IP and TCP headers, each
  way; the count goes out as a "transport layer" event
  (:func:`~inspector.capture.transport_layer_event`) before the connection's
  "closed" record, or at the end of the file, with ``ip_header_bytes`` exact.
  So that the ACK of the last FIN is counted too, a connection that closed
  with a FIN each way is held until that ACK, until a packet
  :data:`LAST_ACK_WAIT` seconds later, or until the end of the file.

Records take the time of the packet that let them out: bytes held behind a
hole are handed on when the hole is filled, as a receiving socket would.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections import Counter, OrderedDict
from collections.abc import Collection
from dataclasses import dataclass, field

from ..capture import (
    ConnectionClosed,
    ConnectionOpened,
    DataChunk,
    Event,
    Record,
    missing_bytes,
    transport_layer_event,
)
from ..transport_layer import LayerFigures, TransportLayer
from ..wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

#: Bytes of early segments one direction of a connection holds before it declares the hole before them missing.
HOLD_LIMIT = 1 << 20
#: Connections that ended recently, remembered so that their last ACKs and retransmissions open nothing.
CLOSED_MEMORY = 65_536
#: The close reason of a connection whose addresses and ports a new connection took before it was seen to end.
PORTS_USED_AGAIN = "no end in the capture (its ports were used again)"
#: Seconds of capture time a connection that closed with a FIN each way waits for the ACK of the last FIN.
LAST_ACK_WAIT = 1.0
#: Connections that lack bytes listed one by one (the rest are counted).
GAPS_LISTED = 20
#: The furthest ahead of the next byte a segment may start (the largest TCP window); further is no part of the stream.
_WINDOW_LIMIT = 1 << 30

FIN, SYN, RST, ACK = 0x01, 0x02, 0x04, 0x10

_SEQ_SPACE = 1 << 32
_HALF_SPACE = 1 << 31


@dataclass(frozen=True, slots=True)
class Segment:
    """One TCP segment as a packet file shows it.

    ``length`` is the payload length the IP header claims; it is more than
    ``len(data)`` where the capture kept only the start of the packet.
    """

    timestamp: float
    source: bytes
    source_port: int
    destination: bytes
    destination_port: int
    seq: int
    ack: int
    flags: int
    data: bytes = b""
    length: int = -1
    #: Bytes of the packet's IP header (extension headers included) and TCP header.
    header: int = 0

    @property
    def claimed(self) -> int:
        return max(self.length, len(self.data))


@dataclass(frozen=True, slots=True)
class ConnectionGaps:
    """What one connection lacks: bytes missing per direction, and whether it began before the capture."""

    connection_id: int
    missing: dict[Direction, int]
    began_before: bool = False


@dataclass(slots=True)
class Gaps:
    """What the connections read so far lack: the first few one by one, all of them in sums."""

    listed: list[ConnectionGaps] = field(default_factory=list)
    connections: int = 0
    missing: int = 0
    began_before: int = 0

    def add(self, gaps: ConnectionGaps) -> None:
        if len(self.listed) < GAPS_LISTED:
            self.listed.append(gaps)
        self.connections += 1
        self.missing += sum(gaps.missing.values())
        self.began_before += gaps.began_before


#: A connection: client address and port, server address and port.
_Key = tuple[bytes, int, bytes, int]
#: Where directions are known to end (a reset's sequence number), by direction.
Ends = dict[Direction, int | None]
#: What a direction hands on: bytes, or (as an int) a count of bytes the capture does not have.
Piece = bytes | int


class _Stream:
    """One direction of a connection: its sequence numbers and the segments held early."""

    __slots__ = ("base", "cut", "fin", "held", "held_bytes", "missing", "next", "order", "seen")

    def __init__(self) -> None:
        #: The sequence number of the direction's first byte (None until known).
        self.base: int | None = None
        #: Offset of the next byte to hand on.
        self.next = 0
        #: Early segments by offset: their bytes and where the packet said they end.
        self.held: dict[int, tuple[bytes, int]] = {}
        self.order: list[int] = []
        self.held_bytes = 0
        #: Where a packet the capture cut short said its bytes end.
        self.cut = 0
        #: Offset of the FIN (None until one is seen).
        self.fin: int | None = None
        self.missing = 0
        #: Any byte or FIN of this direction has been seen.
        self.seen = False

    def offset(self, seq: int) -> int:
        """The stream offset of sequence number ``seq``: the one nearest the next byte (sequence numbers wrap)."""
        assert self.base is not None
        distance = (seq - self.base - self.next) % _SEQ_SPACE
        if distance >= _HALF_SPACE:
            distance -= _SEQ_SPACE
        return self.next + distance

    @property
    def ended(self) -> bool:
        return self.fin is not None and self.next >= self.fin

    def take(self, start: int, data: bytes, end: int, limit: int) -> list[Piece]:
        """The pieces that segment bytes ``data`` at ``start`` (claimed to run to ``end``) let out, in order."""
        pieces: list[Piece] = []
        if self.fin is not None:
            end = min(end, self.fin)
            data = data[: max(0, end - start)]
        if end <= self.next:
            return pieces
        if start <= self.next:
            self._deliver(start, data, end, pieces)
        elif start not in self.held or len(self.held[start][0]) < len(data) or self.held[start][1] < end:
            if start in self.held:
                self.held_bytes -= len(self.held[start][0])
            else:
                heapq.heappush(self.order, start)
            self.held[start] = (data, end)
            self.held_bytes += len(data)
        self._drain(pieces)
        while self.held_bytes > limit:
            self._skip(self.order[0] - self.next, pieces)
            self._drain(pieces)
        return pieces

    def finish(self, end: int | None = None) -> list[Piece]:
        """Everything held, with the holes before it declared missing, up to ``end`` (the
        direction's last offset, if known) or the FIN: the direction will get no more segments."""
        pieces: list[Piece] = []
        self._drain(pieces)
        while self.order:
            self._skip(self.order[0] - self.next, pieces)
            self._drain(pieces)
        last = max(end or 0, self.fin or 0, self.cut)
        if last > self.next:
            self._skip(last - self.next, pieces)
        return pieces

    def _deliver(self, start: int, data: bytes, end: int, pieces: list[Piece]) -> None:
        fresh = data[self.next - start :]
        if fresh:
            pieces.append(fresh)
            self.next += len(fresh)
        if end > self.next:
            self.cut = max(self.cut, end)

    def _drain(self, pieces: list[Piece]) -> None:
        """Hand on the held segments that are next, and skip what a cut-short packet left out."""
        order, held = self.order, self.held
        while True:
            while order and order[0] <= self.next:
                start = heapq.heappop(order)
                data, end = held.pop(start)
                self.held_bytes -= len(data)
                if end > self.next:
                    self._deliver(start, data, end, pieces)
            if self.cut <= self.next:
                return
            self._skip(min(self.cut, order[0]) - self.next if order else self.cut - self.next, pieces)

    def _skip(self, size: int, pieces: list[Piece]) -> None:
        if size > 0:
            pieces.append(size)
            self.missing += size
            self.next += size


class _Connection:
    __slots__ = (
        "began_before",
        "client",
        "closer",
        "fin_at",
        "headers",
        "id",
        "last_at",
        "server",
        "streams",
        "syn",
    )

    def __init__(
        self, number: int, client: tuple[bytes, int], server: tuple[bytes, int], *, began_before: bool
    ) -> None:
        self.id = number
        self.client = client
        self.server = server
        self.streams = {C2S: _Stream(), S2C: _Stream()}
        self.began_before = began_before
        #: The client's SYN sequence number, to tell a retransmitted SYN from a new connection.
        self.syn: int | None = None
        #: The side that stopped first and how: ("client", "closed"), ("server", "reset"), ...
        self.closer: tuple[str, str] | None = None
        #: When the last FIN, and the last segment of any kind, was seen.
        self.fin_at = 0.0
        self.last_at = 0.0
        #: IP and TCP header bytes of every packet, by direction.
        self.headers = {C2S: 0, S2C: 0}

    def reason(self, default: str) -> str:
        return f"{self.closer[0]} {self.closer[1]}" if self.closer is not None else default


def address(ip: bytes, port: int) -> str:
    """``host:port`` as captures write it (``[v6]:port`` for IPv6)."""
    host = ipaddress.ip_address(ip)
    return f"[{host}]:{port}" if host.version == 6 else f"{host}:{port}"


def _headers_event(connection: _Connection, timestamp: float) -> Event:
    """The "transport layer" event of a connection's IP and TCP header bytes, counted from its packets."""
    figures = TransportLayer(*(LayerFigures(ip_header_bytes=connection.headers[direction]) for direction in (C2S, S2C)))
    return transport_layer_event(connection.id, timestamp, figures)


def _side(direction: Direction) -> str:
    return "client" if direction is C2S else "server"


class TcpReassembler:
    """Segments of any number of TCP connections in, capture records out.

    Feed segments in file order with :meth:`feed`; :meth:`finish` at the end
    of the file hands on what is still held. ``mode`` goes into every
    connection's "opened" record. What a report must say about the result is
    kept as it goes: :attr:`gaps` (connections that lack bytes),
    :attr:`other_ports` (connections to ports that are not servers').
    """

    def __init__(self, server_ports: Collection[int], *, mode: str = "pcap", hold_limit: int = HOLD_LIMIT) -> None:
        if not server_ports:
            raise ValueError("name at least one server port")
        self._ports = frozenset(server_ports)
        self._mode = mode
        self._limit = hold_limit
        self._live: dict[_Key, _Connection] = {}
        self._closed: OrderedDict[_Key, None] = OrderedDict()
        #: Connections that closed with a FIN each way, waiting for the ACK of the last FIN:
        #: when and why they closed, oldest first.
        self._closing: OrderedDict[_Key, tuple[_Connection, float, str]] = OrderedDict()
        self.connections = 0
        #: Connections that lack bytes, as each closes (or at the end).
        self.gaps = Gaps()
        #: Connections whose SYN went to a port that is not a server's, by that port.
        self.other_ports: Counter[int] = Counter()

    def feed(self, segment: Segment) -> list[Record]:
        """The records this segment lets out."""
        records = self._waited(segment.timestamp)
        placed = self._place(segment)
        if placed is None:
            if segment.flags & (SYN | ACK) == SYN:
                self.other_ports[segment.destination_port] += 1
            return records
        key, direction = placed
        flags = segment.flags
        closing = self._closing.pop(key, None)
        if closing is not None:
            ended, at, reason = closing
            if not flags & SYN:
                ended.headers[direction] += segment.header  # the ACK of the last FIN
                return records + self._last(ended, at, reason)
            records += self._last(ended, at, reason)
        connection = self._live.get(key)
        if flags & SYN and not flags & ACK:
            if direction is S2C:
                return records  # a server's port opening a connection: not a connection to a server
            if connection is not None:
                if connection.syn == segment.seq:
                    connection.headers[direction] += segment.header
                    return records  # the SYN again
                records += self._close(key, connection, segment.timestamp, PORTS_USED_AGAIN)
            connection = self._open(key, segment, began_before=False, records=records)
            connection.syn = segment.seq
            connection.streams[C2S].base = (segment.seq + 1) % _SEQ_SPACE
        elif connection is None:
            if key in self._closed or not segment.data or flags & (SYN | RST):
                return records  # the last ACKs of a connection that ended, or nothing to follow
            connection = self._open(key, segment, began_before=True, records=records)
        connection.last_at = max(connection.last_at, segment.timestamp)
        connection.headers[direction] += segment.header
        stream = connection.streams[direction]
        if flags & SYN:
            if not stream.seen:
                stream.base = (segment.seq + 1) % _SEQ_SPACE
            if direction is S2C:
                return records
        if stream.base is None:
            stream.base = segment.seq
        peer = connection.streams[direction.opposite]
        if flags & ACK and peer.base is None:
            peer.base = segment.ack  # the peer sends from here: its SYN-ACK was not captured
        start = stream.offset(segment.seq) if not flags & SYN else 0
        if start - stream.next > _WINDOW_LIMIT:
            return records  # no part of the stream
        if flags & RST:
            side = _side(direction)
            if connection.closer is None:
                connection.closer = (side, "reset")
            # A reset carries the sequence number its sender would have sent next: where its stream ends.
            stop = start if stream.fin is None and 0 < start - stream.next <= self._limit else None
            return records + self._close(key, connection, segment.timestamp, f"{side} reset", ends={direction: stop})
        if segment.claimed:
            stream.seen = True
            pieces = stream.take(start, segment.data, start + segment.claimed, self._limit)
            self._pieces(connection, direction, pieces, segment.timestamp, records)
        if flags & FIN and stream.fin is None:
            stream.seen = True
            stream.fin = start + segment.claimed
            connection.fin_at = segment.timestamp
            if connection.closer is None:
                connection.closer = (_side(direction), "closed")
        if connection.streams[C2S].ended and connection.streams[S2C].ended:
            records += self._end(key, connection, segment.timestamp, connection.reason("closed"), hold=True)
        return records

    def finish(self) -> list[Record]:
        """The end of the file: what is held is handed on, holes before it declared missing.
        Connections that ended with a FIN each way close; the others stay open."""
        records = self._waited(float("inf"))
        for key, connection in list(self._live.items()):
            streams = connection.streams
            if streams[C2S].fin is not None and streams[S2C].fin is not None:
                records += self._close(key, connection, connection.fin_at, "closed")
                continue
            for direction in (C2S, S2C):
                self._pieces(connection, direction, streams[direction].finish(), connection.last_at, records)
            self._note_gaps(connection)
            records.append(_headers_event(connection, connection.last_at))
        self._live.clear()
        return records

    # -- connections

    def _place(self, segment: Segment) -> tuple[_Key, Direction] | None:
        """The connection a segment belongs to (client address and port, server address
        and port) and its direction; None for a segment between two ports that are not servers'."""
        to_server = segment.destination_port in self._ports
        from_server = segment.source_port in self._ports
        if to_server and from_server:
            # Both ports are servers': the connection already known either way round,
            # else the SYN's sender is the client.
            backwards = (segment.destination, segment.destination_port, segment.source, segment.source_port)
            if backwards in self._live or (backwards in self._closed and segment.flags & (SYN | ACK) != SYN):
                return backwards, S2C
            to_server, from_server = True, False
        if to_server:
            return (segment.source, segment.source_port, segment.destination, segment.destination_port), C2S
        if from_server:
            return (segment.destination, segment.destination_port, segment.source, segment.source_port), S2C
        return None

    def _open(self, key: _Key, segment: Segment, *, began_before: bool, records: list[Record]) -> _Connection:
        self.connections += 1
        connection = _Connection(self.connections, (key[0], key[1]), (key[2], key[3]), began_before=began_before)
        self._live[key] = connection
        self._closed.pop(key, None)
        records.append(
            ConnectionOpened(
                connection.id,
                segment.timestamp,
                client=address(*connection.client),
                server=address(*connection.server),
                mode=self._mode,
                reconstructed=began_before,
            )
        )
        return connection

    def _close(
        self, key: _Key, connection: _Connection, timestamp: float, reason: str, *, ends: Ends | None = None
    ) -> list[Record]:
        """Close a connection before both its directions have ended: what they hold is handed on, with
        the holes before it (and before each direction's known end, from ``ends``) declared missing."""
        records: list[Record] = []
        for direction in (C2S, S2C):
            end = ends.get(direction) if ends else None
            self._pieces(connection, direction, connection.streams[direction].finish(end), timestamp, records)
        return records + self._end(key, connection, timestamp, connection.reason(reason))

    def _end(
        self, key: _Key, connection: _Connection, timestamp: float, reason: str, *, hold: bool = False
    ) -> list[Record]:
        """The connection ended: its last records, or with ``hold``, none until the ACK of its last FIN."""
        del self._live[key]
        self._closed[key] = None
        if len(self._closed) > CLOSED_MEMORY:
            self._closed.popitem(last=False)
        self._note_gaps(connection)
        if hold:
            self._closing[key] = (connection, timestamp, reason)
            return []
        return self._last(connection, timestamp, reason)

    @staticmethod
    def _last(connection: _Connection, timestamp: float, reason: str) -> list[Record]:
        """A connection's last records: its header bytes, and that it closed."""
        return [_headers_event(connection, timestamp), ConnectionClosed(connection.id, timestamp, reason)]

    def _waited(self, now: float) -> list[Record]:
        """The last records of held connections that waited long enough by ``now`` for the ACK of their last FIN."""
        records: list[Record] = []
        while self._closing:
            key, (connection, at, reason) = next(iter(self._closing.items()))
            if now - at <= LAST_ACK_WAIT:
                break
            del self._closing[key]
            records += self._last(connection, at, reason)
        return records

    def _note_gaps(self, connection: _Connection) -> None:
        missing = {direction: stream.missing for direction, stream in connection.streams.items()}
        if connection.began_before or any(missing.values()):
            self.gaps.add(ConnectionGaps(connection.id, missing, connection.began_before))

    @staticmethod
    def _pieces(
        connection: _Connection, direction: Direction, pieces: list[Piece], timestamp: float, records: list[Record]
    ) -> None:
        for piece in pieces:
            if isinstance(piece, int):
                records.append(missing_bytes(connection.id, timestamp, direction, piece))
            else:
                records.append(DataChunk(connection.id, timestamp, direction, piece))
