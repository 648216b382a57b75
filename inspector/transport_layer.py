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
  :func:`estimated_tcp_header_bytes` and :func:`udp_header_bytes`).

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


def estimated_tcp_header_bytes(
    data_segments: Mapping[Direction, int], direction: Direction, *, ipv6: bool, closed: bool
) -> int:
    """IP and TCP header bytes that ``direction`` sent, estimated.

    The rule: every segment carries one 52-byte header over IPv4 (72 over IPv6;
    TCP with timestamps). A direction sends its data segments (each read or
    write of the proxy is ``ceil(bytes / 1448)`` of them, see :func:`tcp_segments`),
    one ACK for each data segment the other direction sent, the segments of
    opening the connection (:data:`OPENING_SEGMENTS`) and, once it is
    ``closed``, of closing it (:data:`CLOSING_SEGMENTS`). Delayed and
    piggybacked ACKs, retransmissions and the SYNs' larger options are not
    modelled.
    """
    segments = data_segments.get(direction, 0) + data_segments.get(direction.opposite, 0)
    segments += OPENING_SEGMENTS[direction] + (CLOSING_SEGMENTS if closed else 0)
    return segments * (TCP_IPV6_HEADER if ipv6 else TCP_IPV4_HEADER)


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
