"""Which protocol each connection of a demo capture spoke, read off the wire.

``--http2`` must show that the clients really used what they were asked to:
h2 where ALPN says so, each request on its own stream, WebSocket over h2 by
an extended CONNECT (RFC 8441, ``:protocol websocket`` answered ``200``)
rather than an HTTP/1.1 ``Upgrade``. This is a check of the demo's own
traffic, not accounting: it reads request and response heads only (HPACK
decoded with one decoder per direction, as HTTP/2 requires) and skips every
other frame by its length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import hpack
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import ContinuationFrame, Frame, HeadersFrame

from ..capture import ConnectionOpened, DataChunk, read_capture
from ..wire import Direction
from .settings import H2, HTTP1

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_SIZE = 9
_HTTP1_HEAD = re.compile(rb"([A-Z]+) (\S+) HTTP/1\.[01]\r\n(.*?)\r\n\r\n", re.S)
_UPGRADE_WEBSOCKET = re.compile(rb"(?im)^upgrade:[ \t]*websocket[ \t]*\r?$")


@dataclass(frozen=True, slots=True)
class Request:
    """One request as the wire shows it: method, path (without the query) and, for
    an extended CONNECT, its ``:protocol``; ``status`` is the answer's (h2 only)."""

    method: str
    path: str
    protocol: str | None = None
    status: str | None = None

    @property
    def websocket(self) -> bool:
        """A WebSocket opening: an extended CONNECT answered 200 (h2), or an Upgrade (HTTP/1.1)."""
        return self.protocol == "websocket" and (self.status in (None, "200"))


@dataclass(frozen=True, slots=True)
class WireConnection:
    """One connection: the ALPN its client and the proxy agreed on, the protocol its
    bytes show, and its requests in order. ``problem`` says what did not parse."""

    connection_id: int
    alpn: str | None
    protocol: str
    requests: tuple[Request, ...]
    problem: str | None = None

    @property
    def paths(self) -> set[str]:
        return {request.path for request in self.requests}

    @property
    def websocket_upgrades(self) -> int:
        """HTTP/1.1 requests asking for ``Upgrade: websocket``."""
        return sum(1 for r in self.requests if r.websocket and r.method == "GET")

    @property
    def extended_connects(self) -> int:
        """h2 streams opened by CONNECT with ``:protocol websocket`` and answered 200."""
        return sum(1 for r in self.requests if r.websocket and r.method == "CONNECT")


def wire_connections(capture: Path) -> list[WireConnection]:
    """Each connection in the capture, in the order of their ids. Memory holds the heads,
    not the traffic: h2 frames other than HEADERS and CONTINUATION are skipped as they
    stream past, and HTTP/1.1 is read in the client's direction only (its first
    :data:`HTTP1_SCAN_LIMIT` bytes)."""
    connections: dict[int, _Connection] = {}
    with read_capture(capture) as records:
        for record in records:
            if isinstance(record, ConnectionOpened):
                connection = connections.setdefault(record.connection_id, _Connection())
                connection.alpn = record.tls.alpn if record.tls is not None else None
            elif isinstance(record, DataChunk):
                connections.setdefault(record.connection_id, _Connection()).feed(record.direction, record.data)
    return [connection.result(ident) for ident, connection in sorted(connections.items())]


#: Bytes of an HTTP/1.1 connection's client side searched for request heads.
HTTP1_SCAN_LIMIT = 1 << 20


class _Connection:
    """One connection as its bytes arrive: which protocol (the client's first bytes say,
    h2 by its preface), then its heads."""

    def __init__(self) -> None:
        self.alpn: str | None = None
        self.protocol: str | None = None
        self._first = bytearray()
        self._waiting: list[tuple[Direction, bytes]] = []
        self._sent = bytearray()
        self._h2: dict[Direction, _HeaderBlocks] = {}
        self._problem: str | None = None

    def feed(self, direction: Direction, data: bytes) -> None:
        if self.protocol is None:
            self._waiting.append((direction, data))
            if direction is Direction.CLIENT_TO_SERVER:
                self._first += data[: len(H2_PREFACE)]
                if len(self._first) >= len(H2_PREFACE) or not H2_PREFACE.startswith(bytes(self._first)):
                    self._decide(H2 if self._first.startswith(H2_PREFACE) else HTTP1)
            return
        if self._problem is not None:
            return
        if self.protocol == HTTP1:
            if direction is Direction.CLIENT_TO_SERVER and len(self._sent) < HTTP1_SCAN_LIMIT:
                self._sent += data[: HTTP1_SCAN_LIMIT - len(self._sent)]
            return
        try:
            self._h2[direction].feed(data)
        except (HyperframeError, hpack.HPACKError, ValueError) as error:
            self._problem = f"HTTP/2 heads did not parse: {error}"

    def _decide(self, protocol: str) -> None:
        self.protocol = protocol
        if protocol == H2:
            self._h2 = {
                Direction.CLIENT_TO_SERVER: _HeaderBlocks(preface=True),
                Direction.SERVER_TO_CLIENT: _HeaderBlocks(),
            }
        waiting, self._waiting = self._waiting, []
        for direction, data in waiting:
            self.feed(direction, data)

    def result(self, ident: int) -> WireConnection:
        if self.protocol is None:
            # The client sent nothing (or too little to tell): a connection opened ahead of need
            # and never used, as Chromium does; over h2 the server's SETTINGS are all there is.
            protocol = H2 if self.alpn == H2 else HTTP1
            return WireConnection(ident, self.alpn, protocol, ())
        if self.protocol == HTTP1:
            return WireConnection(ident, self.alpn, HTTP1, _http1_requests(bytes(self._sent)))
        return WireConnection(ident, self.alpn, H2, self._h2_requests(), self._problem)

    def _h2_requests(self) -> tuple[Request, ...]:
        asked = self._h2[Direction.CLIENT_TO_SERVER].blocks
        answered = self._h2[Direction.SERVER_TO_CLIENT].blocks
        statuses: dict[int, str] = {}
        for stream_id, headers in answered:
            status = headers.get(b":status")
            if status is not None and not status.startswith(b"1"):
                statuses.setdefault(stream_id, status.decode("ascii", "replace"))
        requests: dict[int, Request] = {}
        for stream_id, headers in asked:
            if stream_id in requests:
                continue  # trailers
            protocol = headers.get(b":protocol")
            requests[stream_id] = Request(
                headers.get(b":method", b"").decode("ascii", "replace"),
                _path(headers.get(b":path", b"")),
                protocol.decode("ascii", "replace") if protocol is not None else None,
                statuses.get(stream_id),
            )
        return tuple(request for _, request in sorted(requests.items()))


def _http1_requests(sent: bytes) -> tuple[Request, ...]:
    requests = []
    for match in _HTTP1_HEAD.finditer(sent):
        method, target, headers = match.groups()
        upgrade = "websocket" if _UPGRADE_WEBSOCKET.search(headers) else None
        requests.append(Request(method.decode("ascii", "replace"), _path(target), upgrade))
    return tuple(requests)


class _HeaderBlocks:
    """One direction of an h2 connection, fed as it arrives: each complete header block
    (HEADERS and its CONTINUATIONs), HPACK-decoded in order; every other frame is skipped
    without being held."""

    def __init__(self, preface: bool = False) -> None:
        self.blocks: list[tuple[int, dict[bytes, bytes]]] = []
        self._preface = preface
        self._buffer = bytearray()
        self._skip = 0
        self._fragments = bytearray()
        self._decoder = hpack.Decoder()
        # The peer's SETTINGS may allow a larger dynamic table than HPACK's default.
        self._decoder.max_allowed_table_size = 1 << 24

    def feed(self, data: bytes) -> None:
        if self._skip:
            skipped = min(self._skip, len(data))
            self._skip -= skipped
            data = data[skipped:]
        self._buffer += data
        if self._preface:
            if len(self._buffer) < len(H2_PREFACE):
                return
            if not self._buffer.startswith(H2_PREFACE):
                raise ValueError("no HTTP/2 connection preface")
            del self._buffer[: len(H2_PREFACE)]
            self._preface = False
        while len(self._buffer) >= FRAME_HEADER_SIZE:
            frame, length = Frame.parse_frame_header(memoryview(self._buffer)[:FRAME_HEADER_SIZE])
            end = FRAME_HEADER_SIZE + length
            if isinstance(frame, (HeadersFrame, ContinuationFrame)):
                if len(self._buffer) < end:
                    return
                frame.parse_body(memoryview(bytes(self._buffer[FRAME_HEADER_SIZE:end])))
                del self._buffer[:end]
                self._fragments += frame.data
                if "END_HEADERS" in frame.flags:
                    headers = self._decoder.decode(bytes(self._fragments), raw=True)
                    self._fragments.clear()
                    self.blocks.append((frame.stream_id, {bytes(name): bytes(value) for name, value in headers}))
            elif len(self._buffer) >= end:
                del self._buffer[:end]
            else:
                self._skip = end - len(self._buffer)
                self._buffer.clear()
                return


def _path(target: bytes) -> str:
    return target.decode("ascii", "replace").split("?", 1)[0]
