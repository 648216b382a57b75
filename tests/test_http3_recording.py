"""The committed HTTP/3 recording (tests/recordings/http3/, made by record_http3.py): its report
against what the client and the server received, and against tshark's reading of the client's leg.

One QUIC connection through ``rtinspect proxy``: a GET, an SSE stream, a
WebSocket over HTTP/3 and a WebTransport session. ``h3_mixed.expected.json``
holds each stream's bytes per direction and each DATAGRAM's size as the two
ends received them; ``h3_mixed.pcapng`` and ``h3_mixed.keys`` the client's leg
and mitmproxy's QUIC secrets.
"""

from __future__ import annotations

import json
from pathlib import Path

from tshark import needs_tshark, quic_connection_bytes, quic_follow

from inspector.render.json import report_to_dict
from inspector.replay import report_from_captures
from inspector.wire import Direction

RECORDING = Path(__file__).parent / "recordings" / "http3"
CAPTURE = RECORDING / "h3_mixed.rtcap"
EXPECTED = json.loads((RECORDING / "h3_mixed.expected.json").read_text())


def received(direction: Direction) -> int:
    """Every stream byte and DATAGRAM payload byte one direction carried, as its receiver got them."""
    return sum(EXPECTED["streams"][direction.value].values()) + sum(EXPECTED["datagrams"][direction.value])


def test_the_report_counts_what_the_ends_received() -> None:
    report = report_to_dict(report_from_captures([CAPTURE]))
    (connection,) = report["connections"]
    assert connection["protocol"] == "h3" and not connection["anomalies"]
    for direction in Direction:
        assert connection["wire_bytes"][direction.value] == received(direction)
        assert sum(t["wire_bytes"][direction.value] for t in report["transports"].values()) == received(direction)
    transports = report["transports"]
    assert set(transports) == {"http", "sse", "websocket", "webtransport"}
    assert transports["sse"]["messages"]["server_to_client"] == 20
    assert transports["websocket"]["messages"] == {"client_to_server": 2, "server_to_client": 2}
    webtransport = transports["webtransport"]
    assert webtransport["sessions"] == 1
    assert webtransport["datagrams"] == {
        direction.value: len(EXPECTED["datagrams"][direction.value]) for direction in Direction
    }
    assert webtransport["datagram_bytes"]["server_to_client"] > 0
    layer = report["transport_layer"]
    assert layer["server_to_client"]["quic_packet_bytes"] > received(Direction.SERVER_TO_CLIENT)


def test_any_number_of_processes_gives_the_same_report() -> None:
    one = report_to_dict(report_from_captures([CAPTURE], jobs=1))
    assert report_to_dict(report_from_captures([CAPTURE], jobs=2)) == one


@needs_tshark
def test_tshark_reads_the_same_streams_on_the_clients_leg() -> None:
    pcap, keys, port = RECORDING / "h3_mixed.pcapng", RECORDING / EXPECTED["keylog"], EXPECTED["proxy_port"]
    streams = {int(stream_id) for sent in EXPECTED["streams"].values() for stream_id in sent}
    followed = quic_follow(pcap, keys, streams, port)
    assert {
        direction.value: {
            str(stream_id): len(data) for (way, stream_id), data in sorted(followed.items()) if way is direction
        }
        for direction in Direction
    } == EXPECTED["streams"]
    (sent,) = quic_connection_bytes(pcap, keys, port).values()
    assert sent == {direction: received(direction) for direction in Direction}
