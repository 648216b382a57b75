"""QUIC through ``rtinspect proxy``: HTTP/3, WebSocket over HTTP/3 and WebTransport
relayed stream by stream, unchanged, and recorded per stream.

An aioquic server (tests/h3.py) behind a real proxy, an aioquic client in front
of it: what each end received below HTTP/3 is what the other end sent, and what
the capture holds. tshark, reading the client's leg off the loopback interface
with mitmproxy's key log, is the independent account of the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aioquic.quic.packet import QuicErrorCode
from h3 import (
    H3_REQUEST_CANCELLED,
    LOOPBACK,
    H3Client,
    H3Server,
    QuicCaptured,
    Received,
    captured_quic,
    h3_server,
    reversed_stream_ids,
    run_client,
    wt_stream_header,
)
from mitmproxy.connection import Client
from mitmproxy.options import Options
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.mode_specs import ProxyMode
from servers import Certificates, CheckoutProxyProcess, issue_certificates, run_rtinspect, running_proxy, wait_until
from tshark import DUMPCAP, PacketCapture, needs_dumpcap, needs_tshark, quic_datagram_sizes, quic_follow, quic_streams

from inspector.addon import RtInspect
from inspector.proxy_process import free_port, listening
from inspector.wire import Direction

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
#: An application error code for a test's reset.
RESET_CODE = 0x42
#: The streams the server opens out of order, by id (see h3.reversed_stream_ids).
FROM_SERVER = reversed_stream_ids(2)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return issue_certificates(tmp_path_factory.mktemp("h3-certificates"))


@pytest.fixture(scope="module")
def upstream(certificates: Certificates) -> Iterator[H3Server]:
    with h3_server(certificates.server) as server:
        yield server


def udp_bound(port: int) -> bool:
    """Whether a UDP socket of this machine is bound to ``port`` (Linux's socket tables)."""
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with open(table, encoding="ascii") as lines:
            next(lines)
            if any(int(line.split()[1].rsplit(":", 1)[1], 16) == port for line in lines):
                return True
    return False


def quic_proxy(
    upstream: H3Server, confdir: Path, capture: Path, *args: str
) -> contextlib.AbstractContextManager[CheckoutProxyProcess]:
    """``rtinspect proxy`` in front of ``upstream``, writing ``capture``."""
    return running_proxy(upstream.url, "--upstream-insecure", *args, confdir=confdir, capture=capture)


@dataclass
class SharedProxy:
    """One proxy for the module's traffic (starting one takes seconds), with mitmproxy's key log."""

    process: CheckoutProxyProcess
    capture: Path
    keylog: Path
    ca: Path
    upstream: H3Server

    def run[T](self, scenario: Callable[[H3Client], Awaitable[T]], **options: Any) -> Run[T]:
        """Run ``scenario`` on a new client connection; what each end and the capture saw of it."""
        before, servers_before = len(captured_quic(self.capture)), len(self.upstream.connections)
        result, client = run_client(self.process.port, self.ca, scenario, **options)

        def closed() -> list[QuicCaptured]:
            new = captured_quic(self.capture)[before:]
            return new if len(new) == 1 and new[0].closed is not None else []

        # The proxy flushes the capture once a second.
        wait_until(lambda: bool(closed()), "the QUIC connection's close in the capture")
        (server,) = self.upstream.connections[servers_before:]
        return Run(result, client, server, closed()[0])


@dataclass
class Run[T]:
    """What one client connection through the proxy returned, and what each end and the capture saw."""

    result: T
    client: Received
    server: Received
    connection: QuicCaptured


@pytest.fixture(scope="module")
def proxy(upstream: H3Server, confdir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedProxy]:
    directory = tmp_path_factory.mktemp("h3-proxy")
    capture, keylog = directory / "h3.rtcap", directory / "keys.log"
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("MITMPROXY_SSLKEYLOGFILE", str(keylog))
        with quic_proxy(upstream, confdir, capture) as process:
            wait_until(lambda: udp_bound(process.port), "the proxy to listen on UDP")
            yield SharedProxy(process, capture, keylog, confdir / "mitmproxy-ca-cert.pem", upstream)
            assert process.stop() == 0, process.stderr
    assert "crashed" not in process.stderr


def assert_relayed(connection: QuicCaptured, client: Received, server: Received) -> None:
    """Every stream's bytes and every datagram, both ways, as the other end received them, and each stream's end."""
    assert connection.sent(C2S) == {stream_id: bytes(data) for stream_id, data in server.streams.items() if data}
    assert connection.sent(S2C) == {stream_id: bytes(data) for stream_id, data in client.streams.items() if data}
    assert connection.datagrams[C2S] == server.datagrams
    assert connection.datagrams[S2C] == client.datagrams
    assert connection.ends(C2S) == server.ended
    assert connection.ends(S2C) == client.ended


async def a_mix(client: H3Client) -> dict[str, object]:
    """GET, SSE, WebSocket over HTTP/3 and a WebTransport session, on one connection."""
    got = await client.get("/bytes?size=20000")
    sse = await client.get("/sse?n=20&size=100")
    echoes = await client.websocket("/ws", ["hello", "wire"])
    session = await client.webtransport(
        "/wt?n=4", datagrams=[b"ping", b"pong"], bidi=[b"there and back"], uni=[b"one way"], pushes=4
    )
    return {"get": got, "sse": sse, "ws": echoes, "wt": session}


@dataclass
class MixedRun:
    """:func:`a_mix` through the shared proxy, with the client's leg as dumpcap captured it (None without dumpcap)."""

    run: Run[dict[str, Any]]
    pcap: Path | None
    keylog: Path
    proxy_port: int


@pytest.fixture(scope="module")
def mixed_run(proxy: SharedProxy, tmp_path_factory: pytest.TempPathFactory) -> MixedRun:
    pcap = tmp_path_factory.mktemp("h3-mix") / "client-leg.pcapng" if DUMPCAP else None
    packets = PacketCapture(pcap, f"udp port {proxy.process.port}") if pcap else None
    if packets:
        packets.start()
    try:
        run = proxy.run(a_mix)
    finally:
        if packets:
            packets.stop()
    return MixedRun(run, pcap, proxy.keylog, proxy.process.port)


def test_http3_is_relayed_stream_by_stream_unchanged_and_recorded(mixed_run: MixedRun) -> None:
    run = mixed_run.run
    results, connection = run.result, run.connection
    get, sse = results["get"], results["sse"]
    assert (get.status, get.body) == (200, b"b" * 20000)
    assert sse.body == (b"data: " + b"e" * 100 + b"\n\n") * 20
    assert results["ws"] == ["hello", "wire"]
    session = results["wt"]
    assert sorted(session.datagrams) == sorted([b"ping", b"pong", *(b"push %d" % i for i in range(4))])
    assert list(session.echoes.values()) == [b"there and back"]
    assert session.answers == [b"one way"]

    assert_relayed(connection, run.client, run.server)
    # The same stream ids on both legs: what the server got on each stream is what the client sent on it.
    assert set(connection.sent(C2S)) == set(run.server.streams)
    opened = connection.opened
    assert opened.transport == "quic"
    assert opened.tls is not None and opened.upstream_tls is not None
    assert (opened.tls.version, opened.tls.alpn, opened.upstream_tls.alpn) == ("QUICv1", "h3", "h3")
    assert connection.closed is not None and connection.closed.reason == "client closed"


@needs_tshark
@needs_dumpcap
def test_tshark_reads_the_same_bytes_on_the_clients_leg(mixed_run: MixedRun) -> None:
    """tshark's reassembly of every stream (``follow,quic,raw``) and its DATAGRAM frame
    lengths, decrypted with mitmproxy's key log, agree with the capture."""
    pcap, keylog, connection, port = mixed_run.pcap, mixed_run.keylog, mixed_run.run.connection, mixed_run.proxy_port
    assert pcap is not None and keylog.stat().st_size > 0
    assert quic_streams(pcap, keylog, port) == set(connection.streams)
    stream_ids = {stream_id for _, stream_id in connection.streams}
    assert quic_follow(pcap, keylog, stream_ids, port) == connection.streams
    assert quic_datagram_sizes(pcap, keylog, port) == {
        direction: [len(payload) for payload in payloads] for direction, payloads in connection.datagrams.items()
    }


def test_stop_sending_is_relayed_and_the_connection_goes_on(proxy: SharedProxy) -> None:
    """A client abandons a response (STOP_SENDING, H3_REQUEST_CANCELLED): the server is told,
    its reset is recorded, and the connection serves the next request."""

    async def cancel_then_get(client: H3Client) -> tuple[int, bytes]:
        stream_id = client.request("GET", "/sse?n=4000&size=500")
        await client.until(lambda: len(client.received.streams.get(stream_id, b"")) > 0, "the first bytes")
        client.stop_sending(stream_id, H3_REQUEST_CANCELLED)
        await client.until(lambda: stream_id in client.received.ended, "the stream's reset")
        after = await client.get("/bytes?size=100")
        return stream_id, after.body

    run = proxy.run(cancel_then_get)
    stream_id, after = run.result
    assert "crashed" not in proxy.process.stderr
    assert after == b"b" * 100
    assert run.server.stop_sending == {stream_id: H3_REQUEST_CANCELLED}
    assert run.client.ended[stream_id] is not None  # reset, not finished
    assert run.connection.ended[(S2C, stream_id)] is not None
    assert run.connection.closed is not None and run.connection.closed.reason == "client closed"


def test_streams_opened_out_of_order_keep_their_ids_on_both_legs(proxy: SharedProxy) -> None:
    """WebTransport streams opened out of order, by the client (bidirectional 8 before 4,
    unidirectional 18 before 14) and by the server (unidirectional 19 before 15): each end
    gets each stream on the id the other gave it, with its bytes."""
    sent: dict[int, bytes] = {}

    async def out_of_order(client: H3Client) -> None:
        session_id = await client.extended_connect(f"/wt?reversed={len(FROM_SERVER)}", b"webtransport")
        assert session_id == 0
        for stream_id, message in ((8, b"eight"), (4, b"four"), (18, b"eighteen"), (14, b"fourteen")):
            client.open_wt_stream(session_id, stream_id, message)
            sent[stream_id] = wt_stream_header(session_id, unidirectional=bool(stream_id & 2)) + message
        # Streams that end before they carry a byte: a FIN alone, and a reset alone.
        client.end_stream(22)
        client.reset_stream(26, RESET_CODE)
        await client.until(lambda: all(client.received.ended.get(s, 1) is None for s in (4, 8)), "the echoes")
        await client.until(lambda: set(FROM_SERVER) <= set(client.received.ended), "the server's streams")
        await client.until(lambda: len(client.received.ended) >= 6, "the answers")
        await asyncio.sleep(0.2)  # for the server to have the two ends as well

    run = proxy.run(out_of_order)
    for stream_id, data in sent.items():
        assert bytes(run.server.streams[stream_id]) == data
        assert run.connection.sent(C2S)[stream_id] == data
    assert bytes(run.client.streams[8]) == b"eight" and bytes(run.client.streams[4]) == b"four"
    header = wt_stream_header(0, unidirectional=True)
    for stream_id, data in FROM_SERVER.items():
        assert bytes(run.client.streams[stream_id]) == header + data
    assert (run.server.ended[22], run.server.ended[26]) == (None, RESET_CODE)
    assert_relayed(run.connection, run.client, run.server)


def test_an_idle_connection_is_recorded_as_timed_out(proxy: SharedProxy) -> None:
    """QUIC's idle timeout (the smaller of the two ends' offers) closes the client's leg: "timed out"."""

    async def idle(client: H3Client) -> None:
        await client.get("/bytes?size=10")
        await asyncio.sleep(1.5)

    run = proxy.run(idle, idle_timeout=0.5, close=False)
    assert run.connection.closed is not None and run.connection.closed.reason == "timed out"


def test_no_http3_and_http1_only_leave_udp_closed(confdir: Path) -> None:
    proxies = [
        CheckoutProxyProcess.rtinspect("https://127.0.0.1:9", flag, confdir=confdir)
        for flag in ("--no-http3", "--http1-only")
    ]
    try:
        for proxy in proxies:
            proxy.wait_listening()
            assert listening(proxy.port)
        time.sleep(0.3)
        for proxy in proxies:
            assert not udp_bound(proxy.port)
            assert "QUIC" not in proxy.stdout
    finally:
        assert [proxy.stop() for proxy in proxies] == [0, 0], [proxy.stderr for proxy in proxies]


def test_a_udp_port_in_use_is_one_error_line(confdir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        port = free_port()
        taken.bind((LOOPBACK, port))
        result = run_rtinspect("proxy", "https://127.0.0.1:9", "-p", str(port), "-q", "--set", f"confdir={confdir}")
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: cannot listen on UDP {LOOPBACK}:{port}"), line
    assert "Address already in use" in line and "--no-http3" in line


def test_a_quic_connection_counts_as_open_until_it_closes(tmp_path: Path) -> None:
    """The live view's "open" and "seen" figures count QUIC connections: the addon's
    bookkeeping, with mitmproxy's own connection objects and no traffic."""
    client = Client(
        peername=(LOOPBACK, 50000),
        sockname=(LOOPBACK, 8080),
        timestamp_start=time.time(),
        proxy_mode=ProxyMode.parse("reverse:https://127.0.0.1:8443"),
        transport_protocol="udp",
    )
    inspect = RtInspect()
    inspect._open_capture(str(tmp_path / "bookkeeping.rtcap"))
    recorder = inspect._quic_recorder(Context(client, Options()))
    assert inspect.open_connections == 1
    recorder.stream_data(C2S, 0, b"\x01\x00")
    recorder.datagram(S2C, b"\x00ping")
    recorder.close("client closed")
    assert inspect.open_connections == 0
    assert inspect.analysis.view.seen == 1
    inspect.done()
    (connection,) = captured_quic(tmp_path / "bookkeeping.rtcap")
    assert connection.sent(C2S) == {0: b"\x01\x00"} and connection.datagrams[S2C] == [b"\x00ping"]
    assert connection.closed is not None and connection.closed.reason == "client closed"


def test_an_upstream_without_quic_closes_the_clients_connection_with_the_reason(confdir: Path, tmp_path: Path) -> None:
    """mitmproxy completes the client's handshake even when the upstream's fails; the relay
    then closes the client's connection, saying why, and records the error."""
    capture = tmp_path / "no-upstream.rtcap"

    async def request(client: H3Client) -> tuple[int, str] | None:
        with contextlib.suppress(ConnectionError):
            await client.get("/bytes?size=10")
        return client.received.close

    with running_proxy(f"https://{LOOPBACK}:{free_port()}", confdir=confdir, capture=capture) as proxy:
        wait_until(lambda: udp_bound(proxy.port), "the proxy to listen on UDP")
        close, _ = run_client(proxy.port, confdir / "mitmproxy-ca-cert.pem", request, close=False)
        wait_until(lambda: [c.closed is not None for c in captured_quic(capture)] == [True], "the close")
        assert proxy.stop() == 0, proxy.stderr
    assert close is not None and close[0] == QuicErrorCode.CONNECTION_REFUSED
    assert close[1].startswith("QUIC handshake with the upstream failed")
    (connection,) = captured_quic(capture)
    assert connection.closed is not None
    assert connection.closed.reason.startswith("error: QUIC handshake with the upstream failed")
