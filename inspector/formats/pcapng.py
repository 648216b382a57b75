"""A capture's byte streams as a pcapng file of TCP packets, for Wireshark and tshark.

Each recorded connection becomes a TCP connection between its client and
server addresses and ports (as the capture's "connection opened" record names
them): a three-way handshake at the time the client connected, the recorded
bytes in segments of at most ``mss`` bytes with sequence and acknowledgement
numbers that follow both byte streams, and FIN, FIN, ACK (or a reset from
the side that reset it) where the connection ended. A connection the capture
never saw end is left open. Bytes a "missing bytes" event says are not in the
capture (an import of a packet capture that lost segments) are left out as
they were: the sequence numbers skip them.
Timestamps are the capture's, with microsecond resolution; a connection's
packets never go back in time.

The segments carry exactly the bytes the capture holds, after TLS: the TCP
payload of every stream in the file is the stream the report counted.
Addresses that are host names, or unknown, are replaced by stand-ins from
the documentation ranges (192.0.2.0/24 for servers, 198.51.100.0/24 for
clients); the first packet of every connection carries a comment with the
capture's connection id and the original addresses. Frames are Ethernet II
with IPv4 or IPv6, and IP and TCP checksums are correct. Packets are built
and written with dpkt.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

import dpkt

from ..capture import ConnectionClosed, ConnectionOpened, DataChunk, Event, Record, missing_from
from ..wire import Direction

#: Largest TCP payload that fits an IPv4 packet without options (65535 - 20 - 20).
MAX_SEGMENT = 65_495
#: The largest TCP payload of the packets written unless a caller chooses another.
DEFAULT_MSS = MAX_SEGMENT
#: The TCP window scale both ends announce, so that no segment outgrows the window.
_WINDOW_SCALE = 14
_WINDOW = 0xFFFF
_CLIENT_MAC = bytes.fromhex("020000000001")
_SERVER_MAC = bytes.fromhex("020000000002")
_SERVER_STAND_INS = ipaddress.IPv4Network("192.0.2.0/24")
_CLIENT_STAND_INS = ipaddress.IPv4Network("198.51.100.0/24")
_FIRST_EPHEMERAL_PORT = 49152

_SYN, _FIN, _RST, _PSH, _ACK = dpkt.tcp.TH_SYN, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST, dpkt.tcp.TH_PUSH, dpkt.tcp.TH_ACK


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An address and port as the packets show them."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    port: int


@dataclass(frozen=True, slots=True)
class PcapngExport:
    """What :func:`write_pcapng` wrote."""

    packets: int
    connections: int
    #: Capture connection ids whose address or port had to be replaced by a stand-in.
    stand_ins: tuple[int, ...]


class _StandIns:
    """Stable stand-in addresses for host names, one per name, from a documentation
    range (taken again from its start once all are given: ports still tell connections apart)."""

    def __init__(self, network: ipaddress.IPv4Network) -> None:
        self._free = itertools.cycle(network.hosts())
        self._given: dict[str, ipaddress.IPv4Address] = {}

    def address(self, name: str) -> ipaddress.IPv4Address:
        if name not in self._given:
            self._given[name] = next(self._free)
        return self._given[name]


def _split(address: str) -> tuple[str, int | None]:
    """``host:port`` or ``[v6]:port`` into host and port (None when there is no number)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return address.strip("[]"), None
    return host.strip("[]"), int(port)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class _Connection:
    """One TCP connection while its packets are written: both sequence numbers."""

    def __init__(self, opened: ConnectionOpened, client: Endpoint, server: Endpoint, comment: str) -> None:
        self.opened = opened
        self.client = client
        self.server = server
        self.comment = comment
        # Initial sequence numbers: arbitrary, distinct per connection and side.
        self.next_seq = {
            Direction.CLIENT_TO_SERVER: (opened.connection_id * 0x9E3779B1) & 0xFFFFFFFF,
            Direction.SERVER_TO_CLIENT: (opened.connection_id * 0x85EBCA77 + 0x5BD1E995) & 0xFFFFFFFF,
        }
        self.last_timestamp = opened.timestamp


class PcapngWriter:
    """Writes capture records as TCP packets to a binary stream, record by record.

    ``server_port`` replaces every server's port (for example 80, so that
    tools that pick dissectors by port decode HTTP); by default each
    connection keeps the port the capture recorded.
    """

    def __init__(self, out: BinaryIO, *, mss: int = DEFAULT_MSS, server_port: int | None = None) -> None:
        if not 0 < mss <= MAX_SEGMENT:
            raise ValueError(f"the segment size must be between 1 and {MAX_SEGMENT} bytes (got {mss})")
        if server_port is not None and not 0 < server_port < 65536:
            raise ValueError(f"not a TCP port: {server_port}")
        shb = dpkt.pcapng.SectionHeaderBlockLE(
            opts=[
                dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_SHB_USERAPPL, data=b"rtinspect export"),
                dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT),
            ]
        )
        idb = dpkt.pcapng.InterfaceDescriptionBlockLE(snaplen=0, linktype=dpkt.pcapng.DLT_EN10MB)
        self._writer = dpkt.pcapng.Writer(out, shb=shb, idb=idb)
        self._mss = mss
        self._server_port = server_port
        self._connections: dict[int, _Connection] = {}
        self._servers = _StandIns(_SERVER_STAND_INS)
        self._clients = _StandIns(_CLIENT_STAND_INS)
        self._ip_id = itertools.count(1)
        self.packets = 0
        self.connections = 0
        self.stand_ins: list[int] = []

    def write(self, record: Record) -> None:
        """Write the packets of one record (records of unknown connections are skipped)."""
        if isinstance(record, DataChunk):
            connection = self._connections.get(record.connection_id)
            if connection is not None:
                self._data(connection, record.direction, record.data, record.timestamp)
        elif isinstance(record, ConnectionOpened):
            self._open(record)
        elif isinstance(record, ConnectionClosed):
            connection = self._connections.pop(record.connection_id, None)
            if connection is not None:
                self._close(connection, record.reason, record.timestamp)
        elif isinstance(record, Event) and (missing := missing_from(record)) is not None:
            connection = self._connections.get(record.connection_id)
            if connection is not None:
                direction, size = missing
                connection.next_seq[direction] = (connection.next_seq[direction] + size) & 0xFFFFFFFF

    def result(self) -> PcapngExport:
        return PcapngExport(self.packets, self.connections, tuple(self.stand_ins))

    # -- connections

    def _endpoint(self, address: str, stand_ins: _StandIns, fallback_port: int) -> tuple[Endpoint, bool]:
        host, port = _split(address)
        ip = _ip(host)
        exact = ip is not None and port is not None
        return Endpoint(ip or stand_ins.address(host), port or fallback_port), exact

    def _open(self, opened: ConnectionOpened) -> None:
        client, client_exact = self._endpoint(
            opened.client, self._clients, _FIRST_EPHEMERAL_PORT + opened.connection_id % 16384
        )
        server, server_exact = self._endpoint(opened.server, self._servers, 80)
        if self._server_port is not None:
            server = Endpoint(server.address, self._server_port)
        if client.address.version != server.address.version:
            # One side is a stand-in (IPv4); give the other an IPv4 stand-in too.
            if isinstance(client.address, ipaddress.IPv6Address):
                client, client_exact = Endpoint(self._clients.address(str(client.address)), client.port), False
            else:
                server, server_exact = Endpoint(self._servers.address(str(server.address)), server.port), False
        comment = f"rtinspect connection {opened.connection_id}: {opened.client} -> {opened.server}"
        if not (client_exact and server_exact):
            comment += f" (shown as {_format(client)} -> {_format(server)})"
            self.stand_ins.append(opened.connection_id)
        connection = _Connection(opened, client, server, comment)
        self._connections[opened.connection_id] = connection
        self.connections += 1
        c2s, s2c = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
        at = opened.timestamp
        self._segment(connection, c2s, _SYN, at, syn=True)
        self._segment(connection, s2c, _SYN | _ACK, at, syn=True)
        self._segment(connection, c2s, _ACK, at)

    def _data(self, connection: _Connection, direction: Direction, data: bytes, timestamp: float) -> None:
        view = memoryview(data)
        for start in range(0, len(view), self._mss):
            self._segment(connection, direction, _PSH | _ACK, timestamp, payload=view[start : start + self._mss])

    def _close(self, connection: _Connection, reason: str, timestamp: float) -> None:
        c2s, s2c = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
        if reason in ("client reset", "server reset", "reset"):
            self._segment(connection, c2s if reason == "client reset" else s2c, _RST | _ACK, timestamp)
            return
        first = s2c if reason == "server closed" else c2s
        self._segment(connection, first, _FIN | _ACK, timestamp)
        self._segment(connection, first.opposite, _FIN | _ACK, timestamp)
        self._segment(connection, first, _ACK, timestamp)

    # -- packets

    def _segment(
        self,
        connection: _Connection,
        direction: Direction,
        flags: int,
        timestamp: float,
        *,
        payload: bytes | memoryview = b"",
        syn: bool = False,
    ) -> None:
        from_client = direction is Direction.CLIENT_TO_SERVER
        source, target = (
            (connection.client, connection.server) if from_client else (connection.server, connection.client)
        )
        seq = connection.next_seq[direction]
        ack = connection.next_seq[direction.opposite] if flags & _ACK else 0
        options = b""
        if syn:
            # MSS, NOP, window scale: the window then covers any run of segments.
            options = bytes((2, 4)) + self._mss.to_bytes(2, "big") + bytes((1, 3, 3, _WINDOW_SCALE))
        tcp = dpkt.tcp.TCP(
            sport=source.port,
            dport=target.port,
            seq=seq,
            ack=ack,
            flags=flags,
            win=_WINDOW,
            opts=options,
            off=(20 + len(options)) // 4,
            data=bytes(payload),
        )
        connection.next_seq[direction] = (seq + len(payload) + bool(flags & (_SYN | _FIN))) & 0xFFFFFFFF
        if isinstance(source.address, ipaddress.IPv4Address):
            ip: dpkt.Packet = dpkt.ip.IP(
                src=source.address.packed, dst=target.address.packed, p=dpkt.ip.IP_PROTO_TCP, ttl=64,
                id=next(self._ip_id) & 0xFFFF, df=1, data=tcp,
            )  # fmt: skip
            ether_type = dpkt.ethernet.ETH_TYPE_IP
        else:
            ip = dpkt.ip6.IP6(
                src=source.address.packed, dst=target.address.packed, nxt=dpkt.ip.IP_PROTO_TCP, hlim=64,
                plen=len(tcp), data=tcp,
            )  # fmt: skip
            ether_type = dpkt.ethernet.ETH_TYPE_IP6
        frame = dpkt.ethernet.Ethernet(
            src=_CLIENT_MAC if from_client else _SERVER_MAC,
            dst=_SERVER_MAC if from_client else _CLIENT_MAC,
            type=ether_type,
            data=ip,
        )
        timestamp = max(timestamp, connection.last_timestamp)
        connection.last_timestamp = timestamp
        if syn and from_client:
            block = dpkt.pcapng.EnhancedPacketBlockLE(
                pkt_data=bytes(frame),
                opts=[
                    dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_COMMENT, text=connection.comment),
                    dpkt.pcapng.PcapngOptionLE(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT),
                ],
            )
            self._writer.writepkt(block, timestamp)
        else:
            self._writer.writepkt_time(bytes(frame), timestamp)
        self.packets += 1


def _format(endpoint: Endpoint) -> str:
    if isinstance(endpoint.address, ipaddress.IPv6Address):
        return f"[{endpoint.address}]:{endpoint.port}"
    return f"{endpoint.address}:{endpoint.port}"


def write_pcapng(
    records: Iterable[Record], out: BinaryIO, *, mss: int = DEFAULT_MSS, server_port: int | None = None
) -> PcapngExport:
    """Write ``records`` (a capture, in file order) to ``out`` as a pcapng stream."""
    writer = PcapngWriter(out, mss=mss, server_port=server_port)
    for record in records:
        writer.write(record)
    return writer.result()
