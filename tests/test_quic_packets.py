"""QUIC packets tallied from aioquic's logger events, against tshark.

An aioquic client and server (the version mitmproxy relays QUIC with) talk
HTTP/3 directly on 127.0.0.1: a GET answered by a stream of small DATA
frames. The tally rides on the client's connection; dumpcap captures the UDP
port and tshark, with the client's key log, dissects every packet. Datagrams,
UDP payload bytes, packets, ACK-only packets and PADDING bytes must be equal
in each direction.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from pathlib import Path
from typing import Any

from aioquic.asyncio import QuicConnectionProtocol, connect, serve
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent
from servers import DEADLINE, LOOPBACK, issue_certificates
from tshark import TSHARK, PacketCapture, needs_dumpcap, needs_tshark

from inspector.quic_packets import QuicPacketTracer, frame_size, varint_size
from inspector.transport_layer import UDP_IPV4_HEADER
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

#: DATA frames the server sends, and the bytes of each.
MESSAGES, MESSAGE_SIZE = 40, 64
#: tshark's frame types of ACK (and ACK with ECN counts) and PADDING.
ACK_ONLY_TYPES = frozenset({0, 2, 3})


#: The tracer attached to the server's connection as it is made (as the proxy attaches one to its client leg's).
SERVER_TRACER: list[QuicPacketTracer] = []


class Feed(QuicConnectionProtocol):
    """The server: answers any request with :data:`MESSAGES` DATA frames, a few milliseconds apart."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tracer = QuicPacketTracer()
        tracer.attach(self._quic)  # aioquic's server makes the connection before it reads the first datagram
        SERVER_TRACER.append(tracer)
        self.http = H3Connection(self._quic)

    def quic_event_received(self, event: QuicEvent) -> None:
        for received in self.http.handle_event(event):
            if isinstance(received, HeadersReceived):
                asyncio.ensure_future(self.answer(received.stream_id))

    async def answer(self, stream_id: int) -> None:
        self.http.send_headers(stream_id, [(b":status", b"200")])
        for _ in range(MESSAGES):
            self.http.send_data(stream_id, b"x" * MESSAGE_SIZE, end_stream=False)
            self.transmit()
            await asyncio.sleep(0.002)
        self.http.send_data(stream_id, b"", end_stream=True)
        self.transmit()


class Reader(QuicConnectionProtocol):
    """The client: reads one response to its end."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic)
        self.body = 0
        self.ended: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    def quic_event_received(self, event: QuicEvent) -> None:
        for received in self.http.handle_event(event):
            if isinstance(received, DataReceived):
                self.body += len(received.data)
                if received.stream_ended and not self.ended.done():
                    self.ended.set_result(self.body)


async def get(port: int, certificates: Any, keys: Path, tracer: QuicPacketTracer) -> int:
    server_configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
    server_configuration.load_cert_chain(str(certificates.server), str(certificates.server))
    server = await serve(LOOPBACK, port, configuration=server_configuration, create_protocol=Feed)
    try:
        with open(keys, "w") as key_log:
            configuration = QuicConfiguration(
                is_client=True, alpn_protocols=H3_ALPN, quic_logger=tracer, secrets_log_file=key_log
            )
            configuration.load_verify_locations(str(certificates.ca))
            async with connect(LOOPBACK, port, configuration=configuration, create_protocol=Reader) as client:
                stream_id = client._quic.get_next_available_stream_id()
                request = [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", b"localhost"),
                    (b":path", b"/"),
                ]
                client.http.send_headers(stream_id, request, end_stream=True)
                client.transmit()
                body = await asyncio.wait_for(client.ended, DEADLINE)
            await asyncio.sleep(0.1)  # the server's answer to the close
    finally:
        server.close()
    return body


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def tshark_packets(pcapng: Path, keys: Path, port: int) -> dict[Direction, dict[str, int]]:
    """Per direction: datagrams, UDP payload bytes, packets, ACK-only packets and PADDING bytes, as tshark dissects them."""
    output = subprocess.run(
        [TSHARK or "tshark", "-r", str(pcapng), "-o", f"tls.keylog_file:{keys}",
         "-T", "json", "--no-duplicate-keys", "-J", "udp quic"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    figures = {d: {"datagrams": 0, "udp_payload": 0, "packets": 0, "ack_only": 0, "padding": 0} for d in Direction}
    for frame in json.loads(output):
        layers = frame["_source"]["layers"]
        udp = layers["udp"]
        counts = figures[C2S if int(udp["udp.dstport"]) == port else S2C]
        counts["datagrams"] += 1
        counts["udp_payload"] += int(udp["udp.length"]) - 8
        packets = layers.get("quic", [])
        for packet in packets if isinstance(packets, list) else [packets]:
            if "quic.packet_length" not in packet:
                continue  # zeros after a datagram's last packet ("coalesced padding data"): no packet
            counts["packets"] += 1
            frames = packet.get("quic.frame", [])
            frames = frames if isinstance(frames, list) else [frames]
            types = {int(f["quic.frame_type"]) for f in frames}
            assert types, "tshark decrypted every packet"
            if types <= ACK_ONLY_TYPES:
                counts["ack_only"] += 1
            counts["padding"] += sum(int(f.get("quic.padding_length", 0)) for f in frames)
    return figures


@needs_tshark
@needs_dumpcap
def test_the_tallies_of_both_ends_agree_with_tshark(tmp_path: Path) -> None:
    """The client's tracer in its configuration; the server's attached to its connection."""
    certificates = issue_certificates(tmp_path)
    port, keys, pcapng = free_udp_port(), tmp_path / "keys", tmp_path / "quic.pcapng"
    tracer = QuicPacketTracer()
    SERVER_TRACER.clear()
    packets = PacketCapture(pcapng, f"udp port {port}")
    packets.start()
    try:
        assert asyncio.run(get(port, certificates, keys, tracer)) == MESSAGES * MESSAGE_SIZE
    finally:
        packets.stop()
    assert tracer.tally is not None and tracer.tally.sent is C2S
    figures = tracer.figures()
    assert figures is not None
    expected = tshark_packets(pcapng, keys, port)
    for direction in Direction:
        counts, wanted = tracer.tally.counts[direction], expected[direction]
        assert counts.datagrams == wanted["datagrams"] > 0
        layer = figures[direction]
        assert layer.quic_packet_bytes == wanted["udp_payload"]
        assert layer.quic_packets == wanted["packets"]
        assert layer.quic_ack_only_packets == wanted["ack_only"]
        assert layer.quic_padding_bytes == wanted["padding"]
        assert layer.ip_header_bytes == UDP_IPV4_HEADER * wanted["datagrams"] and layer.ip_header_bytes_estimated
    assert tracer.tally.unsized_frames == 0
    (server,) = SERVER_TRACER
    assert server.tally is not None and server.tally.sent is S2C and server.tally.unsized_frames == 0
    assert server.figures() == figures
    # The client's first datagram carries its Initial, padded to 1,200 bytes.
    assert figures[C2S].quic_padding_bytes > 0 and tracer.tally.counts[C2S].crypto_bytes > 0


def test_frame_sizes_follow_aioquic_s_encoding() -> None:
    assert varint_size(63) == 1 and varint_size(64) == 2 and varint_size(16384) == 4 and varint_size(2**30) == 8
    assert frame_size({"frame_type": "stream", "stream_id": 0, "offset": 0, "length": 67}) == 1 + 1 + 2 + 67
    assert frame_size({"frame_type": "stream", "stream_id": 3, "offset": 100, "length": 5}) == 1 + 1 + 2 + 2 + 5
    assert frame_size({"frame_type": "crypto", "offset": 0, "length": 90}) == 1 + 1 + 2 + 90
    ack = {"frame_type": "ack", "ack_delay": 0.5, "acked_ranges": [[0, 3], [6, 9]]}
    # type, largest 9, delay 62 (500 µs / 8), 1 more range, first range 3, gap 1, range 3.
    assert frame_size(ack) == 7
    assert frame_size({"frame_type": "padding"}) is None
    assert frame_size({"frame_type": "ack", "acked_ranges": "damaged"}) is None
