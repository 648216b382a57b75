"""Record real HTTP/3 traffic through ``rtinspect proxy``, for the committed recordings.

An aioquic server (tests/h3.py) on 127.0.0.1 behind ``rtinspect proxy -q -w
h3_mixed.rtcap`` (QUIC relayed raw on the proxy's UDP port), ``dumpcap`` on
``lo`` filtered to the proxy's UDP port, so ``h3_mixed.pcapng`` holds the
client-to-proxy leg, and an aioquic client that speaks, on one QUIC
connection: a GET of 20,000 bytes, an SSE stream of 20 events, a WebSocket
over HTTP/3 (RFC 9220) echo, and a WebTransport session (DATAGRAMs both ways,
a bidirectional and a unidirectional stream, pushed DATAGRAMs). mitmproxy
writes its QUIC secrets to ``h3_mixed.keys`` (for ``tshark -o
tls.keylog_file:h3_mixed.keys``).

``h3_mixed.expected.json`` is what the client and the server received, below
HTTP/3, independently of rtinspect: each stream's byte count per direction
and each DATAGRAM's size, and the proxy's port.

Usage: ``.venv/bin/python tests/recordings/record_http3.py [--out DIR]`` (writes to DIR/http3)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))

from h3 import H3Client, h3_server, run_client
from servers import issue_certificates, running_proxy, wait_until
from tshark import PacketCapture

from inspector.wire import Direction

NAME = "h3_mixed"


async def a_mix(client: H3Client) -> None:
    await client.get("/bytes?size=20000")
    await client.get("/sse?n=20&size=100")
    await client.websocket("/ws", ["hello", "wire"])
    await client.webtransport(
        "/wt?n=4", datagrams=[b"ping", b"pong"], bidi=[b"there and back"], uni=[b"one way"], pushes=4
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    out = parser.parse_args().out / "http3"
    out.mkdir(parents=True, exist_ok=True)
    capture, pcap, keys = out / f"{NAME}.rtcap", out / f"{NAME}.pcapng", out / f"{NAME}.keys"
    for path in (capture, pcap, keys):
        path.unlink(missing_ok=True)
    os.environ["MITMPROXY_SSLKEYLOGFILE"] = str(keys)
    with tempfile.TemporaryDirectory() as scratch:
        certificates = issue_certificates(Path(scratch))
        confdir = Path(scratch) / "mitmproxy"
        with (
            h3_server(certificates.server) as server,
            running_proxy(server.url, "--upstream-insecure", confdir=confdir, capture=capture) as proxy,
        ):
            packets = PacketCapture(pcap, f"udp port {proxy.port}")
            packets.start()
            try:
                _, client = run_client(proxy.port, confdir / "mitmproxy-ca-cert.pem", a_mix)
                wait_until(lambda: len(server.connections) == 1, "the server's connection")
            finally:
                assert proxy.stop() == 0, proxy.stderr
                packets.stop()
            (upstream,) = server.connections
    expected = {
        "rules": [],
        "proxy_port": proxy.port,
        "keylog": keys.name,
        "streams": {
            Direction.CLIENT_TO_SERVER.value: {str(i): len(data) for i, data in sorted(upstream.streams.items())},
            Direction.SERVER_TO_CLIENT.value: {str(i): len(data) for i, data in sorted(client.streams.items())},
        },
        "datagrams": {
            Direction.CLIENT_TO_SERVER.value: [len(data) for data in upstream.datagrams],
            Direction.SERVER_TO_CLIENT.value: [len(data) for data in client.datagrams],
        },
    }
    (out / f"{NAME}.expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(f"wrote {capture}, {pcap}, {keys} and {NAME}.expected.json", file=sys.stderr)


if __name__ == "__main__":
    main()
