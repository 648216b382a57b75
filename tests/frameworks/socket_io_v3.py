"""Socket.IO over Engine.IO v3: the socket.io 4 server (Node) with
``allowEIO3`` and socket.io-client 2 (Node), which speaks only v3 (the
client pings and the server pongs; polling bodies prefix each packet with its
length).

Both sides count the Engine.IO packets their engine emitted and handled
(``"ping sent"``, ``"pong received"``, ...) as well as their events.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from servers import LOOPBACK

from frameworks.common import NodeProcess, Tally, run_node_client


@dataclass
class NodeSocketIOServer:
    url: str
    process: NodeProcess

    def tally(self) -> Tally:
        return Tally.from_json(self.process.ask("tally"))


@contextlib.contextmanager
def node_socketio_server(
    *, events: int, ping_interval: float = 25.0, ping_timeout: float = 20.0
) -> Iterator[NodeSocketIOServer]:
    """socket.io 4 (``allowEIO3``) at ``http://127.0.0.1:PORT/socket.io/``."""
    process = NodeProcess(
        "socketio-server.cjs", str(events), str(round(ping_interval * 1000)), str(round(ping_timeout * 1000))
    )
    try:
        yield NodeSocketIOServer(f"http://{LOOPBACK}:{process.ready['port']}", process)
    finally:
        process.stop()


def run_socketio_v2_client(url: str, *, events: int, transports: Sequence[str], linger: float = 0.0) -> Tally:
    """socket.io-client 2 on ``url`` with ``transports`` (``["polling"]``,
    ``["websocket"]`` or ``["polling", "websocket"]`` to upgrade)."""
    return Tally.from_json(
        run_node_client("socketio-v2-client.cjs", url, ",".join(transports), str(events), str(round(linger * 1000)))
    )
