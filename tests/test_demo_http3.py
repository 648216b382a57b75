"""``rtinspect demo --http3``: the demo server over HTTP/3 (aioquic, on the TLS server's port
number over UDP) and the Python clients over HTTP/3, every transport and WebTransport.

The server and the clients are tested straight against each other first, without the proxy:
a small feed (0.1 s) read by a client per transport, each over its own QUIC connection. Then
one small ``rtinspect demo --http3`` run (a 0.4 s feed) through the proxy's QUIC relay.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aioquic.h3.events import DatagramReceived, WebTransportStreamDataReceived
from servers import rtinspect_command, rtinspect_environment, run_rtinspect

from demo_server.app import create_app
from demo_server.h3 import WEBTRANSPORT_DRAFT
from demo_server.run import RunningServer, serve_tls_in_thread
from demo_server.tls import TlsFiles, make_tls_files
from inspector.demo import ClientTally, DemoError, DemoSettings
from inspector.demo.clients import Target, client_for, start_feed
from inspector.demo.h3clients import HTTP3_VERSION, h3_connection
from inspector.demo.settings import H3, HTTP1, HTTP3_KEYS, PAGE_KEYS, TRANSPORTS

COUNT = 10
RATE = 100.0
#: Seconds the clients of one test may take: connecting, a 0.1 s feed, closing.
DEADLINE = 20.0
BY_KEY = {t.key: t for t in TRANSPORTS}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def h3_server(tls: TlsFiles) -> Iterator[RunningServer]:
    """The demo over TLS and HTTP/3 with a feed waiting to be started."""
    app = create_app(rate=RATE, count=COUNT, size=200, autostart=False)
    with serve_tls_in_thread(app, tls, http3=True) as server:
        yield server


def settings(tmp_path: Path, compression: bool = True) -> DemoSettings:
    return DemoSettings(
        output=tmp_path, count=COUNT, rate=RATE, poll_interval=0.05, http3=True, compression=compression
    )


async def read_over_h3(
    server: RunningServer, tls: TlsFiles, keys: tuple[str, ...], run: DemoSettings
) -> list[ClientTally]:
    """A client per transport over HTTP/3, all connected before the feed starts."""
    target = Target(server.url, tls.ca_cert, H3)
    tallies = [ClientTally(BY_KEY[key], COUNT, protocol=H3) for key in keys]
    connected = [asyncio.Event() for _ in tallies]
    tasks = [
        asyncio.create_task(client_for(tally)(target, tally, event, run))
        for tally, event in zip(tallies, connected, strict=True)
    ]
    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(*(event.wait() for event in connected))
        await start_feed(Target(server.url, tls.ca_cert))
        await asyncio.gather(*tasks)
    return tallies


def test_every_transport_is_read_over_http3(h3_server: RunningServer, tls: TlsFiles, tmp_path: Path) -> None:
    tallies = asyncio.run(read_over_h3(h3_server, tls, HTTP3_KEYS, settings(tmp_path)))
    for tally in tallies:
        assert (tally.demo.key, tally.received, tally.lost, tally.duplicates, tally.error) == (
            tally.demo.key,
            COUNT,
            0,
            0,
            None,
        )
        assert tally.http_version == HTTP3_VERSION
        assert tally.latency_ms.summary() is not None
    by_key = {tally.demo.key: tally for tally in tallies}
    # A message per WebSocket message and NDJSON line; SSE's end event, and WebTransport's, as one more.
    for key in ("ws", "stream"):
        assert by_key[key].deliveries == COUNT
    for key in ("sse", "wt", "wtdgram"):
        assert by_key[key].deliveries == COUNT + 1
    assert by_key["longpoll"].requests == by_key["longpoll"].deliveries + 1  # the last answer: 204, ended


@pytest.mark.parametrize("compression", [True, False])
def test_websocket_over_h3_deflates_only_when_allowed(tls: TlsFiles, tmp_path: Path, compression: bool) -> None:
    app = create_app(rate=RATE, count=COUNT, size=200, autostart=False)
    with serve_tls_in_thread(app, tls, http3=True, ws_compression=compression) as server:

        async def answer() -> dict[bytes, bytes]:
            async with h3_connection(server.url, str(tls.ca_cert)) as client:
                offer = [(b"sec-websocket-version", b"13"), (b"sec-websocket-extensions", b"permessage-deflate")]
                stream_id = client.request("CONNECT", server.url + "/ws/echo", offer, protocol="websocket")
                status, headers, _ = await client.response(stream_id)
                assert status == 200
                return headers

        headers = asyncio.run(answer())
        tallies = asyncio.run(read_over_h3(server, tls, ("ws",), settings(tmp_path, compression)))
    assert (b"sec-websocket-extensions" in headers) is compression
    assert tallies[0].received == COUNT and tallies[0].error is None


def test_webtransport_sessions_answer_with_the_draft_and_unknown_paths_404(
    h3_server: RunningServer, tls: TlsFiles
) -> None:
    async def answers() -> list[tuple[int, bytes | None]]:
        async with h3_connection(h3_server.url, str(tls.ca_cert)) as client:
            results = []
            for path in ("/wt", "/nowhere"):
                stream_id = client.request(
                    "CONNECT", h3_server.url + path, [WEBTRANSPORT_DRAFT], protocol="webtransport"
                )
                status, headers, _ = await client.response(stream_id)
                results.append((status, headers.get(WEBTRANSPORT_DRAFT[0])))
            return results

    assert asyncio.run(answers()) == [(200, WEBTRANSPORT_DRAFT[1]), (404, None)]


def test_a_webtransport_session_echoes_datagrams_and_unidirectional_streams(
    h3_server: RunningServer, tls: TlsFiles
) -> None:
    async def echoes() -> tuple[bytes, bytes]:
        async with h3_connection(h3_server.url, str(tls.ca_cert)) as client:
            session = client.request("CONNECT", h3_server.url + "/wt", [WEBTRANSPORT_DRAFT], protocol="webtransport")
            assert (await client.response(session))[0] == 200
            client.http.send_datagram(session, b"ping")
            stream_id = client.http.create_webtransport_stream(session, is_unidirectional=True)
            client._quic.send_stream_data(stream_id, b"hello", end_stream=True)
            client.transmit()
            datagram, streamed = b"", b""
            async with asyncio.timeout(DEADLINE):
                while not (datagram and streamed):
                    event = await client.next_event(session)
                    if isinstance(event, DatagramReceived):
                        datagram = event.data
                    elif isinstance(event, WebTransportStreamDataReceived) and event.stream_ended:
                        streamed = event.data
            return datagram, streamed

    assert asyncio.run(echoes()) == (b"ping", b"hello")


def test_http3_listens_on_the_tls_port_number_over_udp_on_ipv4_and_ipv6(h3_server: RunningServer) -> None:
    """Chromium reaches ``localhost`` at ::1, and the proxy relays to 127.0.0.1: one socket takes both."""
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_DGRAM) as probe, pytest.raises(OSError):
            probe.bind((host, h3_server.port))


def test_http3_runs_every_transport_over_three_protocols_and_webtransport_over_h3(tmp_path: Path) -> None:
    run = DemoSettings(output=tmp_path, http3=True)
    assert [t.key for t in run.selected] == list(HTTP3_KEYS)
    assert run.protocols_of(BY_KEY["ws"]) == (HTTP1, "h2", H3)
    assert run.protocols_of(BY_KEY["wt"]) == (H3,)
    assert run.side_by_side and not run.one_by_one
    # Without --http3 WebTransport is not offered: the TCP server has none.
    assert [t.key for t in DemoSettings(output=tmp_path, http2=True).selected] == list(PAGE_KEYS)
    assert "wt" not in [t.key for t in DemoSettings(output=tmp_path).selected]


def test_a_mistake_with_http3_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DemoError, match="--http3 runs ws,sse,stream,longpoll,poll,wt,wtdgram only"):
        DemoSettings(output=tmp_path, http3=True, transports=("socketio",))
    with pytest.raises(DemoError, match="without --http3"):
        DemoSettings(output=tmp_path, transports=("wt",))
    with pytest.raises(DemoError, match="--clients cannot be combined with --http3"):
        DemoSettings(output=tmp_path, http3=True, clients=2)


def test_the_demo_server_command_serves_http3_and_says_how_to_reach_it(tmp_path: Path) -> None:
    process = subprocess.Popen(
        rtinspect_command("demo-server", "--http3", "--port", "0", "--autostart", "--count", "3", "--rate", "100"),
        env=rtinspect_environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(3)]
        url = lines[0].split()[3].rstrip("/")
        ca = lines[1].split()[-1]
        assert "--origin-to-force-quic-on=" + url.removeprefix("https://") in lines[2]

        async def status() -> int:
            async with h3_connection(url, ca) as client:
                status, _, _ = await client.response(client.request("GET", url + "/feed/status"))
                return status

        assert asyncio.run(status()) == 200, lines
    finally:
        process.terminate()
        process.wait(DEADLINE)


#: Seconds the whole run may take here: start-up (a CA, the servers, the proxy), a 0.4 s feed, shutdown.
RUN_TIMEOUT = 120.0
RUN_COUNT = 20
RUN_RATE = 50.0


@pytest.fixture(scope="module")
def http3_run(tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> SimpleNamespace:
    """One ``rtinspect demo --http3`` run: its output, report.json, clients.json and folder."""
    output = tmp_path_factory.mktemp("demo-http3") / "demo"
    done = run_rtinspect(
        "demo",
        "--http3",
        "--count",
        str(RUN_COUNT),
        "--rate",
        str(RUN_RATE),
        "--poll-interval",
        "0.2",
        "-o",
        str(output),
        "--set",
        f"confdir={confdir}",
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return SimpleNamespace(
        done=done,
        output=output,
        report=json.loads((output / "report.json").read_text()),
        clients=json.loads((output / "clients.json").read_text()),
    )


def test_every_transport_is_read_over_three_protocols_through_the_proxy(http3_run: SimpleNamespace) -> None:
    clients = http3_run.clients
    assert clients["protocols"] == [HTTP1, "h2", H3]
    for demo in DemoSettings(output=Path("unused"), http3=True).selected:
        by_protocol = clients["transports"][demo.title]["by_protocol"]
        expected = [H3] if demo.h3_only else [HTTP1, "h2", H3]
        assert list(by_protocol) == expected, demo.title
        over_h3 = by_protocol[H3]
        assert (demo.title, over_h3["received"], over_h3["lost"], over_h3["error"]) == (demo.title, RUN_COUNT, 0, None)
        assert over_h3["http_version"] == HTTP3_VERSION


def test_the_report_counts_each_transport_over_h3(http3_run: SimpleNamespace) -> None:
    transports = http3_run.report["transports"]
    for name in ("websocket", "sse", "http_stream", "long_poll", "short_poll"):
        assert "h3" in transports[name]["by_protocol"], name
    assert transports["websocket"]["by_protocol"]["h3"]["messages"]["server_to_client"] == RUN_COUNT
    assert transports["sse"]["by_protocol"]["h3"]["messages"]["server_to_client"] == RUN_COUNT + 1
    # Both WebTransport runs: a stream per message and a datagram per message, and the feed's end.
    assert transports["webtransport"]["messages"]["server_to_client"] == 2 * (RUN_COUNT + 1)


def test_the_output_puts_three_protocols_side_by_side_and_says_what_level_it_compares(
    http3_run: SimpleNamespace,
) -> None:
    out = http3_run.done.stdout
    assert "HTTP/1.1, h2 and h3, side by side" in out
    assert "webtransport-datagram" in out
    assert "after decryption" in " ".join(out.split())
