"""Real HTTP/3 conversations, made by aioquic: an H3 client and server over two
in-memory QUIC connections, each stream's bytes recorded as the peer received
them (the records a QUIC capture holds), with what each side sent."""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache

import pylsqpack
from aioquic.buffer import Buffer, encode_uint_var
from aioquic.h3.connection import H3_ALPN, FrameType, H3Connection
from aioquic.h3.events import H3Event
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import DatagramFrameReceived, ProtocolNegotiated, StreamDataReceived, StreamReset
from aioquic.quic.packet import pull_quic_header
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
CLIENT_ADDRESS = ("127.0.0.1", 50000)
SERVER_ADDRESS = ("127.0.0.1", 4433)


@dataclass(frozen=True)
class StreamBytes:
    direction: Direction
    stream_id: int
    data: bytes


@dataclass(frozen=True)
class StreamFinished:
    direction: Direction
    stream_id: int
    reset: bool
    error_code: int | None


@dataclass(frozen=True)
class Datagram:
    direction: Direction
    data: bytes


Record = StreamBytes | StreamFinished | Datagram
HeaderList = list[tuple[bytes, bytes]]


@dataclass
class Conversation:
    """The records, and what was sent: heads and bodies by stream id."""

    name: str
    records: list[Record] = field(default_factory=list)
    requests: dict[int, HeaderList] = field(default_factory=dict)
    responses: dict[int, list[HeaderList]] = field(default_factory=dict)
    trailers: dict[int, HeaderList] = field(default_factory=dict)
    bodies: dict[tuple[Direction, int], bytes] = field(default_factory=dict)


@cache
def _certificate() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    # Round trip, as a file would be read.
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    loaded = serialization.load_pem_private_key(pem, None)
    assert isinstance(loaded, ec.EllipticCurvePrivateKey)
    return certificate, loaded


class H3Pair:
    """An aioquic HTTP/3 client and server joined in memory."""

    def __init__(self, name: str, *, webtransport: bool = False) -> None:
        self.conversation = Conversation(name)
        self.webtransport = webtransport
        self.now = 1.0
        client_configuration = QuicConfiguration(
            is_client=True,
            alpn_protocols=H3_ALPN,
            verify_mode=ssl.CERT_NONE,
            server_name="localhost",
            max_datagram_frame_size=65536,
        )
        self.client = QuicConnection(configuration=client_configuration)
        self.client_h3 = H3Connection(self.client, enable_webtransport=webtransport)
        self.server: QuicConnection | None = None
        self.server_h3: H3Connection | None = None
        #: Streams whose bytes go to the H3 layer of neither side (WebTransport streams aioquic's client misreads).
        self.raw_streams: set[int] = set()
        self.received: dict[Direction, list[H3Event]] = {C2S: [], S2C: []}
        self.client.connect(SERVER_ADDRESS, now=self.now)
        self.pump()

    def _server(self, first: bytes) -> QuicConnection:
        if self.server is None:
            header = pull_quic_header(Buffer(data=first), host_cid_length=8)
            certificate, key = _certificate()
            configuration = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN, max_datagram_frame_size=65536)
            configuration.certificate = certificate
            configuration.private_key = key
            self.server = QuicConnection(
                configuration=configuration, original_destination_connection_id=header.destination_cid
            )
        return self.server

    def pump(self) -> None:
        """Carry datagrams both ways until neither side has more to send."""
        for _ in range(1_000):
            moved = False
            for data, _ in self.client.datagrams_to_send(now=self.now):
                moved = True
                server = self._server(data)
                server.receive_datagram(data, CLIENT_ADDRESS, now=self.now)
                self._drain(server, C2S)
            if self.server is not None:
                for data, _ in self.server.datagrams_to_send(now=self.now):
                    moved = True
                    self.client.receive_datagram(data, SERVER_ADDRESS, now=self.now)
                    self._drain(self.client, S2C)
            self.now += 0.001
            if not moved:
                return
        raise AssertionError("the connections never settled")

    def _drain(self, connection: QuicConnection, direction: Direction) -> None:
        records = self.conversation.records
        while (event := connection.next_event()) is not None:
            if isinstance(event, ProtocolNegotiated) and direction is C2S:
                self.server_h3 = H3Connection(connection, enable_webtransport=self.webtransport)
            if isinstance(event, StreamDataReceived):
                if event.data:
                    records.append(StreamBytes(direction, event.stream_id, event.data))
                if event.end_stream:
                    records.append(StreamFinished(direction, event.stream_id, False, None))
                if event.stream_id in self.raw_streams:
                    continue
            elif isinstance(event, StreamReset):
                records.append(StreamFinished(direction, event.stream_id, True, event.error_code))
            elif isinstance(event, DatagramFrameReceived):
                records.append(Datagram(direction, event.data))
            h3 = self.server_h3 if direction is C2S else self.client_h3
            if h3 is not None:
                self.received[direction] += h3.handle_event(event)

    # -- what the sides send --------------------------------------------------

    def request(self, headers: HeaderList, body: bytes = b"", *, end: bool = True) -> int:
        stream_id = self.client.get_next_available_stream_id()
        self.conversation.requests[stream_id] = headers
        self.client_h3.send_headers(stream_id, headers, end_stream=end and not body)
        if body:
            self.send(C2S, stream_id, body, end=end)
        self.pump()
        return stream_id

    def respond(self, stream_id: int, headers: HeaderList, *, end: bool = False) -> None:
        assert self.server_h3 is not None
        self.conversation.responses.setdefault(stream_id, []).append(headers)
        self.server_h3.send_headers(stream_id, headers, end_stream=end)
        self.pump()

    def interim(self, stream_id: int, headers: HeaderList) -> None:
        """A 1xx head, its field section from the static table and literals only."""
        assert self.server is not None
        self.conversation.responses.setdefault(stream_id, []).append(headers)
        encoder = pylsqpack.Encoder()
        encoder.apply_settings(0, 0)
        _, section = encoder.encode(stream_id, headers)
        frame = encode_uint_var(FrameType.HEADERS) + encode_uint_var(len(section)) + section
        self.server.send_stream_data(stream_id, frame)
        self.pump()

    def send(self, direction: Direction, stream_id: int, data: bytes, *, end: bool = False) -> None:
        h3 = self.client_h3 if direction is C2S else self.server_h3
        assert h3 is not None
        key = (direction, stream_id)
        self.conversation.bodies[key] = self.conversation.bodies.get(key, b"") + data
        h3.send_data(stream_id, data, end_stream=end)
        self.pump()

    def trailers(self, stream_id: int, headers: HeaderList) -> None:
        assert self.server_h3 is not None
        self.conversation.trailers[stream_id] = headers
        self.server_h3.send_headers(stream_id, headers, end_stream=True)
        self.pump()


def _get_with_body() -> Conversation:
    pair = H3Pair("GET with a body")
    request = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"localhost"),
        (b":path", b"/index.html"),
        (b"user-agent", b"rtinspect-test/1"),
        (b"cookie", b"session=" + b"c" * 300),
    ]
    first = pair.request(request)
    pair.respond(first, [(b":status", b"200"), (b"content-type", b"text/html"), (b"content-length", b"5000")])
    pair.send(S2C, first, b"<p>" + b"x" * 2997)
    pair.send(S2C, first, b"y" * 2000, end=True)
    # The same fields again: QPACK's dynamic table shrinks the second head.
    second = pair.request([*request[:3], (b":path", b"/second"), *request[4:]])
    pair.respond(second, [(b":status", b"404"), (b"content-type", b"text/html")])
    pair.send(S2C, second, b"", end=True)
    return pair.conversation


def _sse() -> Conversation:
    pair = H3Pair("SSE")
    stream = pair.request(
        [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/events"),
            (b"accept", b"text/event-stream"),
        ]
    )
    pair.respond(stream, [(b":status", b"200"), (b"content-type", b"text/event-stream")])
    for n in range(20):
        pair.send(S2C, stream, f"data: event {n} {'z' * 40}\n\n".encode())
    pair.send(S2C, stream, b"", end=True)
    return pair.conversation


def _post_interim_trailers() -> Conversation:
    pair = H3Pair("POST, 1xx and trailers")
    stream = pair.request(
        [
            (b":method", b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/upload"),
            (b"content-type", b"application/octet-stream"),
            (b"expect", b"100-continue"),
        ],
        b"u" * 7000,
    )
    # aioquic sends and reads one response head per stream: the interim ones go by hand, before it,
    # and its client does not read this stream.
    pair.raw_streams.add(stream)
    pair.interim(stream, [(b":status", b"100")])
    pair.interim(stream, [(b":status", b"103"), (b"link", b"</style.css>; rel=preload")])
    pair.respond(stream, [(b":status", b"201"), (b"content-type", b"text/plain")])
    pair.send(S2C, stream, b"created")
    pair.trailers(stream, [(b"x-checksum", b"abc123"), (b"server-timing", b"db;dur=53")])
    return pair.conversation


def _websocket() -> Conversation:
    pair = H3Pair("RFC 9220 WebSocket")
    stream = pair.request(
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", b"/ws"),
            (b"sec-websocket-version", b"13"),
        ],
        end=False,
    )
    pair.respond(stream, [(b":status", b"200")])
    pair.send(C2S, stream, b"\x81\x85abcd" + bytes(c ^ k for c, k in zip(b"hello", b"abcda", strict=True)))
    pair.send(S2C, stream, b"\x81\x05hello")
    pair.send(S2C, stream, b"\x81\x05world")
    pair.send(C2S, stream, b"\x88\x80abcd", end=True)
    pair.send(S2C, stream, b"\x88\x00", end=True)
    return pair.conversation


WT_SESSION_HEADERS = [
    (b":method", b"CONNECT"),
    (b":protocol", b"webtransport"),
    (b":scheme", b"https"),
    (b":authority", b"localhost"),
    (b":path", b"/wt"),
    (b"origin", b"https://localhost"),
]


def _webtransport() -> Conversation:
    pair = H3Pair("WebTransport", webtransport=True)
    session = pair.request(WT_SESSION_HEADERS, end=False)
    pair.respond(session, [(b":status", b"200"), (b"sec-webtransport-http3-draft", b"draft02")])
    assert pair.server_h3 is not None
    # A bidirectional stream the client opens, echoed by the server.
    bidi = pair.client_h3.create_webtransport_stream(session)
    pair.raw_streams.add(bidi)
    pair.client.send_stream_data(bidi, b"ping over a bidirectional stream", end_stream=True)
    pair.pump()
    assert pair.server is not None
    pair.server.send_stream_data(bidi, b"pong: ping over a bidirectional stream", end_stream=True)
    pair.pump()
    # A unidirectional stream each way.
    uni = pair.client_h3.create_webtransport_stream(session, is_unidirectional=True)
    pair.client.send_stream_data(uni, b"u" * 3000, end_stream=True)
    pair.pump()
    back = pair.server_h3.create_webtransport_stream(session, is_unidirectional=True)
    for n in range(5):
        pair.server.send_stream_data(back, f"message {n};".encode())
        pair.pump()
    pair.server.send_stream_data(back, b"", end_stream=True)
    # A bidirectional stream the server opens, answered by the client.
    served = pair.server_h3.create_webtransport_stream(session)
    pair.raw_streams.add(served)
    pair.server.send_stream_data(served, b"from the server", end_stream=True)
    pair.pump()
    pair.client.send_stream_data(served, b"thanks", end_stream=True)
    pair.pump()
    # Datagrams both ways.
    for n in range(3):
        pair.client_h3.send_datagram(session, f"datagram {n}".encode())
        pair.server_h3.send_datagram(session, f"echo {n}".encode() * 10)
        pair.pump()
    # A stream the client resets.
    cancelled = pair.client_h3.create_webtransport_stream(session, is_unidirectional=True)
    pair.client.send_stream_data(cancelled, b"partial")
    pair.pump()
    pair.client.reset_stream(cancelled, 0x10C)
    pair.pump()
    return pair.conversation


def _many_requests() -> Conversation:
    """Requests whose fields change every time: the dynamic table fills, and entries are evicted."""
    pair = H3Pair("many requests")
    for n in range(40):
        stream = pair.request(
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", f"/item/{n}".encode()),
                (b"x-request-id", f"{n // 2:04d}".encode() * 60),
            ]
        )
        pair.respond(stream, [(b":status", b"200"), (b"etag", f'"{n // 2:04d}"'.encode() * 50)])
        pair.send(S2C, stream, f"item {n}".encode(), end=True)
    return pair.conversation


SCENARIOS: dict[str, Callable[[], Conversation]] = {
    "get": _get_with_body,
    "sse": _sse,
    "post": _post_interim_trailers,
    "websocket": _websocket,
    "webtransport": _webtransport,
    "many": _many_requests,
}


@cache
def conversation(name: str) -> Conversation:
    return SCENARIOS[name]()
