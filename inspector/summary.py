"""Per-transport summaries: connection records in, a :class:`~inspector.report.Report` out.

What counts as a message, as payload and as a handshake depends on the
transport (the README's "Report fields" section says the same in prose):

- ``websocket``: each text or binary message, both ways; payload after
  decompression; the Upgrade request and 101 response heads are the handshake.
- ``sse`` and ``http_stream``: each event (SSE), line (NDJSON) or
  transfer-coding chunk from the server, plus a request that carried a body;
  the request and response heads are the handshake.
- ``long_poll``, ``short_poll`` and ``http``: a response that carried data (and
  a request that carried a body); every head is per-message overhead, not a
  handshake; a poll whose response had no data is an empty poll.

Wire bytes are summed from the byte categories; overhead is every wire byte
that was not payload as it travelled.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .classify import DEFAULT_LONG_POLL_THRESHOLD, Classification, TransportRule, classify
from .connection import ConnectionRecord, ExchangeRecord
from .redact import redact_target
from .report import (
    TRANSPORTS,
    ConnectionSummary,
    MessagePoint,
    PerDirection,
    Report,
    TransportSummary,
    WebSocketFigures,
)
from .stats import Distribution, EvenSample
from .wire import ByteAccount, Category, Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

STREAMING = frozenset({"websocket", "sse", "http_stream"})
POLLING = frozenset({"long_poll", "short_poll"})

#: Categories that structure messages without being payload.
FRAMING = (Category.CHUNK_FRAMING, Category.MESSAGE_SYNTAX, Category.FRAME_HEADER, Category.MASK_KEY)

WIRE_BYTES_NOTE = (
    "Wire bytes are the bytes of each TCP stream after TLS; TCP/IP headers and TLS record overhead are not counted."
)
POLL_MESSAGE_NOTE = (
    "A poll's message is a response that carried data; one response can carry several application messages, "
    "so compare polling per message with care."
)
TIMELINE_POINTS = 4000


def _pair(counts: dict[Direction, int]) -> PerDirection:
    return PerDirection(counts[C2S], counts[S2C])


class _Totals:
    """One transport's figures while they are being summed."""

    def __init__(self, transport: str) -> None:
        self.transport = transport
        self.connections = 0
        self.handshakes = 0
        self.handshake_bytes = 0
        self.head_bytes = 0
        self.tls_handshakes = 0
        self.accounts = {C2S: ByteAccount(), S2C: ByteAccount()}
        self.messages = {C2S: 0, S2C: 0}
        self.payload = {C2S: 0, S2C: 0}
        self.empty_polls = 0
        self.empty_poll_bytes = 0
        self.anomalies = 0
        self.sizes = Distribution()
        self.inter_arrival = Distribution()
        self.time_to_first_byte = Distribution()
        self.time_to_first_message = Distribution()
        self.handshake_duration = Distribution()
        self.tls_duration = Distribution()
        self.data_frames = {C2S: 0, S2C: 0}
        self.control_frames = {C2S: 0, S2C: 0}
        self.compressed = {C2S: 0, S2C: 0}
        self.timeline = EvenSample(TIMELINE_POINTS)

    def summary(self) -> TransportSummary:
        wire = {d: self.accounts[d].total for d in Direction}
        wire_payload = {d: self.accounts[d][Category.PAYLOAD] for d in Direction}
        wire_total = wire[C2S] + wire[S2C]
        overhead = wire_total - wire_payload[C2S] - wire_payload[S2C]
        messages = self.messages[C2S] + self.messages[S2C]
        categories = {c.value: PerDirection(self.accounts[C2S][c], self.accounts[S2C][c]) for c in Category}
        websocket = None
        if self.transport == "websocket":
            websocket = WebSocketFigures(
                data_frames=_pair(self.data_frames),
                control_frames=_pair(self.control_frames),
                frame_header_bytes=categories[Category.FRAME_HEADER] + categories[Category.MASK_KEY],
                wire_payload_bytes=categories[Category.PAYLOAD],
                control_bytes=categories[Category.CONTROL],
                compressed_messages=_pair(self.compressed),
            )
        return TransportSummary(
            transport=self.transport,
            connections=self.connections,
            tcp_connects=self.connections,
            handshakes=self.handshakes,
            handshake_bytes=self.handshake_bytes,
            messages=_pair(self.messages),
            payload_bytes=_pair(self.payload),
            wire_bytes=_pair(wire),
            overhead_bytes=overhead,
            overhead_ratio=overhead / wire_total if wire_total else 0.0,
            bytes_per_message=self.sizes.summary(),
            anomalies=self.anomalies,
            categories=categories,
            head_bytes=self.head_bytes,
            framing_bytes=sum(self.accounts[d][c] for d in Direction for c in FRAMING),
            control_bytes=categories[Category.CONTROL].total,
            empty_polls=self.empty_polls,
            empty_poll_bytes=self.empty_poll_bytes,
            wire_bytes_per_message=wire_total / messages if messages else None,
            inter_arrival=self.inter_arrival.summary(),
            time_to_first_byte=self.time_to_first_byte.summary(),
            time_to_first_message=self.time_to_first_message.summary(),
            handshake_duration=self.handshake_duration.summary(),
            websocket=websocket,
            tls_handshakes=self.tls_handshakes,
            tls_handshake_duration=self.tls_duration.summary(),
        )


def exchange_messages(exchange: ExchangeRecord, transport: str) -> tuple[dict[Direction, int], dict[Direction, int]]:
    """Messages and delivered payload bytes of one exchange, by direction."""
    wire_payload = {d: exchange.accounts[d][Category.PAYLOAD] for d in Direction}
    if transport == "websocket":
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


def _first_server_message_at(exchange: ExchangeRecord, transport: str) -> float | None:
    if transport in STREAMING:
        return exchange.first_server_message_at
    if exchange.accounts[S2C][Category.PAYLOAD]:
        return exchange.response_ended_at or exchange.last_body_at
    return None


class _Builder:
    def __init__(self, classification: Classification, redact: bool) -> None:
        self.classification = classification
        self.redact = redact
        self.totals: dict[str, _Totals] = {}
        self.connections: list[ConnectionSummary] = []
        self.started_at: float | None = None
        self.ended_at: float | None = None

    def _totals(self, transport: str) -> _Totals:
        if transport not in self.totals:
            self.totals[transport] = _Totals(transport)
        return self.totals[transport]

    def add(self, record: ConnectionRecord) -> None:
        transport = self.classification.connections[record.id]
        totals = self._totals(transport)
        totals.connections += 1
        totals.anomalies += len(record.anomalies)
        tls = record.opened.tls
        if tls is not None:
            totals.tls_handshakes += 1
            if tls.handshake_started is not None and tls.handshake_finished is not None:
                totals.tls_duration.add(tls.handshake_finished - tls.handshake_started)
        for direction in Direction:
            totals.accounts[direction].merge(record.unattributed[direction])
        self._span(record.opened.timestamp, record.closed_at)

        messages = {C2S: 0, S2C: 0}
        payload = {C2S: 0, S2C: 0}
        first_message_at: float | None = None
        last_poll_at: dict[str, float] = {}
        for exchange in record.exchanges:
            kind = self.classification.of(record, exchange)
            sent, delivered = self._exchange(self._totals(kind), exchange, kind, last_poll_at)
            for direction in Direction:
                messages[direction] += sent[direction]
                payload[direction] += delivered[direction]
            at = _first_server_message_at(exchange, kind)
            if at is not None and (first_message_at is None or at < first_message_at):
                first_message_at = at

        started = record.first_byte_at.get(C2S)
        if started is not None:
            answered = record.first_byte_at.get(S2C)
            if answered is not None:
                totals.time_to_first_byte.add(max(0.0, answered - started))
            if first_message_at is not None:
                totals.time_to_first_message.add(max(0.0, first_message_at - started))

        self.connections.append(
            ConnectionSummary(
                id=record.id,
                transport=transport,
                client=record.client,
                server=record.server,
                opened_at=record.opened.timestamp,
                closed_at=record.closed_at,
                close_reason=record.close_reason if record.closed_at is not None else "open",
                exchanges=len(record.exchanges),
                wire_bytes=PerDirection(record.wire_bytes(C2S), record.wire_bytes(S2C)),
                payload_bytes=_pair(payload),
                messages=_pair(messages),
                anomalies=record.anomalies,
                targets=_targets(record, self.redact),
                reconstructed=record.opened.reconstructed,
            )
        )

    def _exchange(
        self, totals: _Totals, exchange: ExchangeRecord, transport: str, last_poll_at: dict[str, float]
    ) -> tuple[dict[Direction, int], dict[Direction, int]]:
        for direction in Direction:
            totals.accounts[direction].merge(exchange.accounts[direction])
        messages, payload = exchange_messages(exchange, transport)
        for direction in Direction:
            totals.messages[direction] += messages[direction]
            totals.payload[direction] += payload[direction]
        heads = exchange.head_bytes()
        if transport in STREAMING:
            totals.handshakes += 1
            totals.handshake_bytes += heads
            duration = handshake_duration(exchange)
            if duration is not None:
                totals.handshake_duration.add(duration)
            totals.sizes.merge(exchange.stream_message_sizes)
            if exchange.websocket is not None:
                for direction in Direction:
                    totals.data_frames[direction] += exchange.websocket.data_frames.get(direction, 0)
                    totals.control_frames[direction] += exchange.websocket.control_frames.get(direction, 0)
                    totals.compressed[direction] += exchange.websocket.compressed_messages[direction]
            totals.inter_arrival.merge(exchange.inter_arrival)
            for point in exchange.timeline:
                totals.timeline.offer(MessagePoint(point.time, transport, point.direction, point.wire_bytes))
            return messages, payload

        totals.head_bytes += heads
        count = messages[C2S] + messages[S2C]
        for _ in range(count):
            totals.sizes.add(exchange.wire_bytes / count)
        if messages[S2C]:
            at = exchange.response_ended_at or exchange.last_body_at
            if at is not None:
                if transport in last_poll_at:
                    totals.inter_arrival.add(max(0.0, at - last_poll_at[transport]))
                last_poll_at[transport] = at
                totals.timeline.offer(MessagePoint(at, transport, S2C, exchange.wire_bytes))
        elif transport in POLLING and exchange.response is not None:
            totals.empty_polls += 1
            totals.empty_poll_bytes += exchange.wire_bytes
        return messages, payload

    def _span(self, opened: float, closed: float | None) -> None:
        if self.started_at is None or opened < self.started_at:
            self.started_at = opened
        end = closed if closed is not None else opened
        if self.ended_at is None or end > self.ended_at:
            self.ended_at = end


def _targets(record: ConnectionRecord, redact: bool, limit: int = 3) -> tuple[str, ...]:
    seen: list[str] = []
    for exchange in record.exchanges:
        if exchange.request is None:
            continue
        target = redact_target(exchange.request.target) if redact else exchange.request.target
        if target not in seen:
            seen.append(target)
            if len(seen) == limit:
                break
    return tuple(seen)


def build_report(
    records: Iterable[ConnectionRecord],
    *,
    long_poll_threshold: float = DEFAULT_LONG_POLL_THRESHOLD,
    rules: Iterable[TransportRule] = (),
    sources: Sequence[str] = (),
    notes: Sequence[str] = (),
    classification: Classification | None = None,
    redact: bool = True,
) -> Report:
    """Summarise connections by transport. ``notes`` are added to the report's own.

    ``classification`` (made with more connections in view than ``records``)
    replaces the one these records alone would give, so a report of some
    connections attributes them as a report of all of them would.

    With ``redact`` (the default), request targets lose their credentials
    (:func:`~inspector.redact.redact_target`); no figure changes.
    """
    records = list(records)
    if classification is None:
        classification = classify(records, long_poll_threshold=long_poll_threshold, rules=rules)
    builder = _Builder(classification, redact)
    for record in records:
        builder.add(record)
    transports = {name: builder.totals[name].summary() for name in TRANSPORTS if name in builder.totals}
    report_notes = [WIRE_BYTES_NOTE, *notes]
    if any(transports[name].messages.total for name in POLLING if name in transports):
        report_notes.append(POLL_MESSAGE_NOTE)
    if any(_estimated(summary) for summary in transports.values()):
        report_notes.append(
            "Percentiles marked ~ are estimated from a uniform sample; counts, totals, means and maxima are exact."
        )
    timeline = [point for name in TRANSPORTS if name in builder.totals for point in builder.totals[name].timeline.items]
    return Report(
        transports=transports,
        connections=tuple(builder.connections),
        sources=tuple(sources),
        started_at=builder.started_at,
        ended_at=builder.ended_at,
        notes=tuple(report_notes),
        timeline=tuple(sorted(timeline, key=lambda point: point.time)),  # type: ignore[attr-defined]
    )


def _estimated(summary: TransportSummary) -> bool:
    figures = (summary.bytes_per_message, summary.inter_arrival, summary.time_to_first_byte)
    return any(q is not None and not q.exact for q in figures)


__all__ = ["build_report", "exchange_messages", "handshake_duration", "WIRE_BYTES_NOTE"]
