"""A capture's byte streams as a pcap file of synthetic TCP segments, for tshark to read.

Each connection becomes a TCP connection between the capture's client and
server addresses: a three-way handshake at the time the client connected,
one segment per recorded chunk (split where a chunk exceeds the largest
segment an IPv4 packet holds) with sequence and acknowledgement numbers that
follow both byte streams, and FIN, FIN-ACK, ACK where the connection closed.
Timestamps are the capture's. IP and TCP checksums are left at zero (tshark
does not check them unless asked). Frames are Ethernet II (linktype 1).

The payload of every segment is exactly the bytes the capture holds, so the
pcap and the capture describe the same traffic.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from inspector.capture import ConnectionClosed, ConnectionOpened, DataChunk, read_capture
from inspector.wire import Direction

_PCAP_HEADER = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_ETHERNET = bytes.fromhex("0200000000020200000000010800")
_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_MAX_SEGMENT = 65535 - _IP.size - _TCP.size
_FIN, _SYN, _PSH, _ACK = 0x01, 0x02, 0x08, 0x10


def _endpoint(address: str) -> tuple[bytes, int]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        packed = bytes(int(part) for part in host.split("."))
        if len(packed) != 4:
            raise ValueError
    except ValueError:
        packed = bytes((127, 0, 0, 1))
    return packed, int(port)


@dataclass
class _Flow:
    client: tuple[bytes, int]
    server: tuple[bytes, int]
    client_seq: int
    server_seq: int


class PcapWriter:
    """Writes TCP segments of loopback connections to a classic pcap file."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file = open(path, "wb", buffering=1 << 20)
        self._file.write(_PCAP_HEADER.pack(0xA1B2C3D4, 2, 4, 0, 0, 65535 + len(_ETHERNET), 1))
        self._ip_id = 0
        self._flows: dict[int, _Flow] = {}
        self.packets = 0

    def _packet(
        self,
        timestamp: float,
        source: tuple[bytes, int],
        target: tuple[bytes, int],
        seq: int,
        ack: int,
        flags: int,
        payload: bytes | memoryview = b"",
    ) -> None:
        self._ip_id = (self._ip_id + 1) & 0xFFFF
        length = _IP.size + _TCP.size + len(payload)
        ip = _IP.pack(0x45, 0, length, self._ip_id, 0x4000, 64, 6, 0, source[0], target[0])
        tcp = _TCP.pack(source[1], target[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
        seconds = int(timestamp)
        micros = int((timestamp - seconds) * 1e6)
        size = len(_ETHERNET) + length
        write = self._file.write
        write(_RECORD.pack(seconds, micros, size, size))
        write(_ETHERNET)
        write(ip)
        write(tcp)
        write(payload)
        self.packets += 1

    def open(self, connection_id: int, timestamp: float, client: str, server: str) -> None:
        flow = _Flow(_endpoint(client), _endpoint(server), 1_000_000 + connection_id, 2_000_000 + connection_id)
        self._flows[connection_id] = flow
        self._packet(timestamp, flow.client, flow.server, flow.client_seq, 0, _SYN)
        flow.client_seq += 1
        self._packet(timestamp, flow.server, flow.client, flow.server_seq, flow.client_seq, _SYN | _ACK)
        flow.server_seq += 1
        self._packet(timestamp, flow.client, flow.server, flow.client_seq, flow.server_seq, _ACK)

    def data(self, connection_id: int, timestamp: float, from_client: bool, data: bytes | memoryview) -> None:
        flow = self._flows.get(connection_id)
        if flow is None:
            return
        view = memoryview(data)
        for start in range(0, len(view), _MAX_SEGMENT):
            segment = view[start : start + _MAX_SEGMENT]
            if from_client:
                self._packet(
                    timestamp, flow.client, flow.server, flow.client_seq, flow.server_seq, _PSH | _ACK, segment
                )
                flow.client_seq += len(segment)
            else:
                self._packet(
                    timestamp, flow.server, flow.client, flow.server_seq, flow.client_seq, _PSH | _ACK, segment
                )
                flow.server_seq += len(segment)

    def close(self, connection_id: int, timestamp: float) -> None:
        flow = self._flows.pop(connection_id, None)
        if flow is None:
            return
        self._packet(timestamp, flow.server, flow.client, flow.server_seq, flow.client_seq, _FIN | _ACK)
        flow.server_seq += 1
        self._packet(timestamp, flow.client, flow.server, flow.client_seq, flow.server_seq, _FIN | _ACK)
        flow.client_seq += 1
        self._packet(timestamp, flow.server, flow.client, flow.server_seq, flow.client_seq, _ACK)

    def finish(self) -> None:
        self._file.close()


def capture_to_pcap(capture: str | os.PathLike[str], pcap: str | os.PathLike[str]) -> int:
    """Write the traffic of ``capture`` to ``pcap``; returns the number of packets."""
    writer = PcapWriter(pcap)
    last = 0.0
    with read_capture(capture) as records:
        for record in records:
            last = max(last, record.timestamp)
            if isinstance(record, DataChunk):
                writer.data(
                    record.connection_id, record.timestamp, record.direction is Direction.CLIENT_TO_SERVER, record.data
                )
            elif isinstance(record, ConnectionOpened):
                writer.open(record.connection_id, record.timestamp, record.client, record.server)
            elif isinstance(record, ConnectionClosed):
                writer.close(record.connection_id, record.timestamp)
    for connection_id in list(writer._flows):
        writer.close(connection_id, last)
    writer.finish()
    return writer.packets
