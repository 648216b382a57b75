"""The report's HTTP/2 figures against tshark's ``http2`` dissector.

Real HTTP/2 is recorded through ``rtinspect proxy -w`` while dumpcap captures
the client-to-proxy leg on loopback: httpx against Hypercorn, on one connection
an SSE stream, an NDJSON stream, polls and repeated requests (so HPACK's
dynamic table shrinks the later heads), once as h2c with prior knowledge and
once over TLS with the client's key log. tshark must account for every byte
the proxy relayed, and ``rtinspect report -f json`` must give the same
figures in its top-level ``http2`` object. The harness is first checked on
traffic with every frame kind, against what the two ends sent.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import (
    DEADLINE,
    Certificates,
    H2Client,
    HypercornServer,
    ScriptedServer,
    issue_certificates,
    run_rtinspect,
    running_proxy,
    serve_h2,
)
from test_proxy import captured
from test_proxy_http2 import h2_conversation
from tshark import (
    C2S,
    CONNECTION_BYTES,
    DIRECTION_NAMES,
    HTTP2_BYTE_FIGURES,
    S2C,
    PacketCapture,
    dissect_http2,
    http2_bytes,
    http2_totals,
    needs_dumpcap,
    needs_tshark,
    retransmitted,
)

pytestmark = [needs_tshark, needs_dumpcap]

#: How many events, lines and polls the client asks for.
EVENTS = 15
POLLS = 6
REQUESTS = 5


@dataclass(frozen=True)
class Recorded:
    capture: Path
    pcapng: Path
    #: The proxy's port: the server side of the captured leg.
    port: int
    keylog: Path | None


async def talk(base_url: str, verify: ssl.SSLContext | bool) -> None:
    """SSE, NDJSON, polls and plain requests at once on one HTTP/2 connection."""
    h2c = base_url.startswith("http:")
    async with httpx.AsyncClient(
        base_url=base_url, http1=not h2c, http2=True, verify=verify, timeout=DEADLINE, trust_env=False
    ) as client:
        first = await client.get("/plain")  # opens the connection that the rest share
        assert first.http_version == "HTTP/2"

        async def sse() -> None:
            async with client.stream("GET", f"/sse?count={EVENTS}&interval=0.01") as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                text = "".join([chunk async for chunk in response.aiter_text()])
                assert text.count("data: message") == EVENTS

        async def ndjson() -> None:
            async with client.stream("GET", f"/ndjson?count={EVENTS}&interval=0.01") as response:
                lines = [line async for line in response.aiter_lines() if line]
                assert len(lines) == EVENTS

        async def polls() -> None:
            for n in range(POLLS):
                response = await client.get("/poll", params={"wait": 0.02, "count": n % 2})
                assert len(response.json()["messages"]) == n % 2

        async def requests() -> None:
            for n in range(REQUESTS):
                assert (await client.get("/plain")).status_code == 200
                body = bytes([n]) * 1000
                assert (await client.post("/echo", content=body)).content == body

        await asyncio.gather(sse(), ndjson(), polls(), requests())


#: Times a run is recorded again when the loopback retransmitted a segment in it.
ATTEMPTS = 3


def record(upstream: HypercornServer, confdir: Path, directory: Path, tls: bool) -> Recorded:
    """The talk through the proxy, captured; recorded again (up to :data:`ATTEMPTS`
    times) when a busy loopback retransmitted a segment, since tshark may then
    dissect some bytes in the copy and some in the original."""
    for attempt in range(ATTEMPTS):
        recorded = _record(upstream, confdir, directory / f"attempt-{attempt}", tls)
        if not retransmitted(recorded.pcapng):
            break
    return recorded


def _record(upstream: HypercornServer, confdir: Path, directory: Path, tls: bool) -> Recorded:
    directory.mkdir(parents=True, exist_ok=True)
    capture, pcapng = directory / "h2.rtcap", directory / "h2.pcapng"
    keylog = directory / "client.keys" if tls else None
    args = ("--upstream-insecure", "--listen-tls") if tls else ()
    with running_proxy(upstream.url, *args, confdir=confdir, capture=capture) as proxy:
        packets = PacketCapture(pcapng, f"tcp port {proxy.port}")
        packets.start()
        try:
            if tls:
                verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=confdir / "mitmproxy-ca-cert.pem")
                verify.keylog_filename = str(keylog)
                asyncio.run(talk(f"https://127.0.0.1:{proxy.port}", verify))
            else:
                asyncio.run(talk(proxy.url, True))
            assert proxy.stop() == 0, proxy.stderr
        finally:
            packets.stop()
    return Recorded(capture, pcapng, proxy.port, keylog)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return issue_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module", params=["h2c", "tls"])
def recorded(
    request: pytest.FixtureRequest,
    certificates: Certificates,
    confdir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Recorded]:
    tls = request.param == "tls"
    with HypercornServer(certificates=certificates if tls else None) as upstream:
        yield record(upstream, confdir, tmp_path_factory.mktemp(f"h2-{request.param}"), tls)


def tshark_figures(recorded: Recorded) -> tuple[dict[str, Any], dict[str, int]]:
    """tshark's HTTP/2 figures, and its TCP payload bytes per direction."""
    streams = dissect_http2(recorded.pcapng, recorded.port, recorded.keylog)
    carrying = [s for s in streams.values() if s.directions[C2S].tcp_len or s.directions[S2C].tcp_len]
    tcp = {name: sum(s.directions[d].tcp_len for s in carrying) for d, name in DIRECTION_NAMES.items()}
    return http2_totals(carrying), tcp


def captured_bytes(capture: Path) -> dict[str, int]:
    connections = captured(capture)
    return {
        "client_to_server": sum(len(c.streams[0]) for c in connections),
        "server_to_client": sum(len(c.streams[1]) for c in connections),
    }


def test_tshark_accounts_for_every_relayed_byte(recorded: Recorded) -> None:
    """Every byte the proxy relayed is in exactly one of tshark's HTTP/2 figures; in
    cleartext those are also every TCP payload byte of the captured leg."""
    figures, tcp = tshark_figures(recorded)
    relayed = captured_bytes(recorded.capture)
    assert http2_bytes(figures) == relayed
    if recorded.keylog is None:
        assert tcp == relayed
    connections = len(captured(recorded.capture))
    assert figures["preface_bytes"] == {"client_to_server": 24 * connections, "server_to_client": 0}
    assert figures["frame_header_bytes"] == {
        name: 9 * sum(figures["frames"][name].values()) for name in DIRECTION_NAMES.values()
    }
    requests = 1 + 2 * REQUESTS + POLLS + 2
    assert figures["frames"]["client_to_server"]["HEADERS"] == requests
    assert figures["frames"]["server_to_client"]["HEADERS"] == requests
    # HPACK's dynamic table: the decoded heads are several times their header blocks.
    for name in DIRECTION_NAMES.values():
        assert figures["decoded_header_bytes"][name] > 2 * figures["header_block_bytes"][name]


def test_tshark_figures_cover_every_frame_kind(confdir: Path, tmp_path: Path) -> None:
    """The harness itself, on h2c traffic with padding, priority, CONTINUATION, PING,
    RST_STREAM and GOAWAY (the h2 library on both ends): every TCP payload byte is in
    exactly one figure, and the figures are what both ends sent."""
    for attempt in range(ATTEMPTS):  # again when a busy loopback retransmitted a segment (see record())
        pcapng, capture = tmp_path / f"kinds-{attempt}.pcapng", tmp_path / f"kinds-{attempt}.rtcap"
        with ScriptedServer(serve_h2) as server:
            with running_proxy(server.url, confdir=confdir, capture=capture) as proxy:
                packets = PacketCapture(pcapng, f"tcp port {proxy.port}")
                packets.start()
                try:
                    client = H2Client.connect(proxy.port)
                    h2_conversation(client)
                    assert proxy.stop() == 0, proxy.stderr
                finally:
                    packets.stop()
        if not retransmitted(pcapng):
            break
    streams = dissect_http2(pcapng, proxy.port)
    figures = http2_totals(streams.values())
    tcp = {name: sum(s.directions[d].tcp_len for s in streams.values()) for d, name in DIRECTION_NAMES.items()}
    sent = {"client_to_server": len(client.sent), "server_to_client": len(client.received)}
    assert http2_bytes(figures) == tcp == sent
    up, down = figures["frames"]["client_to_server"], figures["frames"]["server_to_client"]
    assert (up["HEADERS"], up["PRIORITY"], up["RST_STREAM"], up["PING"], up["GOAWAY"]) == (9, 1, 1, 1, 1)
    assert (down["HEADERS"], down["CONTINUATION"], down["PING"]) == (8, 1, 1)
    # Two padded DATA frames (7 bytes of padding, then none) and a padded HEADERS frame (5): each
    # with its pad length byte.
    assert figures["padding_bytes"] == {"client_to_server": 0, "server_to_client": (1 + 7) + (1 + 0) + (1 + 5)}
    assert figures["data_bytes"] == {
        "client_to_server": 256 * 400,
        "server_to_client": sum(len(response.body) for response in client.responses.values()),
    }
    decoded, block = figures["decoded_header_bytes"], figures["header_block_bytes"]
    assert decoded["server_to_client"] > 30_000 > block["server_to_client"]
    # Control: each side's SETTINGS (its first frame; the ACKs are empty), WINDOW_UPDATEs,
    # PING and its answer, the reset, GOAWAY, the priority field of one request and the
    # PRIORITY frame of another.
    settings_up = int.from_bytes(client.sent[24:27])
    settings_down = int.from_bytes(client.received[:3])
    assert figures["control_bytes"] == {
        "client_to_server": settings_up + 4 * up["WINDOW_UPDATE"] + 8 + 4 + 8 + 5 + 5,
        "server_to_client": settings_down + 4 * down["WINDOW_UPDATE"] + 8,
    }
    # The report of the same traffic gives tshark's figures: padding (pad length bytes included)
    # apart from data, header blocks and control, and the bytes outside every stream (the preface,
    # stream 0, and the PRIORITY frame sent before its stream was opened: 9 + 5 bytes).
    result = run_rtinspect("report", str(capture), "-f", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["http2"]
    assert nonzero(report["frames"]) == nonzero(figures["frames"])
    for figure in (*HTTP2_BYTE_FIGURES, CONNECTION_BYTES):
        assert report[figure] == figures[figure], figure


def nonzero(frames: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {direction: {kind: n for kind, n in counts.items() if n} for direction, counts in frames.items()}


def test_report_http2_figures_agree_with_tshark(recorded: Recorded) -> None:
    result = run_rtinspect("report", str(recorded.capture), "-f", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "http2" in report, "the report has no top-level http2 figures"
    assert [c.get("protocol") for c in report["connections"]] == ["h2"] * len(report["connections"])
    figures, _ = tshark_figures(recorded)
    assert nonzero(report["http2"]["frames"]) == nonzero(figures["frames"])
    for figure in (*HTTP2_BYTE_FIGURES, CONNECTION_BYTES):
        assert report["http2"][figure] == figures[figure], figure


# -- the committed recordings of HTTP/2 (tests/recordings/http2/h2_*)

RECORDINGS = Path(__file__).parent / "recordings" / "http2"
H2_RECORDINGS = sorted(p.name.removesuffix(".expected.json") for p in RECORDINGS.glob("h2_*.expected.json"))


def committed(name: str) -> tuple[dict[str, Any], Recorded]:
    expected = json.loads((RECORDINGS / f"{name}.expected.json").read_text())
    files = (RECORDINGS / f"{name}.{suffix}" for suffix in ("rtcap", "pcapng"))
    return expected, Recorded(*files, expected["server_port"], RECORDINGS / expected["keylog"])


def test_every_http2_scenario_is_recorded() -> None:
    assert H2_RECORDINGS == sorted(["h2_sse", "h2_ndjson", "h2_long_poll", "h2_short_poll", "h2_websocket"])


@pytest.mark.parametrize("name", H2_RECORDINGS)
def test_recordings_are_http2_and_tshark_accounts_for_every_byte(name: str) -> None:
    expected, recording = committed(name)
    connections = captured(recording.capture)
    assert len(connections) == sum(seen["connections"] for seen in expected["transports"].values())
    for connection in connections:
        assert connection.opened.tls is not None and connection.opened.upstream_tls is not None
        assert connection.opened.tls.alpn == connection.opened.upstream_tls.alpn == "h2"
        assert connection.streams[0].startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    figures, _ = tshark_figures(recording)
    assert http2_bytes(figures) == captured_bytes(recording.capture)


@pytest.mark.parametrize("name", H2_RECORDINGS)
def test_report_of_recordings_agrees_with_tshark(name: str) -> None:
    expected, recording = committed(name)
    rules = [arg for rule in expected["rules"] for arg in ("--transport", rule)]
    result = run_rtinspect("report", str(recording.capture), *rules, "-f", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "http2" in report, "the report has no top-level http2 figures"
    figures, _ = tshark_figures(recording)
    assert nonzero(report["http2"]["frames"]) == nonzero(figures["frames"])
    for figure in (*HTTP2_BYTE_FIGURES, CONNECTION_BYTES):
        assert report["http2"][figure] == figures[figure], figure
