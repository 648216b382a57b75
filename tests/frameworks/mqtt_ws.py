"""MQTT 3.1.1 over WebSocket: the aedes broker (Node, with ws) and paho-mqtt's
client with ``transport="websockets"``.

The broker's application answers each PUBLISH to ``up/<rest>`` with a PUBLISH
to ``down/<rest>`` at the same QoS, so QoS 1 brings PUBACKs both ways. PUBLISH
packets are the application messages; CONNECT, CONNACK, SUBSCRIBE, SUBACK,
PUBACK, PINGREQ, PINGRESP and DISCONNECT are control.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from servers import DEADLINE, LOOPBACK, wait_until

from frameworks.common import NodeProcess, Tally

#: paho's log lines for each packet it sends or receives: "Sending PUBLISH (d0, q1, ...)".
PACKET_LOG = re.compile(r"^(Sending|Received) ([A-Z]+)")


@dataclass
class MqttBroker:
    url: str
    process: NodeProcess

    def tally(self) -> Tally:
        """What the broker's application and aedes's events counted so far."""
        return Tally.from_json(self.process.ask("tally"))


@contextlib.contextmanager
def mqtt_broker() -> Iterator[MqttBroker]:
    """The aedes broker over WebSocket at ``ws://127.0.0.1:PORT/mqtt``."""
    process = NodeProcess("mqtt-broker.mjs")
    try:
        yield MqttBroker(f"http://{LOOPBACK}:{process.ready['port']}", process)
    finally:
        process.stop()


def run_mqtt_client(
    url: str, *, qos0: int, qos1: int, keepalive: int = 60, linger: float = 0.0, path: str = "/mqtt"
) -> Tally:
    """paho-mqtt over WebSocket to ``url``'s host and port at ``path``: subscribe to
    ``down/#`` at QoS 1, publish ``qos0`` messages at QoS 0 and ``qos1`` at QoS 1 to
    ``up/...``, wait for as many answers, stay ``linger`` seconds (with a short
    ``keepalive``, PINGREQs go out), then disconnect.

    The tally's ``control`` counts the packets paho logged sending and receiving
    (``"PUBACK received"``, ``"PINGREQ sent"``, ...).
    """
    parts = urllib.parse.urlsplit(url)
    tally = Tally()
    expected = qos0 + qos1
    lock = threading.Lock()
    subscribed = threading.Event()
    connected = threading.Event()
    disconnected = threading.Event()
    published: set[int] = set()
    received_topics: list[str] = []

    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="rtinspect-test",
        transport="websockets",
        protocol=mqtt.MQTTv311,
    )
    client.ws_set_options(path=path)

    def on_log(client: mqtt.Client, userdata: Any, level: int, text: str) -> None:
        match = PACKET_LOG.match(text)
        if match:
            with lock:
                tally.control[f"{match[2]} {'sent' if match[1] == 'Sending' else 'received'}"] += 1

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        connected.set()

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        subscribed.set()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with lock:
            tally.received += 1
            received_topics.append(message.topic)
            tally.control[f"qos{message.qos} message received"] += 1

    def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        with lock:
            published.add(mid)

    def on_disconnect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        disconnected.set()

    client.on_log = on_log
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.on_publish = on_publish
    client.on_disconnect = on_disconnect
    client.connect(parts.hostname or LOOPBACK, parts.port or 80, keepalive=keepalive)
    client.loop_start()
    try:
        wait_until(connected.is_set, "the MQTT CONNACK")
        client.subscribe("down/#", qos=1)
        wait_until(subscribed.is_set, "the MQTT SUBACK")
        for index in range(expected):
            qos = 0 if index < qos0 else 1
            info = client.publish(f"up/{index}", f"message {index}".encode(), qos=qos)
            assert info.rc == mqtt.MQTT_ERR_SUCCESS, info
            tally.sent += 1
        wait_until(lambda: tally.received >= expected and len(published) >= expected, "the MQTT answers")
        time.sleep(linger)
        client.disconnect()
        wait_until(disconnected.is_set, "the MQTT disconnect", DEADLINE)
    finally:
        client.loop_stop()
    tally.details["topics"] = received_topics
    return tally
