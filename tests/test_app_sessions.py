"""Application protocols in the accounting: a Socket.IO session over Engine.IO
polling and its upgraded WebSocket, and a GraphQL subscription, as bytes.

The conversations below are what python-socketio and graphql-ws put on the
wire (the shapes in ../shared/notes/frameworks.md); the real clients and
servers are driven through the real proxy in test_frameworks.py. Here the
core's invariants are pinned on them: every byte counted once (control
messages' bytes in ``app_control``), chunking does not matter, one session
across connections, and nothing raises on mutated traffic.
"""

from __future__ import annotations

import random
import zlib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.capture import ConnectionOpened
from inspector.classify import Classifier, TransportRule
from inspector.connection import ConnectionAnalyzer, ConnectionRecord
from inspector.render.json import report_to_dict
from inspector.summary import build_report
from inspector.wire import Category, Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

SID = "Kx7bYd1PQ2ZuWuqBAAAB"
OPEN = '0{"sid":"' + SID + '","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}'


def _request(method: str, target: str, body: bytes = b"", extra: str = "") -> bytes:
    length = f"Content-Length: {len(body)}\r\nContent-Type: text/plain;charset=UTF-8\r\n" if method == "POST" else ""
    return f"{method} {target} HTTP/1.1\r\nHost: x\r\n{length}{extra}\r\n".encode() + body


def _response(body: bytes, content_type: str = "text/plain; charset=UTF-8") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def polling_conversation(events: int = 3) -> list[tuple[Direction, bytes]]:
    """The Engine.IO handshake, Socket.IO CONNECT, events both ways (batched in one
    poll body), a ping and its pong, over one keep-alive connection."""
    base = "/socket.io/?EIO=4&transport=polling"
    with_sid = f"{base}&sid={SID}"
    batch = "\x1e".join(f'42["s2c",{{"index":{i}}}]' for i in range(events))
    return [
        (C2S, _request("GET", f"{base}&t=a")),
        (S2C, _response(OPEN.encode())),
        (C2S, _request("POST", f"{with_sid}&t=b", b"40")),
        (S2C, _response(b"ok", "text/html")),
        (C2S, _request("GET", f"{with_sid}&t=c")),
        (S2C, _response(b'40{"sid":"Ab12"}')),
        *(
            step
            for i in range(events)
            for step in (
                (C2S, _request("POST", f"{with_sid}&t=d{i}", f'42["c2s",{{"index":{i}}}]'.encode())),
                (S2C, _response(b"ok", "text/html")),
            )
        ),
        (C2S, _request("GET", f"{with_sid}&t=e")),
        (S2C, _response(batch.encode())),
        (C2S, _request("GET", f"{with_sid}&t=f")),
        (S2C, _response(b"2")),
        (C2S, _request("POST", f"{with_sid}&t=g", b"3")),
        (S2C, _response(b"ok", "text/html")),
    ]


def _frame(payload: bytes, *, masked: bool, opcode: int = 0x1) -> bytes:
    assert len(payload) < 126
    if not masked:
        return bytes([0x80 | opcode, len(payload)]) + payload
    key = b"\x11\x22\x33\x44"
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def _upgrade(target: str, protocol: str | None = None) -> tuple[bytes, bytes]:
    offer = f"Sec-WebSocket-Protocol: {protocol}\r\n" if protocol else ""
    request = (
        f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    ).encode()
    answer = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n{offer}\r\n"
    ).encode()
    return request, answer


def upgraded_conversation(events: int = 3) -> list[tuple[Direction, bytes]]:
    """The same session's WebSocket: the probe, the upgrade, events both ways, a ping."""
    request, answer = _upgrade(f"/socket.io/?EIO=4&transport=websocket&sid={SID}")
    steps = [
        (C2S, request),
        (S2C, answer),
        (C2S, _frame(b"2probe", masked=True)),
        (S2C, _frame(b"3probe", masked=False)),
        (C2S, _frame(b"5", masked=True)),
    ]
    for i in range(events):
        steps.append((S2C, _frame(f'42["s2c",{{"index":{i}}}]'.encode(), masked=False)))
        steps.append((C2S, _frame(f'42["c2s",{{"index":{i}}}]'.encode(), masked=True)))
    steps += [(S2C, _frame(b"2", masked=False)), (C2S, _frame(b"3", masked=True))]
    steps.append((C2S, _frame(b"41", masked=True)))
    return steps


def graphql_conversation(items: int = 4) -> list[tuple[Direction, bytes]]:
    request, answer = _upgrade("/graphql", "graphql-transport-ws")
    steps = [
        (C2S, request),
        (S2C, answer),
        (C2S, _frame(b'{"type":"connection_init"}', masked=True)),
        (S2C, _frame(b'{"type":"connection_ack"}', masked=False)),
        (C2S, _frame(b'{"id":"1","type":"subscribe","payload":{"query":"subscription{n}"}}', masked=True)),
    ]
    for i in range(items):
        steps.append((S2C, _frame(b'{"id":"1","type":"next","payload":{"data":{"n":%d}}}' % i, masked=False)))
    steps.append((S2C, _frame(b'{"id":"1","type":"complete"}', masked=False)))
    return steps


def analyse(
    steps: list[tuple[Direction, bytes]],
    connection_id: int = 1,
    cuts: random.Random | None = None,
    classifier: Classifier | None = None,
) -> ConnectionRecord:
    opened = ConnectionOpened(connection_id, float(connection_id), "127.0.0.1:5000", "127.0.0.1:8000", "reverse")
    analyzer = ConnectionAnalyzer(opened, classifier=classifier)
    for n, (direction, data) in enumerate(steps):
        pieces = [data]
        if cuts is not None and len(data) > 1:
            points = sorted(cuts.sample(range(1, len(data)), min(len(data) - 1, cuts.randint(0, 5))))
            pieces = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
        for piece in pieces:
            analyzer.feed(direction, piece, connection_id + n / 1000)
    return analyzer.close(connection_id + 1.0, "client closed")


def _essentials(record: ConnectionRecord) -> object:
    return (
        record.app_protocol,
        record.session,
        [record.account(d).as_dict() for d in Direction],
        {
            str(key): (
                t.app_messages,
                t.control_messages,
                t.messages,
                {n: vars_of(a) for n, a in t.by_app_protocol.items()},
            )
            for key, t in record.totals.items()
        },
        [(a.direction, a.offset, a.reason) for a in record.anomalies],
    )


def vars_of(figures: object) -> tuple[object, ...]:
    return tuple(getattr(figures, name) for name in figures.__slots__)  # type: ignore[attr-defined]


def _sent(steps: list[tuple[Direction, bytes]], direction: Direction) -> int:
    return sum(len(data) for way, data in steps if way is direction)


def test_a_polling_session_counts_events_apart_from_engine_io_chatter() -> None:
    steps = polling_conversation(events=3)
    record = analyse(steps)
    assert record.app_protocol == "socket.io" and record.session == SID
    assert set(record.totals) == {"long_poll"}  # the GETs and the POSTs alike
    totals = record.totals["long_poll"]
    # Three events each way: the batched poll body counts three, and nothing else is the application's.
    assert totals.app_messages == {C2S: 3, S2C: 3}
    # Control: open, CONNECT answer, ping, and an "ok" per POST (5) from the server; CONNECT and pong from the client.
    assert totals.control_messages == {C2S: 2, S2C: 8}
    for direction in Direction:
        assert record.wire_bytes(direction) == _sent(steps, direction)
    app_control = record.account(S2C)[Category.APP_CONTROL]
    assert app_control == len(OPEN) + len(b'40{"sid":"Ab12"}') + len(b"2") + 5 * len(b"ok")


def test_the_upgraded_websocket_joins_the_session() -> None:
    polling, upgraded = analyse(polling_conversation(), 1), analyse(upgraded_conversation(), 2)
    assert upgraded.app_protocol == "socket.io" and upgraded.session == SID
    websocket = upgraded.totals["websocket"]
    assert websocket.app_messages == {C2S: 3, S2C: 3}
    assert websocket.control_messages == {C2S: 4, S2C: 2}  # 2probe, 5, pong, disconnect; 3probe, ping
    report = report_to_dict(build_report([polling, upgraded]))
    session = report["sessions"]["socket.io"]
    assert session["count"] == 1 and session["upgraded"] == 1
    assert session["paths"] == {"long_poll → websocket": 1}
    assert session["app_messages"] == {"client_to_server": 6, "server_to_client": 6}
    assert session["before_upgrade_wire_bytes"] == polling.wire_bytes(C2S) + polling.wire_bytes(S2C)
    assert [c["session"] for c in report["connections"]] == ["s1", "s1"]
    assert report["transports"]["websocket"]["by_app_protocol"]["socket.io"]["app_messages"] == {
        "client_to_server": 3,
        "server_to_client": 3,
    }


def test_a_routing_rule_never_swallows_the_upgrade() -> None:
    classifier = Classifier((TransportRule.parse("/socket.io/=long_poll"),))
    upgraded = analyse(upgraded_conversation(), 2, classifier=classifier)
    assert set(upgraded.totals) == {"websocket"}


def test_graphql_next_is_the_application_and_the_rest_control() -> None:
    record = analyse(graphql_conversation(items=4))
    assert record.app_protocol == "graphql-transport-ws"
    websocket = record.totals["websocket"]
    assert websocket.app_messages == {C2S: 0, S2C: 4}
    assert websocket.control_messages == {C2S: 2, S2C: 2}
    report = report_to_dict(build_report([record]))
    assert report["sessions"]["graphql-transport-ws"]["paths"] == {"websocket": 1}


def test_a_deflated_control_message_moves_its_wire_bytes_not_more() -> None:
    request, answer = _upgrade("/graphql", "graphql-transport-ws")
    request = request.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    answer = answer.replace(b"\r\n\r\n", b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(b'{"type":"connection_ack"}') + compressor.flush(zlib.Z_SYNC_FLUSH)
    frame = bytes([0xC1, len(body) - 4]) + body[:-4]
    record = analyse([(C2S, request), (S2C, answer), (S2C, frame)])
    account = record.account(S2C)
    assert account[Category.APP_CONTROL] == len(body) - 4 and account[Category.PAYLOAD] == 0
    assert account.total == len(answer) + len(frame)


CONVERSATIONS = {
    "polling": polling_conversation(),
    "upgraded": upgraded_conversation(),
    "graphql": graphql_conversation(),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(CONVERSATIONS)), seed=st.integers(0, 2**32))
def test_chunking_does_not_matter_and_the_parts_add_up(name: str, seed: int) -> None:
    steps = CONVERSATIONS[name]
    whole, cut = analyse(steps), analyse(steps, cuts=random.Random(seed))
    assert _essentials(cut) == _essentials(whole)
    for direction in Direction:
        assert cut.wire_bytes(direction) == _sent(steps, direction)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(CONVERSATIONS)), data=st.data())
def test_mutated_application_messages_never_raise_and_still_add_up(name: str, data: st.DataObject) -> None:
    steps = list(CONVERSATIONS[name])
    index = data.draw(st.integers(0, len(steps) - 1))
    direction, chunk = steps[index]
    position = data.draw(st.integers(0, len(chunk) - 1))
    replacement = data.draw(st.binary(min_size=0, max_size=8))
    steps[index] = (direction, chunk[:position] + replacement + chunk[position + 1 :])
    record = analyse(steps)
    for way in Direction:
        assert record.wire_bytes(way) == _sent(steps, way)
        assert all(n >= 0 for n in record.account(way).as_dict().values())


def test_a_malformed_packet_is_flagged_and_still_counted() -> None:
    steps = list(polling_conversation(events=1))
    # The batched poll body carries an event whose JSON is cut short.
    steps[-5] = (S2C, _response(b'42["s2c",{"index":'))
    record = analyse(steps)
    assert any(a.reason.startswith("socket.io: ") for a in record.anomalies), record.anomalies
    for direction in Direction:
        assert record.wire_bytes(direction) == _sent(steps, direction)


def test_the_pytest_plugin_takes_application_protocol_rules(tmp_path: Path) -> None:
    from inspector.capture import CaptureWriter, ConnectionClosed, DataChunk
    from inspector.pytest_plugin import load_report

    capture = tmp_path / "graphql.rtcap"
    writer = CaptureWriter(str(capture))
    writer.write(ConnectionOpened(1, 1.0, "127.0.0.1:5000", "127.0.0.1:8000", "reverse"))
    # A subscription whose server names no subprotocol: only a rule says what it speaks.
    for n, (direction, data) in enumerate(graphql_conversation()):
        writer.write(DataChunk(1, 1.0 + n / 100, direction, data.replace(b"graphql-transport-ws", b"x-custom")))
    writer.write(ConnectionClosed(1, 2.0, "client closed"))
    writer.close()
    assert load_report([capture]).transports["websocket"].app_messages.server_to_client == 6
    ruled = load_report([capture], app_protocols=["/graphql=graphql-transport-ws"])
    assert ruled.transports["websocket"].app_messages.server_to_client == 4
    assert ruled.sessions["graphql-transport-ws"].count == 1


def test_a_page_load_beside_a_stream_is_listed_never_ranked() -> None:
    from inspector.render.verdict import verdict

    page = [
        (C2S, _request("GET", "/")),
        (S2C, _response(b"<!doctype html><p>" + b"x" * 4000, "text/html")),
        (C2S, _request("GET", "/favicon.ico")),
        (S2C, b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"),
    ]
    events = b"".join(b"data: %d\n\n" % i for i in range(20))
    stream = [
        (C2S, _request("GET", "/events")),
        (S2C, b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"),
        (S2C, b"%x\r\n%s\r\n0\r\n\r\n" % (len(events), events)),
    ]
    report = build_report([analyse(page, 1), analyse(stream, 2)])
    assert set(report.transports) == {"sse", "http"}
    sentences = verdict(report)
    assert sentences[0].startswith("Only one transport was seen: sse")
    assert not any(s.startswith("http ") for s in sentences)
    assert sentences[-1].startswith("Plain HTTP (page loads, assets, API calls) is not ranked")
    assert "2 plain HTTP requests" in sentences[-1]
