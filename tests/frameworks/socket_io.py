"""Socket.IO 4 (Engine.IO v4): python-socketio's server as an ASGI app under
uvicorn, and its asyncio client.

The server's ``c2s`` handler counts the events the client emits; once it has
``events`` of them it emits ``events`` ``s2c`` events in one burst (no await
between them yields to the loop), so over polling one pending poll answers with
all of them in one body. A ``binary`` event is echoed back as a binary event;
an ``ack`` event returns a value, which travels as an ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import engineio
import engineio.payload
import socketio
from servers import DEADLINE, AsgiServer

from frameworks.common import Tally

# python-engineio refuses to decode a polling body of more than 16 packets, yet its
# server and client put every queued packet in one body: a burst of 20 events is
# one body either way. The limit is a guard against hostile peers, not a protocol
# rule, so both ends here accept what the other sends.
engineio.payload.Payload.max_decode_packets = 10_000

#: Engine.IO packet type names by their digit.
ENGINEIO_PACKETS = ("open", "close", "ping", "pong", "message", "upgrade", "noop")


@dataclass
class SocketIOServer:
    url: str
    tally: Tally
    #: Connections (Socket.IO sids) that connected and disconnected.
    sessions: list[str] = field(default_factory=list)


@contextlib.contextmanager
def socketio_server(*, events: int, ping_interval: float = 25.0, ping_timeout: float = 1.0) -> Iterator[SocketIOServer]:
    """python-socketio under uvicorn at ``/socket.io/``, answering ``events`` events with as many.

    ``ping_interval`` (seconds, fractions allowed) is what the server announces
    as ``pingInterval`` and how often it pings.
    """
    sio = socketio.AsyncServer(
        async_mode="asgi", ping_interval=ping_interval, ping_timeout=ping_timeout, cors_allowed_origins="*"
    )
    tally = Tally()
    sessions: list[str] = []
    received: dict[str, int] = {}

    @sio.event
    async def connect(sid: str, environ: dict[str, Any]) -> None:
        tally.control["connect"] += 1
        sessions.append(sid)
        received[sid] = 0

    @sio.event
    async def disconnect(sid: str, reason: object = None) -> None:
        tally.control["disconnect"] += 1

    @sio.event
    async def c2s(sid: str, data: Any) -> None:
        tally.received += 1
        received[sid] += 1
        if received[sid] == events:
            for index in range(events):
                await sio.emit("s2c", {"index": index, "text": f"from the server {index}"}, to=sid)
                tally.sent += 1

    @sio.event
    async def binary(sid: str, data: bytes) -> None:
        tally.received += 1
        tally.control["binary received"] += 1
        await sio.emit("binary", bytes(reversed(data)), to=sid)
        tally.sent += 1
        tally.control["binary sent"] += 1

    @sio.event
    async def ack(sid: str, data: Any) -> dict[str, Any]:
        tally.received += 1
        tally.control["ack sent"] += 1
        return {"acknowledged": data}

    with AsgiServer(socketio.ASGIApp(sio)) as server:
        yield SocketIOServer(server.url, tally, sessions)


def run_socketio_client(
    url: str,
    *,
    events: int,
    transports: Sequence[str] | None = None,
    acks: int = 0,
    binary: bool = False,
    linger: float = 0.0,
) -> Tally:
    """Connect python-socketio's asyncio client to ``url`` and emit ``events`` ``c2s`` events
    (plus ``acks`` events that want an ack and, with ``binary``, one binary event);
    wait for the server's ``events`` ``s2c`` events (and the echoes), stay connected
    ``linger`` seconds more (so heartbeats happen), then disconnect.

    ``transports``: ``["polling"]``, ``["websocket"]``, or None for the default
    (polling, upgraded to WebSocket). The tally's ``control`` counts the
    Engine.IO packets the client's read and write paths handled, by type
    (``"ping received"``, ``"pong sent"``, ``"noop received"``, ...);
    ``details["transport"]`` is the transport it ended on.
    """
    return asyncio.run(
        asyncio.wait_for(
            _client(url, events=events, transports=transports, acks=acks, binary=binary, linger=linger),
            DEADLINE,
        )
    )


async def _client(
    url: str, *, events: int, transports: Sequence[str] | None, acks: int, binary: bool, linger: float
) -> Tally:
    tally = Tally()
    client = socketio.AsyncClient(reconnection=False)
    _count_engineio_packets(client.eio, tally)
    everything = asyncio.Event()
    expected = events + (1 if binary else 0)
    got_events: list[int] = []

    def check() -> None:
        if tally.received == expected:
            everything.set()

    @client.event
    async def s2c(data: dict[str, Any]) -> None:
        tally.received += 1
        got_events.append(int(data["index"]))
        check()

    @client.on("binary")
    async def on_binary(data: bytes) -> None:
        tally.received += 1
        tally.details["binary"] = data
        tally.control["binary received"] += 1
        check()

    await client.connect(url, transports=list(transports) if transports else None, wait_timeout=DEADLINE)
    tally.details["first transport"] = client.transport()
    for index in range(events):
        await client.emit("c2s", {"index": index, "text": f"from the client {index}"})
        tally.sent += 1
    answers = []
    for index in range(acks):
        answers.append(await client.call("ack", index, timeout=DEADLINE))
        tally.sent += 1
        tally.control["ack received"] += 1
    if binary:
        await client.emit("binary", b"\x00\x01binary\xff")
        tally.sent += 1
        tally.control["binary sent"] += 1
    try:
        await asyncio.wait_for(everything.wait(), DEADLINE / 2)
    except TimeoutError:
        raise AssertionError(f"the client got {tally.received} of {expected} events: {tally}") from None
    await asyncio.sleep(linger)
    tally.details["transport"] = client.transport()
    tally.details["acks"] = answers
    tally.details["order"] = got_events
    await client.disconnect()
    await client.wait()
    return tally


def _count_engineio_packets(eio: engineio.AsyncClient, tally: Tally) -> None:
    """Count the Engine.IO packets the client's read path handled and its write path queued."""
    receive, send = eio._receive_packet, eio._send_packet

    async def counted_receive(pkt: Any) -> None:
        tally.control[f"{ENGINEIO_PACKETS[pkt.packet_type]} received"] += 1
        await receive(pkt)

    async def counted_send(pkt: Any) -> None:
        tally.control[f"{ENGINEIO_PACKETS[pkt.packet_type]} sent"] += 1
        await send(pkt)

    eio._receive_packet = counted_receive
    eio._send_packet = counted_send
