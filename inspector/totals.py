"""Exchanges folded into running figures, so that nothing grows with their number.

A connection folds each exchange into an :class:`ExchangeTotals` as soon as it
completes, under the transport the exchange used (or under its route, when
only every connection's routes can decide that; see :mod:`inspector.classify`).
The report merges those totals into each transport's summary. What counts as a
message, as payload and as a handshake depends on the transport; it is decided
here, once (docs/report.md says the same in prose):

- ``websocket``: each text or binary message, both ways; payload after
  decompression; the Upgrade request and 101 response heads are the handshake.
- ``webtransport``: each DATAGRAM and each direction of a stream that carried
  data, both ways; the extended CONNECT's heads are the handshake.
- ``sse`` and ``http_stream``: each event (SSE), line (NDJSON) or
  transfer-coding chunk from the server, plus a request that carried a body;
  the request and response heads are the handshake.
- ``long_poll``, ``short_poll`` and ``http``: a response that carried data (and
  a request that carried a body); every head is per-message overhead, not a
  handshake; a response without data is an empty response (an empty poll, for
  the polling transports).
"""

from __future__ import annotations

import struct
from typing import Any

from .checked import StateError, choice, fields, items, number, optional, whole
from .records import ExchangeRecord, MessageTime, WebTransportCounts
from .report import STREAMING
from .stats import Distribution, KeyedSample
from .wire import (
    ByteAccount,
    Category,
    Direction,
    Http2Counts,
    Http3Counts,
    accounts_from_json,
    accounts_to_json,
    counts_from_json,
    counts_to_json,
)

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


def timeline_key(point: MessageTime) -> int:
    """What a point on the time line is, as one integer the same in every process."""
    (time,) = struct.unpack("<Q", struct.pack("<d", point.time))
    return time ^ (point.wire_bytes << 1 | (point.direction is S2C)) * 0x9E3779B97F4A7C15


def exchange_messages(exchange: ExchangeRecord, transport: str) -> tuple[dict[Direction, int], dict[Direction, int]]:
    """Messages and delivered payload bytes of one exchange, by direction."""
    wire_payload = {d: exchange.accounts[d][Category.PAYLOAD] for d in Direction}
    if transport in ("websocket", "webtransport"):
        return dict(exchange.stream_messages), dict(exchange.stream_payload)
    request_message = 1 if wire_payload[C2S] else 0
    if transport in ("sse", "http_stream"):
        return {C2S: request_message, S2C: exchange.stream_messages[S2C]}, wire_payload
    return {C2S: request_message, S2C: 1 if wire_payload[S2C] else 0}, wire_payload


def _handshake_at(exchange: ExchangeRecord) -> float | None:
    """When the server accepted the stream: the 101 (or final) response head."""
    heads = [*exchange.interim, exchange.response] if exchange.response else list(exchange.interim)
    for head in heads:
        if head is not None and (head.status == 101 or not head.interim):
            return head.timestamp
    return None


def handshake_duration(exchange: ExchangeRecord) -> float | None:
    """Seconds from a stream's request head to the response head that accepted
    it, or None when it was never accepted (only streams have handshakes)."""
    accepted = _handshake_at(exchange)
    if accepted is None or exchange.request is None:
        return None
    return max(0.0, accepted - exchange.request.timestamp)


def first_server_message_at(exchange: ExchangeRecord, transport: str) -> float | None:
    """When the exchange delivered its first message from the server, if it did."""
    if transport in STREAMING:
        return exchange.first_server_message_at
    if exchange.accounts[S2C][Category.PAYLOAD]:
        return exchange.response_ended_at or exchange.last_body_at
    return None


class AppProtocolTotals:
    """One application protocol's share of a transport's exchanges."""

    __slots__ = ("app_messages", "control_bytes", "control_messages", "wire_bytes")

    def __init__(self) -> None:
        self.app_messages = {C2S: 0, S2C: 0}
        self.control_messages = {C2S: 0, S2C: 0}
        #: Wire bytes of the protocol's own messages (:attr:`Category.APP_CONTROL`).
        self.control_bytes = 0
        self.wire_bytes = 0

    def add(self, exchange: ExchangeRecord) -> None:
        for direction in Direction:
            self.app_messages[direction] += exchange.app_messages[direction]
            self.control_messages[direction] += exchange.control_messages[direction]
            self.control_bytes += exchange.accounts[direction][Category.APP_CONTROL]
        self.wire_bytes += exchange.wire_bytes

    def merge(self, other: AppProtocolTotals) -> None:
        for direction in Direction:
            self.app_messages[direction] += other.app_messages[direction]
            self.control_messages[direction] += other.control_messages[direction]
        self.control_bytes += other.control_bytes
        self.wire_bytes += other.wire_bytes

    def copy(self) -> AppProtocolTotals:
        twin = AppProtocolTotals()
        twin.merge(self)
        return twin

    def to_json(self) -> dict[str, Any]:
        return {
            "app_messages": counts_to_json(self.app_messages),
            "control_messages": counts_to_json(self.control_messages),
            "control_bytes": self.control_bytes,
            "wire_bytes": self.wire_bytes,
        }

    @classmethod
    def from_json(cls, state: object) -> AppProtocolTotals:
        state = fields(state, "application protocol figures")
        figures = cls()
        figures.app_messages = counts_from_json(state.get("app_messages"), "app_messages")
        figures.control_messages = counts_from_json(state.get("control_messages"), "control_messages")
        figures.control_bytes = whole(state.get("control_bytes"), "control_bytes")
        figures.wire_bytes = whole(state.get("wire_bytes"), "wire_bytes")
        return figures


class ExchangeTotals:
    """The figures of many exchanges of one transport, summed as they complete.

    Counts and byte totals are exact; distributions keep exact values up to
    their capacity (:class:`~inspector.stats.Distribution`) and the time line
    an even sample. Totals of different connections merge with :meth:`merge`.
    """

    __slots__ = (
        "_last_response_at",
        "accounts",
        "app_messages",
        "by_app_protocol",
        "compressed",
        "control_frames",
        "control_messages",
        "data_frames",
        "empty_response_bytes",
        "empty_responses",
        "exchanges",
        "first_message_at",
        "handshake_bytes",
        "handshake_duration",
        "handshakes",
        "head_bytes",
        "http2",
        "http3",
        "inter_arrival",
        "messages",
        "payload",
        "sizes",
        "timeline",
        "webtransport",
    )

    def __init__(self, *, timeline_points: int = 512) -> None:
        self.exchanges = 0
        self.accounts = {C2S: ByteAccount(), S2C: ByteAccount()}
        self.messages = {C2S: 0, S2C: 0}
        #: Messages the application received (see :mod:`inspector.app_messages`).
        self.app_messages = {C2S: 0, S2C: 0}
        #: An application protocol's messages of its own (see :mod:`inspector.app_protocols`).
        self.control_messages = {C2S: 0, S2C: 0}
        #: The exchanges of each application protocol.
        self.by_app_protocol: dict[str, AppProtocolTotals] = {}
        self.payload = {C2S: 0, S2C: 0}
        self.handshakes = 0
        self.handshake_bytes = 0
        #: Heads that are per-message overhead (not handshakes).
        self.head_bytes = 0
        #: Responses without data (empty polls, when the transport polls) and their wire bytes.
        self.empty_responses = 0
        self.empty_response_bytes = 0
        #: Wire bytes attributed to each message.
        self.sizes = Distribution()
        #: Seconds between consecutive server messages of one connection.
        self.inter_arrival = Distribution()
        self.handshake_duration = Distribution()
        self.data_frames = {C2S: 0, S2C: 0}
        self.control_frames = {C2S: 0, S2C: 0}
        self.compressed = {C2S: 0, S2C: 0}
        self.timeline: KeyedSample[MessageTime] = KeyedSample(timeline_points, timeline_key)
        #: HTTP/2 frame figures of the exchanges that were HTTP/2 streams.
        self.http2: Http2Counts | None = None
        #: HTTP/3 figures of the exchanges that were HTTP/3 streams.
        self.http3: Http3Counts | None = None
        #: The streams and DATAGRAMs of the exchanges that were WebTransport sessions.
        self.webtransport: WebTransportCounts | None = None
        #: The earliest first message from the server, over these exchanges.
        self.first_message_at: float | None = None
        self._last_response_at: float | None = None

    @property
    def wire_bytes(self) -> int:
        return self.accounts[C2S].total + self.accounts[S2C].total

    def add(self, exchange: ExchangeRecord, transport: str) -> None:
        """Fold in one exchange of ``transport`` (a non-streaming name for an
        exchange whose poll or one-off transport is decided later)."""
        self.exchanges += 1
        for direction in Direction:
            self.accounts[direction].merge(exchange.accounts[direction])
        messages, payload = exchange_messages(exchange, transport)
        for direction in Direction:
            self.messages[direction] += messages[direction]
            self.payload[direction] += payload[direction]
            self.app_messages[direction] += exchange.app_messages[direction]
            self.control_messages[direction] += exchange.control_messages[direction]
        if exchange.app_protocol is not None:
            figures = self.by_app_protocol.get(exchange.app_protocol)
            if figures is None:
                figures = self.by_app_protocol[exchange.app_protocol] = AppProtocolTotals()
            figures.add(exchange)
        at = first_server_message_at(exchange, transport)
        if at is not None and (self.first_message_at is None or at < self.first_message_at):
            self.first_message_at = at
        if exchange.http2 is not None:
            self._http2().merge(exchange.http2)
        if exchange.http3 is not None:
            self._http3().merge(exchange.http3)
        if exchange.webtransport is not None:
            self._webtransport().merge(exchange.webtransport)
        heads = exchange.head_bytes()
        if transport in STREAMING:
            self._add_stream(exchange, heads)
        else:
            self._add_response(exchange, heads, messages)

    def _http2(self) -> Http2Counts:
        if self.http2 is None:
            self.http2 = Http2Counts()
        return self.http2

    def _http3(self) -> Http3Counts:
        if self.http3 is None:
            self.http3 = Http3Counts()
        return self.http3

    def _webtransport(self) -> WebTransportCounts:
        if self.webtransport is None:
            self.webtransport = WebTransportCounts()
        return self.webtransport

    def _add_stream(self, exchange: ExchangeRecord, heads: int) -> None:
        self.handshakes += 1
        self.handshake_bytes += heads
        duration = handshake_duration(exchange)
        if duration is not None:
            self.handshake_duration.add(duration)
        self.sizes.merge(exchange.stream_message_sizes)
        if exchange.websocket is not None:
            for direction in Direction:
                self.data_frames[direction] += exchange.websocket.data_frames.get(direction, 0)
                self.control_frames[direction] += exchange.websocket.control_frames.get(direction, 0)
                self.compressed[direction] += exchange.websocket.compressed_messages[direction]
        self.inter_arrival.merge(exchange.inter_arrival)
        for point in exchange.timeline:
            self.timeline.offer(point)

    def _add_response(self, exchange: ExchangeRecord, heads: int, messages: dict[Direction, int]) -> None:
        self.head_bytes += heads
        count = messages[C2S] + messages[S2C]
        wire = exchange.wire_bytes
        for _ in range(count):
            self.sizes.add(wire / count)
        if messages[S2C]:
            at = exchange.response_ended_at or exchange.last_body_at
            if at is not None:
                if self._last_response_at is not None:
                    self.inter_arrival.add(max(0.0, at - self._last_response_at))
                self._last_response_at = at
                self.timeline.offer(MessageTime(at, S2C, wire))
        elif exchange.response is not None:
            self.empty_responses += 1
            self.empty_response_bytes += wire

    def merge(self, other: ExchangeTotals) -> None:
        """Add the figures of other exchanges (another connection's, typically)."""
        self.exchanges += other.exchanges
        for direction in Direction:
            self.accounts[direction].merge(other.accounts[direction])
            self.messages[direction] += other.messages[direction]
            self.app_messages[direction] += other.app_messages[direction]
            self.control_messages[direction] += other.control_messages[direction]
            self.payload[direction] += other.payload[direction]
            self.data_frames[direction] += other.data_frames[direction]
            self.control_frames[direction] += other.control_frames[direction]
            self.compressed[direction] += other.compressed[direction]
        if other.http2 is not None:
            self._http2().merge(other.http2)
        if other.http3 is not None:
            self._http3().merge(other.http3)
        if other.webtransport is not None:
            self._webtransport().merge(other.webtransport)
        for name, figures in other.by_app_protocol.items():
            mine = self.by_app_protocol.get(name)
            if mine is None:
                self.by_app_protocol[name] = figures.copy()
            else:
                mine.merge(figures)
        self.handshakes += other.handshakes
        self.handshake_bytes += other.handshake_bytes
        self.head_bytes += other.head_bytes
        self.empty_responses += other.empty_responses
        self.empty_response_bytes += other.empty_response_bytes
        self.sizes.merge(other.sizes)
        self.inter_arrival.merge(other.inter_arrival)
        self.handshake_duration.merge(other.handshake_duration)
        self.timeline.merge(other.timeline)
        if other.first_message_at is not None and (
            self.first_message_at is None or other.first_message_at < self.first_message_at
        ):
            self.first_message_at = other.first_message_at

    def copy(self) -> ExchangeTotals:
        """An independent copy, to go on folding one while the other is reported."""
        twin = ExchangeTotals(timeline_points=self.timeline.capacity)
        for name in self.__slots__:
            value = getattr(self, name)
            if isinstance(value, dict):
                value = {
                    key: item.copy() if isinstance(item, (ByteAccount, AppProtocolTotals)) else item
                    for key, item in value.items()
                }
            elif isinstance(value, (Distribution, KeyedSample, Http2Counts, Http3Counts, WebTransportCounts)):
                value = value.copy()
            setattr(twin, name, value)
        return twin

    #: The figures of one direction each.
    _PAIRS = ("messages", "app_messages", "control_messages", "payload", "data_frames", "control_frames", "compressed")
    _COUNTS = ("exchanges", "handshakes", "handshake_bytes", "head_bytes", "empty_responses", "empty_response_bytes")
    _DISTRIBUTIONS = ("sizes", "inter_arrival", "handshake_duration")

    def to_json(self) -> dict[str, Any]:
        """Every figure, as JSON."""
        state: dict[str, Any] = {name: getattr(self, name) for name in self._COUNTS}
        state |= {name: counts_to_json(getattr(self, name)) for name in self._PAIRS}
        state |= {name: getattr(self, name).to_json() for name in self._DISTRIBUTIONS}
        state["accounts"] = accounts_to_json(self.accounts)
        state["by_app_protocol"] = {name: f.to_json() for name, f in sorted(self.by_app_protocol.items())}
        state["http2"] = self.http2.to_json() if self.http2 is not None else None
        state["http3"] = self.http3.to_json() if self.http3 is not None else None
        state["webtransport"] = self.webtransport.to_json() if self.webtransport is not None else None
        state["first_message_at"] = self.first_message_at
        state["last_response_at"] = self._last_response_at
        state["timeline"] = {
            "capacity": self.timeline.capacity,
            "level": self.timeline.level,
            "offered": self.timeline.offered,
            "points": [[p.time, p.direction.value, p.wire_bytes] for p in self.timeline.items],
        }
        return state

    @classmethod
    def from_json(cls, state: object) -> ExchangeTotals:
        """Figures as :meth:`to_json` wrote them; :class:`~inspector.checked.StateError` if they are not."""
        state = fields(state, "exchange figures")
        timeline = fields(state.get("timeline"), "time line")
        capacity = whole(timeline.get("capacity"), "time line capacity")
        if not 1 <= capacity <= 1 << 16:
            raise StateError(f"time line capacity: {capacity} out of range")
        totals = cls(timeline_points=capacity)
        for name in cls._COUNTS:
            setattr(totals, name, whole(state.get(name), name))
        for name in cls._PAIRS:
            setattr(totals, name, counts_from_json(state.get(name), name))
        for name in cls._DISTRIBUTIONS:
            setattr(totals, name, Distribution.from_json(state.get(name)))
        totals.accounts = accounts_from_json(state.get("accounts"), "byte accounts")
        totals.by_app_protocol = {
            name: AppProtocolTotals.from_json(f)
            for name, f in fields(state.get("by_app_protocol"), "application protocols").items()
        }
        http2 = state.get("http2")
        totals.http2 = Http2Counts.from_json(http2) if http2 is not None else None
        http3 = state.get("http3")
        totals.http3 = Http3Counts.from_json(http3) if http3 is not None else None
        webtransport = state.get("webtransport")
        totals.webtransport = WebTransportCounts.from_json(webtransport) if webtransport is not None else None
        totals.first_message_at = optional(state.get("first_message_at"), number, "first_message_at")
        totals._last_response_at = optional(state.get("last_response_at"), number, "last_response_at")
        points = []
        for point in items(timeline.get("points"), "time line"):
            time, direction, wire = items(point, "time line point")
            points.append(
                MessageTime(number(time, "time"), choice(direction, Direction, "direction"), whole(wire, "wire bytes"))
            )
        level, offered = whole(timeline.get("level"), "time line level"), whole(timeline.get("offered"), "offered")
        if level > 64:
            raise StateError(f"time line level: {level} out of range")
        totals.timeline.restore(points, level=level, offered=offered)
        return totals

    def __repr__(self) -> str:
        return f"ExchangeTotals(exchanges={self.exchanges}, wire_bytes={self.wire_bytes})"
