"""``rtinspect demo --http2``: Hypercorn over TLS, the proxy with TLS on both sides, and each
transport read at once over HTTP/1.1 and over h2.

One small run (a 0.4 s feed) is shared by the end-to-end tests; they check that every client
finished, that the h2 clients spoke h2 on the wire (ALPN ``h2``, WebSocket by an extended
CONNECT) and the HTTP/1.1 clients HTTP/1.1, and what the command printed. The pieces (the TLS
server, the RFC 8441 client, the side-by-side table) are also tested on their own.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import h2.config
import h2.connection
import h2.settings
import httpx
import pytest
from rich.console import Console
from servers import run_rtinspect

from demo_server.app import create_app
from demo_server.run import serve_tls_in_thread
from demo_server.tls import make_tls_files
from inspector.capture import CaptureWriter, ConnectionOpened, DataChunk, TlsInfo, read_capture
from inspector.demo import ClientTally, DemoError, DemoSettings
from inspector.demo import run as demo_run
from inspector.demo.display import protocols_table
from inspector.demo.h2websocket import H2WebSocket
from inspector.demo.protocols import wire_connections
from inspector.demo.result import DemoFiles, DemoResult
from inspector.demo.settings import PAGE_TRANSPORTS
from inspector.wire import Direction

COUNT = 20
RATE = 50.0
#: Seconds the run may take here: start-up (a CA, two servers), a 0.4 s feed, shutdown.
RUN_TIMEOUT = 90.0
REPORT_NAMES = {t.transport for t in PAGE_TRANSPORTS}
PATHS = {t.transport: t.path for t in PAGE_TRANSPORTS}


@pytest.fixture(scope="module")
def http2_run(tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> SimpleNamespace:
    """One ``rtinspect demo --http2`` run: its output, report.json, clients.json and folder."""
    output = tmp_path_factory.mktemp("demo-http2") / "demo"
    done = run_rtinspect(
        "demo",
        "--http2",
        "--count",
        str(COUNT),
        "--rate",
        str(RATE),
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


def test_every_transport_is_read_over_both_protocols(http2_run: SimpleNamespace) -> None:
    clients = http2_run.clients
    assert clients["clients"] == "python" and clients["protocols"] == ["http/1.1", "h2"]
    assert set(clients["transports"]) == REPORT_NAMES
    for name, entry in clients["transports"].items():
        assert entry["path"] == PATHS[name]
        assert set(entry["by_protocol"]) == {"http/1.1", "h2"}, name
        for protocol, measured in entry["by_protocol"].items():
            where = (name, protocol)
            assert measured["error"] is None, (where, measured)
            assert (measured["received"], measured["lost"], measured["duplicates"]) == (COUNT, 0, 0), where
            assert measured["protocol"] == protocol
            # What the client itself saw: httpx's Response.http_version, the WebSocket's own protocol.
            assert measured["http_version"] == {"http/1.1": "HTTP/1.1", "h2": "HTTP/2"}[protocol], where


def test_the_h2_clients_spoke_h2_on_the_wire(http2_run: SimpleNamespace) -> None:
    capture = http2_run.output / "capture.rtcap"
    with read_capture(capture) as records:
        alpn = {r.connection_id: (r.tls.alpn, r.upstream_tls.alpn) for r in records if isinstance(r, ConnectionOpened)}
    wire = wire_connections(capture)
    assert not [c.problem for c in wire if c.problem]
    # Every client has its own connection: ten connections, each carrying one transport's path.
    assert len(wire) == 2 * len(PAGE_TRANSPORTS)
    for name, path in PATHS.items():
        carriers = {c.protocol: c for c in wire if path in c.paths}
        assert set(carriers) == {"http/1.1", "h2"}, name
        h2 = carriers["h2"]
        # The proxy relayed the ALPN offer: client and server both agreed on h2.
        assert alpn[h2.connection_id] == ("h2", "h2"), name
        assert alpn[carriers["http/1.1"].connection_id][0] in ("http/1.1", None), name
        assert all(r.path == path for r in h2.requests), name
    ws_h2 = next(c for c in wire if c.protocol == "h2" and "/ws" in c.paths)
    assert [(r.method, r.protocol, r.status) for r in ws_h2.requests] == [("CONNECT", "websocket", "200")]
    ws_http1 = next(c for c in wire if c.protocol == "http/1.1" and "/ws" in c.paths)
    assert (ws_http1.websocket_upgrades, ws_http1.extended_connects) == (1, 0)
    # The pollers asked again and again on one connection: one stream per request.
    long_poll = next(c for c in wire if c.protocol == "h2" and "/longpoll" in c.paths)
    requests = http2_run.clients["transports"]["long_poll"]["by_protocol"]["h2"]["requests"]
    assert len(long_poll.requests) == requests


def test_every_transport_is_in_the_report(http2_run: SimpleNamespace) -> None:
    assert REPORT_NAMES <= set(http2_run.report["transports"])
    closes = {c["close_reason"] for c in http2_run.report["connections"]}
    assert closes <= {"client closed", "server closed"}, closes


def test_the_report_splits_every_transport_by_protocol(http2_run: SimpleNamespace) -> None:
    for name in REPORT_NAMES:
        by_protocol = http2_run.report["transports"][name]["by_protocol"]
        assert {"http/1.1", "h2"} <= set(by_protocol), name
        for protocol in ("http/1.1", "h2"):
            measured = http2_run.clients["transports"][name]["by_protocol"][protocol]
            assert by_protocol[protocol]["messages"]["server_to_client"] == measured["deliveries"], (name, protocol)
    h2_connections = [c for c in http2_run.report["connections"] if c.get("protocol") == "h2"]
    assert len(h2_connections) == len(PAGE_TRANSPORTS)


def test_the_output_puts_the_protocols_side_by_side(http2_run: SimpleNamespace) -> None:
    out = http2_run.done.stdout
    words = " ".join(out.split())
    assert "two Python clients per transport, one over HTTP/1.1 and one over h2" in words
    assert "HTTP/1.1 and h2, side by side" in out
    table = out.split("HTTP/1.1 and h2, side by side", 1)[1].split("Clients (the Python clients)", 1)[0]
    rows = [line.split() for line in table.splitlines() if line.strip()]
    for name in REPORT_NAMES:
        at = next(i for i, row in enumerate(rows) if row[:2] == [name, "http/1.1"])
        assert rows[at + 1][0] == "h2", name
    assert "(1 extended CONNECT for WebSocket, RFC 8441)" in words
    for name in ("capture.rtcap", "report.json", "report.html", "clients.json"):
        assert str(http2_run.output / name) in out


def test_hypercorn_serves_http1_and_h2_over_tls(tmp_path: Path) -> None:
    tls = make_tls_files(tmp_path)
    app = create_app(count=3, rate=100.0, autostart=True)

    async def versions(url: str) -> list[tuple[str, int, int]]:
        answers = []
        for http2 in (False, True):
            async with httpx.AsyncClient(
                http1=not http2, http2=http2, verify=tls.client_context(), trust_env=False
            ) as client:
                async with client.stream("GET", url + "/stream") as response:
                    lines = [line async for line in response.aiter_lines() if line]
                answers.append((response.http_version, response.status_code, len(lines)))
        return answers

    with serve_tls_in_thread(app, tls) as server:
        assert server.url.startswith("https://127.0.0.1:")
        assert asyncio.run(versions(server.url)) == [("HTTP/1.1", 200, 3), ("HTTP/2", 200, 3)]


@pytest.mark.parametrize("compression", [True, False])
def test_the_rfc8441_client_reads_the_feed_and_closes_cleanly(
    tmp_path: Path, compression: bool, caplog: pytest.LogCaptureFixture
) -> None:
    tls = make_tls_files(tmp_path)
    app = create_app(count=5, rate=100.0, autostart=True)

    async def read(url: str) -> tuple[list[int], bool, int | None]:
        websocket = await H2WebSocket.connect(url + "/ws", tls.client_context(), compression)
        try:
            seqs = [json.loads(text)["seq"] async for text in websocket.messages()]
        finally:
            await websocket.close()
        return seqs, websocket.compressed, websocket.close_code

    with caplog.at_level(logging.ERROR), serve_tls_in_thread(app, tls) as server:
        seqs, compressed, code = asyncio.run(read(server.url))
    assert (seqs, compressed, code) == ([1, 2, 3, 4, 5], compression, 1000)
    # The server saw a clean closing handshake (no stream it had forgotten, no cut connection).
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_the_side_by_side_table_reads_by_protocol() -> None:
    """Each transport's ``by_protocol`` share, one row per protocol, h2 compared with HTTP/1.1."""

    def summary(connections: int, handshake_bytes: int, wire: int, messages: int) -> SimpleNamespace:
        return SimpleNamespace(
            connections=connections,
            handshakes=connections,
            handshake_bytes=handshake_bytes,
            wire_bytes=SimpleNamespace(total=wire),
            messages=SimpleNamespace(server_to_client=messages),
            app_messages=SimpleNamespace(server_to_client=messages),
            wire_bytes_per_message=wire / messages,
            overhead_ratio=0.25,
        )

    websocket = PAGE_TRANSPORTS[0]
    by_protocol = {"http/1.1": summary(1, 500, 2500, 10), "h2": summary(1, 200, 2000, 10)}
    report: Any = SimpleNamespace(
        transports={"websocket": SimpleNamespace(**vars(summary(2, 700, 4500, 20)), by_protocol=by_protocol)}
    )
    settings = DemoSettings(output=Path("unused"), count=10, transports=("ws",), http2=True)
    clients = {}
    for protocol, latency in (("http/1.1", 0.010), ("h2", 0.012)):
        tally = ClientTally(websocket, expected=10, protocol=protocol)
        for seq in range(1, 11):
            tally.delivered([{"seq": seq, "sent_at": 100.0}], at=100.0 + latency)
        clients[tally.label] = tally
    result = DemoResult(
        settings=settings,
        report=report,
        clients=clients,
        files=DemoFiles.in_folder(Path("unused"), False, ("http/1.1", "h2")),
        problems=(),
        notes=(),
        seconds=1.0,
    )
    console = Console(file=io.StringIO(), width=150, color_system=None)
    console.print(protocols_table(result))
    rows = [line.split() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]
    assert [
        "websocket",
        "http/1.1",
        "1",
        "1",
        "·",
        "500",
        "B",
        "250",
        "B",
        "25.0%",
        "250",
        "B",
        "10",
        "ms",
        "10",
        "ms",
    ] in rows
    assert ["h2", "1", "1", "·", "200", "B", "200", "B", "25.0%", "200", "B", "0.8×", "12", "ms", "12", "ms"] in rows
    assert demo_run.client_problems(result) == []
    assert demo_run.count_notes(result) == []


def test_compression_cannot_be_refused_to_chromium_over_h2() -> None:
    with pytest.raises(DemoError, match="--no-compression cannot be combined with --browser --http2"):
        DemoSettings(output=Path("unused"), browser=True, http2=True, compression=False)


def test_a_mistake_is_one_line(tmp_path: Path) -> None:
    done = run_rtinspect("demo", "--http2", "--browser", "--no-compression", "-o", str(tmp_path / "demo"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: --no-compression cannot be combined with --browser --http2: Chromium always offers "
        "permessage-deflate and Hypercorn always accepts it"
    )
    assert not (tmp_path / "demo").exists()


def test_the_wire_check_reads_heads_from_bytes_in_any_pieces(tmp_path: Path) -> None:
    """h2 made by the h2 library, cut into 7-byte reads (frames and DATA split anywhere), the server
    speaking first; an HTTP/1.1 Upgrade; and an h2 connection the client never used."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
    server.initiate_connection()
    server.update_settings({h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1})
    server_bytes = server.data_to_send()
    client.initiate_connection()
    client.receive_data(server_bytes)
    connect = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "https"),
        (":path", "/ws?x=1"),
        (":authority", "127.0.0.1:1"),
    ]
    client.send_headers(1, connect)
    client.send_headers(
        3, [(":method", "GET"), (":scheme", "https"), (":path", "/sse"), (":authority", "127.0.0.1:1")], end_stream=True
    )
    client_bytes = client.data_to_send()
    server.receive_data(client_bytes)
    server_bytes += server.data_to_send()
    server.send_headers(1, [(":status", "200")])
    server.send_data(1, b"x" * 5000)
    server.send_headers(3, [(":status", "200"), ("content-type", "text/event-stream")])
    server.send_data(3, b"data: 1\n\n" * 100)
    server_bytes += server.data_to_send()

    capture = tmp_path / "wire.rtcap"
    tls = {"h2": TlsInfo(alpn="h2"), "http/1.1": TlsInfo(alpn="http/1.1")}
    with CaptureWriter(capture) as writer:
        writer.write(ConnectionOpened(1, 1.0, "c:1", "s:1", "reverse", tls=tls["h2"], upstream_tls=tls["h2"]))
        pieces = [
            (Direction.SERVER_TO_CLIENT, server_bytes[:20]),
            (Direction.CLIENT_TO_SERVER, client_bytes),
            (Direction.SERVER_TO_CLIENT, server_bytes[20:]),
        ]
        for direction, data in pieces:
            for at in range(0, len(data), 7):
                writer.write(DataChunk(1, 2.0, direction, data[at : at + 7]))
        writer.write(
            ConnectionOpened(2, 1.0, "c:2", "s:1", "reverse", tls=tls["http/1.1"], upstream_tls=tls["http/1.1"])
        )
        upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        writer.write(DataChunk(2, 2.0, Direction.CLIENT_TO_SERVER, upgrade))
        writer.write(ConnectionOpened(3, 1.0, "c:3", "s:1", "reverse", tls=tls["h2"], upstream_tls=tls["h2"]))
        writer.write(DataChunk(3, 2.0, Direction.SERVER_TO_CLIENT, server_bytes[:20]))

    first, second, third = wire_connections(capture)
    assert first.problem is None and (first.alpn, first.protocol) == ("h2", "h2")
    assert [(r.method, r.path, r.protocol, r.status) for r in first.requests] == [
        ("CONNECT", "/ws", "websocket", "200"),
        ("GET", "/sse", None, "200"),
    ]
    assert (first.extended_connects, first.websocket_upgrades) == (1, 0)
    assert (second.protocol, second.websocket_upgrades, second.extended_connects) == ("http/1.1", 1, 0)
    assert (third.protocol, third.requests, third.problem) == ("h2", (), None)


def test_the_html_report_shows_each_clients_latency_per_protocol(http2_run: SimpleNamespace) -> None:
    html = (http2_run.output / "report.html").read_text()
    latency = html[html.index("<h2>Latency measured by the clients</h2>") :]
    latency = latency[: latency.index("</section>")]
    for name in REPORT_NAMES:
        for protocol in ("http/1.1", "h2"):
            label = f"{name} ({protocol})"
            assert f"<title>{label} · p50: " in latency and f'<td class="name">{label}</td>' in latency
