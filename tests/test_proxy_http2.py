"""HTTP/2 through ``rtinspect proxy``: negotiated end to end, relayed byte for byte.

The proxy lets mitmproxy set up TLS on both sides and relays raw bytes after
it, so HTTP/2 is whatever client and upstream agree on: over TLS the client's
ALPN offer goes to the upstream and the upstream's choice comes back; h2c with
prior knowledge is just bytes. Real Hypercorn, real mitmproxy and real clients
(httpx, and the ``h2`` library over a socket where every byte must be seen) on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import (
    DEADLINE,
    H2_PLAIN_BODY,
    LOOPBACK,
    AppServer,
    Certificates,
    CheckoutProxyProcess,
    H2Client,
    H2WebSocket,
    HypercornServer,
    RecordingRelay,
    ScriptedConnection,
    ScriptedServer,
    free_port,
    issue_certificates,
    run_rtinspect,
    running_proxy,
    self_signed_certificate,
    serve_h2,
    tls_client_context,
    tls_server_context,
    wait_until,
)
from test_proxy import captured

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return issue_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def hypercorn_tls(certificates: Certificates) -> Iterator[HypercornServer]:
    """The test app under Hypercorn over TLS (ALPN h2, http/1.1)."""
    with HypercornServer(certificates=certificates) as server:
        yield server


@pytest.fixture(scope="module")
def hypercorn_h2c() -> Iterator[HypercornServer]:
    """The test app under Hypercorn in cleartext: HTTP/1.1 and h2c with prior knowledge."""
    with HypercornServer() as server:
        yield server


def proxy_ca(confdir: Path) -> Path:
    return confdir / "mitmproxy-ca-cert.pem"


# -- negotiation


@pytest.mark.parametrize(
    ("offer_h2", "http1_only", "protocol"),
    [(True, False, "h2"), (False, False, "http/1.1"), (True, True, "http/1.1")],
    ids=["h2-offered", "http1-offered", "h2-offered-http1-only"],
)
def test_alpn_is_agreed_end_to_end_over_tls(
    hypercorn_tls: HypercornServer, confdir: Path, tmp_path: Path, offer_h2: bool, http1_only: bool, protocol: str
) -> None:
    """The client's ALPN offer reaches the upstream and the upstream's choice comes back;
    ``--http1-only`` takes h2 out of the offer. The app says which version it saw."""
    capture = tmp_path / "alpn.rtcap"
    args = ("--upstream-insecure", "--listen-tls", *(("--http1-only",) if http1_only else ()))
    with running_proxy(hypercorn_tls.url, *args, confdir=confdir, capture=capture) as proxy:
        trusted = ssl.create_default_context(cafile=proxy_ca(confdir))
        with httpx.Client(verify=trusted, http2=offer_h2, timeout=DEADLINE) as client:
            plain = client.get(f"https://{LOOPBACK}:{proxy.port}/plain")
            version = client.get(f"https://{LOOPBACK}:{proxy.port}/version")
        assert proxy.stop() == 0, proxy.stderr
    assert plain.text == "hello, wire\n" * 20
    expected = {"h2": ("HTTP/2", "2"), "http/1.1": ("HTTP/1.1", "1.1")}[protocol]
    assert (version.http_version, version.text) == expected
    (connection,) = captured(capture)
    assert connection.opened.tls is not None and connection.opened.upstream_tls is not None
    assert connection.opened.tls.alpn == connection.opened.upstream_tls.alpn == protocol
    assert connection.streams[0].startswith(PREFACE) == (protocol == "h2")


def test_h2c_with_prior_knowledge_passes_a_cleartext_proxy(
    hypercorn_h2c: HypercornServer, confdir: Path, tmp_path: Path
) -> None:
    capture = tmp_path / "h2c.rtcap"
    with running_proxy(hypercorn_h2c.url, confdir=confdir, capture=capture) as proxy:
        with httpx.Client(http1=False, http2=True, timeout=DEADLINE) as client:
            version = client.get(f"{proxy.url}/version")
        assert proxy.stop() == 0, proxy.stderr
    assert (version.http_version, version.text) == ("HTTP/2", "2")
    (connection,) = captured(capture)
    assert connection.opened.tls is None and connection.opened.upstream_tls is None
    assert connection.streams[0].startswith(PREFACE)


def test_h2_passes_a_forward_proxy_tunnel(hypercorn_tls: HypercornServer, confdir: Path, tmp_path: Path) -> None:
    """After CONNECT, mitmproxy intercepts TLS with the client's offer mirrored upstream,
    and the tunnel carries h2."""
    capture = tmp_path / "forward.rtcap"
    with running_proxy(None, "--mode", "regular", "--upstream-insecure", confdir=confdir, capture=capture) as proxy:
        trusted = ssl.create_default_context(cafile=proxy_ca(confdir))
        with httpx.Client(proxy=proxy.url, verify=trusted, http2=True, timeout=DEADLINE) as client:
            version = client.get(f"{hypercorn_tls.url}/version")
        assert proxy.stop() == 0, proxy.stderr
    assert (version.http_version, version.text) == ("HTTP/2", "2")
    (connection,) = captured(capture)
    assert connection.opened.tls is not None and connection.opened.upstream_tls is not None
    assert connection.opened.tls.alpn == connection.opened.upstream_tls.alpn == "h2"
    assert connection.streams[0].startswith(PREFACE)


def mitmdump_with_the_addon(upstream: str, confdir: Path, capture: Path, *args: str) -> CheckoutProxyProcess:
    script = run_rtinspect("addon-path").stdout.strip()
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("mitmdump")),
        "-q",
        "-s",
        script,
        "--mode",
        f"reverse:{upstream}",
        "--listen-host",
        LOOPBACK,
        "-p",
        str(port),
        "--set",
        f"confdir={confdir}",
        "--set",
        f"rtinspect_write={capture}",
        *args,
    ]
    return CheckoutProxyProcess(command, port, capture)


@pytest.mark.parametrize("runner", ["rtinspect", "mitmdump"])
def test_a_cleartext_upstream_keeps_tls_clients_on_http1(
    app_server: AppServer, confdir: Path, tmp_path: Path, runner: str
) -> None:
    """A cleartext upstream cannot say which protocol it speaks, so a TLS client that
    prefers h2 (as browsers do) is given HTTP/1.1: uvicorn speaks nothing else.
    As a mitmdump script the addon's TLS hook runs before mitmproxy's own, which must not matter."""
    capture = tmp_path / "cleartext-upstream.rtcap"
    if runner == "rtinspect":
        proxy = CheckoutProxyProcess.rtinspect(app_server.url, "--listen-tls", confdir=confdir, capture=capture)
    else:
        proxy = mitmdump_with_the_addon(app_server.url, confdir, capture)
    try:
        proxy.wait_listening()
        context = tls_client_context(proxy_ca(confdir), alpn=("h2", "http/1.1"))
        request = f"GET /version HTTP/1.1\r\nHost: {LOOPBACK}\r\nConnection: close\r\n\r\n".encode()
        with socket.create_connection((LOOPBACK, proxy.port), timeout=DEADLINE) as raw:
            with context.wrap_socket(raw, server_hostname=LOOPBACK) as tls:
                chosen = tls.selected_alpn_protocol()
                tls.sendall(request)
                answer = b""
                while data := tls.recv(65536):
                    answer += data
    finally:
        assert proxy.stop() == 0, proxy.stderr
    assert chosen == "http/1.1"
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\n1.1")
    (connection,) = captured(capture)
    assert connection.opened.tls is not None and connection.opened.tls.alpn == "http/1.1"
    assert connection.streams == (request, answer)


def test_websocket_over_h2_gets_the_servers_settings(
    hypercorn_tls: HypercornServer, confdir: Path, tmp_path: Path
) -> None:
    """RFC 8441: the upstream's SETTINGS_ENABLE_CONNECT_PROTOCOL = 1 reaches the client
    unchanged (mitmproxy's own HTTP/2 layer would send 0), so an extended CONNECT with
    ``:protocol websocket`` gets 200 and WebSocket frames flow in DATA frames."""
    capture = tmp_path / "ws-h2.rtcap"
    args = ("--upstream-insecure", "--listen-tls")
    with running_proxy(hypercorn_tls.url, *args, confdir=confdir, capture=capture) as proxy:
        client = H2Client.connect(proxy.port, tls_client_context(proxy_ca(confdir), alpn=("h2",)))
        websocket = H2WebSocket(client, "/ws")
        assert websocket.response.status == 200
        messages: list[str | bytes] = ["hello", "x" * 300, b"\x00\x01binary"]
        for message in messages:
            websocket.send(message)
            assert websocket.recv() == message
        websocket.close()
        assert websocket.closed_by_server == 1000
        client.close()
        assert proxy.stop() == 0, proxy.stderr
    (connection,) = captured(capture)
    assert connection.streams == (bytes(client.sent), bytes(client.received))


GREETING = b"upstream says hello\r\n"
REQUEST = b"GET /after-the-greeting HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def greet_then_answer(connection: ScriptedConnection) -> None:
    connection.send(GREETING)
    connection.read_until(b"\r\n\r\n")
    connection.send(RESPONSE)


@pytest.mark.parametrize("tls", [True, False], ids=["tls-client", "cleartext-client"])
def test_an_upstream_that_speaks_first_waits_for_the_client(confdir: Path, tmp_path: Path, tls: bool) -> None:
    """mitmproxy connects upstream as soon as a client connects and chooses its layers
    on the first bytes from either side. An upstream that speaks first (an h2c server
    sends its SETTINGS at once) must not have them chosen before the client's first
    bytes: a TLS client slow to say hello would be refused by ``--listen-tls``, and the
    readiness probes (connect, then leave without a word) would be relayed the greeting
    and recorded. The greeting waits until the client has spoken."""
    capture = tmp_path / "greeting.rtcap"
    with ScriptedServer(greet_then_answer) as server:
        args = ("--listen-tls",) if tls else ()
        with running_proxy(server.url, *args, confdir=confdir, capture=capture) as proxy:
            upstreams = len(server.connections)
            with socket.create_connection((LOOPBACK, proxy.port), timeout=DEADLINE) as raw:
                wait_until(
                    lambda: len(server.connections) > upstreams and bytes(server.connections[-1].sent) == GREETING,
                    "the upstream to greet the proxy",
                )
                time.sleep(0.1)  # for the proxy to read the greeting before the client's first bytes
                sock = tls_client_context(proxy_ca(confdir)).wrap_socket(raw, server_hostname=LOOPBACK) if tls else raw
                sock.sendall(REQUEST)  # an HTTP client speaks first; only then does the greeting come
                received = b""
                while data := sock.recv(65536):
                    received += data
            assert proxy.stop() == 0, proxy.stderr
    assert received == GREETING + RESPONSE
    assert "refused" not in proxy.stderr
    (connection,) = captured(capture)
    assert connection.streams == (REQUEST, GREETING + RESPONSE)


# -- byte for byte


def h2_conversation(client: H2Client) -> None:
    """Requests of every shape serve_h2 answers, on one connection: a body beyond the
    initial flow-control window (WINDOW_UPDATE), a stream of DATA frames, padding of
    DATA and HEADERS frames, a response head in CONTINUATION frames, request priority
    (in a HEADERS frame, and in a PRIORITY frame for a stream not yet opened), PING,
    a reset stream."""
    assert client.request("GET", "/plain").body == H2_PLAIN_BODY
    body = bytes(range(256)) * 400
    assert client.request("POST", "/echo", body).body == body
    assert len(client.request("GET", "/stream?count=20").data_frames) == 21
    assert client.request("GET", "/padded").body == b"padded datamore"
    upcoming = client.h2.get_next_available_stream_id()
    client.h2.prioritize(upcoming, weight=32)
    response = client.request("GET", "/padded-head")
    assert response.status == 200 and response.body == b""
    assert len(dict(client.request("GET", "/big-headers").headers)[b"x-big"]) == 30000
    client.ping()
    stream_id = client.start("GET", "/plain", priority_weight=200, priority_depends_on=0, priority_exclusive=False)
    client.wait_response(stream_id)
    cancelled = client.start("POST", "/echo", end_stream=False)
    client.h2.reset_stream(cancelled)
    client.flush()
    assert client.request("GET", "/plain").status == 200
    client.close()


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_h2_is_relayed_byte_for_byte(confdir: Path, tmp_path: Path, tls: bool) -> None:
    """What the client sent is what the upstream received and what the capture holds,
    and the other way round, with both ends recording their plaintext."""
    capture = tmp_path / "h2.rtcap"
    server_tls = tls_server_context(*self_signed_certificate(tmp_path), alpn=("h2",)) if tls else None
    args = ("--upstream-insecure", "--listen-tls") if tls else ()
    with ScriptedServer(serve_h2, tls=server_tls) as server:
        with running_proxy(server.url, *args, confdir=confdir, capture=capture) as proxy:
            client_tls = tls_client_context(proxy_ca(confdir), alpn=("h2",)) if tls else None
            client = H2Client.connect(proxy.port, client_tls)
            h2_conversation(client)
            assert proxy.stop() == 0, proxy.stderr
        at_server = [c for c in server.wait_finished(1) if c.received]
    sent, received = bytes(client.sent), bytes(client.received)
    assert sent.startswith(PREFACE) and len(sent) > 100_000
    assert [(bytes(c.received), bytes(c.sent)) for c in at_server] == [(sent, received)]
    (connection,) = captured(capture)
    assert connection.streams == (sent, received)
    if tls:
        assert connection.opened.tls is not None and connection.opened.upstream_tls is not None
        assert connection.opened.tls.alpn == connection.opened.upstream_tls.alpn == "h2"


def test_concurrent_h2c_streams_are_relayed_byte_for_byte(
    hypercorn_h2c: HypercornServer, confdir: Path, tmp_path: Path
) -> None:
    """httpx multiplexes SSE, NDJSON, polls and an upload on one h2c connection to
    Hypercorn; recording relays on both sides of the proxy see the same bytes."""
    capture = tmp_path / "concurrent.rtcap"
    with RecordingRelay(hypercorn_h2c.port) as server_side:
        with running_proxy(server_side.url(), confdir=confdir, capture=capture) as proxy:
            with RecordingRelay(proxy.port) as client_side:
                asyncio.run(concurrent_streams(client_side.url()))
                (at_client,) = [c for c in client_side.wait_finished(1) if c.client_to_server]
                assert proxy.stop() == 0, proxy.stderr
        (at_server,) = [c for c in server_side.wait_finished(1) if c.client_to_server]
    streams = (bytes(at_client.client_to_server), bytes(at_client.server_to_client))
    assert streams[0].startswith(PREFACE)
    assert (bytes(at_server.client_to_server), bytes(at_server.server_to_client)) == streams
    (connection,) = captured(capture)
    assert connection.streams == streams


async def concurrent_streams(url: str) -> None:
    async with httpx.AsyncClient(base_url=url, http1=False, http2=True, timeout=DEADLINE) as client:

        async def sse() -> None:
            async with client.stream("GET", "/sse?count=20&interval=0.005") as response:
                assert response.http_version == "HTTP/2"
                assert "".join([text async for text in response.aiter_text()]).count("data: message") == 20

        async def ndjson() -> None:
            response = await client.get("/ndjson?count=20&interval=0.005")
            assert len(response.text.splitlines()) == 20

        async def polls() -> None:
            for _ in range(5):
                assert (await client.get("/poll", params={"wait": 0.01})).json() == {"messages": ["message 0"]}

        async def upload() -> None:
            body = bytes(range(256)) * 100
            assert (await client.post("/echo", content=body)).content == body

        await asyncio.gather(sse(), ndjson(), polls(), upload())
