"""HTTP/2 conversations made by the h2 library, as the bytes each side sent, in order.

A client and a server :class:`h2.connection.H2Connection` talk to each other
in memory; every batch of bytes one of them sends is kept with its direction,
so a test can replay the connection as a proxy would have seen it.
"""

from __future__ import annotations

from collections.abc import Iterable

import h2.config
import h2.connection
import h2.events

from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

Conversation = list[tuple[Direction, bytes]]


class Talk:
    """A client and a server, and what each has sent so far."""

    def __init__(self, *, connect_protocol: bool = False) -> None:
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
        if connect_protocol:
            self.server.local_settings.enable_connect_protocol = 1
        self.sent: Conversation = []
        self.client.initiate_connection()
        self.server.initiate_connection()
        self.pump()

    def pump(self) -> None:
        """Deliver what each side has to send until both are quiet."""
        while True:
            moved = False
            for direction, sender, receiver in ((C2S, self.client, self.server), (S2C, self.server, self.client)):
                data = sender.data_to_send()
                if data:
                    moved = True
                    self.sent.append((direction, data))
                    for event in receiver.receive_data(data):
                        if isinstance(event, h2.events.DataReceived) and event.flow_controlled_length:
                            receiver.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            if not moved:
                return

    def request(
        self, path: str, *, method: str = "GET", body: bytes = b"", extra: Iterable[tuple[str, str]] = ()
    ) -> int:
        stream = self.client.get_next_available_stream_id()
        headers = [(":method", method), (":path", path), (":scheme", "http"), (":authority", "127.0.0.1:8000")]
        extra = list(extra)
        headers += [field for field in extra if field[0].startswith(":")]
        headers += [("user-agent", "h2-conversation/1"), ("accept", "*/*")]
        headers += [field for field in extra if not field[0].startswith(":")]
        self.client.send_headers(stream, headers, end_stream=not body and method != "CONNECT")
        if body:
            self.client.send_data(stream, body, end_stream=True)
        self.pump()
        return stream

    def respond(
        self, stream: int, content_type: str, body: bytes = b"", *, end: bool = True, pad: int | None = None
    ) -> None:
        headers = [(":status", "200"), ("content-type", content_type), ("server", "h2-conversation")]
        self.server.send_headers(stream, headers, end_stream=end and not body)
        if body:
            self.server.send_data(stream, body, end_stream=end, pad_length=pad)
        self.pump()

    def send(self, stream: int, data: bytes, *, end: bool = False, from_client: bool = False) -> None:
        (self.client if from_client else self.server).send_data(stream, data, end_stream=end)
        self.pump()


def polls_and_sse(*, large_head: bool = True) -> Conversation:
    """Polls on one connection (HPACK shrinks their heads), a POST, a padded
    response, a response with trailers, and an SSE stream beside them; with
    ``large_head``, a request whose 20 KB header field takes CONTINUATION frames."""
    talk = Talk()
    sse = talk.request("/sse", extra=[("accept", "text/event-stream")])
    talk.respond(sse, "text/event-stream", end=False)
    for n in range(4):
        poll = talk.request(f"/poll?after={n}")
        talk.respond(poll, "application/json", b'{"seq": %d}' % n)
        talk.send(sse, b'id: %d\ndata: {"seq": %d}\n\n' % (n, n))
    post = talk.request("/send", method="POST", body=b"hello")
    talk.respond(post, "text/plain", b"ok", pad=7)
    trailed = talk.request("/trailers")
    talk.server.send_headers(trailed, [(":status", "200"), ("content-type", "text/plain")])
    talk.server.send_data(trailed, b"body")
    talk.server.send_headers(trailed, [("x-checksum", "abc")], end_stream=True)
    talk.pump()
    big = talk.request("/big", extra=[("x-large", "v" * (20_000 if large_head else 200))])  # needs CONTINUATION frames
    talk.respond(big, "text/plain", b"x" * 16_000, end=False)  # DATA frames and WINDOW_UPDATEs
    talk.send(big, b"y" * 16_000)
    talk.send(big, b"z" * 8_000, end=True)
    talk.client.ping(b"12345678")
    talk.pump()
    talk.send(sse, b"", end=True)
    talk.client.close_connection()
    talk.pump()
    return talk.sent


def ndjson_stream() -> Conversation:
    talk = Talk()
    stream = talk.request("/ndjson")
    talk.respond(stream, "application/x-ndjson", end=False)
    for n in range(5):
        talk.send(stream, b'{"seq": %d}\n' % n)
    talk.send(stream, b"", end=True)
    return talk.sent


def masked(opcode: int, payload: bytes) -> bytes:
    key = b"\x0a\x0b\x0c\x0d"
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def websocket_over_h2() -> Conversation:
    """WebSocket on an HTTP/2 stream (RFC 8441), beside a poll on the same connection."""
    talk = Talk(connect_protocol=True)
    ws = talk.request("/ws", method="CONNECT", extra=[(":protocol", "websocket"), ("sec-websocket-version", "13")])
    talk.server.send_headers(ws, [(":status", "200")])
    talk.pump()
    for n in range(3):
        talk.send(ws, bytes([0x81, 9]) + b"event %03d" % n)
        talk.send(ws, masked(0x1, b"ack %d" % n), from_client=True)
    poll = talk.request("/poll")
    talk.respond(poll, "application/json", b"{}")
    talk.send(ws, b"\x89\x00")  # ping
    talk.send(ws, masked(0xA, b""), from_client=True)  # pong
    talk.send(ws, masked(0x8, b"\x03\xe8"), from_client=True, end=True)
    talk.send(ws, b"\x88\x02\x03\xe8", end=True)
    return talk.sent


def h2c_upgrade() -> Conversation:
    """An HTTP/1.1 request upgraded to h2c; its response comes on stream 1."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding=None))
    settings = client.initiate_upgrade_connection()
    request = (
        b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
        b"Upgrade: h2c\r\nHTTP2-Settings: " + settings + b"\r\n\r\n"
    )
    sent: Conversation = [(C2S, request)]
    server.initiate_upgrade_connection(settings)
    switching = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
    server.send_headers(1, [(":status", "200"), ("content-type", "text/event-stream")])
    server.send_data(1, b"data: one\n\n", end_stream=True)
    sent.append((S2C, switching + server.data_to_send()))
    client.receive_data(sent[-1][1][len(switching) :])
    sent.append((C2S, client.data_to_send()))
    return sent


CONVERSATIONS = {
    "polls_and_sse": polls_and_sse(),
    "ndjson": ndjson_stream(),
    "websocket": websocket_over_h2(),
    "h2c_upgrade": h2c_upgrade(),
}


def joined(conversation: Conversation, direction: Direction) -> bytes:
    return b"".join(data for way, data in conversation if way is direction)
