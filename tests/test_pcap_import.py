"""pcap and pcapng files read as traffic: TCP put back together, checked against what made it.

- Every committed recording, exported to pcapng by rtinspect's own exporter
  and read back, gives the report of the capture: every figure (times to the
  microsecond the pcapng keeps), no connection rebuilt, no bytes missing.
- The committed pcapng files, taken by dumpcap on the proxy-to-server leg
  while the recordings were made, give what the clients saw: connections,
  messages, payload, polls; and each connection carries exactly the bytes the
  proxy recorded on the client leg.
- Segments out of order, sent twice or overlapping give the report of the
  segments in order; a segment taken out gives a rebuilt connection, a note
  with the bytes missing, and never a byte that was not captured. The
  reassembly's invariants are checked on any segmentation, order, duplication
  and loss that hypothesis finds.
- Linux cooked captures (v1 and v2), BSD loopback, raw IP, IPv6 and pcapng
  files with several interfaces read like the Ethernet export.
- Files that cannot be read, and packet files without server ports, are one
  clear line and a non-zero exit.
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import re
import struct
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import dpkt
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from tshark import dissect_pcapng, needs_tshark

from inspector.capture import (
    MISSING_BYTES,
    CaptureWriter,
    ConnectionClosed,
    ConnectionOpened,
    DataChunk,
    Event,
    Record,
    missing_from,
    read_capture,
)
from inspector.classify import TransportRule
from inspector.cli import main as rtinspect
from inspector.formats import FileFormat, detect_format, open_traffic
from inspector.formats.pcapng import write_pcapng
from inspector.formats.tcp import ACK, FIN, RST, SYN, Segment, TcpReassembler
from inspector.render.json import report_to_dict
from inspector.replay import report_from_captures
from inspector.report import PerDirection, Report
from inspector.wire import Category, Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
RECORDINGS = Path(__file__).parent / "recordings"
SCENARIOS = sorted(path.name.removesuffix(".expected.json") for path in RECORDINGS.glob("*.expected.json"))
HTTP2_SCENARIOS = sorted(
    f"http2/{p.name.removesuffix('.expected.json')}" for p in RECORDINGS.glob("http2/*.expected.json")
)
#: The exporter writes microsecond timestamps: times read back are the capture's to within this.
MICROSECONDS = 2.5e-6


@functools.cache
def expected(name: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / f"{name}.expected.json").read_text())


def rules(name: str) -> tuple[TransportRule, ...]:
    return tuple(TransportRule.parse(rule) for rule in expected(name)["rules"])


def server_ports(rtcap: Path) -> set[int]:
    with read_capture(rtcap) as capture:
        return {int(r.server.rpartition(":")[2]) for r in capture if isinstance(r, ConnectionOpened)}


def exported(rtcap: Path, target: Path, *, mss: int | None = None) -> Path:
    """``rtcap`` written as pcapng by rtinspect's exporter."""
    with read_capture(rtcap) as capture, open(target, "wb") as out:
        write_pcapng(capture, out, **({"mss": mss} if mss else {}))
    return target


def report(path: Path, name: str, ports: Iterable[int] = ()) -> Report:
    return report_from_captures([path], rules=rules(name), server_ports=tuple(ports))


def figures(report: Report, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON report without what names the file it came from, nor the IP and TCP headers
    (``transport_layer``): they depend on how the traffic was cut into packets, which the
    comparisons here vary (or which a capture does not record)."""
    document = without_layers(report_to_dict(report))
    for key in ("sources", "notes", *leave_out):
        document.pop(key, None)
    return document


def without_layers(document: Any) -> Any:
    if isinstance(document, dict):
        return {key: without_layers(value) for key, value in document.items() if key != "transport_layer"}
    if isinstance(document, list):
        return [without_layers(value) for value in document]
    return document


def differences(a: Any, b: Any, path: str = "", *, tolerance: float = 0.0, ignore: tuple[str, ...] = ()) -> list[str]:
    """Where two JSON documents differ: floats by more than ``tolerance``, anything else at all."""
    if isinstance(a, dict) and isinstance(b, dict):
        keys = [k for k in sorted(set(a) | set(b)) if k not in ignore]
        return [
            d for k in keys for d in differences(a.get(k), b.get(k), f"{path}.{k}", tolerance=tolerance, ignore=ignore)
        ]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        pairs = enumerate(zip(a, b, strict=True))
        return [d for i, (x, y) in pairs for d in differences(x, y, f"{path}[{i}]", tolerance=tolerance, ignore=ignore)]
    if isinstance(a, float) and isinstance(b, float):
        return [] if abs(a - b) <= tolerance else [f"{path}: {a} != {b}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


# -- packets: read and written with dpkt, for the cases made here


def frames_of(pcapng: Path) -> list[tuple[float, bytes]]:
    with open(pcapng, "rb") as file:
        return [(ts, bytes(frame)) for ts, frame in dpkt.pcapng.Reader(file)]


def write_pcap(path: Path, frames: Iterable[tuple[float, bytes]], link_type: int = dpkt.pcap.DLT_EN10MB) -> Path:
    with open(path, "wb") as out:
        writer = dpkt.pcap.Writer(out, snaplen=262_144, linktype=link_type)
        for ts, frame in frames:
            writer.writepkt(frame, ts)
    return path


def tcp_of(frame: bytes) -> dpkt.tcp.TCP:
    return dpkt.ethernet.Ethernet(frame).data.data


def is_data(frame: bytes) -> bool:
    tcp = tcp_of(frame)
    return bool(tcp.data) and not tcp.flags & (SYN | FIN | RST)


def ip_of(frame: bytes) -> dpkt.ip.IP:
    return dpkt.ethernet.Ethernet(frame).data


# -- (1) the exporter's pcapng reads back as the capture


@pytest.mark.parametrize("name", SCENARIOS + HTTP2_SCENARIOS)
def test_an_exported_recording_reads_back_with_the_capture_s_report(name: str, tmp_path: Path) -> None:
    rtcap = RECORDINGS / f"{name}.rtcap"
    pcapng = exported(rtcap, tmp_path / "export.pcapng")
    assert detect_format(pcapng) is FileFormat.PCAPNG
    original, again = report(rtcap, name), report(pcapng, name, server_ports(rtcap))
    # The h2 recordings are TLS: the pcapng holds the bytes after TLS, and nothing of the handshakes.
    tls = ("tls_handshakes", "tls_handshake_duration") if name.startswith("http2/") else ()
    assert differences(figures(original), figures(again), tolerance=MICROSECONDS, ignore=tls) == []
    assert not any(c.reconstructed for c in again.connections)
    (note,) = [n for n in again.notes if n.startswith(str(pcapng))]
    assert note.endswith("put back together from their segments with none missing.")
    assert not any("missing from the packet capture" in a.reason for c in again.connections for a in c.anomalies)


def test_the_report_command_reads_an_export_alike_with_any_number_of_processes(tmp_path: Path) -> None:
    pcapng = exported(RECORDINGS / "mixed.rtcap", tmp_path / "mixed.pcapng")
    port = str(expected("mixed")["server_port"])
    transports = [option for rule in expected("mixed")["rules"] for option in ("--transport", rule)]
    outputs = []
    for jobs in ("1", "2"):
        command = ["report", str(pcapng), "--server-port", port, *transports, "-f", "json", "--connections", "-j", jobs]
        result = CliRunner().invoke(rtinspect, command)
        assert result.exit_code == 0, result.output
        outputs.append(json.loads(result.output))
    assert outputs[0] == outputs[1]
    assert len(outputs[0]["connections"]) == 5 and not any(c["reconstructed"] for c in outputs[0]["connections"])


def test_close_reasons_travel_through_fins_and_resets(tmp_path: Path) -> None:
    """Who stopped first, and how, is what the packets say: a FIN or a reset, from either side."""
    capture = tmp_path / "closes.rtcap"
    reasons = ["client closed", "server closed", "client reset", "server reset"]
    with CaptureWriter(capture) as writer:
        for number, reason in enumerate(reasons, start=1):
            at = 100.0 + number
            client = f"127.0.0.1:{5000 + number}"
            writer.write(ConnectionOpened(number, at, client=client, server="127.0.0.1:8000", mode="reverse"))
            writer.write(DataChunk(number, at + 0.1, C2S, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
            writer.write(DataChunk(number, at + 0.2, S2C, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
            writer.write(ConnectionClosed(number, at + 0.3, reason))
    pcapng = exported(capture, tmp_path / "closes.pcapng")
    again = report_from_captures([pcapng], server_ports=[8000])
    assert [c.close_reason for c in again.connections] == reasons


# -- (2) dumpcap's recordings of the proxy-to-server leg


def pair(value: dict[str, int]) -> PerDirection:
    return PerDirection(value["client_to_server"], value["server_to_client"])


def streams(traffic: Iterable[Record]) -> dict[int, tuple[bytes, bytes]]:
    data: dict[int, dict[Direction, bytearray]] = defaultdict(lambda: {C2S: bytearray(), S2C: bytearray()})
    for record in traffic:
        if isinstance(record, DataChunk):
            data[record.connection_id][record.direction] += record.data
    return {cid: (bytes(d[C2S]), bytes(d[S2C])) for cid, d in data.items()}


@pytest.mark.parametrize("name", SCENARIOS)
def test_a_dumpcap_recording_gives_what_the_clients_saw(name: str) -> None:
    seen = expected(name)
    pcapng = RECORDINGS / f"{name}.pcapng"
    got = report(pcapng, name, [seen["server_port"]])
    assert not any(c.reconstructed for c in got.connections)
    for transport, clients in seen["transports"].items():
        summary = got.transport(transport)
        assert summary.connections == clients["connections"], transport
        assert summary.messages == pair(clients["messages"]), transport
        assert summary.payload_bytes == pair(clients["payload_bytes"]), transport
        assert summary.anomalies == 0 and summary.categories[Category.UNPARSED.value].total == 0, transport
        if "polls" in clients:
            assert summary.empty_polls == clients["empty_polls"], transport
            assert summary.messages.server_to_client + summary.empty_polls == clients["polls"], transport
    # The recorder's own connections to the server (readiness checks) carried no byte.
    others = [c for c in got.connections if c.transport not in seen["transports"]]
    assert all(c.wire_bytes.total == 0 for c in others), others


@pytest.mark.parametrize("name", SCENARIOS)
def test_each_connection_on_the_server_leg_carries_the_bytes_the_proxy_recorded(name: str) -> None:
    """The proxy relays bytes unchanged: every connection of the capture (client leg) is,
    byte for byte, a connection the kernel's packets carried on the server leg."""
    with open_traffic(RECORDINGS / f"{name}.pcapng", server_ports=[expected(name)["server_port"]]) as traffic:
        packets = streams(traffic)
    with read_capture(RECORDINGS / f"{name}.rtcap") as capture:
        recorded = streams(capture)
    on_the_wire = sorted(s for s in packets.values() if s != (b"", b""))
    assert on_the_wire == sorted(recorded.values())


# -- (3) out of order, twice, overlapping, missing


def shuffled_within_instants(frames: list[tuple[float, bytes]], seed: int) -> list[tuple[float, bytes]]:
    """Data segments out of order, sent twice, and re-sent overlapping their neighbours, each
    within the packets of one instant (so that every byte is handed on at the time it was)."""
    shuffle = random.Random(seed)
    result: list[tuple[float, bytes]] = []
    for _, run in _runs(frames):
        data_places = [i for i, (_, frame) in enumerate(run) if is_data(frame)]
        data = [run[i] for i in data_places]
        extra = []
        for (ts, frame), (_, following) in itertools.pairwise(data):
            first, second = tcp_of(frame), tcp_of(following)
            if shuffle.random() < 0.3:
                extra.append((ts, frame))  # the segment again
            adjacent = second.seq == first.seq + len(first.data) and ip_of(frame).src == ip_of(following).src
            if adjacent and shuffle.random() < 0.3:
                # A retransmission that coalesces the end of one segment with the start of the next.
                half = len(first.data) // 2
                both = first.data[half:] + second.data[: len(second.data) // 2 + 1]
                extra.append((ts, _with_payload(frame, first.seq + half, both)))
        moved = data + extra
        shuffle.shuffle(moved)
        places = iter(moved)
        ordered = [next(places) if i in data_places else packet for i, packet in enumerate(run)]
        result += ordered + list(places)
    return result


def _runs(frames: list[tuple[float, bytes]]) -> Iterator[tuple[float, list[tuple[float, bytes]]]]:
    run: list[tuple[float, bytes]] = []
    for packet in frames:
        if run and packet[0] != run[0][0]:
            yield run[0][0], run
            run = []
        run.append(packet)
    if run:
        yield run[0][0], run


def _with_payload(frame: bytes, seq: int, payload: bytes) -> bytes:
    """The frame's segment carrying ``payload`` from ``seq`` (lengths and checksums made anew)."""
    ethernet = dpkt.ethernet.Ethernet(frame)
    ip = ethernet.data
    ip.data.seq, ip.data.data, ip.data.sum = seq, payload, 0
    ip.len = ip.sum = 0
    return bytes(ethernet)


@pytest.mark.parametrize("name", ["mixed", "websocket_deflate"])
def test_segments_out_of_order_twice_or_overlapping_give_the_report_of_segments_in_order(
    name: str, tmp_path: Path
) -> None:
    in_order = exported(RECORDINGS / f"{name}.rtcap", tmp_path / "in-order.pcapng", mss=40)
    frames = frames_of(in_order)
    messy = shuffled_within_instants(frames, seed=7)
    assert len(messy) > len(frames) and messy != frames
    ports = server_ports(RECORDINGS / f"{name}.rtcap")
    expected_report = report(in_order, name, ports)
    again = report(write_pcap(tmp_path / "messy.pcap", messy), name, ports)
    assert differences(figures(expected_report), figures(again)) == []
    assert any(n.endswith("with none missing.") for n in again.notes)


def test_a_segment_taken_out_is_missing_bytes_never_made_up(tmp_path: Path) -> None:
    rtcap = RECORDINGS / "websocket.rtcap"
    pcapng = exported(rtcap, tmp_path / "websocket.pcapng", mss=64)
    frames = frames_of(pcapng)
    port = expected("websocket")["server_port"]
    from_server = [i for i, (_, f) in enumerate(frames) if is_data(f) and tcp_of(f).sport == port]
    gone = from_server[len(from_server) // 2]
    lost = len(tcp_of(frames[gone][1]).data)
    pcap = write_pcap(tmp_path / "lossy.pcap", frames[:gone] + frames[gone + 1 :])

    original, lossy = report(rtcap, "websocket"), report(pcap, "websocket", [port])
    (connection,) = lossy.connections
    assert connection.reconstructed
    (before,) = original.connections
    sent = before.wire_bytes
    assert connection.wire_bytes == PerDirection(sent.client_to_server, sent.server_to_client - lost)
    # The server's direction is parsed up to the hole: one anomaly there, the rest unparsed.
    (anomaly,) = [a for a in connection.anomalies if a.direction is S2C]
    assert f"{lost:,} bytes missing from the packet capture" in anomaly.reason
    websocket = lossy.transport("websocket")
    assert 0 < websocket.messages.server_to_client < original.transport("websocket").messages.server_to_client
    assert websocket.categories[Category.UNPARSED.value].server_to_client > 0
    # Every byte that was captured is counted once; none is made up for the hole.
    for direction in Direction:
        assert sum(split[direction] for split in websocket.categories.values()) == websocket.wire_bytes[direction]
    (note,) = [n for n in lossy.notes if n.startswith(str(pcap))]
    assert f"1 of them lack bytes the capture does not have ({lost:,} bytes in all)" in note
    assert f"connection 1: {lost:,} bytes server to client" in note

    command = ["report", str(pcap), "--server-port", str(port), "-f", "json", "--connections"]
    result = CliRunner().invoke(rtinspect, command)
    assert result.exit_code == 0, result.output
    assert [c["reconstructed"] for c in json.loads(result.output)["connections"]] == [True]


@pytest.mark.parametrize("name", ["sse", "long_poll", "websocket_deflate", "http2/h2_sse", "http2/h2_websocket"])
def test_each_parser_stops_its_direction_at_a_hole(name: str, tmp_path: Path) -> None:
    """HTTP/1.1 bodies, SSE, WebSocket with deflate and HTTP/2 frames alike: a segment of the server's
    taken out is one anomaly there, the connection is rebuilt, and every captured byte is counted once."""
    rtcap = RECORDINGS / f"{name}.rtcap"
    (port,) = server_ports(rtcap)
    frames = frames_of(exported(rtcap, tmp_path / "export.pcapng", mss=64))
    from_server = [i for i, (_, f) in enumerate(frames) if is_data(f) and tcp_of(f).sport == port]
    gone = from_server[len(from_server) // 2]
    lost, client_port = len(tcp_of(frames[gone][1]).data), tcp_of(frames[gone][1]).dport
    lossy = report(write_pcap(tmp_path / "lossy.pcap", frames[:gone] + frames[gone + 1 :]), name, [port])
    original = report(rtcap, name)
    (cut,) = [c for c in lossy.connections if c.client.endswith(f":{client_port}")]
    (before,) = [c for c in original.connections if c.id == cut.id]
    assert cut.reconstructed and [c.id for c in lossy.connections if c.reconstructed] == [cut.id]
    assert cut.wire_bytes == PerDirection(before.wire_bytes.client_to_server, before.wire_bytes.server_to_client - lost)
    assert [a.direction for a in cut.anomalies if "missing from the packet capture" in a.reason] == [S2C]
    # The anomaly's offset is the byte its reason names as where parsing stopped.
    (hole,) = [a for a in cut.anomalies if "missing from the packet capture" in a.reason]
    stopped = re.search(r"(?:began|at) byte ([\d,]+); not parsed from there", hole.reason)
    assert stopped is not None and int(stopped.group(1).replace(",", "")) == hole.offset, hole
    for summary in lossy.transports.values():
        for direction in Direction:
            assert sum(split[direction] for split in summary.categories.values()) == summary.wire_bytes[direction]


def test_missing_bytes_stay_missing_through_an_export(tmp_path: Path) -> None:
    """A pcapng written from an import that lacks bytes skips their sequence numbers, so reading it
    again finds the same hole."""
    port = expected("sse")["server_port"]
    frames = frames_of(exported(RECORDINGS / "sse.rtcap", tmp_path / "sse.pcapng", mss=50))
    gone = [i for i, (_, f) in enumerate(frames) if is_data(f) and tcp_of(f).sport == port][5]
    lost = len(tcp_of(frames[gone][1]).data)
    pcap = write_pcap(tmp_path / "lossy.pcap", frames[:gone] + frames[gone + 1 :])
    with open_traffic(pcap, server_ports=[port]) as traffic:
        records = list(traffic)
    assert [missing_from(r) for r in records if isinstance(r, Event) and r.name == MISSING_BYTES] == [(S2C, lost)]
    again = tmp_path / "again.pcapng"
    with open(again, "wb") as out:
        write_pcapng(records, out)
    assert differences(figures(report(pcap, "sse", [port])), figures(report(again, "sse", [port]))) == []


def test_a_capture_cut_to_a_snap_length_misses_the_rest_of_each_packet(tmp_path: Path) -> None:
    port = expected("websocket")["server_port"]
    frames = frames_of(exported(RECORDINGS / "websocket.rtcap", tmp_path / "websocket.pcapng", mss=200))
    snap = 14 + 20 + 20 + 30  # Ethernet, IP and TCP headers, and 30 bytes of payload
    lost = {C2S: 0, S2C: 0}
    for _, frame in frames:
        direction = S2C if tcp_of(frame).sport == port else C2S
        lost[direction] += max(0, len(tcp_of(frame).data) - 30)
    pcap = write_pcap(tmp_path / "snapped.pcap", [(ts, frame[:snap]) for ts, frame in frames])
    # Each packet's first 30 bytes are handed on as it arrives, and the rest is declared missing then,
    # not held for bytes that will never come.
    pieces: dict[Direction, list[tuple[str, int, float]]] = {C2S: [], S2C: []}
    for ts, frame in frames:
        size, at = len(tcp_of(frame).data), round(ts, 6)
        if size:
            direction = S2C if tcp_of(frame).sport == port else C2S
            pieces[direction] += [("bytes", min(size, 30), at)] + ([("missing", size - 30, at)] if size > 30 else [])
    with open_traffic(pcap, server_ports=[port]) as traffic:
        read: dict[Direction, list[tuple[str, int, float]]] = {C2S: [], S2C: []}
        for record in traffic:
            if isinstance(record, DataChunk):
                read[record.direction].append(("bytes", len(record.data), round(record.timestamp, 6)))
            elif isinstance(record, Event) and (missing := missing_from(record)) is not None:
                read[missing[0]].append(("missing", missing[1], round(record.timestamp, 6)))
    assert read == pieces
    got = report(pcap, "websocket", [port])
    (connection,) = got.connections
    assert connection.reconstructed
    (note,) = [n for n in got.notes if n.startswith(str(pcap))]
    assert f"connection 1: {lost[C2S]:,} bytes client to server, {lost[S2C]:,} bytes server to client" in note
    original = report(RECORDINGS / "websocket.rtcap", "websocket").connections[0]
    assert connection.wire_bytes == PerDirection(*(original.wire_bytes[d] - lost[d] for d in Direction))


def test_a_connection_open_before_the_capture_began_is_read_from_its_first_captured_byte(tmp_path: Path) -> None:
    port = expected("sse")["server_port"]
    frames = frames_of(exported(RECORDINGS / "sse.rtcap", tmp_path / "sse.pcapng"))
    # The first connection's handshake and request are not in the file; its response is.
    first_response = next(i for i, (_, f) in enumerate(frames) if is_data(f) and tcp_of(f).sport == port)
    client_port = tcp_of(frames[first_response][1]).dport
    others = [(ts, f) for ts, f in frames[:first_response] if client_port not in (tcp_of(f).sport, tcp_of(f).dport)]
    late = others + frames[first_response:]
    got = report(write_pcap(tmp_path / "late.pcap", late), "sse", [port])
    assert [c.reconstructed for c in got.connections] == [True, False]
    note = next(n for n in got.notes if "put back together" in n)
    assert "connection 1: it was open before the capture began, so its first bytes are not in it" in note
    assert got.connections[0].anomalies  # a response with no request: its bytes are counted, unparsed


# -- the reassembly's invariants, on any segmentation, order, duplication and loss


CLIENT, SERVER = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
ISN = 0xFFFFFF00  # near the top, so that sequence numbers wrap within the stream


def one_stream(reassembler: TcpReassembler, payload_segments: Iterable[tuple[int, bytes]], total: int) -> list[Record]:
    """The records of one connection whose client sends ``payload_segments`` ((offset, bytes), as
    given), then a FIN after ``total`` bytes, answered by the server's FIN."""

    def segment(seq: int, flags: int, data: bytes = b"", *, server: bool = False) -> Segment:
        source, target = (SERVER, CLIENT) if server else (CLIENT, SERVER)
        ports = (80, 40000) if server else (40000, 80)
        return Segment(1.0, source, ports[0], target, ports[1], seq % (1 << 32), 0, flags, data)

    records = reassembler.feed(segment(ISN, SYN))
    records += reassembler.feed(segment(7, SYN | ACK, server=True))
    for offset, data in payload_segments:
        records += reassembler.feed(segment(ISN + 1 + offset, ACK, data))
    records += reassembler.feed(segment(ISN + 1 + total, FIN | ACK))
    records += reassembler.feed(segment(8, FIN | ACK, server=True))
    return records + reassembler.finish()


def handed_on(records: list[Record]) -> list[int | None]:
    """The client's stream as handed on: each byte, or None for each byte declared missing."""
    stream: list[int | None] = []
    for record in records:
        if isinstance(record, DataChunk):
            assert record.direction is C2S
            stream += list(record.data)
        elif isinstance(record, Event) and record.name == MISSING_BYTES:
            missing = missing_from(record)
            assert missing is not None and missing[0] is C2S
            stream += [None] * missing[1]
    return stream


@st.composite
def segmented(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]], list[bool]]:
    """A stream, its segments (cut anywhere, with overlapping re-sends, in any order, some twice), and
    for each segment whether it is lost."""
    data = draw(st.binary(min_size=1, max_size=600))
    cuts = sorted(draw(st.sets(st.integers(1, len(data) - 1), max_size=20))) if len(data) > 1 else []
    bounds = [0, *cuts, len(data)]
    segments = [(a, data[a:b]) for a, b in itertools.pairwise(bounds)]
    for _ in range(draw(st.integers(0, 5))):
        a = draw(st.integers(0, len(data) - 1))
        b = draw(st.integers(a + 1, len(data)))
        segments.append((a, data[a:b]))
    segments += draw(st.lists(st.sampled_from(segments), max_size=5))
    segments = draw(st.permutations(segments))
    lost = draw(st.lists(st.booleans(), min_size=len(segments), max_size=len(segments)))
    return data, segments, lost


@given(segmented())
@settings(max_examples=300, deadline=None)
def test_every_byte_is_handed_on_once_whatever_the_order_and_only_lost_bytes_are_missing(
    case: tuple[bytes, list[tuple[int, bytes]], list[bool]],
) -> None:
    data, segments, lost = case
    kept = [segment for segment, gone in zip(segments, lost, strict=True) if not gone]
    covered = [False] * len(data)
    for offset, part in kept:
        covered[offset : offset + len(part)] = [True] * len(part)
    records = one_stream(TcpReassembler([80]), kept, len(data))
    assert handed_on(records) == [byte if here else None for byte, here in zip(data, covered, strict=True)]
    assert isinstance(records[-1], ConnectionClosed) and records[-1].reason == "client closed"


@given(segmented())
@settings(max_examples=200, deadline=None)
def test_with_little_room_to_hold_segments_no_byte_is_made_up_or_lost_count(
    case: tuple[bytes, list[tuple[int, bytes]], list[bool]],
) -> None:
    """Holding at most 16 bytes, holes are declared missing early, and what arrives for them later
    is not used; still every byte handed on is the stream's byte at its place, and the bytes
    handed on and missing add up to the stream."""
    data, segments, lost = case
    kept = [segment for segment, gone in zip(segments, lost, strict=True) if not gone]
    stream = handed_on(one_stream(TcpReassembler([80], hold_limit=16), kept, len(data)))
    assert len(stream) == len(data)
    assert all(byte is None or byte == data[i] for i, byte in enumerate(stream))


def test_a_hole_is_declared_once_the_bytes_behind_it_pass_the_hold_limit() -> None:
    """Memory stays bounded: with a segment lost early in a long stream, the bytes behind it are
    handed on once they pass the limit, not at the end."""
    data = bytes(range(256)) * 40
    segments = [(offset, data[offset : offset + 100]) for offset in range(0, len(data), 100)]
    reassembler = TcpReassembler([80], hold_limit=1000)
    held_until: list[int] = []

    def watch(records: list[Record]) -> list[Record]:
        held_until.append(sum(isinstance(r, Event) for r in records))
        return records

    original_feed = reassembler.feed
    reassembler.feed = lambda segment: watch(original_feed(segment))  # type: ignore[method-assign]
    records = one_stream(reassembler, segments[:3] + segments[4:], len(data))
    assert handed_on(records) == list(data[:300]) + [None] * 100 + list(data[400:])
    # SYN, SYN-ACK, three segments in order, then the one that took the held bytes past 1,000.
    assert held_until.index(1) == 2 + 3 + 10


# -- link layers and file layouts


def cooked(frame: bytes, *, version: int) -> bytes:
    ethernet = dpkt.ethernet.Ethernet(frame)
    if version == 1:
        header = dpkt.sll.SLL(type=4, hrd=1, hlen=6, hdr=ethernet.src + b"\0\0", ethtype=ethernet.type)
    else:
        header = dpkt.sll2.SLL2(ethtype=ethernet.type, intindex=1, hrd=1, type=4, hlen=6, hdr=ethernet.src + b"\0\0")
    return bytes(header) + bytes(ethernet.data)


LINK_LAYERS: dict[str, tuple[int, Callable[[bytes], bytes]]] = {
    "ethernet with a vlan tag": (1, lambda f: f[:12] + b"\x81\x00\x00\x05" + f[12:]),
    "ethernet with two (qinq)": (1, lambda f: f[:12] + b"\x88\xa8\x00\x07\x81\x00\x00\x05" + f[12:]),
    "linux cooked v1 (tcpdump -i any)": (113, lambda f: cooked(f, version=1)),
    "linux cooked v2": (276, lambda f: cooked(f, version=2)),
    "null, little-endian host": (0, lambda f: struct.pack("<I", 2) + bytes(ip_of(f))),
    "bsd loopback": (108, lambda f: struct.pack(">I", 2) + bytes(ip_of(f))),
    "raw ip": (101, lambda f: bytes(ip_of(f))),
}


@pytest.mark.parametrize("layer", sorted(LINK_LAYERS))
def test_other_link_layers_read_as_ethernet_does(layer: str, tmp_path: Path) -> None:
    link_type, rewrite = LINK_LAYERS[layer]
    ethernet = exported(RECORDINGS / "mixed.rtcap", tmp_path / "mixed.pcapng")
    pcap = write_pcap(tmp_path / "other.pcap", [(ts, rewrite(frame)) for ts, frame in frames_of(ethernet)], link_type)
    ports = [expected("mixed")["server_port"]]
    as_ethernet, as_other = figures(report(ethernet, "mixed", ports)), figures(report(pcap, "mixed", ports))
    assert differences(as_ethernet, as_other, tolerance=MICROSECONDS) == []


@needs_tshark
def test_tshark_reads_the_cooked_capture_made_here_as_it_is_reported(tmp_path: Path) -> None:
    """The SLL2 file written with dpkt for these tests is one Wireshark reads: its TCP payload per
    connection and direction is the report's wire bytes."""
    link_type, rewrite = LINK_LAYERS["linux cooked v2"]
    frames = frames_of(exported(RECORDINGS / "sse.rtcap", tmp_path / "sse.pcapng"))
    pcap = write_pcap(tmp_path / "sll2.pcap", [(ts, rewrite(frame)) for ts, frame in frames], link_type)
    port = expected("sse")["server_port"]
    dissected = dissect_pcapng(pcap, port, decode_as=False)
    got = report(pcap, "sse", [port])
    assert sorted((s.tcp_len[C2S], s.tcp_len[S2C]) for s in dissected.values()) == sorted(
        (c.wire_bytes.client_to_server, c.wire_bytes.server_to_client) for c in got.connections
    )


def as_ipv6(frame: bytes) -> bytes:
    ethernet = dpkt.ethernet.Ethernet(frame)
    ip = ethernet.data
    tcp = ip.data
    ends = {b"\x7f\x00\x00\x01": bytes.fromhex("20010db8000000000000000000000001")}
    source, target = ends.get(ip.src, ip.src * 4), ends.get(ip.dst, ip.dst * 4)
    six = dpkt.ip6.IP6(src=source, dst=target, nxt=6, hlim=64, plen=len(tcp), data=tcp)
    return bytes(dpkt.ethernet.Ethernet(src=ethernet.src, dst=ethernet.dst, type=dpkt.ethernet.ETH_TYPE_IP6, data=six))


def test_ipv6_reads_as_ipv4_does(tmp_path: Path) -> None:
    ethernet = exported(RECORDINGS / "websocket_deflate.rtcap", tmp_path / "v4.pcapng")
    pcap = write_pcap(tmp_path / "v6.pcap", [(ts, as_ipv6(frame)) for ts, frame in frames_of(ethernet)])
    ports = [expected("websocket_deflate")["server_port"]]
    v4, v6 = report(ethernet, "websocket_deflate", ports), report(pcap, "websocket_deflate", ports)
    assert differences(figures(v4), figures(v6), tolerance=MICROSECONDS, ignore=("client", "server")) == []
    assert all(c.server == f"[2001:db8::1]:{ports[0]}" for c in v6.connections)


def test_a_pcapng_with_two_interfaces_and_nanosecond_times_reads_each_packet_by_its_interface(tmp_path: Path) -> None:
    """dumpcap -i lo -i any: an Ethernet interface timed in microseconds and a cooked one in
    nanoseconds, packets of both interleaved."""
    ethernet = exported(RECORDINGS / "sse.rtcap", tmp_path / "sse.pcapng")
    option = dpkt.pcapng.PcapngOptionLE
    interfaces = [
        dpkt.pcapng.InterfaceDescriptionBlockLE(linktype=1, snaplen=262_144),
        dpkt.pcapng.InterfaceDescriptionBlockLE(
            linktype=276, snaplen=262_144,
            opts=[
                option(code=dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL, data=b"\x09"),  # nanoseconds
                option(code=dpkt.pcapng.PCAPNG_OPT_ENDOFOPT),
            ],
        ),
    ]  # fmt: skip
    target = tmp_path / "two.pcapng"
    with open(target, "wb") as out:
        writer = dpkt.pcapng.Writer(out, idb=interfaces)
        for number, (ts, frame) in enumerate(frames_of(ethernet)):
            on_cooked = number % 2 == 1
            ticks = round(ts * (1_000_000_000 if on_cooked else 1_000_000))
            block = dpkt.pcapng.EnhancedPacketBlockLE(
                iface_id=int(on_cooked), ts_high=ticks >> 32, ts_low=ticks & 0xFFFFFFFF,
                pkt_data=cooked(frame, version=2) if on_cooked else frame,
            )  # fmt: skip
            out.write(bytes(block))
        del writer
    ports = [expected("sse")["server_port"]]
    one, two = figures(report(ethernet, "sse", ports)), figures(report(target, "sse", ports))
    assert differences(one, two, tolerance=MICROSECONDS) == []


# -- (4) one clear line


def one_line_error(command: list[str], exit_code: int = 1) -> str:
    result = CliRunner().invoke(rtinspect, command)
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    return lines[0]


def test_a_packet_file_without_server_ports_is_one_line_naming_the_ports_it_saw() -> None:
    pcapng = RECORDINGS / "websocket.pcapng"
    port = expected("websocket")["server_port"]
    line = one_line_error(["report", str(pcapng)])
    assert line == (
        f"Error: {pcapng}: a pcapng file of packets: name the port(s) its servers listened on with "
        f"--server-port PORT (TCP connections in it were opened to port {port} (3))"
    )


def test_a_server_port_no_connection_used_is_one_line(tmp_path: Path) -> None:
    pcapng = RECORDINGS / "sse.pcapng"
    line = one_line_error(["report", str(pcapng), "--server-port", "1"])
    port = expected("sse")["server_port"]
    left_out = f"4 TCP connection(s) to other ports (port {port} (4))"
    assert line == f"Error: {pcapng}: no TCP connection with server port 1 (left out: {left_out})"


def test_a_server_port_for_files_that_are_not_packets_is_a_usage_error() -> None:
    result = CliRunner().invoke(rtinspect, ["report", str(RECORDINGS / "sse.rtcap"), "--server-port", "8000"])
    assert result.exit_code == 2 and "--server-port is for pcap and pcapng files" in result.output


DAMAGED = {
    "pcapng with a block of a bad length": b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a\x01\x00\x00\x00"
    + b"\xff" * 8 + b"\x1c\x00\x00\x00" + b"\x01\x00\x00\x00\x0d\x00\x00\x00",
    "pcapng with a damaged section header": b"\x0a\x0d\x0d\x0a" + bytes(60),
    "pcapng packet of an interface never described": b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a\x01\x00\x00\x00"
    + b"\xff" * 8 + b"\x1c\x00\x00\x00" + struct.pack("<IIIIIII", 6, 32, 3, 0, 0, 0, 0) + struct.pack("<I", 32),
}  # fmt: skip
REASONS = {
    "pcapng with a block of a bad length": "a damaged pcapng block",
    "pcapng with a damaged section header": "a damaged pcapng section header",
    "pcapng packet of an interface never described": "a packet of interface 3, which the file does not describe",
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_a_damaged_packet_file_is_one_line(case: str, tmp_path: Path) -> None:
    path = tmp_path / "damaged.pcapng"
    path.write_bytes(DAMAGED[case])
    line = one_line_error(["report", str(path), "--server-port", "80"])
    assert REASONS[case] in line


def test_a_file_cut_inside_a_packet_reads_up_to_it(tmp_path: Path) -> None:
    content = (RECORDINGS / "websocket.pcapng").read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(content[: len(content) - 30])
    port = expected("websocket")["server_port"]
    got = report(cut, "websocket", [port])
    assert got.transport("websocket").messages == pair(expected("websocket")["transports"]["websocket"]["messages"])
    assert any("the file ends inside a packet" in note for note in got.notes)


def test_export_of_a_packet_file_is_one_line() -> None:
    line = one_line_error(["export", str(RECORDINGS / "sse.pcapng"), "--to", "har", "-o", "-"])
    assert "a pcapng file of packets already" in line and "--server-port" in line


def test_packets_that_are_not_followed_are_said_to_be_left_out(tmp_path: Path) -> None:
    """A UDP packet, an ARP request and a connection to another port: counted, not read."""
    frames = frames_of(exported(RECORDINGS / "websocket.rtcap", tmp_path / "websocket.pcapng"))
    ts = frames[0][0]
    udp = dpkt.ip.IP(src=b"\x7f\0\0\1", dst=b"\x7f\0\0\1", p=17, data=dpkt.udp.UDP(sport=5353, dport=5353, data=b"x"))
    arp = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_ARP, data=dpkt.arp.ARP())
    syn = dpkt.ip.IP(src=b"\x7f\0\0\1", dst=b"\x7f\0\0\1", p=6, data=dpkt.tcp.TCP(sport=50000, dport=5432, flags=SYN))
    extra = [
        (ts, bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=udp))),
        (ts, bytes(arp)),
        (ts, bytes(dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_IP, data=syn))),
    ]
    pcap = write_pcap(tmp_path / "busy.pcap", extra + frames)
    got = report(pcap, "websocket", [expected("websocket")["server_port"]])
    assert (
        f"{pcap}: left out: 1 TCP connection(s) to other ports (port 5432 (1)); "
        "1 packet(s) that were not IPv4 or IPv6; 1 packet(s) that were not TCP."
    ) in got.notes


def test_each_reading_of_a_packet_file_gives_the_same_records() -> None:
    with open_traffic(RECORDINGS / "mixed.pcapng", server_ports=[expected("mixed")["server_port"]]) as traffic:
        first, second = list(traffic), list(traffic)
    assert first == second and isinstance(first[0], ConnectionOpened)


# -- single rules of the reassembly, pinned


def segment(seq: int, flags: int, data: bytes = b"", *, server: bool = False, ack: int = 0) -> Segment:
    """A segment of the one connection these tests follow: client 10.0.0.1:40000, server 10.0.0.2:80."""
    source, target = (SERVER, CLIENT) if server else (CLIENT, SERVER)
    ports = (80, 40000) if server else (40000, 80)
    return Segment(2.0, source, ports[0], target, ports[1], seq, ack, flags, data)


def fed(reassembler: TcpReassembler, *segments: Segment) -> list[Record]:
    return [record for s in segments for record in reassembler.feed(s)] + reassembler.finish()


def summary(records: list[Record]) -> list[tuple[Any, ...]]:
    """Each record as what it says, after its kind and connection: whether it was rebuilt (opened),
    direction and bytes, direction and how many are missing, or why it closed."""
    said: list[tuple[Any, ...]] = []
    for record in records:
        if isinstance(record, ConnectionOpened):
            said.append(("opened", record.connection_id, record.reconstructed))
        elif isinstance(record, DataChunk):
            said.append(("bytes", record.connection_id, record.direction, record.data))
        elif isinstance(record, Event) and record.name == MISSING_BYTES:
            said.append(("missing", record.connection_id, *missing_from(record)))  # type: ignore[misc]
        elif isinstance(record, ConnectionClosed):
            said.append(("closed", record.connection_id, record.reason))
    return said


def test_a_reset_says_where_its_sender_s_stream_ended() -> None:
    """The reset's sequence number is the byte its sender would have sent next: the 5 bytes before
    it that the capture lost are missing."""
    records = fed(TcpReassembler([80]), segment(100, SYN), segment(101, ACK, b"hello"), segment(111, RST | ACK))
    assert summary(records) == [
        ("opened", 1, False), ("bytes", 1, C2S, b"hello"), ("missing", 1, C2S, 5), ("closed", 1, "client reset"),
    ]  # fmt: skip


def test_a_new_syn_on_the_same_ports_ends_the_connection_before_it() -> None:
    records = fed(
        TcpReassembler([80]),
        segment(100, SYN), segment(101, ACK, b"ab"), segment(105, ACK, b"ef"),  # "cd" lost
        segment(900, SYN), segment(901, ACK, b"new"),
    )  # fmt: skip
    assert summary(records) == [
        ("opened", 1, False), ("bytes", 1, C2S, b"ab"), ("missing", 1, C2S, 2), ("bytes", 1, C2S, b"ef"),
        ("closed", 1, "no end in the capture (its ports were used again)"),
        ("opened", 2, False), ("bytes", 2, C2S, b"new"),
    ]  # fmt: skip


def test_a_syn_ack_the_capture_missed_is_told_by_the_client_s_acknowledgement() -> None:
    records = fed(
        TcpReassembler([80]),
        segment(100, SYN), segment(101, ACK, ack=5001),  # the SYN-ACK (5000) is not in the file
        segment(5001, ACK, b"HTTP", server=True), segment(5005, ACK, b"/1.1", server=True),
    )  # fmt: skip
    assert summary(records) == [("opened", 1, False), ("bytes", 1, S2C, b"HTTP"), ("bytes", 1, S2C, b"/1.1")]


def test_segments_after_a_connection_ended_open_nothing() -> None:
    records = fed(
        TcpReassembler([80]),
        segment(100, SYN), segment(7, SYN | ACK, server=True),
        segment(101, FIN | ACK), segment(8, FIN | ACK, server=True),
        segment(102, ACK), segment(101, FIN | ACK),  # the last ACK, and the FIN again
    )  # fmt: skip
    assert summary(records) == [("opened", 1, False), ("closed", 1, "client closed")]
