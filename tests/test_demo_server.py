"""The demo server over real sockets: every transport delivers the whole feed.

Each test runs uvicorn on a free 127.0.0.1 port with a small, fast feed that
waits for ``POST /feed/start``, connects real clients first, then starts it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from httpx_sse import aconnect_sse

from demo_server.app import create_app
from demo_server.feed import make_message
from demo_server.run import RunningServer, bind, serve_in_thread

COUNT = 30
RATE = 300.0
SIZE = 200
BOUND_SECONDS = 15

StartServer = Callable[..., RunningServer]


def run[T](coroutine: Awaitable[T]) -> T:
    """Run ``coroutine`` to completion, failing rather than hanging."""

    async def bounded() -> T:
        async with asyncio.timeout(BOUND_SECONDS):
            return await coroutine

    return asyncio.run(bounded())


@pytest.fixture
def start_server() -> Iterator[StartServer]:
    """Starts demo servers (feed not started unless asked); stops them all afterwards."""
    running: list[RunningServer] = []

    def start(ws_compression: bool = True, **feed: Any) -> RunningServer:
        params = {"rate": RATE, "count": COUNT, "size": SIZE, "autostart": False, **feed}
        server = serve_in_thread(create_app(**params), ws_compression=ws_compression)
        running.append(server)
        return server

    yield start
    for server in running:
        server.stop()


def ws_url(server: RunningServer, path: str) -> str:
    return "ws" + server.url.removeprefix("http") + path


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [message["seq"] for message in messages]


async def poll_until_ended(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Poll ``path`` with ``after`` = last seq seen until the feed says it has ended."""
    received: list[dict[str, Any]] = []
    while True:
        response = await client.get(path, params={"after": len(received) and received[-1]["seq"], **params})
        if response.status_code == 200:
            received.extend(response.json())
            continue
        assert response.status_code == 204
        if response.headers.get("X-Feed-Ended") == "1":
            return received
        await asyncio.sleep(0.01)


def poll_everything(server: RunningServer) -> list[int]:
    """The seqs a short-polling client collects until the feed has ended."""

    async def collect() -> list[dict[str, Any]]:
        async with httpx.AsyncClient(base_url=server.url) as client:
            return await poll_until_ended(client, "/poll")

    return seqs(run(collect()))


def test_every_transport_receives_every_message_in_order(start_server: StartServer) -> None:
    server = start_server()
    expected = list(range(1, COUNT + 1))

    async def experiment() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=server.url) as client:
            websocket = await websockets.connect(ws_url(server, "/ws"))
            sse = aconnect_sse(client, "GET", "/sse")
            event_source = await sse.__aenter__()
            stream = client.stream("GET", "/stream")
            ndjson = await stream.__aenter__()

            async def websocket_messages() -> tuple[list[dict[str, Any]], int | None]:
                received = [json.loads(text) async for text in websocket]
                return received, websocket.close_code

            async def sse_messages() -> tuple[list[dict[str, Any]], list[str]]:
                received, others = [], []
                async for event in event_source.aiter_sse():
                    if event.event == "message":
                        assert event.id == str(json.loads(event.data)["seq"])
                        received.append(json.loads(event.data))
                    else:
                        others.append(event.event)
                return received, others

            async def ndjson_messages() -> list[dict[str, Any]]:
                return [json.loads(line) async for line in ndjson.aiter_lines() if line]

            consumers = asyncio.gather(
                websocket_messages(),
                sse_messages(),
                ndjson_messages(),
                poll_until_ended(client, "/longpoll", timeout=5),
                poll_until_ended(client, "/poll"),
            )
            started = (await client.post("/feed/start")).json()
            results = await consumers
            await sse.__aexit__(None, None, None)
            await stream.__aexit__(None, None, None)
            status = (await client.get("/feed/status")).json()
            return {
                "started": started,
                "status": status,
                "sse_type": event_source.response.headers["content-type"],
                "ndjson_headers": ndjson.headers,
                "results": results,
            }

    outcome = run(experiment())
    (ws, close_code), (sse, sse_others), ndjson, longpoll, poll = outcome["results"]
    assert seqs(ws) == expected and close_code == 1000
    assert seqs(sse) == expected and sse_others == ["end"]
    assert seqs(ndjson) == expected
    assert seqs(longpoll) == expected
    assert seqs(poll) == expected
    assert ws == sse == ndjson == longpoll == poll
    assert outcome["sse_type"].startswith("text/event-stream")
    assert outcome["ndjson_headers"]["content-type"] == "application/x-ndjson"
    assert outcome["ndjson_headers"]["transfer-encoding"] == "chunked"
    assert outcome["started"]["started"] is True
    assert outcome["status"] == {
        "rate": RATE,
        "count": COUNT,
        "size": SIZE,
        "heartbeat": 0.0,
        "last_seq": COUNT,
        "started": True,
        "ended": True,
    }


def test_messages_have_the_requested_size() -> None:
    for seq in (1, 9, 10_000):
        message = make_message(seq, 1_700_000_000.123456, SIZE)
        assert len(message.json.encode()) == SIZE
        assert json.loads(message.json)["seq"] == seq


def test_sse_resumes_after_last_event_id(start_server: StartServer) -> None:
    server = start_server()

    async def first_five_then_resume() -> tuple[list[int], list[int], list[str]]:
        async with httpx.AsyncClient(base_url=server.url) as client:
            first: list[int] = []
            async with aconnect_sse(client, "GET", "/sse") as source:
                await client.post("/feed/start")
                async for event in source.aiter_sse():
                    first.append(int(event.id))
                    if len(first) == 5:
                        break
            rest: list[int] = []
            others: list[str] = []
            headers = {"Last-Event-ID": str(first[-1])}
            async with aconnect_sse(client, "GET", "/sse", headers=headers) as source:
                async for event in source.aiter_sse():
                    if event.event == "message":
                        rest.append(int(event.id))
                    else:
                        others.append(event.event)
            return first, rest, others

    first, rest, others = run(first_five_then_resume())
    assert first == [1, 2, 3, 4, 5]
    assert rest == list(range(6, COUNT + 1))
    assert others == ["end"]


def test_sse_heartbeat_comments(start_server: StartServer) -> None:
    server = start_server(heartbeat=0.05, count=3)

    async def lines_until_end() -> list[str]:
        async with httpx.AsyncClient(base_url=server.url) as client:
            async with client.stream("GET", "/sse") as response:
                lines: list[str] = []
                async for line in response.aiter_lines():
                    lines.append(line)
                    if line == ": heartbeat" and len(lines) == 1:
                        await client.post("/feed/start")
                return lines

    lines = run(lines_until_end())
    assert lines[0] == ": heartbeat"
    assert [line for line in lines if line.startswith("id: ")] == ["id: 1", "id: 2", "id: 3"]
    assert lines[-3:] == ["event: end", 'data: {"last_seq":3}', ""]


def test_short_poll_answers_at_once(start_server: StartServer) -> None:
    server = start_server(count=3)
    with httpx.Client(base_url=server.url, timeout=BOUND_SECONDS) as client:
        empty = client.get("/poll", params={"after": 0})
        assert empty.status_code == 204 and "X-Feed-Ended" not in empty.headers
        client.post("/feed/start")
        assert poll_everything(server) == [1, 2, 3]
        ended = client.get("/poll", params={"after": 3})
        assert ended.status_code == 204 and ended.headers["X-Feed-Ended"] == "1"
        everything = client.get("/poll", params={"after": 1})
        assert everything.status_code == 200
        assert everything.headers["content-type"] == "application/json"
        assert seqs(everything.json()) == [2, 3]


def test_long_poll_holds_until_news_then_returns(start_server: StartServer) -> None:
    server = start_server(count=3)

    async def hold_then_start() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=BOUND_SECONDS) as client:
            timed_out = await client.get("/longpoll", params={"after": 0, "timeout": 0.05})
            held = asyncio.create_task(client.get("/longpoll", params={"after": 0, "timeout": 10}))
            assert (await client.get("/poll")).status_code == 204
            assert not held.done()
            await client.post("/feed/start")
            answered = await held
            await poll_until_ended(client, "/poll")
            ended = await client.get("/longpoll", params={"after": 3, "timeout": 10})
            return timed_out, answered, ended

    timed_out, answered, ended = run(hold_then_start())
    assert timed_out.status_code == 204 and "X-Feed-Ended" not in timed_out.headers
    assert answered.status_code == 200
    received = seqs(answered.json())
    assert received and received == list(range(1, len(received) + 1))
    assert ended.status_code == 204 and ended.headers["X-Feed-Ended"] == "1"


def test_feed_start_is_idempotent_and_autostart_runs_the_feed(start_server: StartServer) -> None:
    waiting = start_server(count=2)
    with httpx.Client(base_url=waiting.url) as client:
        assert client.get("/feed/status").json()["started"] is False
        assert client.post("/feed/start").json()["started"] is True
        assert client.post("/feed/start").json()["started"] is True
    autostarted = start_server(count=2, autostart=True)
    assert poll_everything(autostarted) == [1, 2]


def test_websocket_echo_round_trips(start_server: StartServer) -> None:
    server = start_server()

    async def echo() -> tuple[str | bytes, str | bytes]:
        async with websockets.connect(ws_url(server, "/ws/echo")) as websocket:
            await websocket.send("ping 1")
            text = await websocket.recv()
            await websocket.send(b"\x00\x01binary")
            data = await websocket.recv()
            return text, data

    assert run(echo()) == ("ping 1", b"\x00\x01binary")


@pytest.mark.parametrize("ws_compression", [True, False])
def test_websocket_compression_is_configurable(start_server: StartServer, ws_compression: bool) -> None:
    server = start_server(ws_compression=ws_compression, count=3)

    async def negotiated() -> tuple[str | None, list[int]]:
        async with websockets.connect(ws_url(server, "/ws?after=0")) as websocket:
            async with httpx.AsyncClient(base_url=server.url) as client:
                await client.post("/feed/start")
            received = [json.loads(text)["seq"] async for text in websocket]
            return websocket.response.headers.get("Sec-WebSocket-Extensions"), received

    extensions, received = run(negotiated())
    assert received == [1, 2, 3]
    if ws_compression:
        assert extensions is not None and extensions.startswith("permessage-deflate")
    else:
        assert extensions is None


def test_page_is_self_contained(start_server: StartServer) -> None:
    server = start_server()
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "window.rtinspectDemo" in page.text
    assert not re.search(r"https?://", page.text)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*//""", page.text)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_page_consumes_every_transport_in_headless_chromium(start_server: StartServer, tmp_path: Path) -> None:
    server = start_server(count=20, rate=100.0)
    dom = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            f"--user-data-dir={tmp_path}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            f"{server.url}/?autostart=1&poll=100",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    found = re.search(r'<script type="application/json" id="results">(.*?)</script>', dom, re.S)
    assert found, dom[-2000:]
    results = json.loads(found.group(1))
    assert results["done"] is True
    for name, transport in results["transports"].items():
        assert (name, transport["received"], transport["lost"], transport["done"]) == (name, 20, 0, True)


def test_listening_socket_is_tcp_so_connections_get_nodelay() -> None:
    """asyncio only sets TCP_NODELAY on IPPROTO_TCP sockets; without it Nagle's
    algorithm and delayed ACKs add tens of milliseconds to every long poll."""
    sock = bind()
    try:
        assert sock.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_socketio_delivers_every_message_then_end_beside_the_other_routes(start_server: StartServer) -> None:
    import socketio

    server = start_server()

    async def collect() -> tuple[list[dict[str, Any]], bool, str | None]:
        received: list[dict[str, Any]] = []
        ended = asyncio.Event()
        client = socketio.AsyncClient(reconnection=False, handle_sigint=False)
        client.on("message", received.append)
        client.on("end", ended.set)
        await client.connect(server.url, auth={"after": 0})
        transport = client.transport()
        async with httpx.AsyncClient(base_url=server.url) as http:
            # The demo's own routes still answer in front of Socket.IO.
            assert (await http.get("/feed/status")).status_code == 200
            await http.post("/feed/start")
        await ended.wait()
        await client.disconnect()
        return received, ended.is_set(), transport

    received, ended, transport = run(collect())
    assert seqs(received) == list(range(1, COUNT + 1))
    assert ended and transport == "websocket"  # polling first, then upgraded
