"""HTTP/3 counted through ``rtinspect proxy`` against tshark's account of the client's leg.

The same mix as tests/test_proxy_http3.py (GET, SSE, WebSocket over HTTP/3
and a WebTransport session on one QUIC connection) goes through a real proxy;
tshark decrypts the client's leg with mitmproxy's key log and reassembles each
QUIC stream (``-z follow,quic,raw``). The accounting of the capture must give
each request stream exactly tshark's bytes per direction, every stream and
DATAGRAM byte of the connection once, and the HTTP/3 frames an independent
reading of tshark's streams finds (a varint type and length per frame, by hand,
not with rtinspect's parser).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_proxy_http3 import (
    MixedRun,
    SharedProxy,
    certificates,
    mixed_run,
    proxy,
    upstream,
)
from test_quic_packets import tshark_packets
from tshark import needs_dumpcap, needs_tshark, quic_datagram_sizes, quic_follow

from inspector.capture import read_capture
from inspector.connection import ConnectionAnalyzer, ConnectionRecord
from inspector.driver import RecordDriver
from inspector.wire import Direction

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
NAMES = {0x0: "DATA", 0x1: "HEADERS", 0x3: "CANCEL_PUSH", 0x4: "SETTINGS", 0x5: "PUSH_PROMISE", 0x7: "GOAWAY"}
NAMES |= {0xD: "MAX_PUSH_ID", 0xF0700: "PRIORITY_UPDATE", 0xF0701: "PRIORITY_UPDATE"}


def varint(data: bytes, at: int) -> tuple[int, int]:
    """A QUIC variable-length integer (RFC 9000, 16) and where the next byte is."""
    size = 1 << (data[at] >> 6)
    return int.from_bytes(data[at : at + size], "big") & ((1 << (8 * size - 2)) - 1), at + size


def frames(data: bytes, at: int = 0) -> Counter[str]:
    """HTTP/3 frames, by type name, from ``at`` to the end (each a type, a length and a payload)."""
    found: Counter[str] = Counter()
    while at < len(data):
        kind, at = varint(data, at)
        length, at = varint(data, at)
        found[NAMES.get(kind, "reserved" if kind >= 0x21 and (kind - 0x21) % 0x1F == 0 else "unknown")] += 1
        at += length
    return found


def http3_frames(streams: dict[tuple[Direction, int], bytes]) -> dict[Direction, Counter[str]]:
    """Every HTTP/3 frame of a connection's streams, by direction: request streams and control
    streams are frames from their start (after a unidirectional stream's type); a WebTransport
    stream counts its one WEBTRANSPORT_STREAM header; QPACK streams hold no frames."""
    found = {C2S: Counter[str](), S2C: Counter[str]()}
    for (direction, stream_id), data in streams.items():
        if stream_id % 4 in (0, 1):  # bidirectional: a WebTransport stream if its opener's bytes start so
            opener = C2S if stream_id % 4 == 0 else S2C
            if varint(streams.get((opener, stream_id), b"\0"), 0)[0] == 0x41:
                found[direction]["WEBTRANSPORT_STREAM"] += direction is opener
            else:
                found[direction].update(frames(data))
        else:
            kind, at = varint(data, 0)
            if kind == 0x00:
                found[direction].update(frames(data, at))
    return found


FIGURES = ("frame_header_bytes", "header_block_bytes", "data_bytes", "qpack_stream_bytes")


def http3_bytes(streams: dict[tuple[Direction, int], bytes]) -> dict[Direction, Counter[str]]:
    """Per direction, read by hand from a connection's streams: the frames' type and length
    varints and the HEADERS and DATA payloads of request and control streams, and the QPACK
    streams' bytes after their type (WebTransport streams left out)."""
    found = {C2S: Counter[str](), S2C: Counter[str]()}
    for (direction, stream_id), data in streams.items():
        at = 0
        if stream_id % 4 in (0, 1):
            opener = C2S if stream_id % 4 == 0 else S2C
            if varint(streams.get((opener, stream_id), b"\0"), 0)[0] == 0x41:
                continue
        else:
            kind, at = varint(data, 0)
            if kind in (0x02, 0x03):
                found[direction]["qpack_stream_bytes"] += len(data) - at
            if kind != 0x00:
                continue
        while at < len(data):
            start = at
            kind, at = varint(data, at)
            length, at = varint(data, at)
            found[direction]["frame_header_bytes"] += at - start
            if kind == 0x0:
                found[direction]["data_bytes"] += length
            elif kind == 0x1:
                found[direction]["header_block_bytes"] += length
            at += length
    return found


def analysed(capture: Path, connection_id: int) -> ConnectionRecord:
    """The accounting of one connection of a capture."""
    driver: RecordDriver[ConnectionAnalyzer, ConnectionRecord] = RecordDriver(ConnectionAnalyzer)
    with read_capture(capture) as records:
        for record in records:
            closed = driver.feed(record)
            if closed is not None and closed.opened.connection_id == connection_id:
                return closed
    raise AssertionError(f"connection {connection_id} did not close in {capture}")


@dataclass
class Leg:
    """The mixed run's connection as the accounting gave it, and the client's leg as tshark reads it."""

    record: ConnectionRecord
    #: Each stream's bytes per direction, reassembled by tshark.
    streams: dict[tuple[Direction, int], bytes]
    pcap: Path
    keylog: Path
    proxy_port: int


@pytest.fixture(scope="module")
def leg(proxy: SharedProxy, mixed_run: MixedRun) -> Leg:
    if mixed_run.pcap is None:
        pytest.skip("dumpcap is not installed")
    connection = mixed_run.run.connection
    stream_ids = {stream_id for _, stream_id in connection.streams}
    streams = quic_follow(mixed_run.pcap, mixed_run.keylog, stream_ids, mixed_run.proxy_port)
    record = analysed(proxy.capture, connection.opened.connection_id)
    return Leg(record, streams, mixed_run.pcap, mixed_run.keylog, mixed_run.proxy_port)


@needs_tshark
@needs_dumpcap
def test_each_stream_is_counted_as_tshark_reassembles_it(leg: Leg) -> None:
    tshark, record = leg.streams, leg.record
    datagrams = quic_datagram_sizes(leg.pcap, leg.keylog, leg.proxy_port)

    assert record.protocol == "h3" and not record.anomalies
    for direction in Direction:
        on_the_wire = sum(len(data) for (way, _), data in tshark.items() if way is direction) + sum(
            datagrams[direction]
        )
        assert record.wire_bytes(direction) == on_the_wire
    sessions = [e for e in record.exchanges if e.webtransport is not None]
    assert len(sessions) == 1
    for exchange in record.exchanges:
        if exchange.webtransport is not None:
            continue  # its streams and DATAGRAMs are in it too: counted in the connection's total above
        for direction in Direction:
            assert exchange.accounts[direction].total == len(tshark.get((direction, exchange.index), b"")), (
                exchange.index,
                direction,
            )
    requests = {
        stream_id
        for (direction, stream_id), data in tshark.items()
        if direction is C2S and stream_id % 4 == 0 and varint(data, 0)[0] != 0x41
    }
    assert {exchange.index for exchange in record.exchanges} == requests


@needs_tshark
@needs_dumpcap
def test_http3_frames_are_those_an_independent_reading_finds(leg: Leg) -> None:
    tshark, record = leg.streams, leg.record
    counted = {C2S: Counter[str](), S2C: Counter[str]()}
    assert record.http3 is not None
    for direction in Direction:
        counted[direction].update(record.http3.frames[direction])
        for totals in record.totals.values():
            if totals.http3 is not None:
                counted[direction].update(totals.http3.frames[direction])
    expected = http3_frames(tshark)
    assert {d: +counted[d] for d in Direction} == {d: +expected[d] for d in Direction}
    assert expected[S2C]["DATA"] > 20 and expected[C2S]["SETTINGS"] == expected[S2C]["SETTINGS"] == 1


@needs_tshark
@needs_dumpcap
def test_quic_packets_of_the_clients_leg_are_those_tshark_reads(leg: Leg) -> None:
    """The proxy's count of the client's leg below its streams: datagrams' UDP payload,
    packets, ACK-only packets and PADDING, as tshark dissects the leg."""
    layer = leg.record.transport_layer
    assert layer is not None
    expected = tshark_packets(leg.pcap, leg.keylog, leg.proxy_port)
    for direction in Direction:
        figures, wanted = layer[direction], expected[direction]
        assert figures.quic_packet_bytes == wanted["udp_payload"] > 0, direction
        assert figures.quic_packets == wanted["packets"], direction
        assert figures.quic_ack_only_packets == wanted["ack_only"], direction
        assert figures.quic_padding_bytes == wanted["padding"], direction
        assert figures.ip_header_bytes == 28 * wanted["datagrams"] and figures.ip_header_bytes_estimated
        assert figures.tls_records == 0


@needs_tshark
@needs_dumpcap
def test_http3_byte_figures_are_those_an_independent_reading_finds(leg: Leg) -> None:
    """Frame headers, field sections, DATA payload and QPACK stream bytes, each by direction:
    a byte counted in the wrong figure fails here."""
    record = leg.record
    assert record.http3 is not None
    expected = http3_bytes(leg.streams)
    for direction in Direction:
        counted = {
            name: record.http3.figure(name)[direction]
            + sum(t.http3.figure(name)[direction] for t in record.totals.values() if t.http3 is not None)
            for name in FIGURES
        }
        assert counted == {name: expected[direction][name] for name in FIGURES}, direction
