"""``rtinspect proxy`` relays every byte unchanged and records exactly those bytes.

Real mitmproxy in a subprocess, real clients and servers on 127.0.0.1. Each
byte-identity test puts recording relays on both sides of the proxy (or uses
a scripted server that records what it received) and compares what the
client sent with what the server received, in both directions, and with the
capture.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from servers import (
    DEADLINE,
    LOOPBACK,
    AppServer,
    CheckoutProxyProcess,
    RecordingRelay,
    ScriptedConnection,
    ScriptedServer,
    free_port,
    respond_with,
    run_rtinspect,
    running_proxy,
    self_signed_certificate,
    tls_server_context,
    wait_until,
)
from websockets.sync.client import connect as websocket_connect

from inspector.capture import ConnectionClosed, ConnectionOpened, DataChunk, read_capture
from inspector.render.json import report_to_dict
from inspector.replay import report_from_captures
from inspector.report import PerDirection
from inspector.wire import Direction

Streams = tuple[bytes, bytes]
"""What one connection carried: (client to server, server to client)."""


@dataclass(frozen=True)
class CapturedConnection:
    opened: ConnectionOpened
    streams: Streams
    closed: ConnectionClosed | None


def captured(path: Path) -> list[CapturedConnection]:
    """The capture's connections in order, with their bytes joined per direction."""
    opened: dict[int, ConnectionOpened] = {}
    closed: dict[int, ConnectionClosed] = {}
    data: dict[int, dict[Direction, bytearray]] = {}
    with read_capture(path) as capture:
        for record in capture:
            match record:
                case ConnectionOpened():
                    opened[record.connection_id] = record
                    data[record.connection_id] = {d: bytearray() for d in Direction}
                case DataChunk():
                    data[record.connection_id][record.direction] += record.data
                case ConnectionClosed():
                    closed[record.connection_id] = record
    return [
        CapturedConnection(
            opened[cid],
            (bytes(data[cid][Direction.CLIENT_TO_SERVER]), bytes(data[cid][Direction.SERVER_TO_CLIENT])),
            closed.get(cid),
        )
        for cid in sorted(opened)
    ]


def carried(connections: list) -> list[Streams]:
    """Streams of relayed or scripted connections that carried any bytes."""
    streams = []
    for c in connections:
        if isinstance(c, ScriptedConnection):
            pair = (bytes(c.received), bytes(c.sent))
        else:
            pair = (bytes(c.client_to_server), bytes(c.server_to_client))
        if any(pair):
            streams.append(pair)
    return streams


def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` on a new connection, close the sending side, return all that comes back."""
    with socket.create_connection((LOOPBACK, port), timeout=DEADLINE) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        response = bytearray()
        while data := sock.recv(65536):
            response += data
        return bytes(response)


# -- relayed byte for byte


@dataclass
class Chain:
    """client → client_side relay → proxy → server_side relay → app server."""

    client_side: RecordingRelay
    proxy: CheckoutProxyProcess
    server_side: RecordingRelay
    capture: Path

    @property
    def url(self) -> str:
        return self.client_side.url()

    def stop_and_check(self, connections: int) -> list[CapturedConnection]:
        """Stop the proxy and check that client, server and capture saw the same bytes."""
        sent_and_received = carried(self.client_side.wait_finished(connections))
        assert self.proxy.stop() == 0, self.proxy.stderr
        at_server = carried(self.server_side.wait_finished(connections))
        assert len(sent_and_received) == connections
        assert at_server == sent_and_received
        recorded = captured(self.capture)
        assert [c.streams for c in recorded] == sent_and_received
        return recorded


@pytest.fixture
def chain(app_server: AppServer, confdir: Path, tmp_path: Path) -> Iterator[Chain]:
    capture = tmp_path / "chain.rtcap"
    with RecordingRelay(app_server.port) as server_side:
        with running_proxy(server_side.url(), confdir=confdir, capture=capture) as proxy:
            with RecordingRelay(proxy.port) as client_side:
                yield Chain(client_side, proxy, server_side, capture)


def plain_requests(url: str) -> None:
    with httpx.Client(base_url=url, timeout=DEADLINE) as client:
        assert client.get("/plain").text == "hello, wire\n" * 20
        body = bytes(range(256)) * 300
        assert client.post("/echo", content=body).content == body


def sse_stream(url: str) -> None:
    with httpx.Client(timeout=DEADLINE) as client, client.stream("GET", f"{url}/sse?count=20") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "".join(response.iter_text()).count("data: message") == 20


def ndjson_stream(url: str) -> None:
    with httpx.Client(timeout=DEADLINE) as client:
        assert len(client.get(f"{url}/ndjson?count=20").text.splitlines()) == 20


def websocket_echo(compression: str | None) -> Callable[[str], None]:
    def talk(url: str) -> None:
        ws_url = url.replace("http://", "ws://") + "/ws"
        with websocket_connect(ws_url, compression=compression, open_timeout=DEADLINE) as ws:
            extensions = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            assert ("permessage-deflate" in extensions) == (compression == "deflate")
            for n in range(10):
                message = f"message {n} " * 20
                ws.send(message)
                assert ws.recv(timeout=DEADLINE) == message
            ws.send(b"\x00\x01binary")
            assert ws.recv(timeout=DEADLINE) == b"\x00\x01binary"

    return talk


@pytest.mark.parametrize(
    "talk",
    [plain_requests, sse_stream, ndjson_stream, websocket_echo("deflate"), websocket_echo(None)],
    ids=["plain-http", "sse", "ndjson", "websocket-deflate", "websocket"],
)
def test_traffic_is_relayed_and_recorded_byte_for_byte(chain: Chain, talk: Callable[[str], None]) -> None:
    talk(chain.url)
    (connection,) = chain.stop_and_check(connections=1)
    assert connection.opened.mode == f"reverse:{chain.server_side.url()}"
    assert connection.opened.tls is None and connection.opened.upstream_tls is None
    assert connection.closed is not None


CHUNKED_REQUEST = (
    b"POST /upload HTTP/1.1\r\nHost: example.test\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    b"4;part=one\r\nabcd\r\n"
    b'3 ; part = "two"\r\nefg\r\n'
    b"0;done\r\nX-Sum: 7\r\n\r\n"
)
CHUNKED_RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n",
    b"5;name=value\r\nhello\r\n",
    b'7;quoted="a b"\r\n, world\r\n',
    b"0;last\r\nX-Checksum: 12\r\nX-Other:  spaced  \r\n\r\n",
)


def read_chunked_request(connection: ScriptedConnection) -> None:
    connection.read_until(b"X-Sum: 7\r\n\r\n")
    for piece in CHUNKED_RESPONSE:
        connection.send(piece)


def test_chunk_extensions_and_trailers_pass_unchanged(confdir: Path, tmp_path: Path) -> None:
    capture = tmp_path / "chunked.rtcap"
    with ScriptedServer(read_chunked_request) as server:
        with running_proxy(server.url, confdir=confdir, capture=capture) as proxy:
            response = exchange(proxy.port, CHUNKED_REQUEST)
            assert proxy.stop() == 0, proxy.stderr
        expected = (CHUNKED_REQUEST, b"".join(CHUNKED_RESPONSE))
        assert response == expected[1]
        assert carried(server.wait_finished(1)) == [expected]
    assert [c.streams for c in captured(capture)] == [expected]


def test_tls_upstream_is_terminated_and_the_plaintext_relayed(confdir: Path, tmp_path: Path) -> None:
    request = b"GET /secure HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nConnection: close\r\n\r\nsecret"
    capture = tmp_path / "tls.rtcap"
    tls = tls_server_context(*self_signed_certificate(tmp_path))
    with ScriptedServer(respond_with(response), tls=tls) as server:
        with running_proxy(server.url, "--upstream-insecure", confdir=confdir, capture=capture) as proxy:
            assert exchange(proxy.port, request) == response
            assert proxy.stop() == 0, proxy.stderr
        assert carried(server.wait_finished(1)) == [(request, response)]
    (connection,) = captured(capture)
    assert connection.streams == (request, response)
    assert connection.opened.tls is None
    assert connection.opened.upstream_tls is not None
    assert connection.opened.upstream_tls.version is not None
    assert connection.opened.mode == f"reverse:{server.url}"


def test_listen_tls_serves_tls_clients_and_refuses_plaintext(
    app_server: AppServer, confdir: Path, tmp_path: Path
) -> None:
    capture = tmp_path / "client-tls.rtcap"
    with running_proxy(app_server.url, "--listen-tls", confdir=confdir, capture=capture) as proxy:
        trusted = ssl.create_default_context(cafile=confdir / "mitmproxy-ca-cert.pem")
        with httpx.Client(verify=trusted, timeout=DEADLINE) as client:
            assert client.get(f"https://{LOOPBACK}:{proxy.port}/plain").status_code == 200
        with pytest.raises(httpx.TransportError), httpx.Client(timeout=DEADLINE) as client:
            client.get(f"{proxy.url}/plain")
        assert proxy.stop() == 0, proxy.stdout + proxy.stderr
    assert "did not start with TLS" in proxy.stderr
    connection, refused = captured(capture)
    # The refused client is a TCP connection too, with what it sent before it was refused.
    assert refused.opened.tls is None and refused.closed is not None
    assert refused.closed.reason == "refused: it did not start with TLS"
    assert refused.streams[0].startswith(b"GET /plain HTTP/1.1\r\n") and refused.streams[1] == b""
    assert connection.opened.tls is not None
    assert connection.opened.tls.version is not None
    assert connection.opened.tls.handshake_started is not None
    assert connection.opened.tls.handshake_finished is not None
    assert connection.streams[0].startswith(b"GET /plain HTTP/1.1\r\n")


def test_forward_proxy_inspects_connect_tunnels(confdir: Path, tmp_path: Path) -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    capture = tmp_path / "forward.rtcap"
    tls = tls_server_context(*self_signed_certificate(tmp_path))
    with ScriptedServer(respond_with(response), tls=tls) as server:
        with running_proxy(None, "--mode", "regular", "--upstream-insecure", confdir=confdir, capture=capture) as proxy:
            trusted = ssl.create_default_context(cafile=confdir / "mitmproxy-ca-cert.pem")
            with httpx.Client(proxy=proxy.url, verify=trusted, timeout=DEADLINE) as client:
                assert client.get(f"{server.url}/through-a-tunnel").content == b"ok"
            assert proxy.stop() == 0
        at_server = carried(server.wait_finished(1))
    assert "plain-HTTP requests" in proxy.stderr
    (connection,) = captured(capture)
    assert [connection.streams] == at_server
    assert connection.streams[0].startswith(b"GET /through-a-tunnel HTTP/1.1\r\n")
    assert connection.opened.mode == "regular"
    assert connection.opened.tls is not None and connection.opened.upstream_tls is not None


# -- stopping


def test_a_killed_proxy_leaves_the_records_it_flushed(app_server: AppServer, confdir: Path, tmp_path: Path) -> None:
    capture = tmp_path / "killed.rtcap"

    def flushed_events() -> int:
        return sum(c.streams[1].count(b"data: message") for c in captured(capture)) if capture.exists() else 0

    with running_proxy(app_server.url, confdir=confdir, capture=capture) as proxy:
        with RecordingRelay(proxy.port) as client_side:
            with httpx.Client(timeout=DEADLINE) as client:
                with client.stream("GET", f"{client_side.url()}/sse?count=100000&interval=0.01") as response:
                    lines = response.iter_lines()
                    while next(lines) != "data: message 5":
                        pass
                    wait_until(lambda: flushed_events() >= 5, "the capture to be flushed")
                    assert proxy.stop(signal.SIGKILL) == -signal.SIGKILL
            (relayed,) = client_side.wait_finished(1)
    (connection,) = captured(capture)
    assert connection.closed is None
    assert connection.streams[0] == bytes(relayed.client_to_server)
    assert connection.streams[1].count(b"data: message") >= 5
    shorter, longer = sorted((connection.streams[1], bytes(relayed.server_to_client)), key=len)
    assert longer.startswith(shorter)


def test_sigterm_prints_the_summary_and_closes_the_capture(
    app_server: AppServer, confdir: Path, tmp_path: Path
) -> None:
    capture = tmp_path / "stopped.rtcap"
    report = tmp_path / "report.json"
    with running_proxy(app_server.url, "--report", str(report), confdir=confdir, capture=capture, quiet=False) as proxy:
        with httpx.Client(timeout=DEADLINE) as client:
            assert client.get(f"{proxy.url}/plain").status_code == 200
        with websocket_connect(f"ws://{LOOPBACK}:{proxy.port}/ws", open_timeout=DEADLINE) as ws:
            ws.send("still open")
            assert ws.recv(timeout=DEADLINE) == "still open"
            assert proxy.stop(signal.SIGTERM) == 0, proxy.stderr
    assert f"capture written to {capture}" in proxy.stdout
    assert f"report written to {report}" in proxy.stdout
    assert report.read_text().startswith("{")
    assert "Traceback" not in proxy.stderr, proxy.stderr
    with read_capture(capture) as whole:
        assert whole.truncated_tail == 0
    plain, websocket = captured(capture)
    assert plain.closed is not None and plain.closed.reason.endswith("closed")
    assert websocket.closed is not None and websocket.closed.reason == "proxy stopped"


def test_quiet_turns_off_the_live_view_only(app_server: AppServer, confdir: Path, tmp_path: Path) -> None:
    capture = tmp_path / "quiet.rtcap"
    report = tmp_path / "quiet.json"
    with running_proxy(app_server.url, "--report", str(report), confdir=confdir, capture=capture, quiet=True) as proxy:
        with httpx.Client(timeout=DEADLINE) as client:
            assert client.get(f"{proxy.url}/plain").status_code == 200
        assert proxy.stop(signal.SIGTERM) == 0, proxy.stderr
    assert "-q" in proxy.process.args  # type: ignore[operator]
    assert f"rtinspect: http://{LOOPBACK}:{proxy.port}" in proxy.stdout
    assert "Transports" in proxy.stdout and "http" in proxy.stdout
    assert f"capture written to {capture}" in proxy.stdout
    assert f"report written to {report}" in proxy.stdout


@pytest.mark.parametrize("analysis", ["process", "inline"])
def test_a_forward_proxy_counts_plain_http_as_the_client_sent_it(
    app_server: AppServer, confdir: Path, tmp_path: Path, analysis: str
) -> None:
    """``--mode regular`` with httpx configured to use the proxy: plain-HTTP SSE and polls in
    absolute form are counted byte for byte as they were on the client's leg (a relay between the
    client and the proxy records them), the SSE events reach the client as they are sent, and the
    report says what the proxy changed on the server's leg."""
    capture = tmp_path / "forward.rtcap"
    arguments = ("--mode", "regular", "--analysis", analysis, "--report", str(tmp_path / "forward.json"))
    with running_proxy(None, *arguments, confdir=confdir, capture=capture) as proxy:
        with RecordingRelay(proxy.port) as client_side:
            through = {"proxy": client_side.url(), "timeout": DEADLINE, "trust_env": False}
            with httpx.Client(**through) as client:  # type: ignore[arg-type]
                started = time.monotonic()
                # The stream ends 6 s after its first event: buffered by the proxy, nothing comes before then.
                with client.stream("GET", f"{app_server.url}/sse?count=3&interval=2") as response:
                    assert response.headers["content-type"].startswith("text/event-stream")
                    lines = response.iter_lines()
                    while next(lines) != "data: message 0":
                        pass
                    assert time.monotonic() - started < 3.0, "the first event waited for the stream's end"
                    assert "".join(f"{line}\n" for line in lines).count("data: message") == 2
            with httpx.Client(**through) as client:  # type: ignore[arg-type]
                for _ in range(3):
                    assert client.get(f"{app_server.url}/poll", params={"count": 1}).json() == {
                        "messages": ["message 0"]
                    }
            relayed = carried(client_side.wait_finished(2))
            assert proxy.stop() == 0, proxy.stderr
    assert [c.streams for c in captured(capture)] == relayed
    sse, polls = relayed
    assert sse[0].startswith(f"GET {app_server.url}/sse?count=3&interval=2 HTTP/1.1\r\n".encode())
    assert polls[0].count(f"GET {app_server.url}/poll?count=1 HTTP/1.1\r\n".encode()) == 3
    report = report_from_captures([capture])
    assert [c.server for c in report.connections] == [f"{LOOPBACK}:{app_server.port}"] * 2
    assert report.transport("sse").connections == report.transport("short_poll").connections == 1
    assert report.transport("sse").messages.server_to_client == 3
    assert report.transport("short_poll").messages.server_to_client == 3
    wire = report.transport("sse").wire_bytes + report.transport("short_poll").wire_bytes
    assert wire == PerDirection(len(sse[0]) + len(polls[0]), len(sse[1]) + len(polls[1]))
    (note,) = [n for n in report.notes if "through the forward proxy" in n]
    assert note.startswith("2 connections through the forward proxy sent plain-HTTP requests in absolute form")
    assert "origin form (GET /path" in note
    # The proxy's own report at exit, made as the traffic was relayed, is the capture's.
    at_exit = json.loads((tmp_path / "forward.json").read_text())
    assert at_exit["transports"]["sse"]["wire_bytes"] == report_to_dict(report)["transports"]["sse"]["wire_bytes"]
    assert note in at_exit["notes"]


# -- user mistakes


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_a_port_in_use_is_one_line_and_a_failure(confdir: Path) -> None:
    with socket.socket() as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_rtinspect("proxy", "http://127.0.0.1:9", "-p", str(port), "--set", f"confdir={confdir}")
    assert result.returncode != 0
    assert f"cannot listen on {LOOPBACK}:{port}" in one_line(result.stderr)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["ftp://127.0.0.1:21"], "use an http:// or https:// URL"),
        (["http://127.0.0.1:8000/api"], "give only scheme://host:port"),
        (["http://127.0.0.1:99999"], "port"),
        ([], "give the upstream server's URL"),
        (["http://127.0.0.1:8000", "-w", "/nonexistent-directory/x.rtcap"], "cannot write capture"),
        (["http://127.0.0.1:8000", "--set", "no_such_option=1"], "no_such_option"),
    ],
)
def test_user_mistakes_are_one_line(confdir: Path, arguments: list[str], message: str) -> None:
    result = run_rtinspect("proxy", *arguments, "-p", str(free_port()), "--set", f"confdir={confdir}")
    assert result.returncode != 0
    assert message in one_line(result.stderr)


def test_listening_beyond_loopback_warns(confdir: Path) -> None:
    with running_proxy("http://127.0.0.1:9", "--listen-host", "0.0.0.0", confdir=confdir) as proxy:
        assert proxy.stop() == 0
    assert "reachable from the network" in proxy.stderr
    assert "upstream http://127.0.0.1:9 is not reachable" in proxy.stderr


def test_the_addon_records_inside_mitmdump(app_server: AppServer, confdir: Path, tmp_path: Path) -> None:
    script = one_line(run_rtinspect("addon-path").stdout)
    assert Path(script).is_file()
    capture = tmp_path / "mitmdump.rtcap"
    port = free_port()
    mitmdump = [
        str(Path(sys.executable).with_name("mitmdump")),
        "-q",
        "-s",
        script,
        "--mode",
        f"reverse:{app_server.url}",
        "--listen-host",
        LOOPBACK,
        "-p",
        str(port),
        "--set",
        f"confdir={confdir}",
        "--set",
        f"rtinspect_write={capture}",
    ]
    proxy = CheckoutProxyProcess(mitmdump, port, capture)
    try:
        proxy.wait_listening()
        with RecordingRelay(port) as client_side:
            sse_stream(client_side.url())
            relayed = carried(client_side.wait_finished(1))
    finally:
        assert proxy.stop() == 0, proxy.stderr
    assert [c.streams for c in captured(capture)] == relayed


def test_help_shows_examples() -> None:
    result = run_rtinspect("proxy", "--help")
    assert result.returncode == 0
    assert "rtinspect proxy http://127.0.0.1:8000 -w chat.rtcap" in result.stdout
    assert "counted on the client's leg" in " ".join(result.stdout.split())
