"""STOMP 1.2 over WebSocket: RabbitMQ's Web STOMP plugin (see
:mod:`frameworks.rabbitmq`) and stomp.py's WebSocket connection.

One client subscribes to a queue and SENDs ``events`` messages to it, so the
broker delivers as many MESSAGE frames back: SEND and MESSAGE are the
application messages; CONNECT, CONNECTED, SUBSCRIBE, RECEIPT, DISCONNECT and
heart-beats are control. The broker is not instrumented: its side is what the
client was answered (every SEND delivered once, in order).
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any

import stomp
from servers import DEADLINE, LOOPBACK, wait_until
from stomp.adapter.ws import WSStompConnection

from frameworks.common import Tally


class _Listener(stomp.ConnectionListener):
    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.lock = threading.Lock()
        self.bodies: list[str] = []
        self.receipts: set[str] = set()

    def _count(self, name: str) -> None:
        with self.lock:
            self.tally.control[name] += 1

    def on_connected(self, frame: Any) -> None:
        self._count("CONNECTED received")

    def on_message(self, frame: Any) -> None:
        with self.lock:
            self.tally.received += 1
            self.bodies.append(frame.body)

    def on_receipt(self, frame: Any) -> None:
        self._count("RECEIPT received")
        with self.lock:
            self.receipts.add(frame.headers.get("receipt-id", ""))

    def on_heartbeat(self) -> None:
        self._count("heart-beat received")

    def on_send(self, frame: Any) -> None:
        # stomp.py hands heart-beats it sends here too, as frames without a command.
        self._count(f"{frame.cmd or 'heart-beat'} sent")


def run_stomp_client(url: str, *, events: int, heartbeat_ms: int = 0, linger: float = 0.0) -> Tally:
    """stomp.py over WebSocket to ``url`` (``http://host:port/ws``), subprotocol
    ``v12.stomp``: subscribe to a queue, SEND ``events`` messages to it, wait for
    them as MESSAGE frames, stay ``linger`` seconds (heart-beats every
    ``heartbeat_ms`` both ways when not 0), disconnect with a receipt."""
    parts = urllib.parse.urlsplit(url)
    tally = Tally()
    listener = _Listener(tally)
    connection = WSStompConnection(
        [(parts.hostname or LOOPBACK, parts.port or 80)],
        ws_path=parts.path or "/ws",
        header={"Sec-WebSocket-Protocol": "v12.stomp"},
        heartbeats=(heartbeat_ms, heartbeat_ms),
        timeout=DEADLINE,
        vhost="/",
    )
    connection.set_listener("tally", listener)
    queue = f"/queue/rtinspect-{time.monotonic_ns()}"
    connection.connect("guest", "guest", wait=True)
    connection.subscribe(queue, id="1", ack="auto", receipt="subscribed")
    wait_until(lambda: "subscribed" in listener.receipts, "the SUBSCRIBE receipt")
    for index in range(events):
        connection.send(queue, body=f"message {index}")
        tally.sent += 1
    wait_until(lambda: tally.received >= events, "the STOMP messages")
    time.sleep(linger)
    connection.disconnect(receipt="bye")
    tally.details["bodies"] = list(listener.bodies)
    return tally
