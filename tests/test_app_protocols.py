"""Application protocols' messages: which are the application's and which the protocol's, to the byte.

Byte literals pin each protocol's rules as its specification and its common
implementations put them on the wire; hypothesis checks, for every protocol,
that sizes add up to what was fed, that how a stream or body was cut does not
change what is counted, and that nothing raises on random or mutated input.
"""

from __future__ import annotations

import base64
import itertools
import json
import struct
from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inspector.app_protocols import (
    APP_PROTOCOLS,
    BODY_LIMIT,
    FrameworkReader,
    detect,
    detect_from_first_message,
    reader_for,
    session_key,
    transport_of,
)
from inspector.app_protocols.stomp import HEAD_LIMIT
from inspector.events import FrameworkEvent, FrameworkMessage, FrameworkProblem, MessageKind, SessionId
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
EIO4_POLL = "/socket.io/?EIO=4&transport=polling&t=OvRbK2x"
EIO4_SID_POLL = "/socket.io/?EIO=4&transport=polling&t=OvRbK3a&sid=Lbo5JLzTotvW3g2LAAAA"
EIO3_POLL = "/socket.io/?EIO=3&transport=polling&t=N8hyd6w"

property_settings = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def shape(events: list[FrameworkEvent]) -> list[str]:
    """Messages as ``kind type size`` (``piece`` when not counted); problems and sessions tagged."""
    out = []
    for event in events:
        if isinstance(event, FrameworkMessage):
            out.append(f"{event.kind} {event.type} {event.size}" + ("" if event.counted else " piece"))
        elif isinstance(event, FrameworkProblem):
            out.append("problem")
        else:
            out.append(f"session {event.id}")
    return out


def sizes(events: list[FrameworkEvent]) -> int:
    return sum(event.size for event in events if isinstance(event, FrameworkMessage))


def counts(
    events: list[FrameworkEvent], *, without: frozenset[str] = frozenset()
) -> dict[tuple[MessageKind, str], int]:
    """How many messages of each kind and type were counted."""
    found: dict[tuple[MessageKind, str], int] = {}
    for event in events:
        if isinstance(event, FrameworkMessage) and event.counted and event.type not in without:
            found[event.kind, event.type] = found.get((event.kind, event.type), 0) + 1
    return found


def ws(reader: FrameworkReader, direction: Direction, data: bytes, text: bool = True) -> list[str]:
    events = reader.websocket_message(direction, data, text)
    assert sizes(events) == len(data)
    return shape(events)


def body(
    reader: FrameworkReader, direction: Direction, data: bytes, method: str = "GET", target: str = "", chunks: int = 1
) -> list[FrameworkEvent]:
    reader.start_body(direction, method, target)
    step = max(1, -(-len(data) // chunks))
    events: list[FrameworkEvent] = []
    for start in range(0, len(data), step):
        events += reader.body_data(direction, data[start : start + step])
    events += reader.body_end(direction)
    assert sizes(events) == len(data)
    return events


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# -- Socket.IO over Engine.IO ------------------------------------------------


def test_engine_io_v4_handshake_poll_names_the_session_and_is_control() -> None:
    reader = reader_for("socket.io", target=EIO4_POLL)
    handshake = b'0{"sid":"Lbo5JLzTotvW3g2LAAAA","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
    assert shape(body(reader, S2C, handshake, "GET", EIO4_POLL)) == [
        "session Lbo5JLzTotvW3g2LAAAA",
        f"control open {len(handshake)}",
    ]


def test_engine_io_v4_poll_body_joins_packets_with_a_record_separator_that_goes_with_the_packet_before() -> None:
    reader = reader_for("socket.io", target=EIO4_SID_POLL)
    poll = b'40{"sid":"wZX3oN0bSVIhsaknAAAI"}\x1e42["chat","hi"]\x1e2'
    assert shape(body(reader, S2C, poll, "GET", EIO4_SID_POLL)) == [
        "control CONNECT 33",
        "application EVENT 16",
        "control ping 1",
    ]


def test_engine_io_polling_post_is_read_and_its_ok_answer_is_control() -> None:
    reader = reader_for("socket.io", target=EIO4_SID_POLL)
    sent = b'42["chat","one"]\x1e421["chat","two"]'
    assert shape(body(reader, C2S, sent, "POST", EIO4_SID_POLL)) == ["application EVENT 17", "application EVENT 17"]
    assert shape(body(reader, S2C, b"ok", "POST", EIO4_SID_POLL)) == ["control ok 2"]
    # Told nothing, a server's "ok" is still the answer to a POST.
    assert shape(body(reader, S2C, b"ok")) == ["control ok 2"]
    assert shape(body(reader, S2C, b"nope", "POST", EIO4_SID_POLL)) == ["problem", "control malformed 4"]


def test_engine_io_upgrade_probe_and_noop_are_control() -> None:
    reader = reader_for("socket.io", target="/socket.io/?EIO=4&transport=websocket&sid=Lbo5JLzTotvW3g2LAAAA")
    assert ws(reader, C2S, b"2probe") == ["control ping 6"]
    assert ws(reader, S2C, b"3probe") == ["control pong 6"]
    assert ws(reader, C2S, b"5") == ["control upgrade 1"]
    assert shape(body(reader, S2C, b"6", "GET", EIO4_SID_POLL)) == ["control noop 1"]
    assert ws(reader, S2C, b"2") == ["control ping 1"]
    assert ws(reader, C2S, b"3") == ["control pong 1"]
    assert ws(reader, S2C, b"1") == ["control close 1"]


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        (b"40", "control CONNECT"),
        (b'40/admin,{"token":"123"}', "control CONNECT"),
        (b'44{"message":"Not authorized"}', "control CONNECT_ERROR"),
        (b"41", "control DISCONNECT"),
        (b"41/admin,", "control DISCONNECT"),
        (b'42["chat","hello"]', "application EVENT"),
        (b'42/admin,["chat","hello"]', "application EVENT"),
        (b'4213["chat","hello"]', "application EVENT"),
        (b'42/admin,13["chat","hello"]', "application EVENT"),
        (b'4313["ok"]', "application ACK"),
        (b"4313[]", "control ACK"),
        (b'42["only-a-name"]', "application EVENT"),
        (b"42[]", "problem|control malformed"),
        (b"42{", "problem|control malformed"),
        (b"47[]", "problem|control malformed"),
        (b"x", "problem|control malformed"),
        (b"", "problem|control malformed"),
    ],
)
def test_socket_io_packets_in_engine_io_messages(packet: bytes, expected: str) -> None:
    reader = reader_for("socket.io", target="/socket.io/?EIO=4&transport=websocket")
    assert ws(reader, C2S, packet) == [
        f"{part} {len(packet)}" if part != "problem" else part for part in expected.split("|")
    ]


def test_binary_event_attachments_are_pieces_of_the_event_over_websocket() -> None:
    reader = reader_for("socket.io", target="/socket.io/?EIO=4&transport=websocket")
    event = b'452-["upload",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]'
    assert ws(reader, C2S, event) == [f"application BINARY_EVENT {len(event)}"]
    assert ws(reader, C2S, b"\x01\x02\x03", text=False) == ["application BINARY_EVENT 3 piece"]
    assert ws(reader, S2C, b"2") == ["control ping 1"]  # the other direction does not interfere
    assert ws(reader, C2S, b"3") == ["control pong 1"]  # nor does a keep-alive
    assert ws(reader, C2S, b"\x04", text=False) == ["application BINARY_EVENT 1 piece"]
    # A third attachment nothing announced.
    assert ws(reader, C2S, b"\x05", text=False) == ["problem", "control malformed 1"]
    ack = b'461-/admin,7[{"_placeholder":true,"num":0}]'
    assert ws(reader, S2C, ack) == [f"application BINARY_ACK {len(ack)}"]
    assert ws(reader, S2C, b'42["x"]') == ["problem", "application EVENT 7"]


def test_binary_event_attachments_travel_base64_in_v4_polls() -> None:
    reader = reader_for("socket.io", target=EIO4_SID_POLL)
    attachment = b"b" + base64.b64encode(b"\x00\x01\x02")
    poll = b'451-["upload",{"_placeholder":true,"num":0}]\x1e' + attachment
    assert shape(body(reader, C2S, poll, "POST", EIO4_SID_POLL)) == [
        "application BINARY_EVENT 45",
        f"application BINARY_EVENT {len(attachment)} piece",
    ]


def v3_payload(*packets: str) -> bytes:
    """Engine.IO v3's string payload: each packet after its length in UTF-16 code units."""
    return "".join(f"{len(p.encode('utf-16-le')) // 2}:{p}" for p in packets).encode()


def test_engine_io_v3_poll_prefixes_each_packet_with_its_length_in_utf16_code_units() -> None:
    reader = reader_for("socket.io", target=EIO3_POLL)
    open_packet = '0{"sid":"x7Yg1dwlN3oPmQ5DAAAA","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":5000}'
    event = '42["chat","caf\u00e9 \U0001f600"]'
    payload = v3_payload(open_packet, "40", event)
    assert shape(body(reader, S2C, payload, "GET", EIO3_POLL)) == [
        "session x7Yg1dwlN3oPmQ5DAAAA",
        f"control open {len(open_packet) + 3}",
        "control CONNECT 4",
        f"application EVENT {len(event.encode()) + 3}",
    ]
    # v3's client pings and the server pongs; the classification is the same.
    assert shape(body(reader, C2S, b"1:2", "POST", EIO3_POLL)) == ["control ping 3"]
    assert shape(body(reader, S2C, b"ok", "POST", EIO3_POLL)) == ["control ok 2"]


def test_engine_io_v3_is_recognised_by_shape_without_a_version() -> None:
    reader = reader_for("socket.io")
    assert shape(body(reader, S2C, v3_payload("40", '42["a"]'))) == ["control CONNECT 4", "application EVENT 9"]
    assert shape(body(reader, S2C, b'40\x1e42["a"]')) == ["control CONNECT 3", "application EVENT 7"]


def test_engine_io_v3_binary_payload_and_base64_attachment() -> None:
    reader = reader_for("socket.io", target=EIO3_POLL)
    event = b'451-["upload",{"_placeholder":true,"num":0}]'
    binary = bytes([0, *map(int, str(len(event))), 255]) + event + bytes([1, 4, 255]) + b"\x04\x01\x02\x03"
    assert shape(body(reader, C2S, binary, "POST", EIO3_POLL)) == [
        f"application BINARY_EVENT {len(event) + 4}",
        "application BINARY_EVENT 7 piece",
    ]
    attachment = "b4" + base64.b64encode(b"\x01\x02").decode()
    payload = v3_payload(event.decode(), attachment)
    assert shape(body(reader, S2C, payload, "GET", EIO3_POLL)) == [
        f"application BINARY_EVENT {len(event) + 3}",
        f"application BINARY_EVENT {len(attachment) + 2} piece",
    ]


def test_engine_io_problems_say_which_packet() -> None:
    reader = reader_for("socket.io", target=EIO4_SID_POLL)
    events = body(reader, S2C, b'42["a"]\x1e2\x1ex', "GET", EIO4_SID_POLL)
    assert [e.reason for e in events if isinstance(e, FrameworkProblem)] == [
        "Engine.IO packet 3 of a poll body: unknown packet type b'x'"
    ]
    assert shape(body(reader, S2C, b"5:40", "GET", EIO3_POLL)) == ["control CONNECT 4"]
    assert shape(body(reader, S2C, b"2:40x", "GET", EIO3_POLL)) == [
        "control CONNECT 4",
        "problem",
        "control malformed 1",
    ]


def test_seen_here_a_hundred_events_each_way_and_their_connects() -> None:
    """As frameworks.md records: 100 events each way, the CONNECT and its answer, and the DISCONNECT."""
    reader = reader_for("socket.io", target="/socket.io/?EIO=4&transport=websocket&sid=A")
    events: list[FrameworkEvent] = []
    events += reader.websocket_message(C2S, b"40", True)
    events += reader.websocket_message(S2C, b'40{"sid":"B"}', True)
    for n in range(100):
        events += reader.websocket_message(C2S, f'42["ping",{n}]'.encode(), True)
        events += reader.websocket_message(S2C, f'42["pong",{n}]'.encode(), True)
    events += reader.websocket_message(C2S, b"41", True)
    received = [e for e in events if isinstance(e, FrameworkMessage) and e.direction is S2C]
    sent = [e for e in events if isinstance(e, FrameworkMessage) and e.direction is C2S]
    assert (len(received), len(sent)) == (101, 102)
    assert sum(e.kind is MessageKind.APPLICATION for e in received + sent) == 200


# -- GraphQL over WebSocket --------------------------------------------------


def test_graphql_transport_ws_next_is_the_application_s() -> None:
    reader = reader_for("graphql-transport-ws")
    messages = [
        (C2S, '{"type":"connection_init","payload":{}}', "control connection_init"),
        (S2C, '{"type":"connection_ack"}', "control connection_ack"),
        (C2S, '{"id":"1","type":"subscribe","payload":{"query":"subscription { greetings }"}}', "control subscribe"),
        (S2C, '{"id":"1","type":"next","payload":{"data":{"greetings":"Hi"}}}', "application next"),
        (S2C, '{"type":"ping"}', "control ping"),
        (C2S, '{"type":"pong"}', "control pong"),
        (S2C, '{"id":"1","type":"error","payload":[{"message":"no"}]}', "control error"),
        (S2C, '{"id":"1","type":"complete"}', "control complete"),
    ]
    for direction, text, expected in messages:
        assert ws(reader, direction, text.encode()) == [f"{expected} {len(text)}"]
    assert ws(reader, S2C, b'{"type":"data"}') == ["problem", "control data 15"]
    assert ws(reader, S2C, b"not json") == ["problem", "control malformed 8"]
    assert ws(reader, S2C, b'{"id":"1"}') == ["problem", "control malformed 10"]


def test_graphql_ws_data_is_the_application_s() -> None:
    reader = reader_for("graphql-ws")
    messages = [
        (C2S, '{"type":"connection_init","payload":{}}', "control connection_init"),
        (S2C, '{"type":"connection_ack"}', "control connection_ack"),
        (S2C, '{"type":"ka"}', "control ka"),
        (C2S, '{"id":"1","type":"start","payload":{"query":"subscription { x }"}}', "control start"),
        (S2C, '{"id":"1","type":"data","payload":{"data":{"x":1}}}', "application data"),
        (C2S, '{"id":"1","type":"stop"}', "control stop"),
        (S2C, '{"id":"1","type":"complete"}', "control complete"),
        (C2S, '{"type":"connection_terminate"}', "control connection_terminate"),
    ]
    for direction, text, expected in messages:
        assert ws(reader, direction, text.encode()) == [f"{expected} {len(text)}"]
    assert ws(reader, S2C, b'{"type":"next"}') == ["problem", "control next 15"]


# -- SockJS ------------------------------------------------------------------


def test_sockjs_websocket_frames_and_client_arrays() -> None:
    reader = reader_for("sockjs")
    assert ws(reader, S2C, b"o") == ["control open 1"]
    assert ws(reader, S2C, b"h") == ["control heartbeat 1"]
    # One frame, three messages: the first takes "a[", later ones their comma, the last the "]".
    assert ws(reader, S2C, b'a["one","two","three"]') == [
        "application message 7",
        "application message 6",
        "application message 9",
    ]
    assert ws(reader, S2C, b'c[3000,"Go away!"]') == ["control close 18"]
    assert ws(reader, C2S, b'["hello","again"]') == ["application message 8", "application message 9"]
    assert ws(reader, C2S, b'"bare"') == ["application message 6"]
    assert ws(reader, C2S, b"[]") == ["control empty 2"]
    assert ws(reader, S2C, b"a[") == ["problem", "control malformed 2"]
    assert ws(reader, S2C, b"x") == ["problem", "control malformed 1"]


def test_sockjs_xhr_streaming_prelude_and_newline_ended_frames() -> None:
    reader = reader_for("sockjs")
    target = "/echo/123/abcdefgh/xhr_streaming?t=1700000000000"
    stream = b"h" * 2048 + b'\no\na["x"]\na["y","z"]\nh\n'
    expected = [
        "control prelude 2049",
        "control open 2",
        "application message 7",
        "application message 5",
        "application message 6",
        "control heartbeat 2",
    ]
    assert shape(body(reader, S2C, stream, "POST", target)) == expected
    assert shape(body(reader, S2C, stream, "POST", target, chunks=len(stream))) == expected


def test_sockjs_xhr_polling_and_xhr_send() -> None:
    reader = reader_for("sockjs")
    assert shape(body(reader, S2C, b"o\n", "POST", "/echo/123/abcdefgh/xhr")) == ["control open 2"]
    sent = b'["a","b"]'
    assert shape(body(reader, C2S, sent, "POST", "/echo/123/abcdefgh/xhr_send")) == [
        "application message 4",
        "application message 5",
    ]
    # The 204 that answers it has no body.
    assert shape(body(reader, S2C, b"", "POST", "/echo/123/abcdefgh/xhr_send")) == []


def test_sockjs_jsonp_send_form_gives_each_message_its_encoded_share() -> None:
    reader = reader_for("sockjs")
    form = b"d=" + quote_plus('["a b","caf\u00e9"]').encode()
    assert form == b"d=%5B%22a+b%22%2C%22caf%C3%A9%22%5D"
    events = body(reader, C2S, form, "POST", "/echo/123/abcdefgh/jsonp_send")
    assert shape(events) == ["application message 14", "application message 21"]
    assert shape(body(reader, S2C, b"ok", "POST", "/echo/123/abcdefgh/jsonp_send")) == ["control ok 2"]
    assert shape(body(reader, C2S, b"d=%5B%5D", "POST", "/echo/123/abcdefgh/jsonp_send")) == ["control empty 8"]


def test_sockjs_eventsource_prelude_and_data_events() -> None:
    reader = reader_for("sockjs")
    stream = b'\r\ndata: o\r\n\r\ndata: a["x","y"]\r\n\r\ndata: h\r\n\r\n'
    expected = [
        "control prelude 2",
        "control open 11",
        "application message 11",
        "application message 9",
        "control heartbeat 11",
    ]
    target = "/echo/123/abcdefgh/eventsource"
    for chunks in (1, 3, len(stream)):
        assert shape(body(reader, S2C, stream, "GET", target, chunks=chunks)) == expected


def test_sockjs_info_and_unread_transports() -> None:
    reader = reader_for("sockjs")
    info = b'{"websocket":true,"origins":["*:*"],"cookie_needed":false,"entropy":3173151154}'
    assert shape(body(reader, S2C, info, "GET", "/echo/info?t=1700000000000")) == [f"control info {len(info)}"]
    assert shape(body(reader, S2C, b'cb("o");\r\n', "GET", "/echo/123/abcdefgh/jsonp?c=cb")) == [
        "problem",
        "control unparsed 10",
    ]


def test_sockjs_frame_longer_than_the_limit_makes_the_rest_of_the_body_unparsed() -> None:
    reader = reader_for("sockjs")
    stream = b"o\n" + b'a["' + b"x" * BODY_LIMIT + b'"]\n' + b"h\n"
    events = body(reader, S2C, stream, "POST", "/echo/1/s/xhr_streaming", chunks=7)
    assert shape(events) == ["control open 2", "problem", f"control unparsed {len(stream) - 2}"]


# -- STOMP -------------------------------------------------------------------


def test_stomp_frames_heart_beats_and_trailing_end_of_lines() -> None:
    reader = reader_for("stomp")
    connect = b"CONNECT\naccept-version:1.2\nhost:/\nheart-beat:10000,10000\n\n\x00"
    assert ws(reader, C2S, connect) == [f"control CONNECT {len(connect)}"]
    connected = b"CONNECTED\nversion:1.2\nheart-beat:10000,10000\n\n\x00\n"
    assert ws(reader, S2C, connected) == [f"control CONNECTED {len(connected)}"]
    subscribe = b"SUBSCRIBE\nid:sub-0\ndestination:/topic/chat\n\n\x00"
    send = b"SEND\ndestination:/topic/chat\ncontent-type:text/plain\n\nhello\x00"
    assert ws(reader, C2S, subscribe + send) == [f"control SUBSCRIBE {len(subscribe)}", f"application SEND {len(send)}"]
    assert ws(reader, C2S, b"\n") == ["control heartbeat 1"]
    assert ws(reader, S2C, b"\r\n") == ["control heartbeat 2"]
    message = b"MESSAGE\r\nsubscription:sub-0\r\nmessage-id:1\r\ndestination:/topic/chat\r\n\r\nhello\x00\r\n\r\n"
    assert ws(reader, S2C, message + b"RECEIPT\nreceipt-id:7\n\n\x00") == [
        f"application MESSAGE {len(message)}",
        "control RECEIPT 23",
    ]


def test_stomp_content_length_bodies_may_hold_nul() -> None:
    reader = reader_for("stomp")
    frame = b"MESSAGE\ndestination:/q\ncontent-length:5\ncontent-length:1\n\na\x00b\x00c\x00"
    assert ws(reader, S2C, frame) == [f"application MESSAGE {len(frame)}"]
    short = b"SEND\ncontent-length:2\n\nabc\x00"
    assert ws(reader, C2S, short) == ["problem", f"application SEND {len(short)}"]


def test_stomp_frame_spanning_websocket_messages_is_counted_once() -> None:
    reader = reader_for("stomp")
    assert ws(reader, C2S, b"SE") == ["control partial 2 piece"]
    assert ws(reader, C2S, b"ND\ndestination:/q\n") == ["application SEND 18"]
    assert ws(reader, C2S, b"\nhello") == ["application SEND 6 piece"]
    assert ws(reader, C2S, b"\x00") == ["application SEND 1 piece"]
    # A line end in a message of its own, after the frame ended, is a heart-beat.
    assert ws(reader, C2S, b"\n") == ["control heartbeat 1"]


def test_stomp_unknown_command_is_malformed_up_to_its_nul() -> None:
    reader = reader_for("stomp")
    assert ws(reader, S2C, b"HELLO\n\nbody\x00MESSAGE\n\n\x00") == [
        "problem",
        "control malformed 12",
        "application MESSAGE 10",
    ]
    assert ws(reader, S2C, b"junk\x00") == ["problem", "control malformed 5"]


def test_stomp_headers_longer_than_the_limit_are_a_problem_and_the_frame_still_counts() -> None:
    reader = reader_for("stomp")
    frame = b"SEND\nx-long:" + b"y" * HEAD_LIMIT + b"\n\nbody\x00"
    assert ws(reader, C2S, frame) == ["problem", f"application SEND {len(frame)}"]
    assert ws(reader, C2S, b"SEND\n\n\x00") == ["application SEND 7"]


# -- MQTT --------------------------------------------------------------------


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + remaining_length(len(body)) + body


def publish(topic: bytes, payload: bytes, packet_id: int | None = None) -> bytes:
    qos = 0 if packet_id is None else 1
    variable = struct.pack("!H", len(topic)) + topic + (b"" if packet_id is None else struct.pack("!H", packet_id))
    return mqtt_packet(0x30 | qos << 1, variable + payload)


MQTT_CONNECT = mqtt_packet(0x10, b"\x00\x04MQTT\x04\x02\x00\x3c\x00\x06client")
MQTT_CONNACK = b"\x20\x02\x00\x00"
MQTT_SUBSCRIBE = mqtt_packet(0x82, b"\x00\x01\x00\x05hello\x00")
MQTT_SUBACK = b"\x90\x03\x00\x01\x00"
MQTT_PUBACK = b"\x40\x02\x00\x07"
MQTT_PINGREQ = b"\xc0\x00"
MQTT_PINGRESP = b"\xd0\x00"
MQTT_DISCONNECT = b"\xe0\x00"


def test_mqtt_publish_is_the_application_s_and_the_rest_control() -> None:
    reader = reader_for("mqtt")
    assert ws(reader, C2S, MQTT_CONNECT, text=False) == [f"control CONNECT {len(MQTT_CONNECT)}"]
    assert ws(reader, S2C, MQTT_CONNACK, text=False) == ["control CONNACK 4"]
    assert ws(reader, C2S, MQTT_SUBSCRIBE, text=False) == [f"control SUBSCRIBE {len(MQTT_SUBSCRIBE)}"]
    assert ws(reader, S2C, MQTT_SUBACK, text=False) == ["control SUBACK 5"]
    big = publish(b"hello", b"x" * 300, packet_id=7)  # a two-byte Remaining Length
    assert ws(reader, S2C, big + MQTT_PINGRESP, text=False) == [f"application PUBLISH {len(big)}", "control PINGRESP 2"]
    assert ws(reader, C2S, MQTT_PUBACK + MQTT_PINGREQ + MQTT_DISCONNECT, text=False) == [
        "control PUBACK 4",
        "control PINGREQ 2",
        "control DISCONNECT 2",
    ]


def test_mqtt_packet_spanning_websocket_messages_is_counted_where_it_starts() -> None:
    reader = reader_for("mqtt")
    packet = publish(b"t", b"y" * 200)
    assert ws(reader, S2C, packet[:1], text=False) == ["application PUBLISH 1"]
    assert ws(reader, S2C, packet[1:2], text=False) == ["application PUBLISH 1 piece"]
    assert ws(reader, S2C, packet[2:100], text=False) == ["application PUBLISH 98 piece"]
    assert ws(reader, S2C, packet[100:] + MQTT_PINGRESP[:1], text=False) == [
        f"application PUBLISH {len(packet) - 100} piece",
        "control PINGRESP 1",
    ]
    assert ws(reader, S2C, MQTT_PINGRESP[1:], text=False) == ["control PINGRESP 1 piece"]


def test_mqtt_reserved_type_and_overlong_length_leave_the_rest_malformed() -> None:
    reader = reader_for("mqtt")
    assert ws(reader, C2S, b"\x00\x01\x02", text=False) == ["problem", "control malformed 3"]
    assert ws(reader, C2S, MQTT_PINGREQ, text=False) == ["control malformed 2 piece"]
    reader = reader_for("mqtt")
    assert ws(reader, S2C, b"\x30\xff\xff\xff\xff\x01abc", text=False) == [
        "application PUBLISH 5",
        "problem",
        "control malformed 4",
    ]


# -- SignalR -----------------------------------------------------------------


def test_signalr_handshake_and_records() -> None:
    reader = reader_for("signalr")
    assert ws(reader, C2S, b'{"protocol":"json","version":1}\x1e') == ["control handshake 32"]
    assert ws(reader, S2C, b"{}\x1e") == ["control handshake 3"]
    invocation = b'{"type":1,"target":"ReceiveMessage","arguments":["ann","hi"]}\x1e'
    ping = b'{"type":6}\x1e'
    assert ws(reader, S2C, invocation + ping) == [f"application Invocation {len(invocation)}", "control Ping 11"]
    records = [
        (b'{"type":1,"invocationId":"0","target":"Send","arguments":["hi"]}\x1e', "application Invocation"),
        (b'{"type":4,"invocationId":"1","target":"Counter","arguments":[10]}\x1e', "application StreamInvocation"),
        (b'{"type":5,"invocationId":"1"}\x1e', "control CancelInvocation"),
    ]
    for record, expected in records:
        assert ws(reader, C2S, record) == [f"{expected} {len(record)}"]
    records = [
        (b'{"type":2,"invocationId":"1","item":3}\x1e', "application StreamItem"),
        (b'{"type":3,"invocationId":"0","result":42}\x1e', "application Completion"),
        (b'{"type":3,"invocationId":"0"}\x1e', "control Completion"),
        (b'{"type":3,"invocationId":"0","error":"boom"}\x1e', "control Completion"),
        (b'{"type":7,"error":"bye","allowReconnect":false}\x1e', "control Close"),
    ]
    for record, expected in records:
        assert ws(reader, S2C, record) == [f"{expected} {len(record)}"]
    assert ws(reader, S2C, b'{"type":6}') == ["problem", "control malformed 10"]
    assert ws(reader, S2C, b'{"type":99}\x1e') == ["problem", "control malformed 12"]
    assert ws(reader, S2C, b"\x91\x06", text=False) == ["problem", "control malformed 2"]


def test_signalr_negotiate_names_the_session_and_long_polls_carry_records() -> None:
    reader = reader_for("signalr")
    answer = b'{"negotiateVersion":1,"connectionId":"abc","connectionToken":"tok123","availableTransports":[]}'
    events = body(reader, S2C, answer, "POST", "/chathub/negotiate?negotiateVersion=1")
    assert shape(events) == ["session tok123", f"control negotiate {len(answer)}"]
    assert session_key("signalr", "GET", "/chathub?id=tok123&_=1700000000000") == "tok123"
    sent = b'{"protocol":"json","version":1}\x1e'
    assert shape(body(reader, C2S, sent, "POST", "/chathub?id=tok123")) == ["control handshake 32"]
    poll = b'{}\x1e{"type":1,"target":"m","arguments":[]}\x1e'
    assert shape(body(reader, S2C, poll, "GET", "/chathub?id=tok123")) == [
        "control handshake 3",
        "application Invocation 39",
    ]


def test_signalr_over_server_sent_events() -> None:
    reader = reader_for("signalr")
    stream = b':\r\ndata: {}\x1e\r\n\r\ndata: {"type":6}\x1e{"type":1,"target":"m","arguments":[]}\x1e\r\n\r\n'
    assert shape(body(reader, S2C, stream, "GET", "/chathub?id=tok123", chunks=5)) == [
        "control comment 3",
        "control handshake 13",
        "control Ping 17",
        "application Invocation 43",
    ]


def test_signalr_event_stream_is_read_as_it_arrives_not_held() -> None:
    reader = reader_for("signalr")
    reader.start_body(S2C, "GET", "/chathub?id=tok123")
    event = b'data: {"type":1,"target":"tick","arguments":[' + b"1," * 500 + b"1]}\x1e\r\n\r\n"
    assert shape(reader.body_data(S2C, b":\r\ndata: {}\x1e\r\n")) == []
    assert shape(reader.body_data(S2C, b"\r\n")) == ["control comment 3", "control handshake 13"]
    seen = 0
    for _ in range(2 * BODY_LIMIT // len(event)):
        seen += len(reader.body_data(S2C, event))
    assert seen == 2 * BODY_LIMIT // len(event)
    assert shape(reader.body_end(S2C)) == []


def test_signalr_problems_say_which_record() -> None:
    reader = reader_for("signalr")
    events = reader.websocket_message(S2C, b'{"type":6}\x1e{"type":6}\x1e{"type":', True)
    assert [e.reason for e in events if isinstance(e, FrameworkProblem)] == [
        "SignalR record 3 of a WebSocket message: no \\x1e ends it"
    ]
    events = body(reader, S2C, b'{"type":6}\x1enope\x1e', "GET", "/chathub?id=t")
    assert [e.reason for e in events if isinstance(e, FrameworkProblem)] == ["SignalR record 2 of a body: not JSON"]


# -- Phoenix channels --------------------------------------------------------


def test_phoenix_v2_channel_machinery_is_control() -> None:
    reader = reader_for("phoenix")
    messages = [
        (C2S, '["3","3","room:lobby","phx_join",{}]', "control phx_join"),
        (S2C, '["3","3","room:lobby","phx_reply",{"status":"ok","response":{}}]', "control phx_reply"),
        (C2S, '[null,"4","phoenix","heartbeat",{}]', "control heartbeat"),
        (S2C, '[null,"4","phoenix","phx_reply",{"status":"ok","response":{}}]', "control phx_reply"),
        (C2S, '["3","5","room:lobby","new_msg",{"body":"hi"}]', "application new_msg"),
        (S2C, '[null,null,"room:lobby","new_msg",{"body":"hi"}]', "application new_msg"),
        (S2C, '["3","3","room:lobby","phx_error",{}]', "control phx_error"),
        (S2C, '["3","3","room:lobby","phx_close",{}]', "control phx_close"),
        (C2S, '["3","6","room:lobby","phx_leave",{}]', "control phx_leave"),
        (S2C, '{"topic":"room:lobby","event":"new_msg","payload":{},"ref":null}', "application new_msg"),
    ]
    for direction, text, expected in messages:
        assert ws(reader, direction, text.encode()) == [f"{expected} {len(text)}"]
    assert ws(reader, S2C, b'["3","3","room:lobby"]') == ["problem", "control malformed 22"]


def test_phoenix_v2_binary_messages() -> None:
    reader = reader_for("phoenix")
    push = bytes([0, 1, 1, 10, 6]) + b"3" + b"7" + b"room:lobby" + b"upload" + b"\x00\x01"
    assert ws(reader, C2S, push, text=False) == [f"application upload {len(push)}"]
    server_push = bytes([0, 1, 10, 4]) + b"3" + b"room:lobby" + b"tick" + b"\x07"  # no ref
    assert ws(reader, S2C, server_push, text=False) == [f"application tick {len(server_push)}"]
    broadcast = bytes([2, 10, 4]) + b"room:lobby" + b"blob" + b"\xff"
    assert ws(reader, S2C, broadcast, text=False) == [f"application blob {len(broadcast)}"]
    reply = bytes([1, 1, 1, 10, 2]) + b"37room:lobbyok\x00"
    assert ws(reader, S2C, reply, text=False) == [f"control phx_reply {len(reply)}"]
    assert ws(reader, S2C, bytes([2, 10, 40]) + b"x", text=False) == ["problem", "control malformed 4"]


# -- Action Cable ------------------------------------------------------------


def test_action_cable_broadcasts_and_message_commands_are_the_application_s() -> None:
    reader = reader_for("actioncable")
    identifier = json.dumps({"channel": "ChatChannel", "room": "lobby"})
    messages = [
        (S2C, {"type": "welcome"}, "control welcome"),
        (S2C, {"type": "ping", "message": 1700000000}, "control ping"),
        (C2S, {"command": "subscribe", "identifier": identifier}, "control subscribe"),
        (S2C, {"identifier": identifier, "type": "confirm_subscription"}, "control confirm_subscription"),
        (S2C, {"identifier": identifier, "type": "reject_subscription"}, "control reject_subscription"),
        (S2C, {"identifier": identifier, "message": {"body": "hi"}}, "application message"),
        (C2S, {"command": "message", "identifier": identifier, "data": '{"action":"speak"}'}, "application message"),
        (C2S, {"command": "unsubscribe", "identifier": identifier}, "control unsubscribe"),
        (S2C, {"type": "disconnect", "reason": "server_restart", "reconnect": True}, "control disconnect"),
    ]
    for direction, message, expected in messages:
        data = json.dumps(message).encode()
        assert ws(reader, direction, data) == [f"{expected} {len(data)}"]
    assert ws(reader, S2C, b'{"type":"surprise"}') == ["problem", "control surprise 19"]
    assert ws(reader, C2S, b"[]") == ["problem", "control malformed 2"]


# -- Detection, sessions and transports --------------------------------------


@pytest.mark.parametrize(
    ("method", "target", "subprotocol", "expected"),
    [
        ("GET", "/graphql", "graphql-transport-ws", "graphql-transport-ws"),
        ("GET", "/graphql", "graphql-ws", "graphql-ws"),
        ("GET", "/ws", "v12.stomp", "stomp"),
        ("GET", "/ws", "v10.stomp", "stomp"),
        ("GET", "/mqtt", "mqtt", "mqtt"),
        ("GET", "/mqtt", "mqttv3.1", "mqtt"),
        ("GET", "/cable", "actioncable-v1-json", "actioncable"),
        ("GET", "/cable", "actioncable-unsupported", "actioncable"),
        ("GET", EIO4_POLL, None, "socket.io"),
        ("POST", EIO4_SID_POLL, None, "socket.io"),
        ("GET", "/socket.io/?EIO=4&transport=websocket&sid=x", None, "socket.io"),
        ("GET", EIO3_POLL, None, "socket.io"),
        ("GET", "/echo/info?t=1700000000000", None, "sockjs"),
        ("GET", "/echo/123/abcdefgh/websocket", None, "sockjs"),
        ("POST", "/echo/123/abcdefgh/xhr_streaming?t=1", None, "sockjs"),
        ("POST", "/echo/7/0d9d2bf1-2b4f-4a8c/xhr_send", None, "sockjs"),
        ("GET", "/socket/websocket?token=abc&vsn=2.0.0", None, "phoenix"),
        ("POST", "/chathub/negotiate?negotiateVersion=1", None, "signalr"),
        # Plain ones stay plain.
        ("GET", "/ws", None, None),
        ("GET", "/ws", "chat", None),
        ("GET", "/poll?since=3", None, None),
        ("GET", "/api/info", None, None),
        ("GET", "/api/v1/items/websocket", None, None),
        ("GET", "/api/users/12/xhr", None, None),
        ("GET", "/socket.io/?EIO=5", None, None),
        ("GET", "/chathub?id=abc", None, None),
        ("GET", "/socket/websocket", None, None),
    ],
)
def test_detect(method: str, target: str, subprotocol: str | None, expected: str | None) -> None:
    response = (("sec-websocket-protocol", subprotocol),) if subprotocol else ()
    assert detect(method, target, (("host", "example.test"),), response) == expected


def test_detect_from_first_message() -> None:
    assert detect_from_first_message(b'{"protocol":"json","version":1}\x1e') == "signalr"
    assert detect_from_first_message(b'["3","3","room:lobby","phx_join",{}]') == "phoenix"
    assert detect_from_first_message(b'[null,"1","phoenix","heartbeat",{}]') == "phoenix"
    for plain in (b'{"protocol":"json"}', b'["a","b","c","d",{}]', b"hello", b'{"type":"hello"}\x1e', b""):
        assert detect_from_first_message(plain) is None


def test_session_key_and_transport_of() -> None:
    assert session_key("socket.io", "GET", EIO4_SID_POLL) == "Lbo5JLzTotvW3g2LAAAA"
    assert session_key("socket.io", "GET", EIO4_POLL) is None
    assert session_key("sockjs", "POST", "/echo/123/abcdefgh/xhr_send") == "123/abcdefgh"
    assert session_key("sockjs", "GET", "/echo/info?t=1") is None
    assert session_key("stomp", "GET", "/ws?id=1") is None
    assert transport_of("socket.io", "GET", EIO4_SID_POLL) == "long_poll"
    assert transport_of("socket.io", "POST", EIO4_SID_POLL) == "long_poll"
    assert transport_of("socket.io", "GET", "/socket.io/?EIO=4&transport=websocket") == "websocket"
    expected = {
        "xhr": "long_poll",
        "xhr_send": "long_poll",
        "xhr_streaming": "http_stream",
        "eventsource": "sse",
        "websocket": "websocket",
    }
    for transport, name in expected.items():
        assert transport_of("sockjs", "GET", f"/echo/123/abcdefgh/{transport}") == name
    assert transport_of("sockjs", "GET", "/echo/info?t=1") is None
    assert transport_of("signalr", "GET", "/chathub?id=abc") is None
    assert transport_of("mqtt", "GET", "/mqtt") is None


def test_reader_for_every_name_and_no_other() -> None:
    assert [reader_for(name).name for name in APP_PROTOCOLS] == list(APP_PROTOCOLS)
    with pytest.raises(ValueError, match="unknown application protocol"):
        reader_for("xmpp")


def test_a_body_longer_than_the_limit_is_one_unparsed_message() -> None:
    reader = reader_for("socket.io", target=EIO4_SID_POLL)
    data = b'42["x"]\x1e' * (BODY_LIMIT // 8 + 1)
    events = body(reader, C2S, data, "POST", EIO4_SID_POLL, chunks=10)
    assert shape(events) == ["problem", f"control unparsed {len(data)}"]


def test_websocket_only_protocols_count_a_body_as_one_control_message() -> None:
    reader = reader_for("graphql-transport-ws")
    assert shape(body(reader, S2C, b"<html>", "GET", "/", chunks=3)) == ["control http_body 6"]


# -- Properties ---------------------------------------------------------------

#: Valid WebSocket messages of each protocol, as (direction, data, text).
WEBSOCKET_CORPUS: dict[str, list[tuple[Direction, bytes, bool]]] = {
    "socket.io": [
        (C2S, b"2probe", True),
        (S2C, b"3probe", True),
        (C2S, b"5", True),
        (S2C, b'0{"sid":"abc","upgrades":[]}', True),
        (S2C, b"2", True),
        (C2S, b"40", True),
        (C2S, b'42["chat","hi"]', True),
        (C2S, b'42/admin,1["chat",{"a":[1,2]}]', True),
        (S2C, b'431["ok"]', True),
        (S2C, b'451-["up",{"_placeholder":true,"num":0}]', True),
        (S2C, b"\x00\x01\x02", False),
    ],
    "graphql-transport-ws": [
        (C2S, b'{"type":"connection_init"}', True),
        (S2C, b'{"type":"connection_ack"}', True),
        (C2S, b'{"id":"1","type":"subscribe","payload":{"query":"{a}"}}', True),
        (S2C, b'{"id":"1","type":"next","payload":{"data":{"a":1}}}', True),
        (S2C, b'{"id":"1","type":"complete"}', True),
    ],
    "graphql-ws": [
        (C2S, b'{"type":"connection_init"}', True),
        (S2C, b'{"type":"ka"}', True),
        (S2C, b'{"id":"1","type":"data","payload":{"data":{"a":1}}}', True),
    ],
    "sockjs": [
        (S2C, b"o", True),
        (S2C, b"h", True),
        (S2C, b'a["x","y\\"z"]', True),
        (S2C, b'c[3000,"Go away!"]', True),
        (C2S, b'["hello","there"]', True),
        (C2S, b'"bare"', True),
    ],
    "stomp": [
        (C2S, b"CONNECT\naccept-version:1.2\nhost:/\n\n\x00", True),
        (S2C, b"CONNECTED\nversion:1.2\n\n\x00\n", True),
        (C2S, b"SEND\ndestination:/q\n\nhello\x00", True),
        (S2C, b"MESSAGE\r\ndestination:/q\r\ncontent-length:3\r\n\r\na\x00b\x00\r\n", True),
        (C2S, b"\n", True),
        (S2C, b"\r\n", True),
    ],
    "mqtt": [
        (C2S, MQTT_CONNECT, False),
        (S2C, MQTT_CONNACK, False),
        (C2S, MQTT_SUBSCRIBE + publish(b"t", b"payload"), False),
        (S2C, publish(b"topic", b"z" * 130, packet_id=9), False),
        (C2S, MQTT_PUBACK + MQTT_PINGREQ, False),
    ],
    "signalr": [
        (C2S, b'{"protocol":"json","version":1}\x1e', True),
        (S2C, b"{}\x1e", True),
        (S2C, b'{"type":1,"target":"m","arguments":[1]}\x1e{"type":6}\x1e', True),
        (C2S, b'{"type":3,"invocationId":"1","result":null}\x1e', True),
    ],
    "phoenix": [
        (C2S, b'["3","3","room:lobby","phx_join",{}]', True),
        (C2S, b'[null,"4","phoenix","heartbeat",{}]', True),
        (S2C, b'[null,null,"room:lobby","new_msg",{"body":"hi"}]', True),
        (S2C, bytes([2, 10, 4]) + b"room:lobbyblob\xff", False),
    ],
    "actioncable": [
        (S2C, b'{"type":"welcome"}', True),
        (C2S, b'{"command":"subscribe","identifier":"{}"}', True),
        (S2C, b'{"identifier":"{}","message":{"a":1}}', True),
        (C2S, b'{"command":"message","identifier":"{}","data":"{}"}', True),
    ],
}

#: Valid bodies of each protocol, as (direction, method, target, body).
BODY_CORPUS: dict[str, list[tuple[Direction, str, str, bytes]]] = {
    "socket.io": [
        (S2C, "GET", EIO4_POLL, b'0{"sid":"abc","upgrades":["websocket"]}'),
        (S2C, "GET", EIO4_SID_POLL, b'40{"sid":"x"}\x1e42["a",1]\x1e2\x1e451-[{"_placeholder":true,"num":0}]\x1ebAQI='),
        (C2S, "POST", EIO4_SID_POLL, b'42["chat","hi"]\x1e3'),
        (S2C, "POST", EIO4_SID_POLL, b"ok"),
        (S2C, "GET", EIO3_POLL, v3_payload('0{"sid":"abc"}', "40", '42["\u00e9\U0001f600"]')),
        (C2S, "POST", EIO3_POLL, bytes([0, 2, 255]) + b"40" + bytes([1, 3, 255]) + b"\x04\x00\x01"),
    ],
    "sockjs": [
        (S2C, "POST", "/echo/1/s/xhr_streaming", b"h" * 2048 + b'\no\na["x"]\nh\nc[3000,"bye"]\n'),
        (S2C, "POST", "/echo/1/s/xhr", b'a["x","y"]\n'),
        (S2C, "GET", "/echo/1/s/eventsource", b'\r\ndata: o\r\n\r\ndata: a["x"]\r\n\r\n'),
        (C2S, "POST", "/echo/1/s/xhr_send", b'["x","y"]'),
        (C2S, "POST", "/echo/1/s/jsonp_send", b"d=%5B%22x%22%2C%22y%C3%A9%22%5D"),
        (S2C, "GET", "/echo/info?t=1", b'{"websocket":true}'),
    ],
    "signalr": [
        (S2C, "POST", "/hub/negotiate?negotiateVersion=1", b'{"connectionToken":"t","connectionId":"c"}'),
        (C2S, "POST", "/hub?id=t", b'{"protocol":"json","version":1}\x1e{"type":6}\x1e'),
        (S2C, "GET", "/hub?id=t", b'{}\x1e{"type":1,"target":"m","arguments":[]}\x1e'),
        (S2C, "GET", "/hub?id=t", b':\r\ndata: {"type":6}\x1e\r\n\r\n'),
    ],
}

TARGETS = [target for corpus in BODY_CORPUS.values() for _, _, target, _ in corpus] + ["", "/x?EIO=4"]


def mutated(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """``data`` with bytes replaced, inserted or deleted."""
    out = bytearray(data)
    for operation, position, byte in edits:
        at = position % (len(out) + 1)
        if operation == 0 and at < len(out):
            out[at] = byte
        elif operation == 1:
            out.insert(at, byte)
        elif at < len(out):
            del out[at]
    return bytes(out)


edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10_000), st.integers(0, 255)), max_size=4)
directions = st.sampled_from(list(Direction))


@st.composite
def websocket_messages(draw: st.DrawFn, name: str) -> list[tuple[Direction, bytes, bool]]:
    """A connection's messages: valid ones, mutated ones and random bytes."""
    corpus = WEBSOCKET_CORPUS[name]
    messages = []
    for _ in range(draw(st.integers(1, 8))):
        choice = draw(st.integers(0, 2))
        if choice == 2:
            messages.append((draw(directions), draw(st.binary(max_size=60)), draw(st.booleans())))
            continue
        direction, data, text = draw(st.sampled_from(corpus))
        messages.append((direction, mutated(data, draw(edits)) if choice else data, text))
    return messages


@pytest.mark.parametrize("name", APP_PROTOCOLS)
@property_settings
@given(data=st.data())
def test_websocket_message_sizes_add_up_and_nothing_raises(name: str, data: st.DataObject) -> None:
    reader = reader_for(name, target="/socket.io/?EIO=4&transport=websocket")
    for direction, payload, text in data.draw(websocket_messages(name)):
        events = reader.websocket_message(direction, payload, text)
        assert sizes(events) == len(payload)
        assert all(e.direction is direction for e in events if not isinstance(e, SessionId))
        assert all(e.size >= 0 for e in events if isinstance(e, FrameworkMessage))


@st.composite
def bodies(draw: st.DrawFn, name: str) -> tuple[Direction, str, str, bytes]:
    corpus = BODY_CORPUS.get(name)
    if corpus and draw(st.booleans()):
        direction, method, target, data = draw(st.sampled_from(corpus))
        return direction, method, target, mutated(data, draw(edits))
    return (
        draw(directions),
        draw(st.sampled_from(["GET", "POST", ""])),
        draw(st.sampled_from(TARGETS)),
        draw(st.binary(max_size=120)),
    )


@pytest.mark.parametrize("name", APP_PROTOCOLS)
@property_settings
@given(data=st.data(), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_body_sizes_add_up_whatever_the_chunks(name: str, data: st.DataObject, cuts: list[int]) -> None:
    direction, method, target, payload = data.draw(bodies(name))

    def read(chunks: list[bytes]) -> list[FrameworkEvent]:
        reader = reader_for(name, target=target)
        reader.start_body(direction, method, target)
        events: list[FrameworkEvent] = []
        for chunk in chunks:
            events += reader.body_data(direction, chunk)
        return events + reader.body_end(direction)

    whole = read([payload])
    assert sizes(whole) == len(payload)
    assert read(split(payload, cuts)) == whole


def valid_stream(name: str, direction: Direction) -> st.SearchStrategy[bytes]:
    pieces = [data for d, data, _ in WEBSOCKET_CORPUS[name] if d is direction]
    return st.lists(st.sampled_from(pieces), min_size=1, max_size=10).map(b"".join)


@pytest.mark.parametrize("name", ["mqtt", "stomp"])
@property_settings
@given(data=st.data(), cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_byte_streams_count_the_same_however_split_across_websocket_messages(
    name: str, data: st.DataObject, cuts: list[int]
) -> None:
    direction = data.draw(directions)
    stream = data.draw(st.one_of(valid_stream(name, direction), st.binary(max_size=200)))

    def read(messages: list[bytes]) -> list[FrameworkEvent]:
        reader = reader_for(name)
        events: list[FrameworkEvent] = []
        for message in messages:
            found = reader.websocket_message(direction, message, name == "stomp")
            assert sizes(found) == len(message)
            events += found
        return events

    # Which line ends are heart-beats depends on the messages (see inspector.app_protocols.stomp);
    # the frames do not.
    heart_beats = frozenset({"heartbeat"})
    assert counts(read(split(stream, cuts)), without=heart_beats) == counts(read([stream]), without=heart_beats)


@property_settings
@given(frames=st.lists(st.sampled_from([d for _, d, _ in WEBSOCKET_CORPUS["stomp"][:4]]), min_size=1, max_size=8))
def test_stomp_frames_and_heart_beats_in_messages_of_their_own(frames: list[bytes]) -> None:
    reader = reader_for("stomp")
    events: list[FrameworkEvent] = []
    for frame in frames:
        events += reader.websocket_message(C2S, frame, True)
        events += reader.websocket_message(C2S, b"\n", True)
    assert counts(events)[MessageKind.CONTROL, "heartbeat"] == len(frames)
    assert sum(n for (_, kind), n in counts(events).items() if kind != "heartbeat") == len(frames)
