"""Faults through the real proxy: what the client gets, what the report says, what the proxy keeps.

Each test runs ``rtinspect proxy`` in a subprocess in front of a real server on
127.0.0.1 and makes one kind of trouble with real sockets: an upstream that
refuses connections or dies mid-response (an end of stream or a reset), clients
that vanish, half-close, read slowly or send their request a byte at a time,
an idle connection, and the proxy itself killed or stopped under all that.

For each: every wait is bounded, the capture reads back whole, the report says
how each connection ended, and once the faulty connections are over the
proxy's open file descriptors and resident memory are back to about what they
were before them.

What the report can tell: "client closed" and "server closed" (an end of
stream), "client reset" and "server reset" (a reset, read or met when sending),
"timed out" (mitmproxy's ``tcp_timeout`` cut an idle client off), "error: ..."
(the upstream could not be reached), "proxy stopped" (open at SIGTERM), and,
for a killed proxy, "still open when the capture ended". What it cannot: the
reason is the first side to stop reading, so what the other side did next is
not recorded; and the proxy passes an end of stream, never a reset, to the
other side, so a client behind it sees a server's reset as a clean close.
"""

from __future__ import annotations

import array
import contextlib
import json
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from servers import (
    DEADLINE,
    LOOPBACK,
    AppServer,
    CheckoutProxyProcess,
    ScriptedConnection,
    ScriptedServer,
    free_port,
    open_file_descriptors,
    resident_set_size,
    run_rtinspect,
    running_proxy,
    wait_until,
)
from websockets.exceptions import ConnectionClosedError
from websockets.sync.client import connect as websocket_connect
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request, TextMessage

from inspector.capture import ConnectionOpened, DataChunk, read_capture
from inspector.proxy_process import wait_until_closed
from inspector.replay import STILL_OPEN, analyze_captures
from inspector.report import PerDirection, Report
from inspector.summary import build_report
from inspector.wire import Direction

#: File descriptors the proxy may hold beyond its count before the faults.
FD_SLACK = 2
#: Resident memory the proxy may keep beyond its size before the faults.
RSS_SLACK = 32 * 2**20


# -- the proxy's footprint


@dataclass(frozen=True)
class Footprint:
    """The proxy's open file descriptors and resident memory at one moment."""

    pid: int
    fds: int
    rss: int

    @classmethod
    def of(cls, proxy: CheckoutProxyProcess) -> Footprint:
        # The command runs the Python interpreter itself, so this is the proxy process.
        pid = proxy.process.pid
        return cls(pid, open_file_descriptors(pid), resident_set_size(pid))

    def wait_restored(self) -> None:
        """Wait until the proxy holds no more descriptors than before (with slack); its memory must be back too."""
        wait_until(
            lambda: open_file_descriptors(self.pid) <= self.fds + FD_SLACK,
            f"the proxy's open file descriptors to return to {self.fds} (+{FD_SLACK})",
        )
        rss = resident_set_size(self.pid)
        assert rss <= self.rss + RSS_SLACK, (
            f"proxy RSS {rss / 2**20:.1f} MiB, {self.rss / 2**20:.1f} MiB before the faults"
        )


def reported(proxy: CheckoutProxyProcess, footprint: Footprint) -> Report:
    """Once the capture shows every connection ended and the proxy has let go of
    them, stop the proxy and report its capture, which must read back whole."""
    assert proxy.capture is not None
    assert wait_until_closed(proxy.capture, DEADLINE), "the capture never showed every connection ended"
    footprint.wait_restored()
    assert proxy.stop() == 0, proxy.stderr
    assert "Traceback" not in proxy.stderr, proxy.stderr
    return report_of(proxy.capture)


def report_of(capture: Path) -> Report:
    """The report of a capture the proxy closed: whole, every connection ended."""
    with read_capture(capture) as whole:
        assert whole.truncated_tail == 0
    analysis = analyze_captures([capture])
    assert analysis.notes == ()
    return build_report(analysis.records)


def close_reasons(report: Report) -> list[str | None]:
    return [c.close_reason for c in report.connections]


# -- raw sockets


def connect(port: int) -> socket.socket:
    return socket.create_connection((LOOPBACK, port), timeout=DEADLINE)


def receive_exactly(sock: socket.socket, size: int) -> bytes:
    """Read ``size`` bytes; fail if the peer ends the stream first."""
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(min(65536, size - len(data)))
        if not chunk:
            raise AssertionError(f"the stream ended after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def receive_until(sock: socket.socket, marker: bytes) -> bytes:
    """Read until ``marker`` has arrived; fail if the peer ends the stream first."""
    data = bytearray()
    while marker not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"the stream ended before {marker!r}")
        data += chunk
    return bytes(data)


def receive_to_end(sock: socket.socket) -> bytes:
    """Read until the peer ends the stream (or resets it)."""
    data = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return bytes(data)


def vanish(sock: socket.socket, how: str) -> None:
    """Close without any protocol goodbye: an end of stream, or a reset (SO_LINGER 0)."""
    if how == "resets":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def requests_at(server: ScriptedServer) -> list[ScriptedConnection]:
    """The server's connections that carried bytes (the proxy's start-up check that
    the upstream is reachable connects and sends nothing)."""
    return [c for c in server.wait_finished(1) if c.received]


def started_thread(target: Callable[..., object], *args: object) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


# -- WebSocket bytes, from wsproto


def websocket_upgrade() -> tuple[WSConnection, bytes]:
    """A client protocol object and the Upgrade request it sends."""
    client = WSConnection(ConnectionType.CLIENT)
    return client, client.send(Request(host=LOOPBACK, target="/ws"))


def websocket_accept(request: bytes) -> tuple[WSConnection, bytes]:
    """A server protocol object for ``request`` and its 101 response."""
    server = WSConnection(ConnectionType.SERVER)
    server.receive_data(request)
    assert any(isinstance(event, Request) for event in server.events())
    return server, server.send(AcceptConnection())


# -- the upstream refuses


def test_an_upstream_that_refuses_connections_is_an_error_on_each_connection(confdir: Path, tmp_path: Path) -> None:
    attempts = 10
    request = b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    nowhere = f"http://{LOOPBACK}:{free_port()}"
    with running_proxy(nowhere, confdir=confdir, capture=tmp_path / "refused.rtcap") as proxy:
        footprint = Footprint.of(proxy)
        for _ in range(attempts):
            with connect(proxy.port) as sock:
                with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                    sock.sendall(request)
                assert receive_to_end(sock) == b""
        report = reported(proxy, footprint)
    # Also the probe that saw the proxy listening: it was refused too.
    assert len(report.connections) >= attempts
    for connection in report.connections:
        assert connection.close_reason is not None and connection.close_reason.startswith("error: ")
        assert "Connect call failed" in connection.close_reason
        assert connection.wire_bytes == PerDirection(0, 0)
    assert proxy.stderr.count("failed: [Errno 111]") == len(report.connections)


# -- the upstream dies mid-response


@dataclass(frozen=True)
class CutResponse:
    """A request and the part of its response the server sends before it dies."""

    transport: str
    request: bytes
    response: bytes
    #: Messages the report counts in the part sent, by direction.
    messages: PerDirection
    #: What the report says about where the response was cut.
    anomaly: str

    def serve(self, connection: ScriptedConnection) -> None:
        connection.read_until(self.request)
        connection.send(self.response)


def _plain_cut() -> CutResponse:
    request = b"GET /file HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    body = bytes(range(256)) * 120
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\n" + body
    return CutResponse("http", request, response, PerDirection(0, 1), "without sending complete message body")


def _sse_cut() -> CutResponse:
    request = b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    events = [b"id: 1\ndata: one\n\n", b"id: 2\ndata: two\n\n"]
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(event), event) for event in events)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    cut = b"1a\r\nid: 3\nda"
    return CutResponse("sse", request, head + chunks + cut, PerDirection(0, 2), "incomplete chunked read")


def _websocket_cut() -> CutResponse:
    client, upgrade = websocket_upgrade()
    server, accept = websocket_accept(upgrade)
    client.receive_data(accept)
    hello = client.send(TextMessage(data="hello"))
    long_frame = server.send(TextMessage(data="x" * 1000))
    response = accept + server.send(TextMessage(data="hello")) + long_frame[:14]
    return CutResponse("websocket", upgrade + hello, response, PerDirection(1, 1), "inside a frame payload")


CUT_RESPONSES = {"plain body": _plain_cut(), "sse": _sse_cut(), "websocket": _websocket_cut()}


@pytest.mark.parametrize("how", ["closes", "resets"])
@pytest.mark.parametrize("shape", CUT_RESPONSES)
def test_the_upstream_dies_mid_response(confdir: Path, tmp_path: Path, shape: str, how: str) -> None:
    cut = CUT_RESPONSES[shape]
    client_has_it = threading.Event()

    def serve_then_die(connection: ScriptedConnection) -> None:
        cut.serve(connection)
        client_has_it.wait(DEADLINE)
        vanish(connection.sock, how)

    with ScriptedServer(serve_then_die) as server:
        with running_proxy(server.url, confdir=confdir, capture=tmp_path / "cut.rtcap") as proxy:
            footprint = Footprint.of(proxy)
            with connect(proxy.port) as sock:
                sock.sendall(cut.request)
                received = receive_exactly(sock, len(cut.response))
                client_has_it.set()
                # The proxy ends the client's side with an end of stream, however the server went.
                assert receive_to_end(sock) == b""
            report = reported(proxy, footprint)

    assert received == cut.response
    (connection,) = report.connections
    assert connection.transport == cut.transport
    assert connection.close_reason == ("server closed" if how == "closes" else "server reset")
    assert connection.wire_bytes == PerDirection(len(cut.request), len(cut.response))
    assert connection.messages == cut.messages
    (anomaly,) = connection.anomalies
    assert anomaly.direction is Direction.SERVER_TO_CLIENT
    assert cut.anomaly in anomaly.reason


# -- clients that vanish


def sse_client_vanishes(port: int, how: str) -> None:
    """Reads the head and the first event of a slow stream, then vanishes."""
    sock = connect(port)
    sock.sendall(b"GET /sse?count=1000&interval=5 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    receive_until(sock, b"data: message 0\n\n")
    vanish(sock, how)


def websocket_client_vanishes(port: int, how: str) -> None:
    """Has one message echoed, then vanishes without a Close frame."""
    client, upgrade = websocket_upgrade()
    sock = connect(port)
    sock.sendall(upgrade)
    client.receive_data(receive_until(sock, b"\r\n\r\n"))
    message = client.send(TextMessage(data="are you there?"))
    sock.sendall(message)
    # The server's unmasked frame carries the same payload.
    receive_until(sock, b"are you there?")
    vanish(sock, how)


@pytest.mark.parametrize("how", ["closes", "resets"])
def test_clients_that_vanish(app_server: AppServer, confdir: Path, tmp_path: Path, how: str) -> None:
    each = 5
    with running_proxy(app_server.url, confdir=confdir, capture=tmp_path / "vanished.rtcap") as proxy:
        footprint = Footprint.of(proxy)
        threads = [started_thread(sse_client_vanishes, proxy.port, how) for _ in range(each)]
        threads += [started_thread(websocket_client_vanishes, proxy.port, how) for _ in range(each)]
        for thread in threads:
            thread.join(DEADLINE)
            assert not thread.is_alive()
        report = reported(proxy, footprint)

    by_transport = sorted((c.transport, c.close_reason) for c in report.connections)
    reason = "client closed" if how == "closes" else "client reset"
    assert by_transport == [("sse", reason)] * each + [("websocket", reason)] * each
    assert report.transport("websocket").messages == PerDirection(each, each)
    assert report.transport("sse").messages.server_to_client >= each


# -- half-close


def test_a_half_closed_client_still_gets_the_whole_response(confdir: Path, tmp_path: Path) -> None:
    request = b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello"
    pieces = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"11\r\nid: 1\ndata: one\n\n\r\n",
        b"11\r\nid: 2\ndata: two\n\n\r\n",
        b"0\r\n\r\n",
    ]

    def answer_after_the_end_of_the_request(connection: ScriptedConnection) -> None:
        while data := connection.sock.recv(65536):
            connection.received += data
        for piece in pieces:
            connection.send(piece)

    with ScriptedServer(answer_after_the_end_of_the_request) as server:
        with running_proxy(server.url, confdir=confdir, capture=tmp_path / "half-closed.rtcap") as proxy:
            footprint = Footprint.of(proxy)
            with connect(proxy.port) as sock:
                sock.sendall(request)
                sock.shutdown(socket.SHUT_WR)
                response = receive_to_end(sock)
            report = reported(proxy, footprint)
        (at_server,) = requests_at(server)

    assert bytes(at_server.received) == request
    assert response == b"".join(pieces)
    (connection,) = report.connections
    assert connection.close_reason == "client closed"
    assert connection.transport == "sse"
    assert connection.wire_bytes == PerDirection(len(request), len(response))
    assert connection.messages.server_to_client == 2
    assert connection.anomalies == ()


# -- a slow reader


#: Bytes the server tries to push at a client that reads slowly.
FLOOD = 64 * 2**20
#: Bytes the client reads between pauses.
SIP = 8 * 2**20
#: Seconds the client stops reading at each pause.
PAUSE = 0.5
#: Most the proxy's resident memory may grow while the client lags behind.
MAX_GROWTH = 32 * 2**20
FLOOD_BLOCK = 2**20
FLOOD_REQUEST = b"GET /flood HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
FLOOD_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % FLOOD


def flood_block(index: int) -> bytes:
    """Block ``index`` of the flood: consecutive 64-bit counters, so a lost,
    repeated or reordered piece changes the bytes."""
    first = index * FLOOD_BLOCK // 8
    return array.array("Q", range(first, first + FLOOD_BLOCK // 8)).tobytes()


def serve_flood(connection: ScriptedConnection) -> None:
    """Answers a request head with the whole flood, as fast as the connection takes it."""
    connection.read_until(b"\r\n\r\n")
    connection.send(FLOOD_HEAD)
    for index in range(FLOOD // FLOOD_BLOCK):
        connection.send(flood_block(index))


def test_a_slow_reader_gets_every_byte_and_the_proxy_memory_stays_bounded(confdir: Path, tmp_path: Path) -> None:
    head, request = FLOOD_HEAD, FLOOD_REQUEST
    #: At each pause: bytes the server had pushed, bytes the client had read, the proxy's RSS growth.
    pushed_at_pauses: list[int] = []
    read_at_pauses: list[int] = []
    growth_at_pauses: list[int] = []
    with ScriptedServer(serve_flood) as server:
        with running_proxy(server.url, confdir=confdir, capture=tmp_path / "flood.rtcap") as proxy:
            footprint = Footprint.of(proxy)
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            sock.settimeout(DEADLINE)
            with sock:
                sock.connect((LOOPBACK, proxy.port))
                sock.sendall(request)
                received = bytearray()
                while len(received) < len(head) + FLOOD:
                    time.sleep(PAUSE)
                    pushed_at_pauses.append(sum(len(c.sent) for c in server.connections))
                    read_at_pauses.append(len(received))
                    growth_at_pauses.append(resident_set_size(footprint.pid) - footprint.rss)
                    received += receive_exactly(sock, min(SIP, len(head) + FLOOD - len(received)))
                assert receive_to_end(sock) == b""
            report = reported(proxy, footprint)

    backlogs = [pushed - read for pushed, read in zip(pushed_at_pauses, read_at_pauses, strict=True)]
    figures = (
        f"the server was ahead by {', '.join(f'{b / 2**20:.0f}' for b in backlogs)} MiB at the pauses; "
        f"proxy RSS growth {', '.join(f'{g / 2**20:.1f}' for g in growth_at_pauses)} MiB"
    )
    print(f"slow reader: {figures}")
    assert received[: len(head)] == head
    expected = b"".join(flood_block(i) for i in range(FLOOD // FLOOD_BLOCK))
    assert received[len(head) :] == expected, "the client did not get the server's bytes in order"
    # Backpressure reached the server: it never got further ahead of the reader than the socket buffers hold.
    assert max(backlogs) < FLOOD // 2, figures
    assert max(growth_at_pauses) < MAX_GROWTH, figures
    (connection,) = report.connections
    assert connection.close_reason == "server closed"
    assert connection.wire_bytes == PerDirection(len(request), len(head) + FLOOD)
    assert connection.payload_bytes == PerDirection(0, FLOOD)


# -- slowloris


SLOW_REQUEST = b"GET /plain HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slow\r\n\r\n"
PLAIN_BODY = b"hello, wire\n" * 20


class SlowClient:
    """Sends a request head a byte at a time: half of it, then, once let go,
    either the rest (and reads the response) or nothing more (and leaves)."""

    def __init__(self, port: int, finishes: bool, let_go: threading.Event) -> None:
        self.finishes = finishes
        self.trickling = threading.Event()
        self.response = b""
        self.address = ""
        self._port = port
        self._let_go = let_go
        self.thread = started_thread(self._run)

    def _run(self) -> None:
        half = len(SLOW_REQUEST) // 2
        with connect(self._port) as sock:
            host, port = sock.getsockname()
            self.address = f"{host}:{port}"
            for index in range(half):
                sock.sendall(SLOW_REQUEST[index : index + 1])
                time.sleep(0.01)
            self.trickling.set()
            self._let_go.wait(DEADLINE)
            if not self.finishes:
                return
            for index in range(half, len(SLOW_REQUEST)):
                sock.sendall(SLOW_REQUEST[index : index + 1])
            self.response = receive_until(sock, PLAIN_BODY)

    @property
    def sent(self) -> int:
        return len(SLOW_REQUEST) if self.finishes else len(SLOW_REQUEST) // 2


def test_slowloris_clients_do_not_hold_up_the_others(app_server: AppServer, confdir: Path, tmp_path: Path) -> None:
    slow_clients = 20
    let_go = threading.Event()
    capture = tmp_path / "slowloris.rtcap"
    with running_proxy(app_server.url, confdir=confdir, capture=capture) as proxy:
        footprint = Footprint.of(proxy)
        slow = [SlowClient(proxy.port, finishes=i % 2 == 0, let_go=let_go) for i in range(slow_clients)]
        for client in slow:
            assert client.trickling.wait(DEADLINE)
        # Every slow client is in the middle of its head: the others must still be served.
        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as http:
            for _ in range(10):
                assert http.get("/plain").content == PLAIN_BODY
        with websocket_connect(f"ws://{LOOPBACK}:{proxy.port}/ws", open_timeout=DEADLINE) as ws:
            for n in range(10):
                ws.send(f"message {n}")
                assert ws.recv(timeout=DEADLINE) == f"message {n}"
        let_go.set()
        for client in slow:
            client.thread.join(DEADLINE)
            assert not client.thread.is_alive()
        report = reported(proxy, footprint)

    for client in slow:
        if client.finishes:
            assert client.response.startswith(b"HTTP/1.1 200 OK\r\n")
    by_client = {c.client: c for c in report.connections}
    for client in slow:
        connection = by_client[client.address]
        assert connection.wire_bytes.client_to_server == client.sent
        assert connection.close_reason == "client closed"
        assert connection.exchanges == (1 if client.finishes else 0)
    # The ten requests share one keep-alive connection.
    assert len(report.connections) == slow_clients + 2
    assert report.transport("websocket").messages == PerDirection(10, 10)
    # The proxy's own record of when it saw each byte: it had relayed the last byte of the
    # others' traffic while every slow client was still in the middle of its request head.
    head_so_far = heads_when_the_others_were_done(capture, {client.address for client in slow})
    assert sorted(head_so_far) == sorted(client.address for client in slow)
    assert all(0 < sent < len(SLOW_REQUEST) for sent in head_so_far.values()), head_so_far


def heads_when_the_others_were_done(capture: Path, slow: set[str]) -> dict[str, int]:
    """By slow client: the bytes of its request the proxy had received by the time it
    relayed the last byte of any other connection (the times are the capture's)."""
    clients: dict[int, str] = {}
    chunks: list[DataChunk] = []
    with read_capture(capture) as records:
        for record in records:
            if isinstance(record, ConnectionOpened):
                clients[record.connection_id] = record.client
            elif isinstance(record, DataChunk):
                chunks.append(record)
    others_done = max(c.timestamp for c in chunks if clients[c.connection_id] not in slow)
    head_so_far = dict.fromkeys((address for address in clients.values() if address in slow), 0)
    for chunk in chunks:
        if clients[chunk.connection_id] in slow and chunk.timestamp <= others_done:
            assert chunk.direction is Direction.CLIENT_TO_SERVER, "a slow client was answered before the others"
            head_so_far[clients[chunk.connection_id]] += len(chunk.data)
    return head_so_far


def test_an_idle_client_is_timed_out(confdir: Path, tmp_path: Path) -> None:
    partial = b"GET /plain HTTP/1.1\r\nHost: 127.0."

    def wait_for_the_head(connection: ScriptedConnection) -> None:
        with contextlib.suppress(ConnectionError):
            connection.read_until(b"\r\n\r\n")

    with ScriptedServer(wait_for_the_head) as server:
        with running_proxy(
            server.url, "--set", "tcp_timeout=2", confdir=confdir, capture=tmp_path / "idle.rtcap"
        ) as proxy:
            footprint = Footprint.of(proxy)
            with connect(proxy.port) as sock:
                sock.sendall(partial)
                assert receive_to_end(sock) == b""
            report = reported(proxy, footprint)
        (at_server,) = requests_at(server)

    assert bytes(at_server.received) == partial
    (connection,) = report.connections
    assert connection.close_reason == "timed out"
    assert connection.wire_bytes == PerDirection(len(partial), 0)


# -- the proxy killed or stopped under faults


def test_a_killed_proxys_capture_reports_what_was_still_open(
    app_server: AppServer, confdir: Path, tmp_path: Path
) -> None:
    capture = tmp_path / "killed.rtcap"

    def flushed() -> bool:
        """The plain exchange has been recorded closed, and the other two carried data."""
        records = analyze_captures([capture]).records
        ended = [r for r in records if r.close_reason != STILL_OPEN]
        return len(ended) == 1 and len(records) == 3 and all(r.wire_bytes(Direction.SERVER_TO_CLIENT) for r in records)

    with running_proxy(app_server.url, confdir=confdir, capture=capture) as proxy:
        with httpx.Client(base_url=proxy.url, timeout=DEADLINE) as http:
            assert http.get("/plain").content == PLAIN_BODY
        with (
            websocket_connect(f"ws://{LOOPBACK}:{proxy.port}/ws", open_timeout=DEADLINE) as ws,
            httpx.Client(timeout=DEADLINE) as http,
            http.stream("GET", f"{proxy.url}/sse?count=100000&interval=0.01") as stream,
        ):
            ws.send("before the kill")
            assert ws.recv(timeout=DEADLINE) == "before the kill"
            lines = stream.iter_lines()
            assert next(lines).startswith("id: ")
            wait_until(lambda: capture.exists() and flushed(), "the capture to be flushed")
            assert proxy.stop(signal.SIGKILL) == -signal.SIGKILL
            # The kernel closed the proxy's sockets: both clients see their connection end.
            with pytest.raises(ConnectionClosedError):
                ws.recv(timeout=DEADLINE)
            with pytest.raises(httpx.HTTPError):
                for _ in lines:
                    pass

    analysis = analyze_captures([capture])
    assert any("still open when the capture ended" in note for note in analysis.notes)
    report = build_report(analysis.records)
    assert sorted((c.transport, c.close_reason) for c in report.connections) == sorted(
        [("http", "client closed"), ("websocket", STILL_OPEN), ("sse", STILL_OPEN)]
    )
    result = run_rtinspect("report", str(capture), "-f", "json", "--connections")
    assert result.returncode == 0, result.stderr
    as_json = json.loads(result.stdout)
    assert sorted(c["close_reason"] for c in as_json["connections"]) == sorted(
        ["client closed", STILL_OPEN, STILL_OPEN]
    )


def test_sigterm_while_connections_are_stuck(confdir: Path, tmp_path: Path) -> None:
    """A reader that stopped reading with the proxy's buffers full, and a client
    halfway through its head: SIGTERM still stops the proxy cleanly."""
    capture = tmp_path / "stopped.rtcap"
    with ScriptedServer(serve_flood) as server:
        with running_proxy(server.url, confdir=confdir, capture=capture) as proxy:
            with connect(proxy.port) as stalled, connect(proxy.port) as halfway:
                stalled.sendall(FLOOD_REQUEST)
                halfway.sendall(b"GET /plain HTTP/1.1\r\nHo")
                receive_exactly(stalled, len(FLOOD_HEAD))
                wait_until(lambda: any(len(c.sent) > FLOOD_BLOCK for c in server.connections), "the flood to start")
                wait_until(lambda: len(analyze_captures([capture]).records) == 2, "both connections to be recorded")
                assert proxy.stop(signal.SIGTERM) == 0, proxy.stderr
                assert receive_to_end(halfway) == b""
    assert "Traceback" not in proxy.stderr, proxy.stderr
    report = report_of(capture)
    assert close_reasons(report) == ["proxy stopped", "proxy stopped"]
