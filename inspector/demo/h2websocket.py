"""A WebSocket client over HTTP/2 (RFC 8441), for ``rtinspect demo --http2``.

The ``websockets`` library speaks WebSocket over HTTP/1.1 only. This client
opens a TLS connection offering ``h2`` alone, waits for the server's SETTINGS
to allow extended CONNECT (``SETTINGS_ENABLE_CONNECT_PROTOCOL = 1``), sends
``:method CONNECT`` with ``:protocol websocket`` on one stream, and once the
answer is ``:status 200`` exchanges masked WebSocket frames (built and read by
wsproto) in that stream's DATA frames, as Chromium does.

It reads: :meth:`H2WebSocket.messages` yields each text or binary message until
the server closes; the client answers the close, ends its stream and the
connection (GOAWAY). Flow-control credit is given back as data is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import urllib.parse
from collections.abc import AsyncIterator

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode, ParseFailed

from .settings import CONNECT_TIMEOUT, DemoError

#: What the ``websockets`` library offers by default, so both clients ask for the same.
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"
READ_SIZE = 65536


class H2WebSocket:
    """One WebSocket on its own HTTP/2 connection; made by :meth:`connect`."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: h2.connection.H2Connection,
        stream_id: int,
        frames: FrameProtocol,
        pending: list[h2.events.Event],
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._h2 = connection
        self.stream_id = stream_id
        self._frames = frames
        self._pending = pending
        self.compressed = bool(frames.extensions)
        self.close_code: int | None = None
        self._stream_ended = False
        self._parts: list[str | bytes | bytearray] = []

    @classmethod
    async def connect(cls, url: str, ssl_context: ssl.SSLContext, compression: bool = True) -> H2WebSocket:
        """Connect to ``https://HOST:PORT/PATH`` (or ``wss://``) and open the WebSocket."""
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "wss") or not parts.hostname:
            raise DemoError(f"WebSocket over HTTP/2 needs an https:// URL (got {url})")
        host, port = parts.hostname, parts.port or 443
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        ssl_context.set_alpn_protocols(["h2"])
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reader, writer = await asyncio.open_connection(host, port, ssl=ssl_context)
            try:
                return await cls._open(reader, writer, authority, path, compression)
            except BaseException:
                await _close(writer)
                raise

    @classmethod
    async def _open(
        cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, authority: str, path: str, compression: bool
    ) -> H2WebSocket:
        tls = writer.get_extra_info("ssl_object")
        alpn = tls.selected_alpn_protocol() if tls is not None else None
        if alpn != "h2":
            raise DemoError(f"the server did not agree to h2 (ALPN {alpn or 'none'})")
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        await writer.drain()

        pending: list[h2.events.Event] = []
        while not any(isinstance(event, h2.events.RemoteSettingsChanged) for event in pending):
            pending += await _receive(reader, writer, connection)
        if connection.remote_settings.enable_connect_protocol != 1:
            raise DemoError("the server's HTTP/2 SETTINGS do not allow WebSocket (ENABLE_CONNECT_PROTOCOL is not 1)")

        stream_id = connection.get_next_available_stream_id()
        headers = [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":path", path.encode()),
            (b":authority", authority.encode()),
            (b"sec-websocket-version", b"13"),
        ]
        deflate = PerMessageDeflate() if compression else None
        if deflate is not None:
            headers.append((b"sec-websocket-extensions", DEFLATE_OFFER.encode()))
        connection.send_headers(stream_id, headers, end_stream=False)
        writer.write(connection.data_to_send())
        await writer.drain()

        pending = [event for event in pending if getattr(event, "stream_id", None) == stream_id]
        while True:
            response = next((e for e in pending if isinstance(e, h2.events.ResponseReceived)), None)
            if response is not None:
                break
            if any(isinstance(e, (h2.events.StreamReset, h2.events.StreamEnded)) for e in pending):
                raise DemoError("the server refused the WebSocket stream")
            pending += [
                e for e in await _receive(reader, writer, connection) if getattr(e, "stream_id", None) == stream_id
            ]
        answer = dict(response.headers or [])
        status = answer.get(b":status", b"?").decode()
        if status != "200":
            raise DemoError(f"the WebSocket over HTTP/2 was answered with status {status}, not 200")
        accepted = answer.get(b"sec-websocket-extensions")
        extensions: list[Extension] = []
        if deflate is not None and accepted is not None and accepted.decode().split(";")[0].strip() == deflate.name:
            deflate.finalize(accepted.decode())
            extensions.append(deflate)
        rest = pending[pending.index(response) + 1 :]
        return cls(reader, writer, connection, stream_id, FrameProtocol(client=True, extensions=extensions), rest)

    async def messages(self) -> AsyncIterator[str | bytes]:
        """Each message from the server until it closes the WebSocket (or the stream ends)."""
        while not self._stream_ended:
            events, self._pending = self._pending, []
            if not events:
                try:
                    events = await _receive(self._reader, self._writer, self._h2)
                except DemoError:
                    if self.close_code is None:
                        raise
                    return  # closed both ways: the end of the stream no longer matters
            for event in events:
                if isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream_id:
                    self._h2.acknowledge_received_data(event.flow_controlled_length, self.stream_id)
                    for message in self._received(event.data or b""):
                        yield message
                elif isinstance(event, h2.events.StreamEnded) and event.stream_id == self.stream_id:
                    self._stream_ended = True
                elif isinstance(event, h2.events.StreamReset) and event.stream_id == self.stream_id:
                    raise DemoError(f"the server reset the WebSocket stream (error {event.error_code})")
                elif isinstance(event, h2.events.ConnectionTerminated):
                    if self.close_code is None:
                        raise DemoError("the server ended the HTTP/2 connection before closing the WebSocket")
                    self._stream_ended = True
            await self._flush()

    def _received(self, data: bytes) -> list[str | bytes]:
        """The messages completed by these stream bytes; pings are answered, a Close is returned."""
        self._frames.receive_bytes(data)
        messages: list[str | bytes] = []
        try:
            for frame in self._frames.received_frames():
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION):
                    assert isinstance(frame.payload, (str, bytes, bytearray))
                    self._parts.append(frame.payload)
                    if frame.message_finished:
                        parts, self._parts = self._parts, []
                        text = all(isinstance(part, str) for part in parts)
                        messages.append("".join(map(str, parts)) if text else b"".join(map(bytes, parts)))  # type: ignore[arg-type]
                elif frame.opcode == Opcode.PING:
                    assert isinstance(frame.payload, (bytes, bytearray))
                    self._send(self._frames.pong(bytes(frame.payload)))
                elif frame.opcode == Opcode.CLOSE:
                    assert isinstance(frame.payload, tuple)
                    self.close_code = int(frame.payload[0])
                    self._send(self._frames.close(self.close_code), end_stream=True)
        except ParseFailed as error:
            raise DemoError(f"a WebSocket frame over HTTP/2 did not parse: {error}") from None
        return messages

    def _send(self, data: bytes | bytearray, end_stream: bool = False) -> None:
        with contextlib.suppress(h2.exceptions.StreamClosedError):
            self._h2.send_data(self.stream_id, bytes(data), end_stream=end_stream)

    async def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self._writer.write(data)
            await self._writer.drain()

    async def close(self) -> None:
        """End the connection: a normal close if the server has not closed, then GOAWAY."""
        with contextlib.suppress(OSError, ssl.SSLError, h2.exceptions.ProtocolError, TimeoutError):
            if self.close_code is None and not self._stream_ended:
                self._send(self._frames.close(CloseReason.NORMAL_CLOSURE), end_stream=True)
            self._h2.close_connection()
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._flush()
        await _close(self._writer)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close the connection, waiting at most ``CONNECT_TIMEOUT`` for TLS to say goodbye."""
    writer.close()
    with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await writer.wait_closed()


async def _receive(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, connection: h2.connection.H2Connection
) -> list[h2.events.Event]:
    """The events of the next read; what h2 has to send in answer (SETTINGS ACK, PING ACK,
    WINDOW_UPDATE) is written at once."""
    data = await reader.read(READ_SIZE)
    if not data:
        raise DemoError("the server closed the HTTP/2 connection")
    try:
        events = connection.receive_data(data)
    except h2.exceptions.ProtocolError as error:
        raise DemoError(f"HTTP/2 protocol error: {error}") from None
    pending = connection.data_to_send()
    if pending:
        writer.write(pending)
        await writer.drain()
    return events
