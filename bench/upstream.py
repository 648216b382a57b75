"""The upstream server every benchmark drives: WebSocket echo and push, SSE, short polls.

Raw asyncio, one process, no framework, so that the server is never what
limits a run. HTTP/1.1 with keep-alive; WebSocket per RFC 6455 with
permessage-deflate (RFC 7692, context takeover) when the client offers it.

Routes (GET only):

    /ws/echo                        WebSocket: every message comes back as it was sent
    /ws/push?size=N&count=M         WebSocket: M messages of N bytes, as fast as the client reads
    /sse?size=N&count=M             text/event-stream, chunked: M events of N bytes of data
    /poll?size=N                    a JSON body of N bytes (Content-Length)

``python -m bench.upstream --port 0`` prints ``listening PORT`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import signal
import struct
import urllib.parse
import zlib

from websockets.speedups import apply_mask

from bench.text import payload

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_TAIL = b"\x00\x00\xff\xff"
_TEXT, _BINARY, _CONTINUATION, _CLOSE, _PING, _PONG = 1, 2, 0, 8, 9, 10
_BATCH = 64
_HIGH_WATER = 512 * 1024


def frame(opcode: int, data: bytes, rsv1: bool = False) -> bytes:
    """An unmasked server frame with FIN set."""
    first = 0x80 | opcode | (0x40 if rsv1 else 0)
    n = len(data)
    if n < 126:
        return bytes((first, n)) + data
    if n < 65536:
        return struct.pack("!BBH", first, 126, n) + data
    return struct.pack("!BBQ", first, 127, n) + data


class _Deflate:
    """permessage-deflate state of one connection, both ways."""

    def __init__(self, offer: str) -> None:
        params = {}
        for part in offer.split(";")[1:]:
            name, _, value = part.strip().partition("=")
            params[name.strip()] = value.strip().strip('"')
        self.server_reset = "server_no_context_takeover" in params
        self.client_reset = "client_no_context_takeover" in params
        self.bits = int(params.get("server_max_window_bits") or 15)
        accepted = ["permessage-deflate"]
        if self.server_reset:
            accepted.append("server_no_context_takeover")
        if self.client_reset:
            accepted.append("client_no_context_takeover")
        if "server_max_window_bits" in params:
            accepted.append(f"server_max_window_bits={self.bits}")
        self.response = "; ".join(accepted)
        self._compressor = zlib.compressobj(6, zlib.DEFLATED, -self.bits, 8)
        self._decompressor = zlib.decompressobj(-15)

    def compress(self, data: bytes) -> bytes:
        out = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if self.server_reset:
            self._compressor = zlib.compressobj(6, zlib.DEFLATED, -self.bits, 8)
        return out[:-4] if out.endswith(_TAIL) else out

    def decompress(self, data: bytes) -> bytes:
        out = self._decompressor.decompress(data + _TAIL)
        if self.client_reset:
            self._decompressor = zlib.decompressobj(-15)
        return out


class Connection(asyncio.Protocol):
    """One client connection: HTTP/1.1 requests until an Upgrade, then WebSocket frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.websocket = False
        self.deflate: _Deflate | None = None
        self.fragments: list[bytes] = []
        self.fragment_opcode = 0
        self.fragment_rsv1 = False
        self.paused = False
        self.producer: _Producer | None = None
        self.closing = False

    # -- asyncio

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.producer = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.producer is not None:
            asyncio.get_running_loop().call_soon(self.produce)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.websocket:
            self.websocket_frames()
        else:
            self.http_requests()

    # -- HTTP

    def http_requests(self) -> None:
        while not self.websocket and not self.closing:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            line, *lines = head.split("\r\n")
            _, target, _ = line.split(" ", 2)
            headers = {}
            for header in lines:
                name, _, value = header.partition(":")
                headers[name.strip().lower()] = value.strip()
            self.request(target, headers)
        if self.websocket and self.buffer:
            self.websocket_frames()

    def request(self, target: str, headers: dict[str, str]) -> None:
        url = urllib.parse.urlsplit(target)
        query = {k: int(v) for k, v in urllib.parse.parse_qsl(url.query)}
        assert self.transport is not None
        if url.path.startswith("/ws/") and headers.get("upgrade", "").lower() == "websocket":
            self.upgrade(headers)
            if url.path == "/ws/push":
                self.producer = _Push(self, query.get("size", 64), query.get("count", 1000))
                self.produce()
        elif url.path == "/sse":
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
            )
            self.producer = _Events(self, query.get("size", 64), query.get("count", 1000))
            self.produce()
        elif url.path == "/poll":
            body = payload(query.get("size", 64), 0)
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )
        else:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

    def upgrade(self, headers: dict[str, str]) -> None:
        assert self.transport is not None
        accept = base64.b64encode(hashlib.sha1(headers["sec-websocket-key"].encode() + _GUID).digest())
        extra = b""
        for offer in headers.get("sec-websocket-extensions", "").split(","):
            if offer.strip().startswith("permessage-deflate"):
                self.deflate = _Deflate(offer.strip())
                extra = b"sec-websocket-extensions: %s\r\n" % self.deflate.response.encode()
                break
        self.transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
            b"sec-websocket-accept: %s\r\n%s\r\n" % (accept, extra)
        )
        self.websocket = True

    # -- WebSocket

    def websocket_frames(self) -> None:
        buffer = self.buffer
        size = len(buffer)
        pos = 0
        out: list[bytes] = []
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            length = second & 0x7F
            header = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 4])
                header = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buffer[pos + 2 : pos + 10])
                header = 10
            if second & 0x80:
                header += 4
            end = pos + header + length
            if end > size:
                break
            data = bytes(buffer[pos + header : end])
            if second & 0x80:
                data = apply_mask(data, bytes(buffer[pos + header - 4 : pos + header]))
            pos = end
            self.websocket_frame(first, data, out)
        del buffer[:pos]
        if out and self.transport is not None and not self.closing:
            self.transport.write(b"".join(out))

    def websocket_frame(self, first: int, data: bytes, out: list[bytes]) -> None:
        opcode = first & 0x0F
        if opcode >= 8:
            if opcode == _PING:
                out.append(frame(_PONG, data))
            elif opcode == _CLOSE:
                out.append(frame(_CLOSE, data[:2]))
                self.closing = True
                self.producer = None
                assert self.transport is not None
                self.transport.write(b"".join(out))
                out.clear()
                self.transport.close()
            return
        if opcode != _CONTINUATION:
            self.fragment_opcode = opcode
            self.fragment_rsv1 = bool(first & 0x40)
        self.fragments.append(data)
        if not first & 0x80:
            return
        message = b"".join(self.fragments) if len(self.fragments) > 1 else self.fragments[0]
        self.fragments.clear()
        if self.producer is not None:
            return
        if self.deflate is not None and self.fragment_rsv1:
            out.append(frame(self.fragment_opcode, self.deflate.compress(self.deflate.decompress(message)), True))
        else:
            out.append(frame(self.fragment_opcode, message))

    # -- server push

    def produce(self) -> None:
        producer = self.producer
        if producer is None or self.closing or self.transport is None:
            return
        chunks: list[bytes] = []
        while not self.paused and len(chunks) < _BATCH and not producer.done:
            chunks.append(producer.next())
        if chunks:
            self.transport.write(b"".join(chunks))
        if producer.done:
            producer.finish()
            self.producer = None
        elif not self.paused:
            asyncio.get_running_loop().call_soon(self.produce)


class _Producer:
    def __init__(self, connection: Connection, size: int, count: int) -> None:
        self.connection = connection
        self.size = size
        self.count = count
        self.sent = 0

    @property
    def done(self) -> bool:
        return self.sent >= self.count

    def next(self) -> bytes:
        data = payload(self.size, self.sent)
        self.sent += 1
        return self.encode(data)

    def encode(self, data: bytes) -> bytes:
        raise NotImplementedError

    def finish(self) -> None:
        pass


class _Push(_Producer):
    def encode(self, data: bytes) -> bytes:
        deflate = self.connection.deflate
        if deflate is not None:
            return frame(_TEXT, deflate.compress(data), True)
        return frame(_TEXT, data)


class _Events(_Producer):
    def encode(self, data: bytes) -> bytes:
        event = b"data: %s\n\n" % data
        return b"%x\r\n%s\r\n" % (len(event), event)

    def finish(self) -> None:
        assert self.connection.transport is not None
        self.connection.transport.write(b"0\r\n\r\n")


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Connection, host, port, backlog=4096, reuse_address=True)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
