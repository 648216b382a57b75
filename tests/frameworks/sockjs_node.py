"""SockJS: the ``sockjs`` server and ``sockjs-client``, both in Node.

The server counts the messages each session sends and, once it has ``events``
of them, writes ``events`` messages in one burst (over polling transports one
``a[...]`` frame then carries several). The client is limited to one
transport: ``websocket``, ``xhr-streaming``, ``xhr-polling`` or ``eventsource``.
Messages are the application messages; ``o``, ``h``, ``c`` frames and the
``xhr_send`` answers are control.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from servers import LOOPBACK

from frameworks.common import NodeProcess, Tally, run_node_client

TRANSPORTS = ("websocket", "xhr-streaming", "xhr-polling", "eventsource")


@dataclass
class SockJSServer:
    url: str
    process: NodeProcess

    def tally(self) -> Tally:
        return Tally.from_json(self.process.ask("tally"))


@contextlib.contextmanager
def sockjs_server(*, events: int, heartbeat: float = 25.0) -> Iterator[SockJSServer]:
    """sockjs at ``http://127.0.0.1:PORT/sockjs``; ``heartbeat`` seconds between ``h`` frames."""
    process = NodeProcess("sockjs-server.cjs", str(events), str(round(heartbeat * 1000)))
    try:
        yield SockJSServer(f"http://{LOOPBACK}:{process.ready['port']}/sockjs", process)
    finally:
        process.stop()


def run_sockjs_client(url: str, *, transport: str, events: int, linger: float = 0.0) -> Tally:
    """sockjs-client (Node) on ``url`` with only ``transport``: sends ``events``
    messages, waits for ``events`` back, stays ``linger`` seconds, closes. The
    tally's ``control`` has the heartbeats it saw; ``details["transport"]`` the
    transport it used."""
    return Tally.from_json(run_node_client("sockjs-client.cjs", url, transport, str(events), str(round(linger * 1000))))
