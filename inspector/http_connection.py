"""Both byte streams of one connection in, the events of whichever HTTP it speaks out.

Whether a connection speaks HTTP/1.1 or HTTP/2 is decided here, and only
here: by the protocol TLS negotiated (ALPN), else by the client's first bytes
(the HTTP/2 preface, held for at most :data:`~inspector.http2.SNIFF_LIMIT`
bytes while it cannot tell yet), and an accepted h2c Upgrade moves an
HTTP/1.1 connection to HTTP/2 in its middle. Every consumer of HTTP events
(the per-connection accounting, the flow rebuilder, the demo's checks) feeds
an :class:`HttpConnection` and reads the same events, so a protocol added
here reaches all of them.

After a WebSocket Upgrade (or any switch other than h2c), bytes come out as
:class:`~inspector.events.ProtocolSwitch` events, as the HTTP/1.1 parser
gives them: what they are is the consumer's business.
"""

from __future__ import annotations

from .events import ConnectionEvent, H2cUpgrade, ProtocolSwitch, ResponseHead
from .http1 import Http1Parser
from .http2 import Http2Parser, speaks_http2
from .report import HTTP1, HTTP2
from .wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


class HttpConnection:
    """One connection's HTTP, whichever version: feed chunks in the order they
    were seen, read events back. Nothing here raises on bad traffic."""

    def __init__(self, alpn: str | None = None) -> None:
        self._alpn = alpn
        self._http1 = Http1Parser()
        self.http2: Http2Parser | None = None
        #: Directions that speak HTTP/2 (both, unless an h2c Upgrade is half done).
        self._h2_directions: set[Direction] = set()
        #: Chunks held until the client's first bytes say whether it speaks HTTP/2 (None once decided).
        self._held: list[tuple[Direction, bytes, float]] | None = []
        #: Bytes each direction carried, to place HTTP/2's anomalies after an h2c Upgrade.
        self._fed = {C2S: 0, S2C: 0}
        #: The HTTP/1.1 exchange whose 101 response switched to h2c, once seen.
        self._h2c_exchange: int | None = None
        decided = speaks_http2(alpn, b"")
        if decided is not None:
            self._decide(decided, [])

    @property
    def protocol(self) -> str | None:
        """ "http/1.1" or "h2"; None while the client's first bytes cannot tell yet."""
        if self._held is not None:
            return None
        return HTTP2 if self.http2 is not None else HTTP1

    def feed(self, direction: Direction, data: bytes, timestamp: float) -> list[ConnectionEvent]:
        events: list[ConnectionEvent] = []
        if not data:
            return events
        held = self._held
        if held is None:
            self._parse(direction, data, timestamp, events)
            return events
        held.append((direction, data, timestamp))
        first = b"".join(chunk for way, chunk, _ in held if way is C2S)
        decided = speaks_http2(self._alpn, first, held=sum(len(chunk) for _, chunk, _ in held))
        if decided is not None:
            self._decide(decided, events)
        return events

    def stop(self, direction: Direction, reason: str, timestamp: float) -> list[ConnectionEvent]:
        """Parse no more of ``direction`` (its stream has a hole): see the parsers' ``stop``."""
        events = self._decide_at_end()
        if direction in self._h2_directions:
            events += self.http2.stop(direction, reason, timestamp)  # type: ignore[union-attr]
        else:
            events += self._http1.stop(direction, reason, timestamp)
        return events

    def close(self, timestamp: float) -> list[ConnectionEvent]:
        """The connection ended: finish every parser."""
        events = self._decide_at_end()
        events += self._http1.close(timestamp)
        if self.http2 is not None:
            events += self.http2.close(timestamp)
        return events

    # -- deciding ---------------------------------------------------------

    def _decide(self, http2: bool, events: list[ConnectionEvent]) -> None:
        """Parse as HTTP/2 or HTTP/1.1 from now on, starting with the chunks held."""
        held, self._held = self._held or [], None
        if http2:
            self.http2 = Http2Parser()
            self._h2_directions = {C2S, S2C}
        for direction, data, timestamp in held:
            self._parse(direction, data, timestamp, events)

    def _decide_at_end(self) -> list[ConnectionEvent]:
        """The stream ends (or has a hole) before the client's first bytes could tell."""
        events: list[ConnectionEvent] = []
        if self._held is not None:
            first = b"".join(chunk for way, chunk, _ in self._held if way is C2S)
            self._decide(bool(speaks_http2(self._alpn, first, ended=True)), events)
        return events

    # -- parsing ----------------------------------------------------------

    def _parse(self, direction: Direction, data: bytes, timestamp: float, events: list[ConnectionEvent]) -> None:
        self._fed[direction] += len(data)
        if direction in self._h2_directions:
            events += self.http2.feed(direction, data, timestamp)  # type: ignore[union-attr]
            return
        for event in self._http1.feed(direction, data, timestamp):
            if isinstance(event, ResponseHead):
                if event.status == 101 and (event.header("upgrade") or "").strip().lower() == "h2c":
                    self._h2c_exchange = event.exchange
            elif isinstance(event, ProtocolSwitch) and self._switch_to_h2c(event, events):
                continue
            events.append(event)

    def _switch_to_h2c(self, event: ProtocolSwitch, events: list[ConnectionEvent]) -> bool:
        """Follow an accepted h2c Upgrade into HTTP/2; False for any other switch."""
        if self.http2 is None:
            if self._h2c_exchange is None or event.exchange != self._h2c_exchange:
                return False
            offsets = dict(self._fed)
            offsets[event.direction] -= len(event.data)
            self.http2 = Http2Parser(offsets=offsets, upgraded=True)
            counts = self.http2.stream_counts(1)
            assert counts is not None
            events.append(H2cUpgrade(self._h2c_exchange, counts, event.timestamp))
        self._h2_directions.add(event.direction)
        events += self.http2.feed(event.direction, event.data, event.timestamp)
        return True
