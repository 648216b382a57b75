"""Record real traffic through ``rtinspect proxy``, for the committed recordings.

For each scenario this starts the demo server on 127.0.0.1 (feed stopped),
``rtinspect proxy -q -w SCENARIO.rtcap`` in front of it, and ``dumpcap`` on
``lo`` filtered to the server's port, so ``SCENARIO.pcapng`` holds the
proxy-to-server leg: the proxy relays bytes unchanged, so that leg carries
exactly the bytes of the client leg. Real clients (websockets, httpx,
httpx-sse) connect through the proxy, the feed is started, and the clients
run until it has ended. Then the proxy gets SIGTERM, the server stops, and
only then is the packet capture stopped, so every packet is in it.

``SCENARIO.expected.json`` is what the clients observed, independently of
rtinspect: per transport, the TCP connections they opened, the payload size
of every message they sent and received as their libraries delivered it,
and for polls the number of polls and of empty ones. It also holds the
server port (for ``tshark -d tcp.port==PORT,http``) and the
``--transport`` rules the report needs (a long poll answered quickly looks
like a short poll).

The feed is started by ``POST /feed/start`` from a fixed local port that the
packet filter leaves out, so neither the capture nor the pcapng has it.

The ``h2_*`` scenarios are HTTP/2 over TLS. The demo server runs under
Hypercorn (TLS with ALPN h2, plus a cleartext port for the feed control), the
proxy listens with TLS (``--listen-tls --upstream-insecure``), and the clients
speak h2: httpx and httpx-sse with ``http2=True``, and for WebSocket over
HTTP/2 (RFC 8441, extended CONNECT) the ``h2`` library over a socket. Both TLS
legs are encrypted with different keys, so ``dumpcap`` captures the
client-to-proxy leg (the proxy's port) and the clients write their TLS secrets
to ``SCENARIO.keys`` (for ``tshark -o tls.keylog_file:SCENARIO.keys -d
tcp.port==PORT,tls``). For these, ``expected.json``'s ``server_port`` is the
proxy's port, ``pcap_leg`` is ``"client-proxy"``, ``keylog`` names the key file
and ``http_version`` is what every response came in. They are written to the
``http2`` folder beside the others (``--out DIR`` puts them in ``DIR/http2``).

Usage: ``.venv/bin/python tests/recordings/record.py [--out DIR] [SCENARIO ...]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import functools
import json
import random
import shutil
import socket
import ssl
import string
import sys
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from httpx_sse import aconnect_sse

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from servers import (  # noqa: E402
    LOOPBACK,
    H2Client,
    H2WebSocket,
    HypercornServer,
    free_port,
    issue_certificates,
    running_proxy,
    tls_client_context,
)
from tshark import PacketCapture  # noqa: E402

from demo_server.app import FEED_ENDED_HEADER, create_app  # noqa: E402
from demo_server.run import serve_in_thread  # noqa: E402

#: Seconds a whole scenario may take before recording fails.
SCENARIO_DEADLINE = 60.0
#: How long a long poll is held before the server answers 204 (before the feed starts).
LONG_POLL_TIMEOUT = 0.05
#: Pause between short polls.
SHORT_POLL_PAUSE = 0.015


@dataclass
class Observed:
    """What the clients of one transport saw."""

    #: Local (host, port) of every TCP connection they opened.
    connections: set[tuple[str, int]] = field(default_factory=set)
    #: Payload bytes of each message sent (WebSocket) and received.
    sent: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    polls: int = 0
    empty_polls: int = 0
    #: The ``Sec-WebSocket-Extensions`` each WebSocket handshake answered with (None: no extension).
    extensions: list[str | None] = field(default_factory=list)

    def as_dict(self, transport: str) -> dict[str, Any]:
        d: dict[str, Any] = {
            "connections": len(self.connections),
            "messages": {"client_to_server": len(self.sent), "server_to_client": len(self.received)},
            "payload_bytes": {"client_to_server": sum(self.sent), "server_to_client": sum(self.received)},
            "message_sizes": {"client_to_server": self.sent, "server_to_client": self.received},
        }
        if transport in ("long_poll", "short_poll"):
            d["polls"] = self.polls
            d["empty_polls"] = self.empty_polls
        if transport == "websocket":
            d["extensions"] = self.extensions
        return d


#: A client: the proxy's base URL, where it notes what it saw, and an event it
#: sets once it is connected (the feed starts when every client is).
Client = Callable[[str, Observed, asyncio.Event], Awaitable[None]]


#: The TLS context of HTTP/2 scenarios' clients (trusting the proxy's CA, writing the key log);
#: None for HTTP/1.1 scenarios.
CLIENT_TLS: contextvars.ContextVar[ssl.SSLContext | None] = contextvars.ContextVar("CLIENT_TLS", default=None)


def _http_client(base_url: str) -> httpx.AsyncClient:
    tls = CLIENT_TLS.get()
    if tls is None:
        return httpx.AsyncClient(base_url=base_url, trust_env=False, timeout=SCENARIO_DEADLINE)
    return httpx.AsyncClient(
        base_url=base_url,
        trust_env=False,
        timeout=SCENARIO_DEADLINE,
        http2=True,
        verify=tls,
        event_hooks={"response": [_require_http2]},
    )


async def _require_http2(response: httpx.Response) -> None:
    if response.http_version != "HTTP/2":
        raise RuntimeError(f"{response.request.url} came in {response.http_version}, not HTTP/2")


def _local_address(response: httpx.Response) -> tuple[str, int]:
    """The client end of the TCP connection a response came over."""
    return tuple(response.extensions["network_stream"].get_extra_info("client_addr"))  # type: ignore[return-value]


def _text(seed: int, size: int) -> str:
    """Reproducible text that does not compress to nothing."""
    alphabet = string.ascii_letters + string.digits
    return "".join(random.Random(seed).choices(alphabet, k=size))


def websocket_push(compression: str | None, ping: bool = False) -> Client:
    """``/ws``: receive every feed message until the server closes (1000).
    With ``ping``, one ping and its pong go by before the feed starts."""

    async def run(base_url: str, seen: Observed, ready: asyncio.Event) -> None:
        url = "ws" + base_url.removeprefix("http") + "/ws"
        async with websockets.connect(url, compression=compression, ping_interval=None, proxy=None) as ws:
            seen.connections.add(ws.local_address[:2])
            seen.extensions.append(ws.response.headers.get("Sec-WebSocket-Extensions"))
            if ping:
                await (await ws.ping(b"are you there"))
            ready.set()
            async for message in ws:
                seen.received.append(len(message.encode() if isinstance(message, str) else message))

    return run


def websocket_echo(messages: list[str | bytes]) -> Client:
    """``/ws/echo``: send each message and wait for it to come back, then close."""

    async def run(base_url: str, seen: Observed, ready: asyncio.Event) -> None:
        url = "ws" + base_url.removeprefix("http") + "/ws/echo"
        ready.set()
        async with websockets.connect(url, ping_interval=None, proxy=None) as ws:
            seen.connections.add(ws.local_address[:2])
            seen.extensions.append(ws.response.headers.get("Sec-WebSocket-Extensions"))
            for message in messages:
                await ws.send(message)
                seen.sent.append(len(message.encode() if isinstance(message, str) else message))
                echoed = await ws.recv()
                seen.received.append(len(echoed.encode() if isinstance(echoed, str) else echoed))

    return run


def websocket_h2(messages: list[str | bytes]) -> Client:
    """WebSocket over HTTP/2 (RFC 8441) on one h2 connection: push on ``/ws`` and echo
    round trips on ``/ws/echo``, each an extended CONNECT stream. The echo stream is
    closed by the client once every message has come back; the push stream by the
    server when the feed ends (the client then resets its side, see :meth:`H2WebSocket.close`)."""

    async def run(base_url: str, seen: Observed, ready: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        tls = CLIENT_TLS.get()
        port = int(base_url.rsplit(":", 1)[1])

        def talk() -> None:
            client = H2Client.connect(port, tls)
            try:
                seen.connections.add(client.sock.getsockname()[:2])
                push, echo = H2WebSocket(client, "/ws"), H2WebSocket(client, "/ws/echo")
                for websocket in (push, echo):
                    if websocket.response.status != 200:
                        raise RuntimeError(f"extended CONNECT answered {websocket.response.status}")
                    extensions = dict(websocket.response.headers).get(b"sec-websocket-extensions")
                    seen.extensions.append(extensions.decode() if extensions else None)
                loop.call_soon_threadsafe(ready.set)
                for message in messages:
                    echo.send(message)
                    seen.sent.append(len(message.encode() if isinstance(message, str) else message))
                    echoed = echo.recv()
                    assert echoed is not None, "the echo stream closed early"
                    seen.received.append(len(echoed.encode() if isinstance(echoed, str) else echoed))
                echo.close()
                while (pushed := push.recv()) is not None:
                    seen.received.append(len(pushed.encode() if isinstance(pushed, str) else pushed))
                if push.closed_by_server != 1000:
                    raise RuntimeError(f"the push stream ended with {push.closed_by_server}, not 1000")
                push.close()
            finally:
                client.close()

        await asyncio.to_thread(talk)

    return run


def server_sent_events(resume_after: int | None = None) -> Client:
    """``/sse`` until the ``end`` event. With ``resume_after``, the first connection
    is closed right after the event with that id, and a second one resumes with
    ``Last-Event-ID``.

    httpx-sse also hands over a data-less event at the blank line after each
    heartbeat comment once an id has been seen; the HTML standard dispatches no
    event with an empty data buffer (an EventSource fires nothing), so those
    are not messages. Every event this server sends has data.
    """

    async def run(base_url: str, seen: Observed, ready: asyncio.Event) -> None:
        last_id: str | None = None
        # Each connection has its own client, closed when its stream is left: httpx
        # closes an HTTP/1.1 connection whose response was not read to the end, but
        # over HTTP/2 it neither resets the stream nor closes the connection, and the
        # server would go on sending events that no one reads.
        async with _http_client(base_url) as client:
            async with aconnect_sse(client, "GET", "/sse") as source:
                seen.connections.add(_local_address(source.response))
                ready.set()
                async for event in source.aiter_sse():
                    if event.data:
                        seen.received.append(len(event.data.encode()))
                    last_id = event.id
                    if resume_after is not None and event.id == str(resume_after):
                        break
        if resume_after is None:
            return
        async with _http_client(base_url) as client:
            async with aconnect_sse(client, "GET", "/sse", headers={"Last-Event-ID": str(last_id)}) as source:
                seen.connections.add(_local_address(source.response))
                async for event in source.aiter_sse():
                    if event.data:
                        seen.received.append(len(event.data.encode()))

    return run


def ndjson_stream() -> Client:
    """``/stream``: one chunked response, one JSON text per line, until the feed ends."""

    async def run(base_url: str, seen: Observed, ready: asyncio.Event) -> None:
        async with _http_client(base_url) as client, client.stream("GET", "/stream") as response:
            seen.connections.add(_local_address(response))
            ready.set()
            async for line in response.aiter_lines():
                if line:
                    seen.received.append(len(line.encode()))

    return run


def polling(path: str, pause: float, **params: Any) -> Client:
    """Poll ``path?after=SEQ`` (keep-alive) until a 204 says the feed has ended;
    ready once the first poll has been answered."""

    async def run(base_url: str, seen: Observed, ready: asyncio.Event) -> None:
        after = 0
        async with _http_client(base_url) as client:
            while True:
                response = await client.get(path, params={"after": after, **params})
                seen.connections.add(_local_address(response))
                seen.polls += 1
                ready.set()
                if response.status_code == 200:
                    seen.received.append(len(response.content))
                    after = response.json()[-1]["seq"]
                    continue
                assert response.status_code == 204, response
                seen.empty_polls += 1
                if response.headers.get(FEED_ENDED_HEADER) == "1":
                    return
                await asyncio.sleep(pause)

    return run


def long_poll() -> Client:
    return polling("/longpoll", 0.0, timeout=LONG_POLL_TIMEOUT)


def short_poll() -> Client:
    return polling("/poll", SHORT_POLL_PAUSE)


ECHOES: list[str | bytes] = [
    "hello",
    _text(1, 60),
    _text(2, 125),
    _text(3, 126),
    _text(4, 300),
    "hello " * 40,
    _text(5, 1000).encode(),
    _text(6, 2000),
]


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    #: ``create_app`` arguments: rate, count, size, heartbeat.
    feed: dict[str, float]
    clients: list[tuple[str, Client]]
    ws_compression: bool = True
    rules: tuple[str, ...] = ()
    #: HTTP/2 over TLS through a Hypercorn upstream (see the module's docstring).
    http2: bool = False


SCENARIOS = [
    Scenario(
        "websocket",
        "Server push over /ws without compression (frames of 126+ bytes take a 16-bit length); "
        "one ping and pong from the client.",
        {"rate": 100, "count": 12, "size": 160},
        [("websocket", websocket_push(compression=None, ping=True))],
        ws_compression=False,
    ),
    Scenario(
        "websocket_deflate",
        "permessage-deflate negotiated by the websockets client: push over /ws, and echo "
        "round trips over /ws/echo (masked, compressed client frames; one binary message).",
        {"rate": 100, "count": 12, "size": 200},
        [("websocket", websocket_push(compression="deflate")), ("websocket", websocket_echo(ECHOES))],
    ),
    Scenario(
        "sse",
        "Server-Sent Events with heartbeat comments; the first connection is dropped after "
        "event 5 and a second one resumes with Last-Event-ID.",
        {"rate": 40, "count": 12, "size": 120, "heartbeat": 0.03},
        [("sse", server_sent_events(resume_after=5))],
    ),
    Scenario(
        "ndjson",
        "NDJSON over one chunked response (/stream).",
        {"rate": 100, "count": 15, "size": 120},
        [("http_stream", ndjson_stream())],
    ),
    Scenario(
        "long_poll",
        f"Long polling /longpoll on one keep-alive connection; polls time out after {LONG_POLL_TIMEOUT}s "
        "(204) until the feed starts, and the last 204 says it has ended.",
        {"rate": 50, "count": 12, "size": 120},
        [("long_poll", long_poll())],
        rules=("/longpoll=long_poll",),
    ),
    Scenario(
        "short_poll",
        f"Short polling /poll every {SHORT_POLL_PAUSE}s on one keep-alive connection, faster than the "
        "feed, so many polls are empty (204).",
        {"rate": 40, "count": 10, "size": 120},
        [("short_poll", short_poll())],
        rules=("/poll=short_poll",),
    ),
    Scenario(
        "mixed",
        "Every transport at once: WebSocket push (deflate), SSE with heartbeats, NDJSON, long and short polling.",
        {"rate": 50, "count": 12, "size": 150, "heartbeat": 0.05},
        [
            ("websocket", websocket_push(compression="deflate")),
            ("sse", server_sent_events()),
            ("http_stream", ndjson_stream()),
            ("long_poll", long_poll()),
            ("short_poll", short_poll()),
        ],
        rules=("/longpoll=long_poll", "/poll=short_poll"),
    ),
    Scenario(
        "h2_sse",
        "HTTP/2 over TLS: Server-Sent Events with heartbeat comments; the first connection is closed "
        "after event 5 and a second one resumes with Last-Event-ID.",
        {"rate": 40, "count": 12, "size": 120, "heartbeat": 0.03},
        [("sse", server_sent_events(resume_after=5))],
        http2=True,
    ),
    Scenario(
        "h2_ndjson",
        "HTTP/2 over TLS: NDJSON in the DATA frames of one response (/stream).",
        {"rate": 100, "count": 15, "size": 120},
        [("http_stream", ndjson_stream())],
        http2=True,
    ),
    Scenario(
        "h2_long_poll",
        f"HTTP/2 over TLS: long polling /longpoll, one stream per poll on one connection; polls time out "
        f"after {LONG_POLL_TIMEOUT}s (204) until the feed starts, and the last 204 says it has ended.",
        {"rate": 50, "count": 12, "size": 120},
        [("long_poll", long_poll())],
        rules=("/longpoll=long_poll",),
        http2=True,
    ),
    Scenario(
        "h2_short_poll",
        f"HTTP/2 over TLS: short polling /poll every {SHORT_POLL_PAUSE}s, one stream per poll on one "
        "connection, faster than the feed, so many polls are empty (204).",
        {"rate": 40, "count": 10, "size": 120},
        [("short_poll", short_poll())],
        rules=("/poll=short_poll",),
        http2=True,
    ),
    Scenario(
        "h2_websocket",
        "WebSocket over HTTP/2 (RFC 8441) over TLS: on one connection, push over /ws and echo round "
        "trips over /ws/echo (masked client frames, one binary message), each an extended CONNECT "
        "stream; no compression is offered.",
        {"rate": 100, "count": 12, "size": 160},
        [("websocket", websocket_h2(ECHOES))],
        http2=True,
    ),
]


def start_feed(server_port: int, control_port: int) -> None:
    """``POST /feed/start`` from ``control_port``, which the packet filter leaves out."""
    with socket.create_connection((LOOPBACK, server_port), source_address=(LOOPBACK, control_port)) as sock:
        sock.sendall(b"POST /feed/start HTTP/1.1\r\nHost: demo\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        answer = b""
        while data := sock.recv(65536):
            answer += data
    if not answer.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"the feed did not start: {answer[:100]!r}")


async def drive(base_url: str, scenario: Scenario, start: Callable[[], None]) -> dict[str, Observed]:
    """Run every client of ``scenario``; start the feed once they are all connected."""
    observed: dict[str, Observed] = {}
    readiness: list[asyncio.Event] = []
    tasks = []
    for transport, client in scenario.clients:
        ready = asyncio.Event()
        readiness.append(ready)
        tasks.append(asyncio.create_task(client(base_url, observed.setdefault(transport, Observed()), ready)))
    async with asyncio.timeout(SCENARIO_DEADLINE):
        waiting = asyncio.gather(*(ready.wait() for ready in readiness))
        done, _ = await asyncio.wait([waiting, *tasks], return_when=asyncio.FIRST_COMPLETED)
        if waiting not in done:
            waiting.cancel()
            await asyncio.gather(*tasks)  # a client ended before it was ready: raise its error
            raise RuntimeError("a client finished before the feed started")
        await asyncio.to_thread(start)
        await asyncio.gather(*tasks)
    return observed


def record(scenario: Scenario, out: Path, confdir: Path) -> dict[str, Any]:
    """Record one scenario into ``out``; returns its expected.json content."""
    rtcap, pcapng = out / f"{scenario.name}.rtcap", out / f"{scenario.name}.pcapng"
    for stale in (rtcap, pcapng):
        stale.unlink(missing_ok=True)
    if scenario.http2:
        return record_http2(scenario, out, confdir)
    server = serve_in_thread(
        create_app(**scenario.feed, autostart=False),  # type: ignore[arg-type]
        host=LOOPBACK,
        ws_compression=scenario.ws_compression,
    )
    control_port = free_port()
    packets = PacketCapture(pcapng, f"tcp port {server.port} and not tcp port {control_port}")
    try:
        packets.start()
        with running_proxy(server.url, confdir=confdir, capture=rtcap) as proxy:
            observed = asyncio.run(drive(proxy.url, scenario, lambda: start_feed(server.port, control_port)))
            status = proxy.stop()
            if status != 0:
                raise RuntimeError(f"rtinspect proxy exited with {status}: {proxy.stderr}")
    finally:
        server.stop()
        if packets.process is not None:
            packets.stop()
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "server_port": server.port,
        "rules": list(scenario.rules),
        "feed": scenario.feed,
        "transports": {transport: seen.as_dict(transport) for transport, seen in observed.items()},
    }


def record_http2(scenario: Scenario, out: Path, confdir: Path) -> dict[str, Any]:
    """Record an HTTP/2 scenario: Hypercorn over TLS, the proxy with TLS on both
    sides, the client-to-proxy leg in the pcapng and the clients' TLS secrets in
    ``SCENARIO.keys``."""
    rtcap, pcapng, keys = (out / f"{scenario.name}.{suffix}" for suffix in ("rtcap", "pcapng", "keys"))
    keys.unlink(missing_ok=True)
    app = create_app(**scenario.feed, autostart=False)  # type: ignore[arg-type]
    certificates = issue_certificates(confdir)
    control_port = free_port()
    with HypercornServer(app, certificates=certificates, cleartext_too=True) as server:
        assert server.cleartext_port is not None
        args = ("--listen-tls", "--upstream-insecure")
        # The pcapng starts once the proxy listens (after its readiness probes) and holds the clients alone.
        with running_proxy(server.url, *args, confdir=confdir, capture=rtcap) as proxy:
            client_tls = tls_client_context(confdir / "mitmproxy-ca-cert.pem", alpn=("h2",), keylog=keys)
            packets = PacketCapture(pcapng, f"tcp port {proxy.port}")
            packets.start()
            try:
                CLIENT_TLS.set(client_tls)
                base_url = f"https://{LOOPBACK}:{proxy.port}"
                start = functools.partial(start_feed, server.cleartext_port, control_port)
                observed = asyncio.run(drive(base_url, scenario, start))
                status = proxy.stop()
                if status != 0:
                    raise RuntimeError(f"rtinspect proxy exited with {status}: {proxy.stderr}")
            finally:
                CLIENT_TLS.set(None)
                packets.stop()
    return {
        "scenario": scenario.name,
        "description": scenario.description,
        "server_port": proxy.port,
        "pcap_leg": "client-proxy",
        "keylog": keys.name,
        "http_version": "HTTP/2",
        "rules": list(scenario.rules),
        "feed": scenario.feed,
        "transports": {transport: seen.as_dict(transport) for transport, seen in observed.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="directory to write to (default: %(default)s)")
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help="scenarios to record (default: all)")
    args = parser.parse_args()
    names = [s.name for s in SCENARIOS]
    unknown = sorted(set(args.scenarios) - set(names))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)} (one of {', '.join(names)})")
    if shutil.which("dumpcap") is None:
        parser.error("dumpcap is not installed (apt-get install tshark)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="rtinspect-confdir-") as confdir:
        for scenario in SCENARIOS:
            if args.scenarios and scenario.name not in args.scenarios:
                continue
            out = args.out / "http2" if scenario.http2 else args.out
            out.mkdir(exist_ok=True)
            expected = record(scenario, out, Path(confdir))
            suffixes = ("rtcap", "pcapng", "expected.json", *(("keys",) if scenario.http2 else ()))
            files = [out / f"{scenario.name}.{suffix}" for suffix in suffixes]
            files[2].write_text(json.dumps(expected, indent=2) + "\n")
            for path in files:
                path.chmod(0o644)  # the proxy and dumpcap create them readable by their owner only
            print(f"{scenario.name}: " + ", ".join(f"{path.name} {path.stat().st_size} B" for path in files))


if __name__ == "__main__":
    main()
