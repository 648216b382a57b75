"""Which real-time transport each exchange and connection used.

An exchange's transport follows from what it did on the wire, in this order:
a user's rule; an accepted WebSocket Upgrade; a ``text/event-stream``
response; a line-delimited media type (NDJSON) or a response whose body kept
arriving for at least the threshold (``http_stream``); a method and path that
were requested more than once across all connections (``long_poll`` when the
server held any of those requests for at least the threshold, else
``short_poll``); anything else is ``http``.

A connection's transport is ``websocket`` if it upgraded, else the most
streaming-like transport among its exchanges.
"""

from __future__ import annotations

import fnmatch
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .connection import BodyKind, ConnectionRecord, ExchangeRecord
from .report import TRANSPORTS

DEFAULT_LONG_POLL_THRESHOLD = 1.0


@dataclass(frozen=True, slots=True)
class TransportRule:
    """``[METHOD ]PATH=TRANSPORT``: requests whose path matches PATH (exactly, or
    as a glob such as ``/api/*``) are that transport, whatever they looked like."""

    pattern: str
    transport: str
    method: str | None = None

    @classmethod
    def parse(cls, text: str) -> TransportRule:
        """Parse a rule as written on the command line; ValueError says what is wrong."""
        where, sep, transport = text.rpartition("=")
        transport = transport.strip()
        if not sep or not where.strip():
            raise ValueError(f"transport rule {text!r} is not PATH=TRANSPORT (e.g. /updates=long_poll)")
        if transport not in TRANSPORTS:
            raise ValueError(f"transport rule {text!r}: unknown transport {transport!r} (one of {', '.join(TRANSPORTS)})")
        method, _, pattern = where.strip().rpartition(" ")
        if not pattern.startswith("/"):
            raise ValueError(f"transport rule {text!r}: the path must start with '/'")
        return cls(pattern, transport, method.strip().upper() or None)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return path == self.pattern or fnmatch.fnmatchcase(path, self.pattern)


def request_path(target: str) -> str:
    """The path of a request target, without query (absolute-form targets too)."""
    if target.startswith("/"):
        return target.split("?", 1)[0]
    parts = urlsplit(target)
    return parts.path or "/"


def _route(exchange: ExchangeRecord) -> tuple[str, str] | None:
    if exchange.request is None:
        return None
    return exchange.request.method, request_path(exchange.request.target)


def _streamed(exchange: ExchangeRecord, threshold: float) -> bool:
    if exchange.body_kind is BodyKind.LINES:
        return True
    if exchange.response is None or exchange.last_body_at is None or exchange.first_body_at is None:
        return False
    return exchange.last_body_at - exchange.response.timestamp >= threshold and exchange.stream_messages_total() > 1


@dataclass(frozen=True, slots=True)
class Classification:
    """Transports by (connection id, exchange index), and by connection id."""

    exchanges: dict[tuple[str, int], str]
    connections: dict[str, str]

    def of(self, record: ConnectionRecord, exchange: ExchangeRecord) -> str:
        return self.exchanges[(record.id, exchange.index)]


def classify(
    records: Sequence[ConnectionRecord],
    *,
    long_poll_threshold: float = DEFAULT_LONG_POLL_THRESHOLD,
    rules: Iterable[TransportRule] = (),
) -> Classification:
    rules = tuple(rules)
    decided: dict[tuple[str, int], str] = {}
    undecided: list[tuple[ConnectionRecord, ExchangeRecord]] = []
    routes: Counter[tuple[str, str]] = Counter()
    for record in records:
        for exchange in record.exchanges:
            key = (record.id, exchange.index)
            route = _route(exchange)
            if route is not None:
                routes[route] += 1
            transport = _by_rule(rules, route) or _by_shape(exchange, long_poll_threshold)
            if transport is None:
                undecided.append((record, exchange))
            else:
                decided[key] = transport

    held: dict[tuple[str, str], bool] = defaultdict(bool)
    for _, exchange in undecided:
        route = _route(exchange)
        wait = exchange.response_wait
        if route is not None and wait is not None and wait >= long_poll_threshold:
            held[route] = True
    for record, exchange in undecided:
        route = _route(exchange)
        if route is not None and routes[route] > 1:
            decided[(record.id, exchange.index)] = "long_poll" if held[route] else "short_poll"
        else:
            decided[(record.id, exchange.index)] = "http"

    connections = {}
    for record in records:
        transports = {decided[(record.id, exchange.index)] for exchange in record.exchanges}
        connections[record.id] = next((t for t in TRANSPORTS if t in transports), "http")
    return Classification(decided, connections)


def _by_rule(rules: tuple[TransportRule, ...], route: tuple[str, str] | None) -> str | None:
    if route is None:
        return None
    for rule in rules:
        if rule.matches(*route):
            return rule.transport
    return None


def _by_shape(exchange: ExchangeRecord, threshold: float) -> str | None:
    if exchange.body_kind is BodyKind.WEBSOCKET:
        return "websocket"
    if exchange.body_kind is BodyKind.SSE or (
        exchange.response is not None
        and (exchange.response.header("content-type") or "").lower().startswith("text/event-stream")
    ):
        return "sse"
    if _streamed(exchange, threshold):
        return "http_stream"
    return None
