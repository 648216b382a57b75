"""Which protocol each connection of a demo capture spoke, read off the wire.

``--http2`` must show that the clients really used what they were asked to:
h2 where ALPN says so, each request on its own stream, WebSocket over h2 by
an extended CONNECT (RFC 8441, ``:protocol websocket`` answered ``200``)
rather than an HTTP/1.1 ``Upgrade``. This is a check of the demo's own
traffic, not accounting: it reads the capture with the same record driver
and the same protocol switch as every report, and keeps only each
connection's request and response heads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..capture import QUIC, ConnectionOpened, read_capture
from ..driver import ConnectionConsumer, DamagedRecord, RecordDriver
from ..events import ConnectionEvent, ParseFailure, RequestHead, ResponseHead
from ..http2 import HTTP_VERSION as HTTP2_VERSION
from ..http_connection import HttpConnection
from ..wire import Direction
from .settings import H2, H3, HTTP1


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
    not the traffic."""
    driver: RecordDriver[_Heads, WireConnection] = RecordDriver(_Heads)
    connections: list[WireConnection] = []
    with read_capture(capture) as records:
        for record in records:
            try:
                closed = driver.feed(record)
            except DamagedRecord:
                continue
            if closed is not None:
                connections.append(closed)
    connections += [connection for _, connection in driver.finish(driver.last_timestamp, "")]
    return sorted(connections, key=lambda connection: connection.connection_id)


class _Heads(ConnectionConsumer[WireConnection]):
    """One connection's request and response heads, as its bytes arrive."""

    def __init__(self, opened: ConnectionOpened) -> None:
        self._id = opened.connection_id
        self._quic = opened.transport == QUIC
        self._alpn = opened.tls.alpn if opened.tls is not None else None
        self._http = HttpConnection(self._alpn)
        self._requests: dict[int, RequestHead] = {}
        self._statuses: dict[int, str] = {}
        self._problem: str | None = None

    def feed(self, direction: Direction, data: bytes, timestamp: float) -> None:
        self._events(self._http.feed(direction, data, timestamp))

    def gap(self, direction: Direction, missing: int, timestamp: float) -> None:
        self._events(self._http.stop(direction, "bytes missing", timestamp))

    def close(self, timestamp: float, reason: str | None) -> WireConnection:
        self._events(self._http.close(timestamp))
        # A QUIC connection's streams are not read here (the report reads HTTP/3): it is counted, no more.
        protocol = H3 if self._quic else self._http.protocol or (H2 if self._alpn == H2 else HTTP1)
        requests = tuple(self._request(head) for head in self._requests.values())
        return WireConnection(self._id, self._alpn, protocol, requests, self._problem)

    def _events(self, events: list[ConnectionEvent]) -> None:
        for event in events:
            if isinstance(event, RequestHead):
                if len(self._requests) < REQUEST_LIMIT:
                    self._requests[len(self._requests) if event.http_version != HTTP2_VERSION else event.exchange] = (
                        event
                    )
            elif isinstance(event, ResponseHead) and event.http_version == HTTP2_VERSION and not event.interim:
                self._statuses.setdefault(event.exchange, str(event.status))
            elif isinstance(event, ParseFailure) and self._http.protocol == H2 and self._problem is None:
                self._problem = f"HTTP/2 heads did not parse: {event.anomaly.reason}"

    def _request(self, head: RequestHead) -> Request:
        if head.http_version == HTTP2_VERSION:
            protocol = head.header(":protocol")
            status = self._statuses.get(head.exchange)
        else:
            upgrade = (head.header("upgrade") or "").strip().lower()
            protocol, status = ("websocket" if upgrade == "websocket" else None), None
        return Request(head.method, _path(head.target), protocol.lower() if protocol else None, status)


#: Request heads kept per connection.
REQUEST_LIMIT = 10_000


def _path(target: str) -> str:
    return target.split("?", 1)[0]
