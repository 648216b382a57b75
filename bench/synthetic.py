"""A large capture of realistic traffic, written without a network, with its true counts.

Three kinds of WebSocket connection and one of HTTP, in the proportions real
services show:

- chat: small text messages both ways (20–300 B), every frame in its own
  socket read, a ping and pong now and then;
- feed: server pushes of 32–512 B read in batches (reads of up to 16 KiB
  that cut frames anywhere), a small client message now and then;
- chat with permessage-deflate (context takeover, both directions);
- short polls: keep-alive connections of 100 GET requests, each answered
  with a JSON body of 50–500 B (Content-Length).

Every connection opens with a real Upgrade (or request) and ends with a
close handshake. Client frames are masked. The generator counts what it
wrote, so both tools can be checked against the truth.
"""

from __future__ import annotations

import base64
import os
import random
import struct
import zlib
from dataclasses import dataclass, field

from websockets.speedups import apply_mask

from bench.text import payload
from inspector.capture import CaptureWriter, ConnectionClosed, ConnectionOpened, DataChunk
from inspector.wire import Direction

C2S, S2C = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
SERVER = "127.0.0.1:8080"
MODE = "reverse:http://127.0.0.1:8080"
_TEXT, _CLOSE, _PING, _PONG = 1, 8, 9, 10
_TAIL = b"\x00\x00\xff\xff"

#: Data frames (of a million) and HTTP exchanges (of 100,000) at scale 1.
FRAMES = 1_000_000
EXCHANGES = 100_000
_CHAT_SHARE, _FEED_SHARE = 0.45, 0.45
_CHAT_FRAMES, _FEED_FRAMES, _DEFLATE_FRAMES, _POLLS_PER_CONNECTION = 5_000, 20_000, 5_000, 100


@dataclass
class Truth:
    """What the synthetic capture holds, counted while writing it."""

    connections: int = 0
    websocket_connections: int = 0
    data_frames: int = 0
    control_frames: int = 0
    #: Sum of frame payload lengths as on the wire (compressed where deflated), data and control.
    frame_payload_bytes: int = 0
    #: Requests and their responses, WebSocket Upgrades included.
    http_exchanges: int = 0
    wire_bytes: int = 0
    chunks: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return self.data_frames + self.control_frames


def _frame(opcode: int, data: bytes, masked: bool, rng: random.Random, rsv1: bool = False) -> bytes:
    first = 0x80 | opcode | (0x40 if rsv1 else 0)
    n = len(data)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((first, mask_bit | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return head + data
    key = rng.randbytes(4)
    return head + key + apply_mask(data, key)


class _Writer:
    """Writes connections to a capture and counts them."""

    def __init__(self, capture: CaptureWriter, seed: int) -> None:
        self.capture = capture
        self.rng = random.Random(seed)
        self.truth = Truth()
        self.clock = 1_795_000_000.0
        self.next_id = 1
        self.seq = 0

    def tick(self, seconds: float = 0.0001) -> float:
        self.clock += seconds
        return self.clock

    def chunk(self, connection_id: int, direction: Direction, data: bytes) -> None:
        self.capture.write(DataChunk(connection_id, self.tick(), direction, data))
        self.truth.wire_bytes += len(data)
        self.truth.chunks += 1

    def open(self, kind: str) -> int:
        connection_id = self.next_id
        self.next_id += 1
        client = f"127.0.0.1:{10_000 + connection_id % 50_000}"
        self.capture.write(ConnectionOpened(connection_id, self.tick(), client, SERVER, MODE))
        self.truth.connections += 1
        self.truth.kinds[kind] = self.truth.kinds.get(kind, 0) + 1
        return connection_id

    def close(self, connection_id: int, reason: str = "client closed") -> None:
        self.capture.write(ConnectionClosed(connection_id, self.tick(), reason))

    def message(self, size: int) -> bytes:
        self.seq += 1
        return payload(size, self.seq)

    # -- WebSocket

    def upgrade(self, connection_id: int, deflate: bool) -> None:
        key = base64.b64encode(self.rng.randbytes(16))
        offer = b"sec-websocket-extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else b""
        self.chunk(
            connection_id,
            C2S,
            b"GET /ws HTTP/1.1\r\nhost: 127.0.0.1:8080\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-key: %s\r\nsec-websocket-version: 13\r\n%s"
            b"user-agent: Mozilla/5.0 (X11; Linux x86_64)\r\n\r\n" % (key, offer),
        )
        accepted = b"sec-websocket-extensions: permessage-deflate\r\n" if deflate else b""
        self.chunk(
            connection_id,
            S2C,
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-accept: s3pPLMBiTxaQ9kYGJzzhZRbK+xo=\r\n%s\r\n" % accepted,
        )
        self.truth.websocket_connections += 1
        self.truth.http_exchanges += 1

    def frame(self, direction: Direction, opcode: int, data: bytes, rsv1: bool = False) -> bytes:
        if opcode >= 8:
            self.truth.control_frames += 1
        else:
            self.truth.data_frames += 1
        self.truth.frame_payload_bytes += len(data)
        return _frame(opcode, data, direction is C2S, self.rng, rsv1)

    def closing(self, connection_id: int) -> None:
        self.chunk(connection_id, C2S, self.frame(C2S, _CLOSE, struct.pack("!H", 1000) + b"bye"))
        self.chunk(connection_id, S2C, self.frame(S2C, _CLOSE, struct.pack("!H", 1000)))
        self.close(connection_id, "server closed")

    def chat(self, frames: int) -> None:
        connection_id = self.open("chat")
        self.upgrade(connection_id, deflate=False)
        rng = self.rng
        for n in range(frames):
            direction = C2S if rng.random() < 0.3 else S2C
            self.chunk(connection_id, direction, self.frame(direction, _TEXT, self.message(rng.randint(20, 300))))
            if n % 1000 == 999:
                self.chunk(connection_id, C2S, self.frame(C2S, _PING, b"hb"))
                self.chunk(connection_id, S2C, self.frame(S2C, _PONG, b"hb"))
        self.closing(connection_id)

    def feed(self, frames: int) -> None:
        connection_id = self.open("feed")
        self.upgrade(connection_id, deflate=False)
        rng = self.rng
        stream = bytearray()
        for _ in range(frames):
            if rng.random() < 0.02:
                self.flush(connection_id, stream)
                self.chunk(connection_id, C2S, self.frame(C2S, _TEXT, self.message(rng.randint(20, 120))))
                continue
            stream += self.frame(S2C, _TEXT, self.message(rng.randint(32, 512)))
            if len(stream) >= 64 * 1024:
                self.flush(connection_id, stream)
        self.flush(connection_id, stream)
        self.closing(connection_id)

    def flush(self, connection_id: int, stream: bytearray) -> None:
        """Send ``stream`` as socket reads of 1–16 KiB that fall anywhere, frame boundaries or not."""
        while stream:
            size = min(len(stream), self.rng.randint(1024, 16 * 1024))
            self.chunk(connection_id, S2C, bytes(stream[:size]))
            del stream[:size]

    def deflated_chat(self, frames: int) -> None:
        connection_id = self.open("chat-deflate")
        self.upgrade(connection_id, deflate=True)
        rng = self.rng
        compressors = {d: zlib.compressobj(6, zlib.DEFLATED, -15, 8) for d in (C2S, S2C)}
        for _ in range(frames):
            direction = C2S if rng.random() < 0.3 else S2C
            compressor = compressors[direction]
            data = compressor.compress(self.message(rng.randint(20, 300))) + compressor.flush(zlib.Z_SYNC_FLUSH)
            data = data[:-4] if data.endswith(_TAIL) else data
            self.chunk(connection_id, direction, self.frame(direction, _TEXT, data, rsv1=True))
        self.closing(connection_id)

    # -- HTTP

    def polls(self, exchanges: int) -> None:
        connection_id = self.open("short-poll")
        rng = self.rng
        for _ in range(exchanges):
            self.chunk(
                connection_id,
                C2S,
                b"GET /api/updates?cursor=%d HTTP/1.1\r\nhost: 127.0.0.1:8080\r\naccept: application/json\r\n"
                b"user-agent: Mozilla/5.0 (X11; Linux x86_64)\r\ncookie: session=%s\r\n\r\n"
                % (self.seq, base64.b64encode(rng.randbytes(24))),
            )
            body = self.message(rng.randint(50, 500))
            self.chunk(
                connection_id,
                S2C,
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"cache-control: no-store\r\ndate: Wed, 25 Nov 2026 12:00:00 GMT\r\n\r\n%s" % (len(body), body),
            )
            self.truth.http_exchanges += 1
        self.close(connection_id)


def _split(total: int, per_connection: int) -> list[int]:
    """``total`` split into parts of ``per_connection`` (the last one smaller); at least one part."""
    total = max(total, 1)
    parts = [per_connection] * (total // per_connection)
    if total % per_connection:
        parts.append(total % per_connection)
    return parts


def write_synthetic(path: str | os.PathLike[str], scale: float = 1.0, seed: int = 1) -> Truth:
    """Write a capture of about ``scale`` × 1,000,000 WebSocket data frames and
    ``scale`` × 100,000 HTTP exchanges to ``path``; return what it holds."""
    frames = round(FRAMES * scale)
    chat = _split(round(frames * _CHAT_SHARE), _CHAT_FRAMES)
    feed = _split(round(frames * _FEED_SHARE), _FEED_FRAMES)
    deflated = _split(frames - sum(chat) - sum(feed), _DEFLATE_FRAMES)
    polls = _split(round(EXCHANGES * scale), _POLLS_PER_CONNECTION)
    with CaptureWriter(path, buffer_limit=4 << 20) as capture:
        writer = _Writer(capture, seed)
        # One connection after another, the kinds in random order.
        work = [(writer.chat, n) for n in chat] + [(writer.feed, n) for n in feed]
        work += [(writer.deflated_chat, n) for n in deflated] + [(writer.polls, n) for n in polls]
        writer.rng.shuffle(work)
        for make, count in work:
            make(count)
    return writer.truth


def write_websocket_connection(path: str | os.PathLike[str], frames: int, seed: int = 1) -> Truth:
    """Write a capture of one WebSocket chat connection of ``frames`` data frames (one
    frame per socket read, both ways, a ping and pong every 1,000) to ``path``; return
    what it holds."""
    with CaptureWriter(path, buffer_limit=4 << 20) as capture:
        writer = _Writer(capture, seed)
        writer.chat(frames)
    return writer.truth
