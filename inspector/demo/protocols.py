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
from collections import defaultdict
from dataclasses import dataclass, field
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
    """Each connection in the capture, in the order they opened."""
    opened: dict[int, ConnectionOpened] = {}
    data: dict[int, dict[Direction, bytearray]] = defaultdict(lambda: defaultdict(bytearray))
    with read_capture(capture) as records:
        for record in records:
            if isinstance(record, ConnectionOpened):
                opened[record.connection_id] = record
            elif isinstance(record, DataChunk):
                data[record.connection_id][record.direction] += record.data
    connections = []
    for ident, facts in sorted(opened.items()):
        sent = bytes(data[ident][Direction.CLIENT_TO_SERVER])
        answered = bytes(data[ident][Direction.SERVER_TO_CLIENT])
        alpn = facts.tls.alpn if facts.tls is not None else None
        if alpn == H2 or sent.startswith(H2_PREFACE):
            requests, problem = _h2_requests(sent, answered)
            connections.append(WireConnection(ident, alpn, H2, requests, problem))
        else:
            connections.append(WireConnection(ident, alpn, HTTP1, _http1_requests(sent)))
    return connections


def _http1_requests(sent: bytes) -> tuple[Request, ...]:
    requests = []
    for match in _HTTP1_HEAD.finditer(sent):
        method, target, headers = match.groups()
        upgrade = "websocket" if _UPGRADE_WEBSOCKET.search(headers) else None
        requests.append(Request(method.decode("ascii", "replace"), _path(target), upgrade))
    return tuple(requests)


@dataclass
class _Stream:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    status: str | None = None


def _h2_requests(sent: bytes, answered: bytes) -> tuple[tuple[Request, ...], str | None]:
    if not sent:
        return (), None  # opened ahead of need (Chromium does) and never used: only the server's SETTINGS
    if not sent.startswith(H2_PREFACE):
        return (), "no HTTP/2 connection preface"
    streams: dict[int, _Stream] = {}
    problem = None
    try:
        for stream_id, block in _header_blocks(sent[len(H2_PREFACE) :]):
            streams.setdefault(stream_id, _Stream(headers=dict(block)))
        for stream_id, block in _header_blocks(answered):
            stream = streams.get(stream_id)
            status = dict(block).get(b":status")
            if stream is not None and stream.status is None and status is not None:
                stream.status = status.decode("ascii", "replace")
    except (HyperframeError, hpack.HPACKError, ValueError) as error:
        problem = f"HTTP/2 heads did not parse: {error}"
    requests = []
    for _, stream in sorted(streams.items()):
        headers = stream.headers
        method = headers.get(b":method", b"").decode("ascii", "replace")
        protocol = headers.get(b":protocol")
        requests.append(
            Request(
                method,
                _path(headers.get(b":path", b"")),
                protocol.decode("ascii", "replace") if protocol is not None else None,
                stream.status,
            )
        )
    return tuple(requests), problem


def _header_blocks(data: bytes) -> list[tuple[int, list[tuple[bytes, bytes]]]]:
    """Each complete header block (HEADERS and its CONTINUATIONs) in one direction, decoded."""
    decoder = hpack.Decoder()
    # The peer's SETTINGS may allow a larger dynamic table than HPACK's default.
    decoder.max_allowed_table_size = 1 << 24
    blocks = []
    fragments = bytearray()
    view = memoryview(data)
    position = 0
    while position + FRAME_HEADER_SIZE <= len(data):
        frame, length = Frame.parse_frame_header(view[position : position + FRAME_HEADER_SIZE])
        end = position + FRAME_HEADER_SIZE + length
        if end > len(data):
            break  # cut short by the end of the capture
        if isinstance(frame, (HeadersFrame, ContinuationFrame)):
            frame.parse_body(view[position + FRAME_HEADER_SIZE : end])
            fragments += frame.data
            if "END_HEADERS" in frame.flags:
                headers = decoder.decode(bytes(fragments), raw=True)
                blocks.append((frame.stream_id, [(bytes(name), bytes(value)) for name, value in headers]))
                fragments.clear()
        position = end
    return blocks


def _path(target: bytes) -> str:
    return target.decode("ascii", "replace").split("?", 1)[0]
