"""Figures below the byte streams: TLS records and IP headers on the client's leg.

The TLS record counter is checked on its own (any split of a stream gives the
same counts; what is not TLS is an anomaly) and through a real ``rtinspect
proxy --listen-tls`` against tshark's dissection of the client's leg, captured
with dumpcap: records and record bytes per direction must be equal.
"""

from __future__ import annotations

import json
import ssl
import subprocess
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from servers import DEADLINE, LOOPBACK, AppServer, running_proxy
from tshark import TSHARK, PacketCapture, needs_dumpcap, needs_tshark

from inspector.capture import ConnectionClosed, Event, read_capture, transport_layer_event, transport_layer_from
from inspector.metrics import LAYER_DOCUMENTATION, MetricsLedger
from inspector.render.csv import render_csv
from inspector.render.json import render_json
from inspector.render.rows import report_notes
from inspector.replay import analyze_captures, report_from_captures
from inspector.summary import apportion_layer, build_report
from inspector.tls_records import TlsLeg, TlsRecordCounter
from inspector.transport_layer import (
    COUNTS,
    LayerFigures,
    TcpSegmentEstimate,
    TransportLayer,
    travels_over_ipv6,
)
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

#: A handshake record of 7 bytes of body, a change cipher spec record, an application data record of 300.
RECORDS = (
    b"\x16\x03\x01\x00\x07" + bytes(7)
    + b"\x14\x03\x03\x00\x01\x01"
    + b"\x17\x03\x03\x01\x2c" + bytes(300)
)  # fmt: skip


def counted(chunks: list[bytes]) -> tuple[int, int, int, str | None]:
    counter = TlsRecordCounter()
    for chunk in chunks:
        counter.feed(chunk)
    return counter.records, counter.record_bytes, counter.unparsed_bytes, counter.anomaly


def test_records_are_counted_whatever_the_split() -> None:
    whole = counted([RECORDS])
    assert whole == (3, len(RECORDS), 0, None)
    for cut in range(len(RECORDS) + 1):
        assert counted([RECORDS[:cut], RECORDS[cut:]]) == whole
    assert counted([RECORDS[i : i + 1] for i in range(len(RECORDS))]) == whole


def test_a_record_cut_off_counts_the_bytes_it_had() -> None:
    assert counted([RECORDS[:8]]) == (1, 8, 0, None)
    assert counted([RECORDS[:3]]) == (0, 3, 0, None)


def test_what_is_not_tls_is_an_anomaly_and_unparsed() -> None:
    for chunks in ([RECORDS + b"GET / HTTP/1.1\r\n"], [RECORDS + b"GE", b"T / HTTP/1.1\r\n"]):
        records, record_bytes, unparsed, anomaly = counted(chunks)
        assert (records, record_bytes, unparsed) == (3, len(RECORDS), 16)
        assert anomaly is not None and anomaly.startswith("not a TLS record header")


def test_a_tls_leg_estimates_its_headers_and_says_so() -> None:
    leg = TlsLeg(ipv6=False)
    leg.feed(C2S, RECORDS, 0.0)
    leg.feed(S2C, bytes(3000), 0.01)  # not TLS: counted as segments, not as records
    figures = leg.figures(closed=True)
    assert figures[C2S].tls_records == 3 and figures[S2C].tls_records == 0
    # c→s: 1 data segment, 1 ACK of the server's first 2 segments, SYN and ACK, FIN and ACK, the held-back ACK.
    assert figures[C2S].ip_header_bytes == (1 + 1 + 2 + 2 + 1) * 52
    # s→c: 3 data segments (they carry the ACK of the client's), SYN-ACK, FIN and ACK.
    assert figures[S2C].ip_header_bytes == (3 + 1 + 2) * 52
    assert figures[C2S].ip_header_bytes_estimated and figures[S2C].ip_header_bytes_estimated


def test_acks_are_held_back_unless_data_carries_them_or_two_segments_are_due() -> None:
    every_50_ms = TcpSegmentEstimate(ipv6=True)
    for i in range(10):
        every_50_ms.sent(S2C, 100, i * 0.05)
    assert every_50_ms.acks[S2C] == 9  # each held back past 40 ms; the last still held
    assert every_50_ms.header_bytes(C2S) == (9 + 2) * 72
    every_10_ms = TcpSegmentEstimate(ipv6=False)
    for i in range(10):
        every_10_ms.sent(S2C, 100, i * 0.01)
    assert every_10_ms.acks[S2C] == 5  # every second segment
    answered = TcpSegmentEstimate(ipv6=False)
    for i in range(10):
        answered.sent(C2S, 50, i * 0.05)
        answered.sent(S2C, 100, i * 0.05 + 0.001)
    assert answered.acks[C2S] == 0 and answered.acks[S2C] == 9  # the answers carry the ACKs of the requests


def test_the_event_round_trips_and_damaged_figures_are_ignored() -> None:
    figures = TransportLayer(LayerFigures(tls_records=2, tls_record_bytes=90), LayerFigures(quic_packets=1))
    assert transport_layer_from(transport_layer_event(3, 1.0, figures)) == figures
    assert transport_layer_from(Event(3, 1.0, "transport layer", {"client_to_server": {"tls_records": -1}})) is None
    assert transport_layer_from(Event(3, 1.0, "transport layer", {"client_to_server": []})) is None
    assert transport_layer_from(Event(3, 1.0, "missing bytes", figures.as_dict())) is None


# -- through the proxy, against tshark


def tshark_records(pcapng: Path, port: int) -> dict[Direction, tuple[int, int]]:
    """(records, bytes with their 5-byte headers) per direction, as tshark dissects the client's leg."""
    output = subprocess.run(
        [TSHARK or "tshark", "-r", str(pcapng), "-d", f"tcp.port=={port},tls", "-Y", "tls.record.length",
         "-T", "fields", "-e", "tcp.dstport", "-e", "tls.record.length"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    figures = {C2S: [0, 0], S2C: [0, 0]}
    for line in output.splitlines():
        destination, lengths = line.split("\t")
        direction = C2S if int(destination) == port else S2C
        for length in lengths.split(","):
            figures[direction][0] += 1
            figures[direction][1] += 5 + int(length)
    return {direction: (records, size) for direction, (records, size) in figures.items()}


@needs_tshark
@needs_dumpcap
def test_tls_records_through_the_proxy_agree_with_tshark(app_server: AppServer, confdir: Path, tmp_path: Path) -> None:
    capture, pcapng = tmp_path / "tls.rtcap", tmp_path / "tls.pcapng"
    with running_proxy(app_server.url, "--listen-tls", confdir=confdir, capture=capture) as proxy:
        packets = PacketCapture(pcapng, f"tcp port {proxy.port}")
        packets.start()
        try:
            trusted = ssl.create_default_context(cafile=confdir / "mitmproxy-ca-cert.pem")
            base = f"https://{LOOPBACK}:{proxy.port}"
            with httpx.Client(verify=trusted, timeout=DEADLINE) as client:
                assert client.get(f"{base}/plain").status_code == 200
                with client.stream("GET", f"{base}/sse?count=20&interval=0") as response:
                    assert sum(1 for line in response.iter_lines() if line.startswith("data:")) == 20
            with httpx.Client(verify=trusted, timeout=DEADLINE) as client:
                assert client.get(f"{base}/plain").status_code == 200
            assert proxy.stop() == 0, proxy.stderr
        finally:
            packets.stop()
    report = report_from_captures([capture])
    layer = report.transport_layer
    assert layer is not None
    expected = tshark_records(pcapng, proxy.port)
    assert expected[C2S][0] > 3 and expected[S2C][0] > 10
    for direction in Direction:
        assert (layer[direction].tls_records, layer[direction].tls_record_bytes) == expected[direction]
        assert layer[direction].ip_header_bytes > 0 and layer[direction].ip_header_bytes_estimated
    assert report.transport("sse").transport_layer is not None
    with read_capture(capture) as recorded:
        events = [record for record in recorded if isinstance(record, Event) and record.name == "transport layer"]
    assert len({event.connection_id for event in events}) == 2


# -- packet captures: every packet's headers, exactly

RECORDINGS = Path(__file__).parent / "recordings"


def tshark_headers(pcapng: Path, port: int) -> dict[Direction, int]:
    """IP and TCP header bytes per direction, as tshark dissects every packet to or from ``port``."""
    output = subprocess.run(
        [TSHARK or "tshark", "-r", str(pcapng), "-Y", f"tcp.port=={port}",
         "-T", "fields", "-e", "tcp.dstport", "-e", "ip.hdr_len", "-e", "tcp.hdr_len"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    headers = {C2S: 0, S2C: 0}
    for line in output.splitlines():
        destination, ip, tcp = line.split("\t")
        headers[C2S if int(destination) == port else S2C] += int(ip) + int(tcp)
    return headers


@needs_tshark
@pytest.mark.parametrize("name", ["sse", "mixed"])
def test_a_packet_capture_gives_exact_ip_headers(name: str) -> None:
    port = json.loads((RECORDINGS / f"{name}.expected.json").read_text())["server_port"]
    report = report_from_captures([RECORDINGS / f"{name}.pcapng"], server_ports=[port])
    layer = report.transport_layer
    assert layer is not None
    expected = tshark_headers(RECORDINGS / f"{name}.pcapng", port)
    for direction in Direction:
        assert layer[direction].ip_header_bytes == expected[direction] > 0
        assert not layer[direction].ip_header_bytes_estimated
    # Every connection's headers are in its transport's figures.
    assert sum(
        t.transport_layer[d].ip_header_bytes for t in report.transports.values() if t.transport_layer for d in Direction
    ) == sum(expected.values())


@needs_tshark
def test_parts_read_in_parallel_give_the_same_figures() -> None:
    port = json.loads((RECORDINGS / "mixed.expected.json").read_text())["server_port"]
    one, two = (report_from_captures([RECORDINGS / "mixed.pcapng"], server_ports=[port], jobs=jobs) for jobs in (1, 2))
    assert one.transport_layer == two.transport_layer is not None
    assert {name: t.transport_layer for name, t in one.transports.items()} == {
        name: t.transport_layer for name, t in two.transports.items()
    }


# -- summaries: shares of a connection's figures, and the report's views of them


def test_a_connection_s_figures_are_split_among_its_transports_in_whole_units() -> None:
    sse = analyze_captures([RECORDINGS / "http2" / "h2_sse.rtcap"]).records[0]
    ndjson = analyze_captures([RECORDINGS / "http2" / "h2_ndjson.rtcap"]).records[0]
    layer = TransportLayer(
        LayerFigures(tls_records=7, tls_record_bytes=1001, ip_header_bytes=520, ip_header_bytes_estimated=True),
        LayerFigures(tls_records=31, tls_record_bytes=9999, ip_header_bytes=729, ip_header_bytes_estimated=True),
    )
    # One HTTP/2 connection that carried an SSE stream and an NDJSON stream.
    both = replace(sse, totals={**sse.totals, **ndjson.totals}, transport_layer=layer)
    weights = [figures.wire_bytes for figures in both.totals.values()]
    report = build_report([both])
    shares = [report.transport(name).transport_layer for name in ("sse", "http_stream")]
    assert shares == apportion_layer(layer, weights)
    assert shares[0] is not None and shares[1] is not None
    assert shares[0] + shares[1] == layer == report.transport_layer
    for share, weight in zip(shares, weights, strict=True):
        exact = layer.server_to_client.tls_record_bytes * weight / sum(weights)
        assert abs(share.server_to_client.tls_record_bytes - exact) < 1
        assert share.client_to_server.ip_header_bytes_estimated
    # The JSON report holds the same figures, per transport and in total; the CSV ends with them.
    document = json.loads(render_json(report))
    assert TransportLayer.from_dict(document["transport_layer"]) == layer
    assert TransportLayer.from_dict(document["transports"]["sse"]["transport_layer"]) == shares[0]
    header, first = render_csv(report).splitlines()[:2]
    assert header.split(",")[-2:] == [
        "ip_header_bytes_estimated_client_to_server",
        "ip_header_bytes_estimated_server_to_client",
    ]
    assert first.split(",")[-2:] == ["true", "true"]
    assert any(note.startswith("Below the byte streams") for note in report_notes(report))


def test_figures_add_up_and_an_estimate_stays_one() -> None:
    exact = LayerFigures(ip_header_bytes=100)
    estimated = LayerFigures(ip_header_bytes=52, ip_header_bytes_estimated=True)
    assert (exact + estimated).ip_header_bytes_estimated and (exact + estimated).ip_header_bytes == 152
    assert not (exact + LayerFigures(tls_records=1, ip_header_bytes_estimated=True)).ip_header_bytes_estimated
    assert apportion_layer(TransportLayer(LayerFigures(tls_records=3)), [0, 0]) == [
        TransportLayer(LayerFigures(tls_records=2)),
        TransportLayer(LayerFigures(tls_records=1)),
    ]


def test_the_metrics_count_the_figures_of_closed_connections() -> None:
    port = json.loads((RECORDINGS / "mixed.expected.json").read_text())["server_port"]
    analysis = analyze_captures([RECORDINGS / "mixed.pcapng"], server_ports=[port])
    ledger = MetricsLedger()
    ledger.update(analysis.records, ())
    samples = [
        (sample.labels["direction"], sample.value)
        for family in ledger.families()
        if family.name == "rtinspect_ip_header_bytes"
        for sample in family.samples
        if sample.name == "rtinspect_ip_header_bytes_total"
    ]
    report = report_from_captures([RECORDINGS / "mixed.pcapng"], server_ports=[port])
    assert report.transport_layer is not None
    assert set(LAYER_DOCUMENTATION) == set(COUNTS)
    for direction in Direction:
        counted = sum(value for d, value in samples if d == direction.value)
        assert counted == report.transport_layer[direction].ip_header_bytes > 0


def test_a_long_connection_s_figures_are_recorded_while_it_lives(
    app_server: AppServer, confdir: Path, tmp_path: Path
) -> None:
    """At most once a second and at the close, so a killed proxy leaves figures of what it relayed."""
    capture = tmp_path / "long.rtcap"
    with running_proxy(app_server.url, "--listen-tls", confdir=confdir, capture=capture) as proxy:
        trusted = ssl.create_default_context(cafile=confdir / "mitmproxy-ca-cert.pem")
        with httpx.Client(verify=trusted, timeout=DEADLINE) as client:
            with client.stream("GET", f"https://{LOOPBACK}:{proxy.port}/sse?count=25&interval=0.1") as response:
                assert sum(1 for line in response.iter_lines() if line.startswith("data:")) == 25
        assert proxy.stop() == 0, proxy.stderr
    with read_capture(capture) as recorded:
        records = list(recorded)
    events = [r for r in records if isinstance(r, Event) and r.name == "transport layer"]
    closed_at = next(i for i, r in enumerate(records) if isinstance(r, ConnectionClosed))
    assert len(events) >= 3 and records.index(events[0]) < closed_at - 1
    figures = [transport_layer_from(event) for event in events]
    records_so_far = [f.server_to_client.tls_records for f in figures if f is not None]
    assert records_so_far == sorted(records_so_far) and records_so_far[0] < records_so_far[-1]


def test_ipv6_headers_only_for_ipv6_peers() -> None:
    assert travels_over_ipv6("::1") and travels_over_ipv6("fe80::1%lo")
    assert not travels_over_ipv6("127.0.0.1") and not travels_over_ipv6("::ffff:127.0.0.1")
    assert not travels_over_ipv6("localhost")
