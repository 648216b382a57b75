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

Everything but the last two steps is known when an exchange completes, so a
connection folds each exchange into running figures under its transport
(:class:`Classifier`). Exchanges that only the route can decide are folded
under their route, and a :class:`RouteTable` of every connection's routes
decides them when the report is made. What is kept per route is a few
counters, for a bounded number of distinct routes, so memory follows neither
the number of requests nor the number of paths a crawler can invent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .app_messages import AppMessageRule
from .app_protocols import APP_PROTOCOLS
from .checked import StateError, expect, fields, items, text, whole
from .records import ExchangeRecord
from .report import TRANSPORTS
from .rules import PathRule, split_rule
from .wire import BodyKind

DEFAULT_LONG_POLL_THRESHOLD = 1.0


@dataclass(frozen=True, slots=True)
class TransportRule(PathRule):
    """``[METHOD ]PATH=TRANSPORT``: requests whose path matches PATH (exactly, or
    as a glob such as ``/api/*``) are that transport, whatever they looked like."""

    pattern: str
    transport: str
    method: str | None = None

    @classmethod
    def parse(cls, text: str) -> TransportRule:
        """Parse a rule as written on the command line; ValueError says what is wrong."""
        method, pattern, transport = split_rule(text, "transport rule", "PATH=TRANSPORT (e.g. /updates=long_poll)")
        if transport not in TRANSPORTS:
            raise ValueError(
                f"transport rule {text!r}: unknown transport {transport!r} (one of {', '.join(TRANSPORTS)})"
            )
        return cls(pattern, transport, method)


@dataclass(frozen=True, slots=True)
class AppProtocolRule(PathRule):
    """``[METHOD ]PATH=NAME``: requests whose path matches PATH speak application
    protocol NAME (one of :data:`~inspector.app_protocols.APP_PROTOCOLS`), whatever
    their URL or subprotocol says."""

    pattern: str
    name: str
    method: str | None = None

    @classmethod
    def parse(cls, text: str) -> AppProtocolRule:
        """Parse a rule as written on the command line; ValueError says what is wrong."""
        method, pattern, name = split_rule(text, "application protocol rule", "PATH=NAME (e.g. /live/*=socket.io)")
        if name not in APP_PROTOCOLS:
            raise ValueError(
                f"application protocol rule {text!r}: unknown protocol {name!r} (one of {', '.join(APP_PROTOCOLS)})"
            )
        return cls(pattern, name, method)


def request_path(target: str) -> str:
    """The path of a request target, without query (absolute-form targets too)."""
    if target.startswith("/"):
        return target.split("?", 1)[0]
    parts = urlsplit(target)
    return parts.path or "/"


#: A request's method and path (without query): what makes requests "the same" for polling.
Route = tuple[str, str]


def exchange_route(exchange: ExchangeRecord) -> Route | None:
    """The method and path of an exchange's request, if it had one."""
    if exchange.request is None:
        return None
    return exchange.request.method, request_path(exchange.request.target)


@dataclass(frozen=True, slots=True)
class Classifier:
    """The user's rules and threshold, applied to one exchange as it completes;
    and where the application's messages are in the bodies of the requests
    ``app_messages`` rules match (see :mod:`inspector.app_messages`)."""

    rules: tuple[TransportRule, ...] = ()
    long_poll_threshold: float = DEFAULT_LONG_POLL_THRESHOLD
    app_messages: tuple[AppMessageRule, ...] = ()
    app_protocols: tuple[AppProtocolRule, ...] = ()

    def app_protocol_for(self, method: str, target: str) -> str | None:
        """The application protocol a rule says this request speaks (None: no rule matches)."""
        if not self.app_protocols:
            return None
        path = request_path(target)
        for rule in self.app_protocols:
            if rule.matches(method, path):
                return rule.name
        return None

    def app_message_place(self, method: str, target: str) -> tuple[str, ...] | None:
        """Where a rule puts the application's messages in this request's
        responses (None when no rule matches: the body's shape decides)."""
        path = request_path(target)
        for rule in self.app_messages:
            if rule.matches(method, path):
                return rule.members
        return None

    def decide(self, exchange: ExchangeRecord) -> str | Route:
        """The exchange's transport, or its route when only the routes of every
        connection can tell a poll from a one-off request."""
        if exchange.body_kind is BodyKind.WEBSOCKET:
            # A rule names what a matching request is when it is not an upgrade.
            return "websocket"
        if exchange.body_kind is BodyKind.WEBTRANSPORT:
            return "webtransport"
        route = exchange_route(exchange)
        transport = self._by_rule(route) or exchange.app_transport or self._by_shape(exchange)
        if transport is not None:
            return transport
        return route if route is not None else "http"

    def held(self, exchange: ExchangeRecord) -> bool:
        """Whether the server held the request at least the long-poll threshold."""
        wait = exchange.response_wait
        return wait is not None and wait >= self.long_poll_threshold

    def _by_rule(self, route: Route | None) -> str | None:
        if route is None:
            return None
        for rule in self.rules:
            if rule.matches(*route):
                return rule.transport
        return None

    def _by_shape(self, exchange: ExchangeRecord) -> str | None:
        if exchange.body_kind is BodyKind.WEBSOCKET:
            return "websocket"
        if exchange.body_kind is BodyKind.SSE or (
            exchange.response is not None
            and (exchange.response.header("content-type") or "").lower().startswith("text/event-stream")
        ):
            return "sse"
        if self._streamed(exchange):
            return "http_stream"
        return None

    def _streamed(self, exchange: ExchangeRecord) -> bool:
        if exchange.body_kind is BodyKind.LINES:
            return True
        if exchange.response is None or exchange.last_body_at is None or exchange.first_body_at is None:
            return False
        return (
            exchange.last_body_at - exchange.response.timestamp >= self.long_poll_threshold
            and exchange.stream_messages_total() > 1
        )


#: Distinct routes a report keeps counts for; requests to routes first seen after that
#: are classified by their own connection's counts.
ROUTE_LIMIT = 100_000
#: Distinct routes one connection keeps counts for; its requests to further routes are one-off ``http``.
CONNECTION_ROUTE_LIMIT = 1_000


@dataclass(slots=True)
class RouteTable:
    """Requests per route, and the routes whose undecided requests the server
    held: what decides polls (``long_poll`` when held, ``short_poll`` when asked
    more than once, else ``http``). It keeps at most ``limit`` routes, so its
    size follows the number of distinct routes up to that, never the number of
    requests; ``untracked`` counts requests to routes beyond it."""

    requests: Counter[Route] = field(default_factory=Counter)
    held: set[Route] = field(default_factory=set)
    limit: int = ROUTE_LIMIT
    untracked: int = 0

    def track(self, route: Route) -> bool:
        """Count one request; False (and counted as untracked) when ``route`` is new and the table full."""
        if route not in self.requests and len(self.requests) >= self.limit:
            self.untracked += 1
            return False
        self.requests[route] += 1
        return True

    def add(self, other: RouteTable) -> set[Route]:
        """Add another table's counts; returns the routes there was no room for."""
        refused = set()
        for route, count in other.requests.items():
            if route in self.requests or len(self.requests) < self.limit:
                self.requests[route] += count
                if route in other.held:
                    self.held.add(route)
            else:
                refused.add(route)
                self.untracked += count
        self.untracked += other.untracked
        return refused

    def transport(self, route: Route) -> str:
        if self.requests[route] > 1:
            return "long_poll" if route in self.held else "short_poll"
        return "http"

    def copy(self) -> RouteTable:
        return RouteTable(self.requests.copy(), set(self.held), self.limit, self.untracked)

    def to_json(self) -> dict[str, Any]:
        """The counts by route, the held routes and what was not tracked, as JSON."""
        return {
            "limit": self.limit,
            "untracked": self.untracked,
            "requests": [
                [method, path, n, (method, path) in self.held] for (method, path), n in sorted(self.requests.items())
            ],
        }

    @classmethod
    def from_json(cls, state: object) -> RouteTable:
        """A table as :meth:`to_json` wrote it; :class:`~inspector.checked.StateError` if it is not one."""
        state = fields(state, "routes")
        table = cls(
            limit=whole(state.get("limit"), "route limit"), untracked=whole(state.get("untracked"), "untracked")
        )
        for entry in items(state.get("requests"), "routes"):
            method, path, n, held = items(entry, "route")
            route = (text(method, "method"), text(path, "path"))
            table.requests[route] = whole(n, "requests")
            if expect(held, bool, "held"):
                table.held.add(route)
        if len(table.requests) > table.limit:
            raise StateError("routes: more than the table keeps")
        return table


def most_streaming(transports: Iterable[str]) -> str:
    """A connection's transport: the first of its exchanges' transports in report order."""
    present = set(transports)
    return next((t for t in TRANSPORTS if t in present), "http")
