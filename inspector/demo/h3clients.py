"""Python clients of the demo over HTTP/3 (aioquic), for ``rtinspect demo --http3``.

Each client has a QUIC connection of its own (as each Python client over TCP
has its own connection) and counts what it receives as the clients over TCP
do (:class:`~.tally.ClientTally`): SSE events, NDJSON lines, poll responses
(a request per poll, one after another on the one connection), WebSocket
messages over HTTP/3 (RFC 9220: an extended CONNECT with ``:protocol
websocket``, then wsproto frames in the stream's DATA frames, masked as a
client's are), and WebTransport: each feed message a unidirectional stream
of its own (``/wt``) or one DATAGRAM (``/wt-datagram``), then the feed's
end; the client ends the session once it has every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode, urlsplit

from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DatagramReceived, DataReceived, H3Event, HeadersReceived, WebTransportStreamDataReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamReset
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode

from demo_server.app import FEED_ENDED_HEADER
from demo_server.h3 import MAX_DATAGRAM_FRAME, WEBTRANSPORT_DRAFT
from demo_server.sse import END_EVENT

from ..sse import SseStream
from .h2websocket import DEFLATE_OFFER
from .settings import CONNECT_TIMEOUT, DemoError, DemoSettings
from .tally import ClientTally

#: What a client that spoke HTTP/3 records as its ``http_version``.
HTTP3_VERSION = "HTTP/3"


class _Ended:
    """The stream or the connection ended without the answer the client waited for."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


class H3Client(QuicConnectionProtocol):
    """One QUIC connection speaking HTTP/3; each request stream's events in a queue of its own,
    each WebTransport session's (its streams' data and its datagrams) in the session's."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.http = H3Connection(self._quic, enable_webtransport=True)
        self._streams: dict[int, asyncio.Queue[H3Event | _Ended]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            self._deliver(event.stream_id, _Ended(f"the server reset the stream (error {event.error_code})"))
        elif isinstance(event, ConnectionTerminated):
            reason = f"the connection closed (error {event.error_code}: {event.reason_phrase or 'no reason'})"
            for queue in self._streams.values():
                queue.put_nowait(_Ended(reason))
        for h3_event in self.http.handle_event(event):
            if isinstance(h3_event, WebTransportStreamDataReceived):
                self._deliver(h3_event.session_id, h3_event)
            elif isinstance(h3_event, (HeadersReceived, DataReceived, DatagramReceived)):
                self._deliver(h3_event.stream_id, h3_event)

    def _deliver(self, stream_id: int, event: H3Event | _Ended) -> None:
        queue = self._streams.get(stream_id)
        if queue is not None:
            queue.put_nowait(event)

    def request(self, method: str, url: str, headers: list[tuple[bytes, bytes]] = (), *, protocol: str = "") -> int:  # type: ignore[assignment]
        """Send a request's head (ended unless it is a CONNECT); its stream id."""
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        stream_id = self._quic.get_next_available_stream_id()
        self._streams[stream_id] = asyncio.Queue()
        head = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", parts.netloc.encode()),
            (b":path", path.encode()),
        ]
        if protocol:
            head.insert(1, (b":protocol", protocol.encode()))
        self.http.send_headers(stream_id, [*head, *headers], end_stream=method != "CONNECT")
        self.transmit()
        return stream_id

    async def next_event(self, stream_id: int) -> H3Event:
        """The next event of the stream (or session); DemoError if it ended instead."""
        event = await self._streams[stream_id].get()
        if isinstance(event, _Ended):
            raise DemoError(event.reason)
        return event

    async def response(self, stream_id: int) -> tuple[int, dict[bytes, bytes], bool]:
        """The response head: status, headers, and whether the stream ended with it."""
        async with asyncio.timeout(CONNECT_TIMEOUT):
            while True:
                event = await self.next_event(stream_id)
                if isinstance(event, HeadersReceived):
                    headers = dict(event.headers)
                    return int(headers.get(b":status", b"0")), headers, event.stream_ended

    async def body(self, stream_id: int) -> AsyncIterator[bytes]:
        """The response body's chunks as they arrive, until the stream ends."""
        while True:
            event = await self.next_event(stream_id)
            if isinstance(event, DataReceived):
                if event.data:
                    yield event.data
                if event.stream_ended:
                    return
            elif isinstance(event, HeadersReceived) and event.stream_ended:  # trailers
                return

    def forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)


def quic_client_configuration(ca: str | None) -> QuicConfiguration:
    """A client's QUIC settings: HTTP/3, DATAGRAM frames allowed, trusting ``ca`` only."""
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=H3_ALPN, max_datagram_frame_size=MAX_DATAGRAM_FRAME
    )
    if ca is not None:
        configuration.load_verify_locations(ca)
    return configuration


@contextlib.asynccontextmanager
async def h3_connection(base: str, ca: str | None) -> AsyncIterator[H3Client]:
    """A QUIC connection to ``https://HOST:PORT`` speaking HTTP/3."""
    parts = urlsplit(base)
    host = parts.hostname or "127.0.0.1"
    configuration = quic_client_configuration(ca)
    configuration.server_name = "localhost" if host in ("127.0.0.1", "::1") else host
    async with asyncio.timeout(CONNECT_TIMEOUT):
        opening = connect(host, parts.port or 443, configuration=configuration, create_protocol=H3Client)
        client = await opening.__aenter__()
    try:
        yield client  # type: ignore[misc]
    finally:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await opening.__aexit__(None, None, None)


def _ca(target: Any) -> str | None:
    return str(target.ca) if target.ca is not None else None


async def _get_ok(client: H3Client, url: str, tally: ClientTally, headers: list[tuple[bytes, bytes]] = ()) -> int:  # type: ignore[assignment]
    stream_id = client.request("GET", url, list(headers))
    tally.requests += 1
    tally.http_version = HTTP3_VERSION
    status, _, _ = await client.response(stream_id)
    if status != 200:
        raise DemoError(f"{urlsplit(url).path}: HTTP {status}")
    return stream_id


async def sse_client(target: Any, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/sse`` over HTTP/3: an event per feed message, then ``end``."""
    async with h3_connection(target.base, _ca(target)) as client:
        stream_id = await _get_ok(client, target.base + tally.demo.path, tally, [(b"accept", b"text/event-stream")])
        connected.set()
        events = SseStream()
        async for chunk in client.body(stream_id):
            for event in events.feed(chunk, time.time()):
                tally.delivered([] if event.type == END_EVENT else [json.loads(event.data)], event.timestamp)


async def stream_client(target: Any, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/stream`` over HTTP/3: an NDJSON line per feed message."""
    async with h3_connection(target.base, _ca(target)) as client:
        stream_id = await _get_ok(client, target.base + tally.demo.path, tally)
        connected.set()
        rest = b""
        async for chunk in client.body(stream_id):
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    tally.delivered([json.loads(line)], time.time())


async def _poll(target: Any, tally: ClientTally, connected: asyncio.Event, pause: float) -> None:
    """Polls one after another on one connection until the feed has ended (as :func:`.clients._poll`)."""
    after = 0
    async with h3_connection(target.base, _ca(target)) as client:
        while True:
            stream_id = client.request("GET", f"{target.base}{tally.demo.path}?{urlencode({'after': after})}")
            connected.set()
            tally.requests += 1
            tally.http_version = HTTP3_VERSION
            status, headers, ended = await client.response(stream_id)
            body = b"" if ended else b"".join([chunk async for chunk in client.body(stream_id)])
            client.forget(stream_id)
            if status == 200:
                messages = json.loads(body)
                tally.delivered(messages, time.time())
                after = max([after, *(int(message["seq"]) for message in messages)])
            elif status == 204:
                if headers.get(FEED_ENDED_HEADER.lower().encode()) == b"1":
                    return
            else:
                raise DemoError(f"{tally.demo.path}: HTTP {status}")
            if pause:
                await asyncio.sleep(pause)


async def long_poll_client(target: Any, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/longpoll?after=`` over HTTP/3: asks again at once."""
    await _poll(target, tally, connected, 0.0)


async def short_poll_client(target: Any, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/poll?after=`` over HTTP/3: asks again every ``poll_interval`` seconds."""
    await _poll(target, tally, connected, settings.poll_interval)


async def _open(
    client: H3Client, url: str, protocol: str, headers: list[tuple[bytes, bytes]]
) -> tuple[int, dict[bytes, bytes]]:
    """An extended CONNECT (RFC 9220) for ``protocol``, answered 200: its stream and answer."""
    if protocol == "webtransport":
        headers = [*headers, WEBTRANSPORT_DRAFT]
    stream_id = client.request("CONNECT", url, headers, protocol=protocol)
    status, answer, _ = await client.response(stream_id)
    if status != 200:
        raise DemoError(f"the {protocol} CONNECT was answered with status {status}, not 200")
    return stream_id, answer


async def websocket_client(target: Any, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/ws`` over HTTP/3 (RFC 9220): a text message per feed message, then the server's close."""
    async with h3_connection(target.base, _ca(target)) as client:
        headers = [(b"sec-websocket-version", b"13")]
        deflate = PerMessageDeflate() if settings.compression else None
        if deflate is not None:
            headers.append((b"sec-websocket-extensions", DEFLATE_OFFER.encode()))
        stream_id, answer = await _open(client, target.base + tally.demo.path, "websocket", headers)
        tally.requests += 1
        tally.http_version = HTTP3_VERSION
        extensions: list[Extension] = []
        accepted = answer.get(b"sec-websocket-extensions")
        if deflate is not None and accepted is not None:
            deflate.finalize(accepted.decode())
            extensions.append(deflate)
        frames = FrameProtocol(client=True, extensions=extensions)
        connected.set()
        parts: list[Any] = []
        async for chunk in client.body(stream_id):
            frames.receive_bytes(chunk)
            for frame in frames.received_frames():
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION):
                    parts.append(frame.payload)
                    if frame.message_finished:
                        text = "".join(parts) if isinstance(parts[0], str) else b"".join(parts).decode()
                        parts = []
                        tally.delivered([json.loads(text)], time.time())
                elif frame.opcode is Opcode.PING and isinstance(frame.payload, bytes):
                    client.http.send_data(stream_id, bytes(frames.pong(frame.payload)), end_stream=False)
                    client.transmit()
                elif frame.opcode is Opcode.CLOSE and isinstance(frame.payload, tuple):
                    code = int(frame.payload[0])
                    client.http.send_data(stream_id, bytes(frames.close(code)), end_stream=True)
                    client.transmit()
                    if code != CloseReason.NORMAL_CLOSURE:
                        raise DemoError(f"closed with code {code}")
                    return


async def webtransport_client(
    target: Any, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings
) -> None:
    """``/wt`` (each feed message a unidirectional stream) or ``/wt-datagram`` (each one a
    DATAGRAM) over WebTransport; after the feed, its end (``{"last_seq": N}``) comes the
    same way, counted as one more delivery as SSE's end event is. The client ends the
    session once it has every message up to that one, or when the server ends it."""
    async with h3_connection(target.base, _ca(target)) as client:
        session, _ = await _open(
            client, target.base + tally.demo.path, "webtransport", [(b"origin", target.base.encode())]
        )
        tally.requests += 1
        tally.http_version = HTTP3_VERSION
        connected.set()
        streams: dict[int, list[bytes]] = {}
        last_seq: int | None = None

        def take(data: bytes) -> None:
            nonlocal last_seq
            message = json.loads(data)
            if "seq" in message:
                tally.delivered([message], time.time())
            else:
                last_seq = int(message["last_seq"])
                tally.delivered([], time.time())

        while last_seq is None or tally.received < last_seq:
            event = await client.next_event(session)
            if isinstance(event, DatagramReceived):
                take(event.data)
            elif isinstance(event, WebTransportStreamDataReceived):
                streams.setdefault(event.stream_id, []).append(event.data)
                if event.stream_ended:
                    take(b"".join(streams.pop(event.stream_id)))
            elif isinstance(event, DataReceived) and event.stream_ended:
                break  # the server ended the session (a datagram was lost on the way)
        client.http.send_data(session, b"", end_stream=True)
        client.transmit()


H3_CLIENTS = {
    "ws": websocket_client,
    "sse": sse_client,
    "stream": stream_client,
    "longpoll": long_poll_client,
    "poll": short_poll_client,
    "wt": webtransport_client,
    "wtdgram": webtransport_client,
}
