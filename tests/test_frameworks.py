"""Real application protocols through the real proxy: what their handlers saw
against what the report counts.

Each scenario starts a real server of one protocol on 127.0.0.1, puts
``rtinspect proxy`` in front of it (recording a capture), runs a real client of
that protocol through the proxy, and keeps both sides' tallies
(:mod:`frameworks`). The ``*_tallies`` tests check the two sides agree with
each other and with what was sent; the ``*_report`` tests check that
``rtinspect report`` counts the same application messages, and as control
messages the protocol packets the client's framework handled that were not
application messages (HTTP answers that carry no protocol packet, such as
Engine.IO's ``ok`` to a POST, are neither).

Each scenario runs once per module (a fixture), whatever number of tests read it.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from frameworks.common import Tally, node_missing
from oracles import ORACLE_MISSING
from servers import run_rtinspect, running_proxy

from inspector.capture import DataChunk, read_capture
from inspector.wire import Direction

#: How many application messages each side sends.
N = 20
#: Seconds between heartbeats where the protocol lets the test choose.
HEARTBEAT = 0.3
#: Seconds each client stays connected and idle after its messages, for heartbeats.
LINGER = 1.0

#: The report's name for each application protocol.
APP_PROTOCOL = {
    "socket.io": "socket.io",
    "graphql-transport-ws": "graphql-transport-ws",
    "graphql-ws": "graphql-ws",
    "mqtt": "mqtt",
    "sockjs": "sockjs",
    "stomp": "stomp",
}

UPGRADE_PATH = "long_poll → websocket"


@dataclass
class Run:
    """One scenario's results: the capture and each side's tally."""

    capture: Path
    client: Tally
    server: Tally
    seconds: float
    proxy_output: str

    def report(self, *args: str) -> dict[str, Any]:
        done = run_rtinspect("report", str(self.capture), "-f", "json", *args)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))


def by_direction(client_to_server: int, server_to_client: int) -> dict[str, int]:
    return {"client_to_server": client_to_server, "server_to_client": server_to_client}


def total(report: dict[str, Any], key: str) -> dict[str, int]:
    """``key`` (by direction) added up over every real-time transport of the report (plain
    HTTP, such as SockJS's ``/info`` without the ``t=`` a browser adds, is not one)."""
    sums = by_direction(0, 0)
    for name, transport in report["transports"].items():
        if name == "http":
            continue
        for direction in sums:
            sums[direction] += transport[key][direction]
    return sums


def proxied(
    upstream: str,
    client: Callable[[str], Tally],
    server_tally: Callable[[], Tally],
    capture: Path,
    confdir: Path,
) -> Run:
    """Run ``client`` against the proxy in front of ``upstream``; the server's tally
    is read once the client has finished, before the proxy stops."""
    started = time.monotonic()
    with running_proxy(upstream, confdir=confdir, capture=capture) as proxy:
        tally = client(proxy.url)
        time.sleep(0.2)  # the server's side of the last close
        server = server_tally()
        assert proxy.stop() == 0, proxy.stderr
        output = proxy.output
    return Run(capture, tally, server, time.monotonic() - started, output)


def streams(capture: Path) -> dict[int, tuple[bytes, bytes]]:
    """Each captured connection's bytes: (client to server, server to client)."""
    data: dict[int, dict[Direction, bytearray]] = {}
    with read_capture(capture) as records:
        for record in records:
            if isinstance(record, DataChunk):
                both = data.setdefault(record.connection_id, {d: bytearray() for d in Direction})
                both[record.direction] += record.data
    return {
        cid: (bytes(d[Direction.CLIENT_TO_SERVER]), bytes(d[Direction.SERVER_TO_CLIENT])) for cid, d in data.items()
    }


def response_bodies(stream: bytes) -> list[bytes]:
    """The HTTP/1.1 responses of one server-to-client stream, each from its status line on."""
    return [b"HTTP/1.1 " + part for part in stream.split(b"HTTP/1.1 ")[1:]]


def batched_bodies(capture: Path, marker: bytes) -> list[int]:
    """How many ``marker``s each HTTP response that carried more than one held (a
    poll body read straight from the capture, independently of the report)."""
    return [
        count
        for _, down in streams(capture).values()
        if down.startswith(b"HTTP/")
        for body in response_bodies(down)
        if (count := body.count(marker)) > 1
    ]


def assert_app_protocol(report: dict[str, Any], protocol: str, connections: int | None = None) -> None:
    """Every connection (or the first ``connections`` that carried the protocol) says ``protocol``."""
    named = [c.get("app_protocol") for c in report["connections"] if c["transport"] != "http"]
    assert named and all(name == APP_PROTOCOL[protocol] for name in named), named
    if connections is not None:
        assert len(named) == connections


def assert_by_app_protocol(report: dict[str, Any], protocol: str, app: dict[str, int], control: dict[str, int]) -> None:
    """Each transport's ``by_app_protocol`` entry for ``protocol`` adds up to the expected counts."""
    sums = {"app_messages": by_direction(0, 0), "control_messages": by_direction(0, 0)}
    for transport in report["transports"].values():
        entry = transport["by_app_protocol"][APP_PROTOCOL[protocol]]
        assert entry["wire_bytes"] and entry["control_bytes"] >= 0
        for key, sums_of_key in sums.items():
            for direction in sums_of_key:
                sums_of_key[direction] += entry[key][direction]
    assert sums == {"app_messages": app, "control_messages": control}


# -- Socket.IO (python-socketio, Engine.IO v4)


def socketio_run(transports: list[str] | None, tmp_path: Path, confdir: Path) -> Run:
    from frameworks.socket_io import run_socketio_client, socketio_server

    with socketio_server(events=N, ping_interval=HEARTBEAT, ping_timeout=1.0) as server:
        return proxied(
            server.url,
            lambda url: run_socketio_client(url, events=N, transports=transports, acks=2, binary=True, linger=LINGER),
            lambda: server.tally,
            tmp_path / "socketio.rtcap",
            confdir,
        )


@pytest.fixture(scope="module")
def socketio_polling(tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> Run:
    return socketio_run(["polling"], tmp_path_factory.mktemp("socketio-polling"), confdir)


@pytest.fixture(scope="module")
def socketio_websocket(tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> Run:
    return socketio_run(["websocket"], tmp_path_factory.mktemp("socketio-websocket"), confdir)


@pytest.fixture(scope="module")
def socketio_upgrade(tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> Run:
    return socketio_run(None, tmp_path_factory.mktemp("socketio-upgrade"), confdir)


def socketio_app(client: Tally) -> dict[str, int]:
    """The Socket.IO run's application messages: the events each way, and the ACKs that
    carried data back to the client's callbacks."""
    return by_direction(client.sent, client.received + len(client.details["acks"]))


def socketio_control(client: Tally, *, upgraded: bool, posts: int = 0) -> dict[str, int]:
    """The Socket.IO run's control messages, from what the client's Engine.IO layer handled.

    Engine.IO ``message`` packets that are not events or ACKs with data: the
    Socket.IO CONNECT (each way) and DISCONNECT (client to server); a binary
    event's attachment travels as one more ``message`` but belongs to its
    event. Then ``open`` (taken outside the read path), pings, pongs, noops,
    closes, an upgrade's ``2probe``, ``3probe`` and ``5``, and the server's
    ``ok`` to each of the client's ``posts`` (an acknowledgement of the transport).
    """
    control = client.control
    binary = control["binary sent"], control["binary received"]
    up = control["message sent"] - client.sent - binary[0] + control["pong sent"] + control["close sent"]
    down = control["message received"] - client.received - len(client.details["acks"]) - binary[1] + 1
    down += control["ping received"] + control["noop received"] + control["close received"] + posts
    if upgraded:
        up += 2
        down += 1
    return by_direction(up, down)


def polling_posts(capture: Path) -> int:
    """The client's POSTs that sent packets over polling, read straight from the capture."""
    return sum(up.count(b"POST /socket.io/") for up, _ in streams(capture).values())


def assert_socketio_tallies(run: Run, transport: str) -> None:
    client, server = run.client, run.server
    # N events, 2 that want an ack and a binary event up; N events and the binary echo down.
    assert (client.sent, server.received) == (N + 3, N + 3)
    assert (client.received, server.sent) == (N + 1, N + 1)
    assert client.details["order"] == list(range(N))
    assert client.details["acks"] == [{"acknowledged": 0}, {"acknowledged": 1}]
    assert client.details["binary"] == bytes(reversed(b"\x00\x01binary\xff"))
    assert client.details["transport"] == transport
    assert server.control["connect"] == server.control["disconnect"] == 1
    # Heartbeats: Engine.IO v4's server pings, the client pongs each.
    assert client.control["ping received"] >= 2
    assert client.control["pong sent"] == client.control["ping received"]


def test_socketio_polling_tallies(socketio_polling: Run) -> None:
    assert_socketio_tallies(socketio_polling, "polling")
    # The server's burst of N events went out while a poll was pending: one body carried several.
    assert max(batched_bodies(socketio_polling.capture, b'42["s2c"'), default=0) >= 2


def test_socketio_websocket_tallies(socketio_websocket: Run) -> None:
    assert_socketio_tallies(socketio_websocket, "websocket")
    assert socketio_websocket.client.details["first transport"] == "websocket"


def test_socketio_upgrade_tallies(socketio_upgrade: Run) -> None:
    assert_socketio_tallies(socketio_upgrade, "websocket")
    # python-socketio's client upgrades before connect() returns, and the pending poll ended with a noop.
    assert socketio_upgrade.client.details["first transport"] == "websocket"
    assert socketio_upgrade.client.control["noop received"] == 1


def test_socketio_polling_report(socketio_polling: Run) -> None:
    report = socketio_polling.report()
    client = socketio_polling.client
    # The GETs and the POSTs of one Engine.IO session are all one long poll.
    assert set(report["transports"]) == {"long_poll"}
    long_poll = report["transports"]["long_poll"]
    assert long_poll["connections"] == len(report["connections"])
    assert long_poll["app_messages"] == socketio_app(client)
    posts = polling_posts(socketio_polling.capture)
    assert long_poll["control_messages"] == socketio_control(client, upgraded=False, posts=posts)
    assert_app_protocol(report, "socket.io")
    session = report["sessions"][APP_PROTOCOL["socket.io"]]
    assert (session["count"], session["upgraded"]) == (1, 0)
    assert session["app_messages"] == socketio_app(client)


def test_socketio_websocket_report(socketio_websocket: Run) -> None:
    report = socketio_websocket.report()
    client = socketio_websocket.client
    assert set(report["transports"]) == {"websocket"}
    websocket = report["transports"]["websocket"]
    assert websocket["app_messages"] == socketio_app(client)
    assert websocket["control_messages"] == socketio_control(client, upgraded=False)
    app = socketio_app(client)
    assert_by_app_protocol(report, "socket.io", app, socketio_control(client, upgraded=False))
    assert_app_protocol(report, "socket.io", connections=1)


def test_socketio_upgrade_report(socketio_upgrade: Run) -> None:
    report = socketio_upgrade.report()
    client = socketio_upgrade.client
    assert {"long_poll", "websocket"} <= set(report["transports"])
    # Every event went over the WebSocket: the client had upgraded before it emitted any.
    assert report["transports"]["websocket"]["app_messages"] == socketio_app(client)
    assert report["transports"]["long_poll"]["app_messages"] == by_direction(0, 0)
    posts = polling_posts(socketio_upgrade.capture)
    assert total(report, "control_messages") == socketio_control(client, upgraded=True, posts=posts)
    assert_app_protocol(report, "socket.io")
    session = report["sessions"][APP_PROTOCOL["socket.io"]]
    assert (session["count"], session["upgraded"]) == (1, 1)
    assert session["paths"] == {UPGRADE_PATH: 1}
    assert session["app_messages"] == socketio_app(client)
    assert session["control_messages"] == socketio_control(client, upgraded=True, posts=posts)
    wire = sum(sum(t["wire_bytes"].values()) for t in report["transports"].values())
    assert session["wire_bytes"] == wire
    assert 0 < session["before_upgrade_wire_bytes"] < wire


def test_a_long_poll_rule_leaves_the_socketio_websocket_a_websocket(socketio_upgrade: Run) -> None:
    """``--transport '/socket.io/*=long_poll'`` is meant for the polling requests;
    the WebSocket on the same path stays a WebSocket."""
    report = socketio_upgrade.report("--transport", "/socket.io/*=long_poll")
    client = socketio_upgrade.client
    assert {"long_poll", "websocket"} <= set(report["transports"]), report["transports"].keys()
    websocket = report["transports"]["websocket"]
    assert websocket["connections"] == 1
    assert websocket["messages"]["client_to_server"] >= client.sent
    upgrades = [c for c in report["connections"] if c["transport"] == "websocket"]
    assert len(upgrades) == 1 and any("transport=websocket" in target for target in upgrades[0]["targets"])


# -- Socket.IO over Engine.IO v3 (Node: socket.io 4 with allowEIO3, socket.io-client 2)


def socketio_v3_run(transports: list[str], tmp_path: Path, confdir: Path) -> Run:
    if reason := node_missing():
        pytest.skip(reason)
    from frameworks.socket_io_v3 import node_socketio_server, run_socketio_v2_client

    with node_socketio_server(events=N, ping_interval=HEARTBEAT, ping_timeout=1.0) as server:
        return proxied(
            server.url,
            lambda url: run_socketio_v2_client(url, events=N, transports=transports, linger=LINGER),
            server.tally,
            tmp_path / "socketio-v3.rtcap",
            confdir,
        )


@pytest.fixture(scope="module")
def socketio_v3_polling(tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> Run:
    return socketio_v3_run(["polling"], tmp_path_factory.mktemp("socketio-v3-polling"), confdir)


@pytest.fixture(scope="module")
def socketio_v3_upgrade(tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> Run:
    return socketio_v3_run(["polling", "websocket"], tmp_path_factory.mktemp("socketio-v3-upgrade"), confdir)


def socketio_v3_control(run: Run, *, upgraded: bool) -> dict[str, int]:
    """Engine.IO v3: the client pings and the server pongs; Socket.IO v4 protocol
    (socket.io-client 2) sends no CONNECT for the default namespace, the server
    does. Counted from the engine's own packet events on both sides, and the
    server's ``ok`` to each POST that sent packets (read from the capture)."""
    client, server = run.client.control, run.server.control
    up = client["ping sent"] + client["close sent"] + (client["message sent"] - run.client.sent)
    if not upgraded:
        # engine.io-client 3 writes its closing "1" on the polling transport directly, not through
        # sendPacket, so no packetCreate event counts it.
        up += 1
    down = client["open received"] + client["pong received"] + client["noop received"]
    if not upgraded:
        # The poll pending when the client closed is answered with a noop it no longer reads.
        down += (
            sum(
                body.endswith(b"\r\n\r\n1:6")
                for _, wire in streams(run.capture).values()
                for body in response_bodies(wire)
            )
            - client["noop received"]
        )
    down += client["message received"] - run.client.received
    down += polling_posts(run.capture)  # the server's "ok" to each POST
    if upgraded:
        up += 2  # 2probe, 5
        down += 1  # 3probe
    assert server["ping received"] == client["ping sent"]
    return by_direction(up, down)


def assert_socketio_v3_tallies(run: Run, transport: str) -> None:
    client, server = run.client, run.server
    assert (client.sent, server.received) == (N, N)
    assert (client.received, server.sent) == (N, N)
    assert server.details["engineio"] == [3]
    assert client.details["transport"] == transport
    assert client.control["ping sent"] >= 2
    assert client.control["pong received"] == client.control["ping sent"] == server.control["pong sent"]


def test_socketio_v3_polling_tallies(socketio_v3_polling: Run) -> None:
    assert_socketio_v3_tallies(socketio_v3_polling, "polling")
    # v3 bodies prefix each packet with its length: "48:42[...]" packets, several in one body.
    assert max(batched_bodies(socketio_v3_polling.capture, b':42["s2c"'), default=0) >= 2


def test_socketio_v3_upgrade_tallies(socketio_v3_upgrade: Run) -> None:
    assert_socketio_v3_tallies(socketio_v3_upgrade, "websocket")
    assert socketio_v3_upgrade.client.details["first_transport"] == "polling"
    assert socketio_v3_upgrade.client.details["upgraded"] == "websocket"


def test_socketio_v3_polling_report(socketio_v3_polling: Run) -> None:
    report = socketio_v3_polling.report()
    assert set(report["transports"]) == {"long_poll"}
    long_poll = report["transports"]["long_poll"]
    assert long_poll["app_messages"] == by_direction(N, N)
    assert long_poll["control_messages"] == socketio_v3_control(socketio_v3_polling, upgraded=False)
    assert_app_protocol(report, "socket.io")


def test_socketio_v3_upgrade_report(socketio_v3_upgrade: Run) -> None:
    report = socketio_v3_upgrade.report()
    assert total(report, "app_messages") == by_direction(N, N)
    assert total(report, "control_messages") == socketio_v3_control(socketio_v3_upgrade, upgraded=True)
    assert_app_protocol(report, "socket.io")
    session = report["sessions"][APP_PROTOCOL["socket.io"]]
    assert (session["count"], session["upgraded"], session["paths"]) == (1, 1, {UPGRADE_PATH: 1})
    assert session["app_messages"] == by_direction(N, N)


# -- GraphQL over WebSocket (strawberry-graphql, gql)


def graphql_run(subprotocol: str, tmp_path: Path, confdir: Path) -> Run:
    from frameworks.graphql_ws import graphql_server, run_graphql_client

    # strawberry answers a query over graphql-ws with "queries are not allowed": subscriptions only there.
    queries = 1 if subprotocol == "graphql-transport-ws" else 0
    with graphql_server(keep_alive_interval=HEARTBEAT) as server:
        return proxied(
            server.url,
            lambda url: run_graphql_client(
                url.replace("http://", "ws://") + "/graphql",
                subprotocol=subprotocol,
                items=N,
                subscriptions=2,
                queries=queries,
                ping_interval=HEARTBEAT,
                linger=LINGER,
            ),
            lambda: server.tally,
            tmp_path / "graphql.rtcap",
            confdir,
        )


@pytest.fixture(scope="module", params=["graphql-transport-ws", "graphql-ws"])
def graphql(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> Run:
    return graphql_run(request.param, tmp_path_factory.mktemp(request.param), confdir)


def graphql_control(client: Tally) -> dict[str, int]:
    """Every message the gql transport sent, and every one it received but the results."""
    sent = sum(n for name, n in client.control.items() if name.endswith(" sent"))
    received = sum(n for name, n in client.control.items() if name.endswith(" received"))
    return by_direction(sent, received - client.received)


def test_graphql_tallies(graphql: Run) -> None:
    client, server = graphql.client, graphql.server
    subprotocol = client.details["subprotocol"]
    queries = 1 if subprotocol == "graphql-transport-ws" else 0
    assert client.details["results"] == list(range(N)) * 2
    assert (client.received, server.sent) == (2 * N + queries, 2 * N + queries)
    assert (client.sent, server.received) == (0, 0)
    assert server.control["subscription"] == server.control["subscription completed"] == 2
    result = "next" if subprotocol == "graphql-transport-ws" else "data"
    assert client.control[f"{result} received"] == client.received
    assert client.control["connection_ack received"] == 1
    if subprotocol == "graphql-transport-ws":
        assert client.control["subscribe sent"] == 2 + queries
        assert client.control["complete received"] == 2 + queries
        assert client.control["ping sent"] == client.control["pong received"] >= 2
    else:
        assert client.control["start sent"] == client.control["complete received"] == 2
        assert client.control["ka received"] >= 2  # strawberry's keep-alive


def test_graphql_report(graphql: Run) -> None:
    report = graphql.report()
    client = graphql.client
    assert set(report["transports"]) == {"websocket"}
    websocket = report["transports"]["websocket"]
    assert websocket["app_messages"] == by_direction(0, client.received)
    assert websocket["control_messages"] == graphql_control(client)
    protocol = client.details["subprotocol"]
    assert_app_protocol(report, protocol, connections=1)
    assert_by_app_protocol(report, protocol, by_direction(0, client.received), graphql_control(client))


# -- MQTT over WebSocket (aedes in Node, paho-mqtt)


@pytest.fixture(scope="module")
def mqtt(tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> Run:
    if reason := node_missing():
        pytest.skip(reason)
    from frameworks.mqtt_ws import mqtt_broker, run_mqtt_client

    with mqtt_broker() as broker:
        return proxied(
            broker.url,
            lambda url: run_mqtt_client(url, qos0=N // 2, qos1=N // 2, keepalive=1, linger=2.2),
            broker.tally,
            tmp_path_factory.mktemp("mqtt") / "mqtt.rtcap",
            confdir,
        )


def mqtt_control(client: Tally) -> dict[str, int]:
    """Every MQTT packet paho logged but PUBLISH."""
    counts = client.control
    sent = sum(n for name, n in counts.items() if name.endswith(" sent") and not name.startswith("PUBLISH"))
    received = (
        sum(n for name, n in counts.items() if name.endswith(" received") and name.split()[0].isupper())
        - counts["PUBLISH received"]
    )
    return by_direction(sent, received)


def test_mqtt_tallies(mqtt: Run) -> None:
    client, broker = mqtt.client, mqtt.server
    assert (client.sent, broker.received) == (N, N)
    assert (client.received, broker.sent) == (N, N)
    assert client.control["PUBLISH sent"] == client.control["PUBLISH received"] == N
    assert client.control["qos1 message received"] == N // 2
    # QoS 1 both ways: the broker acknowledged the client's, the client the broker's.
    assert client.control["PUBACK received"] == broker.control["publish qos1 received"] == N // 2
    assert client.control["PUBACK sent"] == broker.control["puback received"] == N // 2
    # Keep-alive 1 s and 2.2 s idle: PINGREQ and PINGRESP.
    assert client.control["PINGREQ sent"] == broker.control["pingreq received"] >= 1
    assert client.control["PINGRESP received"] == client.control["PINGREQ sent"]
    assert broker.details["subprotocols"] == ["mqtt"]


def test_mqtt_report(mqtt: Run) -> None:
    report = mqtt.report()
    client = mqtt.client
    assert set(report["transports"]) == {"websocket"}
    websocket = report["transports"]["websocket"]
    # aedes writes one MQTT packet as several WebSocket messages: the report counts packets, not messages.
    assert websocket["messages"]["server_to_client"] > N + sum(mqtt_control(client).values())
    assert websocket["app_messages"] == by_direction(N, N)
    assert websocket["control_messages"] == mqtt_control(client)
    assert_app_protocol(report, "mqtt", connections=1)
    assert_by_app_protocol(report, "mqtt", by_direction(N, N), mqtt_control(client))


# -- SockJS (sockjs and sockjs-client, both in Node)

SOCKJS_TRANSPORTS = ["websocket", "xhr-streaming", "xhr-polling"]


@pytest.fixture(scope="module", params=SOCKJS_TRANSPORTS)
def sockjs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> Run:
    if reason := node_missing():
        pytest.skip(reason)
    from frameworks.sockjs_node import run_sockjs_client, sockjs_server

    with sockjs_server(events=N, heartbeat=HEARTBEAT) as server:
        origin = server.url.rsplit("/", 1)[0]
        return proxied(
            origin,
            lambda url: run_sockjs_client(url + "/sockjs", transport=request.param, events=N, linger=LINGER),
            server.tally,
            tmp_path_factory.mktemp(f"sockjs-{request.param}") / "sockjs.rtcap",
            confdir,
        )


def test_sockjs_tallies(sockjs: Run) -> None:
    client, server = sockjs.client, sockjs.server
    assert (client.sent, server.received) == (N, N)
    assert (client.received, server.sent) == (N, N)
    assert server.control["open"] == server.control["close"] == 1
    transport = client.details["transport"]
    assert server.details["protocols"] == [transport]
    if transport != "websocket":
        # The server sends "h" every 0.3 s; sockjs-client reports each one (over WebSocket it reports none).
        assert client.control["heartbeat received"] >= 2
    if transport == "xhr-polling":
        # The burst went out as one a[...] frame with several messages on the pending poll.
        assert max(batched_bodies(sockjs.capture, b'\\"index\\"'), default=0) >= 2


def test_sockjs_report(sockjs: Run) -> None:
    report = sockjs.report()
    client = sockjs.client
    assert total(report, "app_messages") == by_direction(N, N)
    assert_app_protocol(report, "sockjs")
    session = report["sessions"][APP_PROTOCOL["sockjs"]]
    assert session["count"] == 1
    assert session["app_messages"] == by_direction(N, N)
    assert total(report, "control_messages")["server_to_client"] >= 1 + client.control["heartbeat received"]


# -- STOMP 1.2 over WebSocket (RabbitMQ's Web STOMP, stomp.py)


@pytest.fixture(scope="module", autouse=True)
def rabbitmq_booting(request: pytest.FixtureRequest) -> Iterator[Future[Any] | None]:
    """A RabbitMQ node takes 10 to 20 s to boot: when a STOMP test is to run, it
    boots in the background from the module's start while the other scenarios run."""
    from frameworks.rabbitmq import rabbitmq_missing, rabbitmq_node

    wanted = any("stomp" in getattr(item, "fixturenames", ()) for item in request.session.items)
    if not wanted or rabbitmq_missing():
        yield None
        return
    with contextlib.ExitStack() as stack, ThreadPoolExecutor(1) as pool:
        yield pool.submit(stack.enter_context, rabbitmq_node())


@pytest.fixture(scope="module")
def rabbitmq(rabbitmq_booting: Future[Any] | None) -> Any:
    from frameworks.rabbitmq import START_DEADLINE, rabbitmq_missing

    if reason := rabbitmq_missing():
        assert ORACLE_MISSING in reason
        pytest.skip(reason)
    assert rabbitmq_booting is not None
    return rabbitmq_booting.result(START_DEADLINE)


@pytest.fixture(scope="module")
def stomp(rabbitmq: Any, tmp_path_factory: pytest.TempPathFactory, confdir: Path) -> Run:
    from frameworks.stomp_ws import run_stomp_client

    origin = rabbitmq.stomp_url.rsplit("/", 1)[0]
    return proxied(
        origin,
        lambda url: run_stomp_client(url + "/ws", events=N, heartbeat_ms=round(HEARTBEAT * 1000), linger=1.5),
        Tally,
        tmp_path_factory.mktemp("stomp") / "stomp.rtcap",
        confdir,
    )


def stomp_control(client: Tally) -> dict[str, int]:
    """Every frame and heart-beat stomp.py sent but SEND; every one it received but MESSAGE."""
    counts = client.control
    sent = sum(n for name, n in counts.items() if name.endswith(" sent")) - counts["SEND sent"]
    received = sum(n for name, n in counts.items() if name.endswith(" received"))
    return by_direction(sent, received)


def test_stomp_tallies(stomp: Run) -> None:
    client = stomp.client
    assert (client.sent, client.received) == (N, N)
    assert client.details["bodies"] == [f"message {i}" for i in range(N)]
    assert client.control["CONNECTED received"] == 1
    assert client.control["heart-beat received"] >= 1


def test_stomp_report(stomp: Run) -> None:
    report = stomp.report()
    client = stomp.client
    assert set(report["transports"]) == {"websocket"}
    websocket = report["transports"]["websocket"]
    assert websocket["app_messages"] == by_direction(N, N)
    assert websocket["control_messages"] == stomp_control(client)
    assert_app_protocol(report, "stomp", connections=1)
