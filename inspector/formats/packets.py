"""pcap and pcapng files read packet by packet, into the records of their TCP connections.

The file is read one packet at a time, never whole: a pcap (microsecond or
nanosecond, either byte order) record by record; a pcapng block by block,
each packet with the link type and timestamp resolution of its own interface
(files with several interfaces, or several sections, read as they were
written). A file that ends inside a packet is read up to it, and a note says so.

Each packet is decoded with dpkt, from its link layer (Ethernet with or without
VLAN tags, Linux cooked capture v1 and v2 as ``tcpdump -i any`` writes them,
BSD loopback and null, raw IP) through IPv4 or IPv6 to TCP, and its segment
goes to :class:`~.tcp.TcpReassembler`, which puts each connection with a server
port back together and hands out capture records. Packets that are not TCP
over IP, IP fragments (not reassembled: their bytes are missing), packets cut
short before their TCP header, and the segments of connections to other ports
are counted and left out; the notes say how many.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Collection, Iterator
from typing import BinaryIO

import dpkt

from ..capture import CaptureError, Record
from ..wire import Direction
from .detect import FileFormat
from .tcp import ACK, SYN, Gaps, Segment, TcpReassembler

#: Link types (LINKTYPE_* in libpcap's numbering) whose frames are read.
NULL, ETHERNET, RAW, LOOP, LINUX_SLL, IPV4, IPV6, LINUX_SLL2 = 0, 1, 101, 108, 113, 228, 229, 276
#: Raw IP under the numbers some systems used before LINKTYPE_RAW.
_RAW_ALIASES = (12, 14)
#: Address families of the null and loopback headers: IPv4, and IPv6 as BSDs, macOS and Linux number it.
_AF_INET = 2
_AF_INET6 = (10, 24, 28, 30)

#: Packets looked at for the ports connections were opened to, when the user named none.
PORT_HINT_PACKETS = 100_000

_PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1_000_000),
    b"\xa1\xb2\xc3\xd4": (">", 1_000_000),
    b"\x4d\x3c\xb2\xa1": ("<", 1_000_000_000),
    b"\xa1\xb2\x3c\x4d": (">", 1_000_000_000),
}
_PCAPNG_SECTION = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}
_IDB, _PB, _SPB, _EPB = 1, 2, 3, 6
_OPT_TSRESOL, _OPT_TSOFFSET = 9, 14

#: A packet as a file holds it: time, link type and the bytes captured.
Frame = tuple[float, int, bytes]


class _Truncated(Exception):
    """The file ends inside a packet record or block."""


class PacketFile:
    """The TCP connections of a pcap or pcapng file, as capture records.

    Iterating reads the file afresh each time. ``server_ports`` are the ports
    the servers listened on. Once a reading has ended, :meth:`notes` says
    what a report must say about it; a reading that found no connection
    with a server port raises :class:`~inspector.capture.CaptureError`.
    """

    def __init__(self, path: str, format: FileFormat, server_ports: Collection[int]) -> None:
        self.path = path
        self.format = format
        self.ports = tuple(sorted(set(server_ports)))
        self._reassembler: TcpReassembler | None = None
        self._skipped: Counter[str] = Counter()
        self._truncated = False

    def __iter__(self) -> Iterator[Record]:
        reassembler = self._reassembler = TcpReassembler(self.ports, mode=str(self.format))
        skipped = self._skipped = Counter()
        self._truncated = False
        with _open(self.path) as file:
            frames = _frames(file, self.format)
            while True:
                try:
                    timestamp, link_type, frame = next(frames)
                except StopIteration:
                    break
                except _Truncated:
                    self._truncated = True
                    break
                segment = _segment(timestamp, link_type, frame, skipped)
                if segment is not None:
                    yield from reassembler.feed(segment)
        yield from reassembler.finish()
        if not reassembler.connections:
            left_out = _left_out(reassembler.other_ports, skipped)
            raise CaptureError(
                f"{self.path}: no TCP connection with server port {_ports(self.ports)}"
                + (f" (left out: {left_out})" if left_out else " (the file holds no packets)")
            )

    def notes(self) -> list[str]:
        """What a report of the last reading must say about it."""
        reassembler = self._reassembler
        if reassembler is None:
            return []
        found = [f"{self.path}: {_summary(self.format, reassembler.connections, self.ports, reassembler.gaps)}"]
        left_out = _left_out(reassembler.other_ports, self._skipped)
        if left_out:
            found.append(f"{self.path}: left out: {left_out}.")
        if self._truncated:
            found.append(
                f"{self.path}: the file ends inside a packet (its writer stopped mid-packet); "
                "the packets before it were read."
            )
        return found


def server_ports_needed(path: str, format: FileFormat) -> CaptureError:
    """The error for a packet file read without server ports, naming the ports its connections were opened to."""
    opened: Counter[int] = Counter()
    try:
        with _open(path) as file:
            frames = _frames(file, format)
            for _, (timestamp, link_type, frame) in zip(range(PORT_HINT_PACKETS), frames, strict=False):
                segment = _segment(timestamp, link_type, frame, Counter())
                if segment is not None and segment.flags & (SYN | ACK) == SYN:
                    opened[segment.destination_port] += 1
    except (_Truncated, CaptureError):
        pass
    return CaptureError(
        f"{path}: a {format} file of packets: name the port(s) its servers listened on with --server-port PORT"
        f"{_opened_to(opened)}"
    )


# -- notes


def _ports(ports: Collection[int]) -> str:
    return ", ".join(str(port) for port in sorted(ports))


def _opened_to(opened: Counter[int]) -> str:
    if not opened:
        return ""
    top = opened.most_common(5)
    more = f" and {len(opened) - len(top)} more" if len(opened) > len(top) else ""
    listed = ", ".join(f"{port} ({count})" for port, count in top)
    return f" (TCP connections in it were opened to port {listed}{more})"


def _summary(format: FileFormat, connections: int, ports: Collection[int], gaps: Gaps) -> str:
    found = (
        f"a {format} file of packets: {connections:,} TCP connection(s) with server port {_ports(ports)}, "
        "put back together from their segments"
    )
    if not gaps.connections:
        return found + " with none missing."
    listed = "; ".join(_describe(g.connection_id, g.missing, g.began_before) for g in gaps.listed)
    more = f"; and {gaps.connections - len(gaps.listed):,} more" if gaps.connections > len(gaps.listed) else ""
    earlier = ", and what those open before it began sent earlier" if gaps.began_before else ""
    return (
        f"{found}. {gaps.connections:,} of them lack bytes the capture does not have ({gaps.missing:,} bytes "
        f'in all{earlier}): {listed}{more}. They are marked rebuilt ("reconstructed" in JSON), and each '
        "direction is parsed up to its first missing byte: the bytes after it are counted, as unparsed, "
        "and no byte is made up."
    )


def _describe(connection_id: int, missing: dict[Direction, int], began_before: bool) -> str:
    parts = [f"{size:,} bytes {direction.value.replace('_', ' ')}" for direction, size in missing.items() if size]
    if began_before:
        parts.insert(0, "it was open before the capture began, so its first bytes are not in it")
    return f"connection {connection_id}: {', '.join(parts)}"


def _left_out(other_ports: Counter[int], skipped: Counter[str]) -> str:
    parts = []
    if other_ports:
        top = other_ports.most_common(5)
        more = f" and {len(other_ports) - len(top)} more" if len(other_ports) > len(top) else ""
        listed = ", ".join(f"{port} ({count})" for port, count in top)
        parts.append(f"{other_ports.total():,} TCP connection(s) to other ports (port {listed}{more})")
    parts += [f"{count:,} {reason}" for reason, count in sorted(skipped.items())]
    return "; ".join(parts)


# -- files


def _open(path: str) -> BinaryIO:
    try:
        return open(path, "rb", buffering=1 << 20)
    except OSError as e:
        raise CaptureError(f"cannot read {path}: {e.strerror or e}") from None


def _frames(file: BinaryIO, format: FileFormat) -> Iterator[Frame]:
    try:
        yield from (_pcapng_frames(file) if format is FileFormat.PCAPNG else _pcap_frames(file))
    except OSError as e:
        raise CaptureError(f"cannot read {getattr(file, 'name', 'the file')}: {e.strerror or e}") from None


def _read(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) < size:
        raise _Truncated
    return data


def _pcap_frames(file: BinaryIO) -> Iterator[Frame]:
    head = file.read(24)
    if len(head) < 24 or head[:4] not in _PCAP_MAGICS:
        raise CaptureError(f"{getattr(file, 'name', 'the file')}: not a pcap file")
    order, divisor = _PCAP_MAGICS[head[:4]]
    link_type = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF  # the top bits hold the FCS length
    record = struct.Struct(order + "IIII")
    while True:
        header = file.read(record.size)
        if not header:
            return
        if len(header) < record.size:
            raise _Truncated
        seconds, fraction, captured, _ = record.unpack(header)
        yield seconds + fraction / divisor, link_type, _read(file, captured)


def _pcapng_frames(file: BinaryIO) -> Iterator[Frame]:
    order = "<"
    #: Each interface of the section: link type, ticks per second, seconds to add.
    interfaces: list[tuple[int, int, int]] = []
    last = 0.0
    name = getattr(file, "name", "the file")
    while True:
        head = file.read(8)
        if not head:
            return
        if len(head) < 8:
            raise _Truncated
        if head[:4] == b"\x0a\x0d\x0d\x0a":
            magic = _read(file, 4)
            if magic not in _PCAPNG_BYTE_ORDER:
                raise CaptureError(f"{name}: a damaged pcapng section header")
            order = _PCAPNG_BYTE_ORDER[magic]
            (length,) = struct.unpack(order + "I", head[4:])
            if length < 28 or length % 4:
                raise CaptureError(f"{name}: a damaged pcapng section header")
            _read(file, length - 12)
            interfaces = []
            continue
        block_type, length = struct.unpack(order + "II", head)
        if length < 12 or length % 4:
            raise CaptureError(f"{name}: a damaged pcapng block (type {block_type}, length {length})")
        body = _read(file, length - 8)[:-4]
        if block_type == _IDB:
            interfaces.append(_interface(body, order))
        elif block_type in (_EPB, _PB):
            if block_type == _EPB:
                interface, high, low, captured = struct.unpack_from(order + "IIII", body)
            else:
                interface, _, high, low, captured = struct.unpack_from(order + "HHIII", body)
            if interface >= len(interfaces):
                raise CaptureError(f"{name}: a packet of interface {interface}, which the file does not describe")
            link_type, ticks, offset = interfaces[interface]
            last = offset + ((high << 32) | low) / ticks
            yield last, link_type, body[20 : 20 + captured]
        elif block_type == _SPB and interfaces:
            # No time of its own: the time of the packet before it.
            (original,) = struct.unpack_from(order + "I", body)
            yield last, interfaces[0][0], body[4 : 4 + original]


def _interface(body: bytes, order: str) -> tuple[int, int, int]:
    """An interface description block's link type, ticks per second and time offset."""
    link_type = struct.unpack_from(order + "H", body)[0]
    ticks, offset = 1_000_000, 0
    position = 8
    while position + 4 <= len(body):
        code, size = struct.unpack_from(order + "HH", body, position)
        value = body[position + 4 : position + 4 + size]
        if code == 0:
            break
        if code == _OPT_TSRESOL and size >= 1:
            ticks = (2 if value[0] & 0x80 else 10) ** (value[0] & 0x7F)
        elif code == _OPT_TSOFFSET and size >= 8:
            (offset,) = struct.unpack(order + "q", value[:8])
        position += 4 + (size + 3) // 4 * 4
    return link_type, ticks, offset


# -- packets

_ETH_IP, _ETH_IP6 = dpkt.ethernet.ETH_TYPE_IP, dpkt.ethernet.ETH_TYPE_IP6
_NOT_IP = "packet(s) that were not IPv4 or IPv6"
_NOT_TCP = "packet(s) that were not TCP"
_FRAGMENT = "IP fragment(s) (not reassembled: their bytes are missing)"
_DAMAGED = "packet(s) cut short or damaged before the end of their TCP header"


class _UnknownLinkType(Exception):
    pass


def _ip(link_type: int, frame: bytes) -> dpkt.Packet | bytes | None:
    """The IP packet a frame carries (bytes where dpkt could not decode it), or None when it carries none."""
    if link_type == ETHERNET:
        ethernet = dpkt.ethernet.Ethernet(frame)
        tags = getattr(ethernet, "vlan_tags", None)  # 802.1Q and QinQ: dpkt reads through them
        inner = tags[-1].type if tags else ethernet.type
        return ethernet.data if inner in (_ETH_IP, _ETH_IP6) else None
    if link_type in (LINUX_SLL, LINUX_SLL2):
        cooked = dpkt.sll.SLL(frame) if link_type == LINUX_SLL else dpkt.sll2.SLL2(frame)
        return cooked.data if cooked.ethtype in (_ETH_IP, _ETH_IP6) else None
    if link_type in (NULL, LOOP):
        if len(frame) < 4:
            return b""
        family = min(int.from_bytes(frame[:4], "little"), int.from_bytes(frame[:4], "big"))
        if family == _AF_INET:
            return dpkt.ip.IP(frame[4:])
        return dpkt.ip6.IP6(frame[4:]) if family in _AF_INET6 else None
    if link_type in (RAW, IPV4, IPV6, *_RAW_ALIASES):
        version = frame[0] >> 4 if frame else 0
        if version == 4:
            return dpkt.ip.IP(frame)
        return dpkt.ip6.IP6(frame) if version == 6 else None
    raise _UnknownLinkType(link_type)


def _segment(timestamp: float, link_type: int, frame: bytes, skipped: Counter[str]) -> Segment | None:
    """The TCP segment in a frame, or None (counted in ``skipped`` by why) when it has none to follow."""
    try:
        packet = _ip(link_type, frame)
    except _UnknownLinkType:
        skipped[f"packet(s) of link type {link_type}, which rtinspect does not read"] += 1
        return None
    except (dpkt.UnpackError, IndexError, struct.error):
        packet = b""
    if isinstance(packet, dpkt.ip.IP):
        if packet.mf or packet.offset:
            skipped[_FRAGMENT] += 1
            return None
        # The TCP segment's length, as the IP header says (0: a segmentation offload's, as captured).
        claimed = packet.len - (packet.hl << 2) if packet.len else -1
        ip_header = packet.hl << 2
    elif isinstance(packet, dpkt.ip6.IP6):
        if dpkt.ip.IP_PROTO_FRAGMENT in packet.extension_hdrs:
            skipped[_FRAGMENT] += 1
            return None
        extensions = sum(header.length for header in packet.all_extension_headers)
        claimed = packet.plen - extensions if packet.plen else -1
        ip_header = 40 + extensions
    else:
        skipped[_NOT_IP if packet is None else _DAMAGED] += 1
        return None
    if packet.p != dpkt.ip.IP_PROTO_TCP:
        skipped[_NOT_TCP] += 1
        return None
    tcp = packet.data
    if not isinstance(tcp, dpkt.tcp.TCP):
        skipped[_DAMAGED] += 1
        return None
    payload = bytes(tcp.data)
    return Segment(
        timestamp,
        source=bytes(packet.src),
        source_port=tcp.sport,
        destination=bytes(packet.dst),
        destination_port=tcp.dport,
        seq=tcp.seq,
        ack=tcp.ack,
        flags=tcp.flags,
        data=payload,
        length=claimed - (tcp.off << 2) if claimed >= 0 else len(payload),
        header=ip_header + (tcp.off << 2),
    )


def packet_file(path: str | os.PathLike[str], format: FileFormat, server_ports: Collection[int]) -> PacketFile:
    """A pcap or pcapng file to read with ``server_ports``; without any, the error that asks for them."""
    name = os.fspath(path)
    if not server_ports:
        raise server_ports_needed(name, format)
    return PacketFile(name, format, server_ports)


__all__ = ["PacketFile", "packet_file", "server_ports_needed"]
