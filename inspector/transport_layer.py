"""What travelled below the byte streams: TLS records, QUIC packets, IP headers.

Wire bytes (:mod:`inspector.wire`) are the bytes of each TCP stream after TLS,
or of each QUIC stream after QUIC. Ranking transports by them alone can
mislead: TLS records, QUIC packets and the IP, TCP and UDP headers under them
cost differently per transport. :class:`TransportLayer` holds those costs for
the client's leg (client ↔ proxy), per direction:

* ``tls_records``, ``tls_record_bytes``: TLS records over TCP, handshake
  records included; the bytes are every record's 5-byte header and body
  (exact: counted from the raw bytes, see :mod:`inspector.tls_records`).
* ``quic_packets``, ``quic_packet_bytes``, ``quic_ack_only_packets``,
  ``quic_padding_bytes``: QUIC packets, their bytes as UDP payload, the
  packets that carried only ACK and PADDING frames, and PADDING bytes (see
  :mod:`inspector.quic_packets`).
* ``ip_header_bytes``: IP and TCP (or UDP) headers. A packet capture knows
  every packet, so its figure is exact; the proxy cannot see TCP segments and
  estimates them (``ip_header_bytes_estimated``; the rules are
  :class:`TcpSegmentEstimate` and :func:`udp_header_bytes`).

Figures of the same leg add up: :meth:`TransportLayer.__add__` sums them, so
merged reports and ``-j`` parts give what one pass gives.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

from .wire import Direction

#: IPv4 (20) and TCP with the timestamp option (32), and the same over IPv6 (40 + 32).
TCP_IPV4_HEADER = 52
TCP_IPV6_HEADER = 72
#: IPv4 (20) and UDP (8), and the same over IPv6 (40 + 8).
UDP_IPV4_HEADER = 28
UDP_IPV6_HEADER = 48
#: The largest TCP payload of one segment the estimate assumes: an Ethernet MTU
#: of 1,500 bytes less 52 bytes of headers.
ESTIMATED_MSS = 1448
#: Segments that carry no data, per direction, of opening a TCP connection (the
#: client's SYN and ACK, the server's SYN-ACK) and of closing it (each side's FIN
#: and its ACK of the other's).
OPENING_SEGMENTS = {Direction.CLIENT_TO_SERVER: 2, Direction.SERVER_TO_CLIENT: 1}
CLOSING_SEGMENTS = 2


@dataclass(frozen=True, slots=True)
class LayerFigures:
    """One direction of one leg below the byte stream (see the module's docstring)."""

    tls_records: int = 0
    tls_record_bytes: int = 0
    quic_packets: int = 0
    quic_packet_bytes: int = 0
    quic_ack_only_packets: int = 0
    quic_padding_bytes: int = 0
    ip_header_bytes: int = 0
    #: Whether ``ip_header_bytes`` is an estimate (the proxy's) rather than counted from packets.
    ip_header_bytes_estimated: bool = False

    def __add__(self, other: LayerFigures) -> LayerFigures:
        sums: dict[str, Any] = {name: getattr(self, name) + getattr(other, name) for name in COUNTS}
        return LayerFigures(
            **sums,
            ip_header_bytes_estimated=(self.ip_header_bytes_estimated and self.ip_header_bytes > 0)
            or (other.ip_header_bytes_estimated and other.ip_header_bytes > 0),
        )

    def as_dict(self) -> dict[str, int | bool]:
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LayerFigures | None:
        """The figures of :meth:`as_dict`; None when any is damaged (a count missing
        is zero, a count that is not a whole number of zero or more is damaged)."""
        counts: dict[str, Any] = {}
        for name in COUNTS:
            value = data.get(name, 0)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                return None
            counts[name] = value
        estimated = data.get("ip_header_bytes_estimated", False)
        if not isinstance(estimated, bool):
            return None
        return cls(**counts, ip_header_bytes_estimated=estimated)


#: The counts of :class:`LayerFigures`, in order (every field but the flag).
COUNTS = tuple(f.name for f in fields(LayerFigures) if f.name != "ip_header_bytes_estimated")
_FIELDS = tuple(f.name for f in fields(LayerFigures))


@dataclass(frozen=True, slots=True)
class TransportLayer:
    """Both directions of the client's leg below the byte stream."""

    client_to_server: LayerFigures = LayerFigures()
    server_to_client: LayerFigures = LayerFigures()

    def __getitem__(self, direction: Direction) -> LayerFigures:
        return self.client_to_server if direction is Direction.CLIENT_TO_SERVER else self.server_to_client

    def __add__(self, other: TransportLayer) -> TransportLayer:
        return TransportLayer(
            self.client_to_server + other.client_to_server, self.server_to_client + other.server_to_client
        )

    def as_dict(self) -> dict[str, dict[str, int | bool]]:
        return {direction.value: self[direction].as_dict() for direction in Direction}

    @classmethod
    def from_dict(cls, data: Any) -> TransportLayer | None:
        """The figures of :meth:`as_dict`; None when they are damaged."""
        if not isinstance(data, Mapping):
            return None
        parts = [data.get(direction.value, {}) for direction in Direction]
        if not all(isinstance(part, Mapping) for part in parts):
            return None
        figures = [LayerFigures.from_dict(part) for part in parts]
        if figures[0] is None or figures[1] is None:
            return None
        return cls(figures[0], figures[1])


class LegCounter(Protocol):
    """What counts a client's leg below its byte streams as the proxy relays it:
    :class:`~inspector.tls_records.TlsLeg` over TCP,
    :class:`~inspector.quic_packets.QuicPacketTracer` over QUIC."""

    def figures(self, *, closed: bool = False) -> TransportLayer | None:
        """The figures so far (None: nothing counted yet); ``closed``: the connection has closed."""
        ...


def add_layers(a: TransportLayer | None, b: TransportLayer | None) -> TransportLayer | None:
    """The sum of two legs' figures, either of which may be absent."""
    if a is None:
        return b
    if b is None:
        return a
    return a + b


def tcp_segments(size: int) -> int:
    """The segments the estimate assumes for one read or write of ``size`` bytes."""
    return -(-size // ESTIMATED_MSS)


#: Seconds a receiver holds back a pure ACK, waiting for data of its own to carry it
#: (Linux's shortest delayed ACK).
DELAYED_ACK = 0.04
#: A receiver acknowledges at once every this many data segments.
ACK_EVERY = 2


class TcpSegmentEstimate:
    """The segments a TCP connection's two directions sent, estimated from the
    proxy's reads and writes, and their IP and TCP header bytes.

    The rule: each read or write of ``bytes`` is ``ceil(bytes / 1448)`` data
    segments (:func:`tcp_segments`). A receiver acknowledges every second data
    segment at once; a segment left unacknowledged gets a pure ACK once 40 ms
    pass without data of the receiver's own to carry it (:data:`DELAYED_ACK`),
    and data the receiver sends meanwhile carries the ACK. Opening the
    connection adds the client's SYN and ACK and the server's SYN-ACK
    (:data:`OPENING_SEGMENTS`); closing adds a FIN and an ACK each way
    (:data:`CLOSING_SEGMENTS`) and the ACKs still held back. Every segment is a
    52-byte header over IPv4 (20, and TCP with timestamps, 32), 72 over IPv6.
    Retransmissions, window updates and the SYNs' larger options are not
    modelled.
    """

    __slots__ = ("_since", "_unacked", "acks", "data", "ipv6")

    def __init__(self, *, ipv6: bool) -> None:
        self.ipv6 = ipv6
        #: Data segments of each direction, and the pure ACKs that acknowledged them
        #: (which travelled the other way).
        self.data = {direction: 0 for direction in Direction}
        self.acks = {direction: 0 for direction in Direction}
        #: Data segments of each direction not acknowledged yet, and since when.
        self._unacked = {direction: 0 for direction in Direction}
        self._since = {direction: 0.0 for direction in Direction}

    def sent(self, direction: Direction, size: int, timestamp: float) -> None:
        """``direction``'s sender wrote ``size`` bytes at ``timestamp`` (seconds, any origin)."""
        if size <= 0:
            return
        segments = tcp_segments(size)
        answered = direction.opposite
        self._expire(answered, timestamp)
        self._unacked[answered] = 0  # the data carries the ACK of what its sender received
        self._expire(direction, timestamp)
        if not self._unacked[direction]:
            self._since[direction] = timestamp
        self.data[direction] += segments
        acks, self._unacked[direction] = divmod(self._unacked[direction] + segments, ACK_EVERY)
        self.acks[direction] += acks

    def _expire(self, direction: Direction, now: float) -> None:
        """The ACK held back for ``direction``'s data goes, if it was held long enough by ``now``."""
        if self._unacked[direction] and now - self._since[direction] >= DELAYED_ACK:
            self.acks[direction] += 1
            self._unacked[direction] = 0

    def header_bytes(self, direction: Direction, *, closed: bool = False) -> int:
        """IP and TCP header bytes ``direction`` sent: its data segments and the pure
        ACKs of the other direction's data."""
        answered = direction.opposite
        segments = self.data[direction] + self.acks[answered] + OPENING_SEGMENTS[direction]
        if closed:
            segments += CLOSING_SEGMENTS + (1 if self._unacked[answered] else 0)
        return segments * (TCP_IPV6_HEADER if self.ipv6 else TCP_IPV4_HEADER)


def udp_header_bytes(datagrams: int, *, ipv6: bool) -> int:
    """IP and UDP header bytes of ``datagrams`` UDP datagrams: exact in count, and in
    size unless the IP header carried options (IPv4) or extension headers (IPv6)."""
    return datagrams * (UDP_IPV6_HEADER if ipv6 else UDP_IPV4_HEADER)


def travels_over_ipv6(host: str) -> bool:
    """Whether packets to or from ``host`` (an IP address) carry IPv6 headers: an IPv6
    address that is not an IPv4 one mapped into IPv6 (a dual-stack socket's view of an IPv4 peer)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None
