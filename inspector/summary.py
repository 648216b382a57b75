"""Per-transport summaries: connection records in, one at a time, a :class:`~inspector.report.Report` out.

A :class:`ReportBuilder` folds each connection into its transport's figures as
it is added (when the connection closes), so a report of any number of
connections holds a few figures per transport, a few per route and a bounded
list of connections, not the connections themselves. Exchanges that only the
routes of every connection can classify (polls, one-off requests) wait under
their route, and connections made only of such exchanges wait in a group with
the same routes, until the report is made.

What counts as a message, as payload and as a handshake is decided in
:mod:`inspector.totals`. Wire bytes are summed from the byte categories;
overhead is every wire byte that was not payload as it travelled.

A connection's bytes outside every exchange go to the transport the connection
is counted under, except on an HTTP/2 connection that carried streams: there
they (the preface, SETTINGS, PING, stream 0's WINDOW_UPDATE, GOAWAY) are split
among the transports of its streams in proportion to the streams' wire bytes,
in whole bytes (:func:`apportion`), because one HTTP/2 connection often
carries several transports at once. The report's ``http2`` figures show them
unattributed as well. An HTTP/3 connection's control and QPACK streams are
split the same way, and shown in the report's ``http3`` figures. A
connection's figures below its byte streams (TLS records, QUIC packets, IP
headers: :mod:`inspector.transport_layer`) go the same way as its bytes
outside every exchange: to the transport it is counted under, or split in
whole units with the same weights (:func:`apportion_layer`). The report's
``transport_layer`` totals every connection's.
"""

from __future__ import annotations

import pickle
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import IO, Any, cast

from .checked import StateError, choice, expect, fields, items, number, optional, pair, text, whole
from .classify import CONNECTION_ROUTE_LIMIT, ROUTE_LIMIT, Route, RouteTable, most_streaming
from .connection import ConnectionRecord
from .records import MessageTime
from .redact import redact_target
from .report import (
    HTTP3,
    POLLING,
    PROTOCOLS,
    STREAMING,
    TRANSPORTS,
    AppProtocolFigures,
    ConnectionSummary,
    Http2Figures,
    Http3Figures,
    MessagePoint,
    PerDirection,
    Report,
    SessionsSummary,
    TransportSummary,
    WebSocketFigures,
    WebTransportFigures,
)
from .stats import Distribution
from .totals import AppProtocolTotals, ExchangeTotals, exchange_messages, handshake_duration
from .transport_layer import COUNTS, LayerFigures, TransportLayer, add_layers
from .wire import (
    Anomaly,
    ByteAccount,
    Category,
    Direction,
    FrameCounts,
    Http2Counts,
    Http3Counts,
    accounts_from_json,
    accounts_to_json,
    counts_from_json,
    counts_to_json,
)

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

#: Categories that structure messages without being payload.
FRAMING = (Category.CHUNK_FRAMING, Category.MESSAGE_SYNTAX, Category.FRAME_HEADER, Category.MASK_KEY)

WIRE_BYTES_NOTE = (
    "Wire bytes are the bytes of each TCP stream after TLS; TCP/IP headers and TLS record overhead are not counted."
)
QUIC_WIRE_BYTES_NOTE = (
    "Over HTTP/3, wire bytes are the bytes of each QUIC stream and DATAGRAM after QUIC's decryption; QUIC packet "
    "headers, acknowledgements, padding and AEAD tags are not in them."
)
LAYER_NOTE = (
    "TLS records, QUIC packets and IP headers of the client's leg are given beside the wire bytes "
    "(below the byte streams); the verdicts rank wire bytes."
)
POLL_MESSAGE_NOTE = (
    "A poll's message is a response that carried data; one response can carry several application messages "
    "(the items of a JSON array), which are counted apart as app_messages."
)
#: Said of the connections a forward proxy served plain HTTP on (absolute-form requests).
FORWARDED_NOTE = (
    "{count} through the forward proxy sent plain-HTTP requests in absolute form (GET http://host/path): "
    "they are counted as the client sent them, and as the proxy answered the client. The proxy's HTTP layer "
    "sent each request on to its server in origin form (GET /path, the scheme and host taken off the request "
    "line), its head written again and chunked bodies chunked again, so the server's leg was not these bytes."
)
ESTIMATE_NOTE = (
    "Percentiles marked ~ are estimated, past 4,096 distinct values, to within about 1 %;"
    " counts, totals, means and maxima are exact."
)
TIMELINE_POINTS = 4000
#: Connections a report lists; every connection is in the transports' figures.
CONNECTION_LIST_LIMIT = 10_000
#: Application sessions a report keeps apart (each holds a few numbers).
SESSION_LIMIT = 100_000

#: A transport the connection is known to have used, the routes still to decide, and its protocol.
_GroupKey = tuple[str | None, frozenset[Route], str]
#: A route and the protocol its exchanges used.
_RouteKey = tuple[Route, str]
#: An application session: its protocol, and "session" and the id the protocol gave it, or
#: "connection" and the id of the one connection that was the session.
_SessionKey = tuple[str, str, str]


def _pair(counts: dict[Direction, int]) -> PerDirection:
    return PerDirection(counts[C2S], counts[S2C])


def _accounts() -> dict[Direction, ByteAccount]:
    return {C2S: ByteAccount(), S2C: ByteAccount()}


def _per_direction(state: object, what: str) -> PerDirection:
    counts = counts_from_json(state, what)
    return PerDirection(counts[C2S], counts[S2C])


def connection_to_json(summary: ConnectionSummary) -> dict[str, Any]:
    """A listed connection, as JSON."""
    return {
        "id": summary.id,
        "transport": summary.transport,
        "client": summary.client,
        "server": summary.server,
        "opened_at": summary.opened_at,
        "closed_at": summary.closed_at,
        "close_reason": summary.close_reason,
        "exchanges": summary.exchanges,
        "wire_bytes": [summary.wire_bytes.client_to_server, summary.wire_bytes.server_to_client],
        "payload_bytes": [summary.payload_bytes.client_to_server, summary.payload_bytes.server_to_client],
        "messages": [summary.messages.client_to_server, summary.messages.server_to_client],
        "anomalies": [[a.direction.value, a.offset, a.reason, a.security] for a in summary.anomalies],
        "targets": list(summary.targets),
        "reconstructed": summary.reconstructed,
        "protocol": summary.protocol,
        "app_protocol": summary.app_protocol,
        "session": summary.session,
    }


def connection_from_json(state: object) -> ConnectionSummary:
    """A listed connection as :func:`connection_to_json` wrote it."""
    state = fields(state, "connection")
    anomalies = []
    for entry in items(state.get("anomalies"), "anomalies"):
        direction, offset, reason, security = items(entry, "anomaly")
        anomalies.append(
            Anomaly(
                choice(direction, Direction, "direction"),
                whole(offset, "offset"),
                text(reason, "reason"),
                expect(security, bool, "security"),
            )
        )
    transport = text(state.get("transport"), "transport")
    if transport and transport not in TRANSPORTS:
        raise StateError(f"connection: unknown transport {transport!r:.40}")
    return ConnectionSummary(
        id=text(state.get("id"), "connection id"),
        transport=transport,
        client=text(state.get("client"), "client"),
        server=text(state.get("server"), "server"),
        opened_at=optional(state.get("opened_at"), number, "opened_at"),
        closed_at=optional(state.get("closed_at"), number, "closed_at"),
        close_reason=optional(state.get("close_reason"), text, "close_reason"),
        exchanges=whole(state.get("exchanges"), "exchanges"),
        wire_bytes=_per_direction(state.get("wire_bytes"), "wire_bytes"),
        payload_bytes=_per_direction(state.get("payload_bytes"), "payload_bytes"),
        messages=_per_direction(state.get("messages"), "messages"),
        anomalies=tuple(anomalies),
        targets=tuple(text(t, "target") for t in items(state.get("targets"), "targets")),
        reconstructed=expect(state.get("reconstructed"), bool, "reconstructed"),
        protocol=_protocol(state.get("protocol")),
        app_protocol=optional(state.get("app_protocol"), text, "app_protocol"),
        session=optional(state.get("session"), text, "session"),
    )


def _protocol(state: object) -> str:
    protocol = text(state, "protocol")
    if protocol not in PROTOCOLS:
        raise StateError(f"unknown protocol {protocol!r:.40}")
    return protocol


def _transport_name(state: object) -> str:
    transport = text(state, "transport")
    if transport not in TRANSPORTS:
        raise StateError(f"unknown transport {transport!r:.40}")
    return transport


def _listed_json(listed: list[tuple[int, ConnectionSummary]]) -> list[list[Any]]:
    return [[place, connection_to_json(summary)] for place, summary in listed]


def _listed_from_json(state: object) -> list[tuple[int, ConnectionSummary]]:
    return [(whole(place, "place"), connection_from_json(c)) for place, c in map(_pair_of, items(state, "listed"))]


def _pair_of(state: object) -> list[Any]:
    return pair(state, "listed connection")


def _route_of(state: object) -> list[Any]:
    return pair(state, "route")


def apportion(accounts: dict[Direction, ByteAccount], weights: Sequence[int]) -> list[dict[Direction, ByteAccount]]:
    """Split byte counts among parts in proportion to ``weights``, in whole bytes.

    Each category of each direction is split on its own; the bytes left over by
    rounding down go one each to the parts with the largest remainders (the
    earlier part on a tie). Every byte goes to exactly one part. Without any
    weight, the parts share equally.
    """
    parts = [_accounts() for _ in weights]
    for direction in Direction:
        for category in Category:
            amount = accounts[direction][category]
            if not amount:
                continue
            for part, share in zip(parts, whole_shares(amount, weights), strict=True):
                part[direction].add(category, share)
    return parts


def whole_shares(amount: int, weights: Sequence[int]) -> list[int]:
    """``amount`` split in proportion to ``weights`` in whole units, as :func:`apportion` splits bytes."""
    if not any(weights):
        weights = [1] * len(weights)
    whole = sum(weights)
    shares = [amount * weight // whole for weight in weights]
    left = amount - sum(shares)
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(amount * weights[i] % whole), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return shares


def apportion_layer(layer: TransportLayer, weights: Sequence[int]) -> list[TransportLayer]:
    """Split a connection's figures below its byte streams among parts in proportion
    to ``weights``, each count of each direction on its own, in whole units (records,
    packets, bytes), as :func:`apportion` splits bytes. Whether the IP header bytes
    are estimated stays with every part."""
    split: dict[Direction, list[dict[str, int]]] = {}
    for direction in Direction:
        figures = layer[direction]
        by_count = {name: whole_shares(getattr(figures, name), weights) for name in COUNTS}
        split[direction] = [{name: shares[i] for name, shares in by_count.items()} for i in range(len(weights))]
    return [
        TransportLayer(
            *(
                LayerFigures(
                    **split[direction][i], ip_header_bytes_estimated=layer[direction].ip_header_bytes_estimated
                )
                for direction in Direction
            )
        )
        for i in range(len(weights))
    ]


def http2_figures(counts: Http2Counts, connection_bytes: dict[Direction, int]) -> Http2Figures:
    """The report's view of running HTTP/2 frame figures."""
    return Http2Figures(**_frame_figures(counts, connection_bytes))


def http3_figures(counts: Http3Counts, connection_bytes: dict[Direction, int]) -> Http3Figures:
    """The report's view of running HTTP/3 figures."""
    return Http3Figures(**_frame_figures(counts, connection_bytes))


def _frame_figures(counts: FrameCounts, connection_bytes: dict[Direction, int]) -> dict[str, Any]:
    """The fields of either version's report figures: frames by type, each byte figure, and the connections' own."""
    return {
        "frames": {d: dict(sorted(counts.frames[d].items())) for d in Direction},
        **{name: _pair(counts.figure(name)) for name in counts.BYTE_FIGURES},
        "connection_bytes": _pair(connection_bytes),
    }


class _Totals:
    """One transport's figures while they are being summed: its exchanges',
    and those of the connections that used it."""

    __slots__ = (
        "anomalies",
        "connection_bytes",
        "connections",
        "exchanges",
        "http3_connection_bytes",
        "time_to_first_byte",
        "time_to_first_message",
        "tls_duration",
        "tls_handshakes",
        "transport_layer",
        "unattributed",
    )

    def __init__(self) -> None:
        self.exchanges = ExchangeTotals(timeline_points=TIMELINE_POINTS)
        self.connections = 0
        self.anomalies = 0
        self.tls_handshakes = 0
        self.tls_duration = Distribution()
        self.unattributed = {C2S: ByteAccount(), S2C: ByteAccount()}
        self.time_to_first_byte = Distribution()
        self.time_to_first_message = Distribution()
        #: HTTP/2 connections' bytes outside every stream attributed here (also in ``unattributed``).
        self.connection_bytes = {C2S: 0, S2C: 0}
        #: The same of HTTP/3 connections (their control and QPACK streams).
        self.http3_connection_bytes = {C2S: 0, S2C: 0}
        #: The connections' figures below their byte streams (or shares of them).
        self.transport_layer: TransportLayer | None = None

    def share(self, accounts: dict[Direction, ByteAccount], protocol: str, layer: TransportLayer | None = None) -> None:
        """Take a share of an HTTP/2 or HTTP/3 connection's bytes outside every stream,
        and of its figures below its byte streams."""
        shared = self.http3_connection_bytes if protocol == HTTP3 else self.connection_bytes
        for direction in Direction:
            self.unattributed[direction].merge(accounts[direction])
            shared[direction] += accounts[direction].total
        self.transport_layer = add_layers(self.transport_layer, layer)

    def add_connection(
        self, record: ConnectionRecord, first_message_at: float | None, *, unattributed: bool = True
    ) -> None:
        """Count a connection; ``unattributed`` says whether its bytes outside
        every exchange come too (they do not when they were shared out)."""
        self.connections += 1
        self.anomalies += len(record.anomalies)
        tls = record.opened.tls
        if tls is not None:
            self.tls_handshakes += 1
            if tls.handshake_started is not None and tls.handshake_finished is not None:
                self.tls_duration.add(tls.handshake_finished - tls.handshake_started)
        if unattributed:
            for direction in Direction:
                self.unattributed[direction].merge(record.unattributed[direction])
            self.transport_layer = add_layers(self.transport_layer, record.transport_layer)
        started = record.first_byte_at.get(C2S)
        if started is not None:
            answered = record.first_byte_at.get(S2C)
            if answered is not None:
                self.time_to_first_byte.add(max(0.0, answered - started))
            if first_message_at is not None:
                self.time_to_first_message.add(max(0.0, first_message_at - started))

    def merge(self, other: _Totals) -> None:
        self.exchanges.merge(other.exchanges)
        self.connections += other.connections
        self.anomalies += other.anomalies
        self.tls_handshakes += other.tls_handshakes
        self.tls_duration.merge(other.tls_duration)
        for direction in Direction:
            self.unattributed[direction].merge(other.unattributed[direction])
            self.connection_bytes[direction] += other.connection_bytes[direction]
            self.http3_connection_bytes[direction] += other.http3_connection_bytes[direction]
        self.time_to_first_byte.merge(other.time_to_first_byte)
        self.time_to_first_message.merge(other.time_to_first_message)
        self.transport_layer = add_layers(self.transport_layer, other.transport_layer)

    def copy(self) -> _Totals:
        twin = _Totals()
        twin.exchanges = self.exchanges.copy()
        twin.connections, twin.anomalies, twin.tls_handshakes = self.connections, self.anomalies, self.tls_handshakes
        twin.tls_duration = self.tls_duration.copy()
        twin.unattributed = {d: a.copy() for d, a in self.unattributed.items()}
        twin.time_to_first_byte = self.time_to_first_byte.copy()
        twin.time_to_first_message = self.time_to_first_message.copy()
        twin.connection_bytes = dict(self.connection_bytes)
        twin.http3_connection_bytes = dict(self.http3_connection_bytes)
        twin.transport_layer = self.transport_layer
        return twin

    _COUNTS = ("connections", "anomalies", "tls_handshakes")
    _DISTRIBUTIONS = ("tls_duration", "time_to_first_byte", "time_to_first_message")

    def to_json(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name) for name in self._COUNTS}
        state |= {name: getattr(self, name).to_json() for name in self._DISTRIBUTIONS}
        state["exchanges"] = self.exchanges.to_json()
        state["unattributed"] = accounts_to_json(self.unattributed)
        state["connection_bytes"] = counts_to_json(self.connection_bytes)
        state["http3_connection_bytes"] = counts_to_json(self.http3_connection_bytes)
        state["transport_layer"] = self.transport_layer.as_dict() if self.transport_layer is not None else None
        return state

    @classmethod
    def from_json(cls, state: object) -> _Totals:
        state = fields(state, "transport figures")
        totals = cls()
        for name in cls._COUNTS:
            setattr(totals, name, whole(state.get(name), name))
        for name in cls._DISTRIBUTIONS:
            setattr(totals, name, Distribution.from_json(state.get(name)))
        totals.exchanges = ExchangeTotals.from_json(state.get("exchanges"))
        totals.unattributed = accounts_from_json(state.get("unattributed"), "byte accounts")
        totals.connection_bytes = counts_from_json(state.get("connection_bytes"), "connection_bytes")
        totals.http3_connection_bytes = counts_from_json(state.get("http3_connection_bytes"), "http3_connection_bytes")
        layer = state.get("transport_layer")
        totals.transport_layer = TransportLayer.from_dict(layer) if layer is not None else None
        return totals

    def summary(self, transport: str) -> TransportSummary:
        figures = self.exchanges
        accounts = {d: figures.accounts[d].copy() for d in Direction}
        for direction in Direction:
            accounts[direction].merge(self.unattributed[direction])
        wire = {d: accounts[d].total for d in Direction}
        wire_payload = {d: accounts[d][Category.PAYLOAD] for d in Direction}
        wire_total = wire[C2S] + wire[S2C]
        overhead = wire_total - wire_payload[C2S] - wire_payload[S2C]
        messages = figures.messages[C2S] + figures.messages[S2C]
        app_messages = figures.app_messages[C2S] + figures.app_messages[S2C]
        categories = {c.value: PerDirection(accounts[C2S][c], accounts[S2C][c]) for c in Category}
        websocket = None
        if transport == "websocket":
            websocket = WebSocketFigures(
                data_frames=_pair(figures.data_frames),
                control_frames=_pair(figures.control_frames),
                frame_header_bytes=categories[Category.FRAME_HEADER] + categories[Category.MASK_KEY],
                wire_payload_bytes=categories[Category.PAYLOAD],
                control_bytes=categories[Category.CONTROL],
                compressed_messages=_pair(figures.compressed),
            )
        webtransport = None
        if transport == "webtransport" and figures.webtransport is not None:
            counts = figures.webtransport
            webtransport = WebTransportFigures(
                sessions=counts.sessions,
                streams=_pair(counts.streams),
                datagrams=_pair(counts.datagrams),
                datagram_bytes=_pair(counts.datagram_bytes),
            )
        polling = transport in POLLING
        return TransportSummary(
            transport=transport,
            connections=self.connections,
            tcp_connects=self.connections,
            handshakes=figures.handshakes,
            handshake_bytes=figures.handshake_bytes,
            messages=_pair(figures.messages),
            payload_bytes=_pair(figures.payload),
            wire_bytes=_pair(wire),
            overhead_bytes=overhead,
            overhead_ratio=overhead / wire_total if wire_total else 0.0,
            bytes_per_message=figures.sizes.summary(),
            anomalies=self.anomalies,
            categories=categories,
            head_bytes=figures.head_bytes,
            framing_bytes=sum(accounts[d][c] for d in Direction for c in FRAMING),
            control_bytes=categories[Category.CONTROL].total,
            empty_polls=figures.empty_responses if polling else 0,
            empty_poll_bytes=figures.empty_response_bytes if polling else 0,
            wire_bytes_per_message=wire_total / messages if messages else None,
            inter_arrival=figures.inter_arrival.summary(),
            time_to_first_byte=self.time_to_first_byte.summary(),
            time_to_first_message=self.time_to_first_message.summary(),
            handshake_duration=figures.handshake_duration.summary(),
            websocket=websocket,
            tls_handshakes=self.tls_handshakes,
            tls_handshake_duration=self.tls_duration.summary(),
            requests=figures.exchanges,
            app_messages=_pair(figures.app_messages),
            wire_bytes_per_app_message=wire_total / app_messages if app_messages else None,
            control_messages=_pair(figures.control_messages),
            by_app_protocol={
                name: AppProtocolFigures(
                    app_messages=_pair(app.app_messages),
                    control_messages=_pair(app.control_messages),
                    control_bytes=app.control_bytes,
                    wire_bytes=app.wire_bytes,
                )
                for name, app in sorted(figures.by_app_protocol.items())
            },
            http2=http2_figures(figures.http2, self.connection_bytes) if figures.http2 is not None else None,
            http3=http3_figures(figures.http3, self.http3_connection_bytes) if figures.http3 is not None else None,
            webtransport=webtransport,
            transport_layer=self.transport_layer,
        )


class _Spool:
    """Connection summaries kept on disk until their transport is known."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None

    def append(self, summary: ConnectionSummary) -> None:
        if self._file is None:
            self._file = tempfile.TemporaryFile()
        pickle.dump(summary, self._file, protocol=pickle.HIGHEST_PROTOCOL)

    def drain(self) -> Iterator[ConnectionSummary]:
        if self._file is None:
            return
        self._file.seek(0)
        while True:
            try:
                yield pickle.load(self._file)
            except EOFError:
                break
        self._file.close()
        self._file = None


class _Group:
    """Connections whose transport waits on the same routes."""

    __slots__ = ("listed", "spool", "totals")

    def __init__(self) -> None:
        self.totals = _Totals()
        self.listed: list[tuple[int, ConnectionSummary]] = []
        self.spool = _Spool()

    def copy(self) -> _Group:
        twin = _Group()
        twin.totals = self.totals.copy()
        twin.listed = list(self.listed)
        return twin

    def to_json(self) -> dict[str, Any]:
        return {"totals": self.totals.to_json(), "listed": _listed_json(self.listed)}

    @classmethod
    def from_json(cls, state: object) -> _Group:
        state = fields(state, "group")
        group = cls()
        group.totals = _Totals.from_json(state.get("totals"))
        group.listed = _listed_from_json(state.get("listed"))
        return group


class _Session:
    """One application session's figures while they are being summed."""

    __slots__ = ("app_messages", "control_messages", "first_at", "wire_bytes")

    def __init__(self) -> None:
        #: When each transport was first used, in the order it was (the session's path).
        self.first_at: dict[str, tuple[float, int]] = {}
        self.wire_bytes: dict[str, int] = {}
        self.app_messages = {C2S: 0, S2C: 0}
        self.control_messages = {C2S: 0, S2C: 0}

    def add(self, transport: str, at: tuple[float, int], figures: AppProtocolTotals) -> None:
        if transport not in self.first_at or at < self.first_at[transport]:
            self.first_at[transport] = at
        self.wire_bytes[transport] = self.wire_bytes.get(transport, 0) + figures.wire_bytes
        for direction in Direction:
            self.app_messages[direction] += figures.app_messages[direction]
            self.control_messages[direction] += figures.control_messages[direction]

    def path(self) -> list[str]:
        return sorted(self.first_at, key=self.first_at.__getitem__)

    def copy(self) -> _Session:
        twin = _Session()
        twin.first_at, twin.wire_bytes = dict(self.first_at), dict(self.wire_bytes)
        twin.app_messages, twin.control_messages = dict(self.app_messages), dict(self.control_messages)
        return twin

    def merge(self, other: _Session) -> None:
        """Add the figures of the same session's connections elsewhere."""
        for transport, at in other.first_at.items():
            if transport not in self.first_at or at < self.first_at[transport]:
                self.first_at[transport] = at
        for transport, wire in other.wire_bytes.items():
            self.wire_bytes[transport] = self.wire_bytes.get(transport, 0) + wire
        for direction in Direction:
            self.app_messages[direction] += other.app_messages[direction]
            self.control_messages[direction] += other.control_messages[direction]

    def to_json(self) -> dict[str, Any]:
        return {
            "transports": [[t, at, order, self.wire_bytes[t]] for t, (at, order) in self.first_at.items()],
            "app_messages": counts_to_json(self.app_messages),
            "control_messages": counts_to_json(self.control_messages),
        }

    @classmethod
    def from_json(cls, state: object) -> _Session:
        state = fields(state, "session")
        session = cls()
        for entry in items(state.get("transports"), "session transports"):
            transport, at, order, wire = items(entry, "session transport")
            transport = _transport_name(transport)
            session.first_at[transport] = (number(at, "first used"), whole(order, "order"))
            session.wire_bytes[transport] = whole(wire, "wire bytes")
        session.app_messages = counts_from_json(state.get("app_messages"), "app_messages")
        session.control_messages = counts_from_json(state.get("control_messages"), "control_messages")
        return session


def sessions_summary(sessions: Iterable[_Session]) -> SessionsSummary:
    """What the sessions of one application protocol cost."""
    count = upgraded = wire = before = 0
    paths: Counter[str] = Counter()
    app = {C2S: 0, S2C: 0}
    control = {C2S: 0, S2C: 0}
    for session in sessions:
        count += 1
        path = session.path()
        paths[" → ".join(path)] += 1
        wire += sum(session.wire_bytes.values())
        if len(path) > 1 and "websocket" in path[1:]:
            upgraded += 1
            before += sum(session.wire_bytes[t] for t in path[: path.index("websocket")])
        for direction in Direction:
            app[direction] += session.app_messages[direction]
            control[direction] += session.control_messages[direction]
    app_total = app[C2S] + app[S2C]
    return SessionsSummary(
        count=count,
        upgraded=upgraded,
        paths=dict(sorted(paths.items(), key=lambda item: (-item[1], item[0]))),
        wire_bytes=wire,
        app_messages=_pair(app),
        control_messages=_pair(control),
        wire_bytes_per_app_message=wire / app_total if app_total else None,
        before_upgrade_wire_bytes=before,
    )


class ReportBuilder:
    """Connection records in, in the order they closed; a report out.

    ``on_connection`` is handed every connection's summary once its transport
    is known: at :meth:`add` for most, at :meth:`report` for connections whose
    transport waited on the routes of later ones. The report itself lists the
    first :data:`CONNECTION_LIST_LIMIT` connections and says how many it left
    out. With ``redact`` (the default), request targets lose their credentials
    (:func:`~inspector.redact.redact_target`); no figure changes. ``routes``
    (made with more connections in view than are added here) classifies polls
    as a report of all of them would; otherwise the builder keeps counts for
    ``route_limit`` distinct routes (see :class:`~inspector.classify.RouteTable`).
    """

    def __init__(
        self,
        *,
        redact: bool = True,
        connection_limit: int = CONNECTION_LIST_LIMIT,
        on_connection: Callable[[ConnectionSummary], None] | None = None,
        routes: RouteTable | None = None,
        route_limit: int = ROUTE_LIMIT,
    ) -> None:
        self._redact = redact
        self._limit = connection_limit
        self._on_connection = on_connection
        #: Figures by transport and protocol.
        self._totals: dict[tuple[str, str], _Totals] = {}
        #: Requests per route; given, it stands for more connections than are added here and is not added to.
        self._routes = routes if routes is not None else RouteTable(limit=route_limit)
        self._fixed_routes = routes is not None
        #: Exchanges whose transport their route decides, by route and protocol, and
        #: their share of their HTTP/2 connections' bytes outside every stream.
        self._by_route: dict[_RouteKey, ExchangeTotals] = {}
        self._route_shares: dict[_RouteKey, dict[Direction, ByteAccount]] = {}
        self._route_layers: dict[_RouteKey, TransportLayer] = {}
        #: Every connection's figures below its byte streams, summed.
        self._transport_layer: TransportLayer | None = None
        #: Every HTTP/2 connection's frame figures, and its bytes outside every stream.
        self._http2: Http2Counts | None = None
        self._http2_connection_bytes = {C2S: 0, S2C: 0}
        #: The same for HTTP/3 connections.
        self._http3: Http3Counts | None = None
        self._http3_connection_bytes = {C2S: 0, S2C: 0}
        self._groups: dict[_GroupKey, _Group] = {}
        #: Listed connections with their place in the order they were added.
        self._listed: list[tuple[int, ConnectionSummary]] = []
        self.connection_count = 0
        #: Connections a forward proxy served plain HTTP on (see FORWARDED_NOTE).
        self.forwarded = 0
        self.started_at: float | None = None
        self.ended_at: float | None = None
        #: Application sessions by protocol and the protocol's own id, and the id the report gives each.
        self._sessions: dict[_SessionKey, _Session] = {}
        self._session_ids: dict[_SessionKey, str] = {}
        self._sessions_untracked = 0

    def _transport(self, name: str, protocol: str) -> _Totals:
        totals = self._totals.get((name, protocol))
        if totals is None:
            totals = self._totals[(name, protocol)] = _Totals()
        return totals

    def _add_frames(self, record: ConnectionRecord) -> list[dict[Direction, ByteAccount]] | None:
        """Total an HTTP/2 or HTTP/3 connection's frame figures; the shares of its
        bytes outside every stream, one per entry of its totals (None when they
        are not shared out: HTTP/1.1, or no streams)."""
        counts: FrameCounts
        own: FrameCounts
        if record.http2 is not None:
            if self._http2 is None:
                self._http2 = Http2Counts()
            counts, own, connection_bytes = self._http2, record.http2, self._http2_connection_bytes
            streams: list[FrameCounts | None] = [figures.http2 for figures in record.totals.values()]
        elif record.http3 is not None:
            if self._http3 is None:
                self._http3 = Http3Counts()
            counts, own, connection_bytes = self._http3, record.http3, self._http3_connection_bytes
            streams = [figures.http3 for figures in record.totals.values()]
        else:
            return None
        counts.merge(own)
        for stream in streams:
            if stream is not None:
                counts.merge(stream)
        for direction in Direction:
            connection_bytes[direction] += record.unattributed[direction].total
        if not record.totals:
            return None
        return apportion(record.unattributed, [figures.wire_bytes for figures in record.totals.values()])

    def _add_session(self, record: ConnectionRecord) -> str | None:
        """Fold a connection's application-protocol exchanges into its session; the session's report id."""
        name = record.app_protocol
        if name is None:
            return None
        key = (name, "session", record.session) if record.session is not None else (name, "connection", record.id)
        session = self._sessions.get(key)
        if session is None:
            if len(self._sessions) >= SESSION_LIMIT:
                self._sessions_untracked += 1
                return None
            session = self._sessions[key] = _Session()
            self._session_ids[key] = f"s{len(self._session_ids) + 1}"
        for order, (transport, figures) in enumerate(record.totals.items()):
            app = figures.by_app_protocol.get(name)
            if app is not None and isinstance(transport, str):
                session.add(transport, (record.opened.timestamp, order), app)
        return self._session_ids[key]

    def add(self, record: ConnectionRecord) -> None:
        """Fold in one connection; its record is not kept."""
        place = self.connection_count
        self.connection_count += 1
        session = self._add_session(record)
        if _forwarded(record):
            self.forwarded += 1
        self._span(record.opened.timestamp, record.closed_at)
        refused = set() if self._fixed_routes else self._routes.add(record.routes)
        protocol = record.protocol
        shares = self._add_frames(record)
        self._transport_layer = add_layers(self._transport_layer, record.transport_layer)
        layer_shares = (
            apportion_layer(record.transport_layer, [figures.wire_bytes for figures in record.totals.values()])
            if shares is not None and record.transport_layer is not None
            else None
        )
        decided: list[str] = []
        waiting: list[Route] = []
        messages = {C2S: 0, S2C: 0}
        payload = {C2S: 0, S2C: 0}
        first_message_at: float | None = None
        for place_in_totals, (key, figures) in enumerate(record.totals.items()):
            if isinstance(key, str) or key in refused:
                # A route the table has no room for is classified by this connection's requests alone.
                transport = key if isinstance(key, str) else record.routes.transport(key)
                totals = self._transport(transport, protocol)
                totals.exchanges.merge(figures)
                if shares is not None:
                    totals.share(
                        shares[place_in_totals], protocol, layer_shares[place_in_totals] if layer_shares else None
                    )
                decided.append(transport)
            else:
                self._by_route.setdefault((key, protocol), ExchangeTotals()).merge(figures)
                if shares is not None:
                    share = self._route_shares.setdefault((key, protocol), _accounts())
                    for direction in Direction:
                        share[direction].merge(shares[place_in_totals][direction])
                    if layer_shares is not None:
                        layer = add_layers(self._route_layers.get((key, protocol)), layer_shares[place_in_totals])
                        assert layer is not None
                        self._route_layers[(key, protocol)] = layer
                waiting.append(key)
            for direction in Direction:
                messages[direction] += figures.messages[direction]
                payload[direction] += figures.payload[direction]
            at = figures.first_message_at
            if at is not None and (first_message_at is None or at < first_message_at):
                first_message_at = at

        best = most_streaming(decided) if decided else None
        if not waiting or (best is not None and TRANSPORTS.index(best) <= TRANSPORTS.index("long_poll")):
            transport = best or "http"
            self._transport(transport, protocol).add_connection(record, first_message_at, unattributed=shares is None)
            self._list(place, self._connection(record, transport, messages, payload, session))
            return
        group_key = (best, frozenset(waiting), protocol)
        group = self._groups.get(group_key)
        if group is None:
            group = self._groups[group_key] = _Group()
        group.totals.add_connection(record, first_message_at, unattributed=shares is None)
        summary = self._connection(record, "", messages, payload, session)
        if self._on_connection is not None:
            group.spool.append(summary)
        if place < self._limit:
            group.listed.append((place, summary))

    def _connection(
        self,
        record: ConnectionRecord,
        transport: str,
        messages: dict[Direction, int],
        payload: dict[Direction, int],
        session: str | None,
    ) -> ConnectionSummary:
        targets = record.targets
        if self._redact:
            targets = tuple(dict.fromkeys(redact_target(target) for target in targets))
        return ConnectionSummary(
            id=record.id,
            transport=transport,
            client=record.client,
            server=record.server,
            opened_at=record.opened.timestamp,
            closed_at=record.closed_at,
            close_reason=record.close_reason if record.closed_at is not None else "open",
            exchanges=record.exchange_count,
            wire_bytes=PerDirection(record.wire_bytes(C2S), record.wire_bytes(S2C)),
            payload_bytes=_pair(payload),
            messages=_pair(messages),
            anomalies=record.anomalies,
            targets=targets,
            reconstructed=record.opened.reconstructed,
            protocol=record.protocol,
            app_protocol=record.app_protocol,
            session=session,
        )

    def _list(self, place: int, summary: ConnectionSummary) -> None:
        if self._on_connection is not None:
            self._on_connection(summary)
        if place < self._limit:
            self._listed.append((place, summary))

    def _span(self, opened: float, closed: float | None) -> None:
        if self.started_at is None or opened < self.started_at:
            self.started_at = opened
        end = closed if closed is not None else opened
        if self.ended_at is None or end > self.ended_at:
            self.ended_at = end

    def copy(self) -> ReportBuilder:
        """An independent builder with what this one has so far (without ``on_connection``)."""
        twin = ReportBuilder(redact=self._redact, connection_limit=self._limit)
        twin._fixed_routes = self._fixed_routes
        twin._totals = {name: totals.copy() for name, totals in self._totals.items()}
        twin._routes = self._routes.copy()
        twin._by_route = {route: figures.copy() for route, figures in self._by_route.items()}
        twin._route_shares = {
            route: {d: a.copy() for d, a in share.items()} for route, share in self._route_shares.items()
        }
        twin._http2 = self._http2.copy() if self._http2 is not None else None
        twin._http2_connection_bytes = dict(self._http2_connection_bytes)
        twin._http3 = self._http3.copy() if self._http3 is not None else None
        twin._http3_connection_bytes = dict(self._http3_connection_bytes)
        twin._route_layers = dict(self._route_layers)
        twin._transport_layer = self._transport_layer
        twin._groups = {key: group.copy() for key, group in self._groups.items()}
        twin._listed = list(self._listed)
        twin.connection_count, twin.started_at, twin.ended_at = self.connection_count, self.started_at, self.ended_at
        twin._sessions = {key: session.copy() for key, session in self._sessions.items()}
        twin._session_ids = dict(self._session_ids)
        twin._sessions_untracked = self._sessions_untracked
        twin.forwarded = self.forwarded
        return twin

    def connection_ids(self) -> Iterator[str]:
        """The ids of the connections this builder keeps: listed, or their own application sessions."""
        for _, summary in [*self._listed, *(c for group in self._groups.values() for c in group.listed)]:
            yield summary.id
        yield from (ident for _, kind, ident in self._sessions if kind == "connection")

    def rename_connections(self, rename: Callable[[str], str]) -> None:
        """Give every connection the id ``rename`` makes of its id: in the list, and
        where a connection is its own application session."""
        self._listed = [(place, replace(c, id=rename(c.id))) for place, c in self._listed]
        for group in self._groups.values():
            group.listed = [(place, replace(c, id=rename(c.id))) for place, c in group.listed]
        renamed = {
            key: (key[0], key[1], rename(key[2])) if key[1] == "connection" else key for key in self._session_ids
        }
        self._sessions = {renamed[key]: session for key, session in self._sessions.items()}
        self._session_ids = {renamed[key]: ident for key, ident in self._session_ids.items()}

    def mergeable_with(self, other: ReportBuilder) -> str | None:
        """Why :meth:`merge` cannot combine these builders, or None when it can."""
        if self._fixed_routes or other._fixed_routes:
            return "builders given a route table cannot be merged"
        if self._redact != other._redact:
            return "a report that redacts request targets cannot merge with one that does not"
        if self._limit != other._limit:
            return f"lists {other._limit:,} connections, not {self._limit:,}"
        return None

    def merge(self, other: ReportBuilder) -> None:
        """Add what ``other`` was given, as if its connections had been added here
        after this builder's own (``other`` is spent).

        The report is the one a builder given all the connections in that order
        would make: routes are combined before polls are decided, connections are
        listed by their place in that order, and application sessions numbered
        in it (a session met on both sides keeps this side's number). Two limits
        make the order matter, far past what reports meet: a route table that
        fills up (:data:`~inspector.classify.ROUTE_LIMIT` routes) leaves
        ``other``'s routes beyond it to be decided by ``other``'s own requests,
        and sessions past :data:`SESSION_LIMIT` are counted as untracked once per
        session rather than once per connection. Connection ids must already be
        distinct (:meth:`rename_connections`).
        """
        problem = self.mergeable_with(other)
        if problem is not None:
            raise ValueError(problem)
        offset = self.connection_count
        sessions: dict[str, str] = {}
        for key, ident in other._session_ids.items():
            session = self._sessions.get(key)
            if session is not None:
                session.merge(other._sessions[key])
                sessions[ident] = self._session_ids[key]
            elif len(self._sessions) >= SESSION_LIMIT:
                self._sessions_untracked += 1
            else:
                self._sessions[key] = other._sessions[key]
                sessions[ident] = self._session_ids[key] = f"s{len(self._session_ids) + 1}"
        self._sessions_untracked += other._sessions_untracked

        def moved(listed: list[tuple[int, ConnectionSummary]]) -> list[tuple[int, ConnectionSummary]]:
            return [
                (offset + place, replace(c, session=sessions.get(c.session) if c.session is not None else None))
                for place, c in listed
                if offset + place < self._limit
            ]

        for (name, protocol), totals in other._totals.items():
            self._transport(name, protocol).merge(totals)
        refused = self._routes.add(other._routes)
        for (route, protocol), figures in other._by_route.items():
            share = other._route_shares.get((route, protocol))
            layer = other._route_layers.get((route, protocol))
            if route in refused:
                totals = self._transport(other._routes.transport(route), protocol)
                totals.exchanges.merge(figures)
                if share is not None:
                    totals.share(share, protocol, layer)
                continue
            self._by_route.setdefault((route, protocol), ExchangeTotals()).merge(figures)
            if layer is not None:
                mine_layer = self._route_layers.get((route, protocol))
                self._route_layers[(route, protocol)] = layer if mine_layer is None else mine_layer + layer
            if share is not None:
                mine = self._route_shares.setdefault((route, protocol), _accounts())
                for direction in Direction:
                    mine[direction].merge(share[direction])
        if other._http2 is not None:
            if self._http2 is None:
                self._http2 = Http2Counts()
            self._http2.merge(other._http2)
        if other._http3 is not None:
            if self._http3 is None:
                self._http3 = Http3Counts()
            self._http3.merge(other._http3)
        for direction in Direction:
            self._http2_connection_bytes[direction] += other._http2_connection_bytes[direction]
            self._http3_connection_bytes[direction] += other._http3_connection_bytes[direction]
        self._transport_layer = add_layers(self._transport_layer, other._transport_layer)
        for (best, routes, protocol), group in other._groups.items():
            if routes & refused:
                best = most_streaming(
                    [*([best] if best else []), *(other._routes.transport(r) for r in routes & refused)]
                )
                routes -= refused
            into = self._groups.get((best, routes, protocol))
            if into is None:
                into = self._groups[(best, routes, protocol)] = _Group()
            into.totals.merge(group.totals)
            into.listed += moved(group.listed)
        self._listed += moved(other._listed)
        self.connection_count += other.connection_count
        self.forwarded += other.forwarded
        if other.started_at is not None:
            self._span(other.started_at, other.ended_at)

    def to_json(self) -> dict[str, Any]:
        """Everything this builder holds, as JSON (:mod:`inspector.partial` writes it to a file).
        Like the builder, it does not grow with the number of connections added."""
        if self._fixed_routes:
            raise ValueError("a builder given a route table has no JSON form")
        return {
            "redact": self._redact,
            "connection_limit": self._limit,
            "connection_count": self.connection_count,
            "forwarded": self.forwarded,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "totals": [[name, protocol, totals.to_json()] for (name, protocol), totals in sorted(self._totals.items())],
            "routes": self._routes.to_json(),
            "by_route": [
                [
                    method,
                    path,
                    protocol,
                    figures.to_json(),
                    accounts_to_json(self._route_shares[key]) if key in self._route_shares else None,
                    self._route_layers[key].as_dict() if key in self._route_layers else None,
                ]
                for key in sorted(self._by_route)
                for ((method, path), protocol), figures in [(key, self._by_route[key])]
            ],
            "http2": self._http2.to_json() if self._http2 is not None else None,
            "http2_connection_bytes": counts_to_json(self._http2_connection_bytes),
            "http3": self._http3.to_json() if self._http3 is not None else None,
            "http3_connection_bytes": counts_to_json(self._http3_connection_bytes),
            "transport_layer": self._transport_layer.as_dict() if self._transport_layer is not None else None,
            "groups": [
                [best, sorted(map(list, routes)), protocol, group.to_json()]
                for (best, routes, protocol), group in self._groups.items()
            ],
            "listed": _listed_json(self._listed),
            "sessions": [
                [name, kind, ident, self._session_ids[(name, kind, ident)], session.to_json()]
                for (name, kind, ident), session in self._sessions.items()
            ],
            "sessions_untracked": self._sessions_untracked,
        }

    @classmethod
    def from_json(cls, state: object) -> ReportBuilder:
        """A builder as :meth:`to_json` wrote it; :class:`~inspector.checked.StateError` if it is not one."""
        state = fields(state, "report builder")
        limit = whole(state.get("connection_limit"), "connection_limit")
        builder = cls(redact=expect(state.get("redact"), bool, "redact"), connection_limit=limit)
        builder.connection_count = whole(state.get("connection_count"), "connection_count")
        builder.forwarded = whole(state.get("forwarded"), "forwarded")
        builder.started_at = optional(state.get("started_at"), number, "started_at")
        builder.ended_at = optional(state.get("ended_at"), number, "ended_at")
        for entry in items(state.get("totals"), "transports"):
            name, protocol, totals = items(entry, "transport")
            builder._totals[(_transport_name(name), _protocol(protocol))] = _Totals.from_json(totals)
        builder._routes = RouteTable.from_json(state.get("routes"))
        for entry in items(state.get("by_route"), "routes waiting"):
            method, path, protocol, figures, share, layer = items(entry, "route waiting")
            key = ((text(method, "method"), text(path, "path")), _protocol(protocol))
            builder._by_route[key] = ExchangeTotals.from_json(figures)
            if share is not None:
                builder._route_shares[key] = accounts_from_json(share, "byte accounts")
            route_layer = TransportLayer.from_dict(layer) if layer is not None else None
            if route_layer is not None:
                builder._route_layers[key] = route_layer
        http2 = state.get("http2")
        builder._http2 = Http2Counts.from_json(http2) if http2 is not None else None
        builder._http2_connection_bytes = counts_from_json(state.get("http2_connection_bytes"), "http2 bytes")
        http3 = state.get("http3")
        builder._http3 = Http3Counts.from_json(http3) if http3 is not None else None
        builder._http3_connection_bytes = counts_from_json(state.get("http3_connection_bytes"), "http3 bytes")
        transport_layer = state.get("transport_layer")
        builder._transport_layer = TransportLayer.from_dict(transport_layer) if transport_layer is not None else None
        for entry in items(state.get("groups"), "groups"):
            best, routes, protocol, group = items(entry, "group")
            group_key = (
                optional(best, _transport_name, "transport"),  # type: ignore[arg-type]
                frozenset((text(m, "method"), text(p, "path")) for m, p in map(_route_of, items(routes, "routes"))),
                _protocol(protocol),
            )
            builder._groups[group_key] = _Group.from_json(group)
        builder._listed = _listed_from_json(state.get("listed"))
        for entry in items(state.get("sessions"), "sessions"):
            name, kind, ident, number_, session = items(entry, "session")
            session_key = (text(name, "application protocol"), text(kind, "session kind"), text(ident, "session id"))
            if number_ != f"s{len(builder._session_ids) + 1}" or session_key in builder._sessions:
                raise StateError("sessions: not numbered in order")
            builder._sessions[session_key] = _Session.from_json(session)
            builder._session_ids[session_key] = number_
        builder._sessions_untracked = whole(state.get("sessions_untracked"), "sessions_untracked")
        listed = [*builder._listed, *(c for g in builder._groups.values() for c in g.listed)]
        if len(listed) > min(limit, builder.connection_count) or any(p >= builder.connection_count for p, _ in listed):
            raise StateError("listed connections: more than the builder was given")
        return builder

    def snapshot(self, open_records: Iterable[ConnectionRecord] = (), **report: object) -> Report:
        """The report so far, with connections still open included, leaving this builder as it was."""
        twin = self.copy()
        for record in open_records:
            twin.add(record)
        return twin.report(**report)  # type: ignore[arg-type]

    def report(self, *, sources: Sequence[str] = (), notes: Sequence[str] = ()) -> Report:
        """Decide what waited on the routes and summarise. ``notes`` are added to
        the report's own. The builder is spent: add nothing after this."""
        for (route, protocol), figures in self._by_route.items():
            totals = self._transport(self._routes.transport(route), protocol)
            totals.exchanges.merge(figures)
            share = self._route_shares.get((route, protocol))
            if share is not None:
                totals.share(share, protocol, self._route_layers.get((route, protocol)))
        self._by_route = {}
        self._route_shares = {}
        self._route_layers = {}
        for (best, routes, protocol), group in self._groups.items():
            transport = most_streaming([*([best] if best else []), *(self._routes.transport(r) for r in routes)])
            self._transport(transport, protocol).merge(group.totals)
            for summary in group.spool.drain():
                if self._on_connection is not None:
                    self._on_connection(replace(summary, transport=transport))
            self._listed += [(place, replace(summary, transport=transport)) for place, summary in group.listed]
        self._groups = {}

        merged: dict[str, _Totals] = {}
        transports: dict[str, TransportSummary] = {}
        for name in TRANSPORTS:
            parts = {
                protocol: self._totals[(name, protocol)] for protocol in PROTOCOLS if (name, protocol) in self._totals
            }
            if not parts:
                continue
            whole = merged[name] = _Totals()
            for totals in parts.values():
                whole.merge(totals)
            by_protocol = {protocol: totals.summary(name) for protocol, totals in parts.items()}
            transports[name] = replace(whole.summary(name), by_protocol=by_protocol)
        report_notes = [WIRE_BYTES_NOTE, *notes]
        if self._http3 is not None:
            report_notes.insert(1, QUIC_WIRE_BYTES_NOTE)
        if self._transport_layer is not None:
            report_notes.append(LAYER_NOTE)
        if any(transports[name].messages.total for name in POLLING if name in transports):
            report_notes.append(POLL_MESSAGE_NOTE)
        if any(_estimated(summary) for summary in transports.values()):
            report_notes.append(ESTIMATE_NOTE)
        if self.forwarded:
            connections = "1 connection" if self.forwarded == 1 else f"{self.forwarded:,} connections"
            report_notes.append(FORWARDED_NOTE.format(count=connections))
        if self._routes.untracked:
            report_notes.append(
                f"{self._routes.untracked:,} requests went to paths beyond the {CONNECTION_ROUTE_LIMIT:,} distinct "
                f"paths a connection keeps counts for (or the {self._routes.limit:,} a report keeps); they were "
                "classified as one-off requests, or as polls by their own connection's requests."
            )
        if self._sessions_untracked:
            report_notes.append(
                f"{self._sessions_untracked:,} connections belonged to sessions beyond the {SESSION_LIMIT:,} a report "
                "keeps apart; they are in the transports' figures but not in the sessions'."
            )
        sessions: dict[str, list[_Session]] = {}
        for (name, _, _), session in self._sessions.items():
            sessions.setdefault(name, []).append(session)
        listed = [summary for _, summary in sorted(self._listed, key=lambda item: item[0])]
        if self.connection_count > len(listed):
            report_notes.append(
                f"{self.connection_count - len(listed):,} of {self.connection_count:,} connections are in the "
                f"figures but not in the list of connections, which keeps the first {self._limit:,}; "
                "rtinspect report --connections -f csv (or -f json) lists every one."
            )
        timeline = [
            MessagePoint(time, name, direction, wire)
            for name, totals in merged.items()
            for time, direction, wire in cast("list[MessageTime]", totals.exchanges.timeline.items)
        ]
        return Report(
            transports=transports,
            connections=tuple(sorted(listed, key=lambda c: c.opened_at if c.opened_at is not None else 0.0)),
            sources=tuple(sources),
            started_at=self.started_at,
            ended_at=self.ended_at,
            notes=tuple(report_notes),
            timeline=tuple(sorted(timeline, key=lambda point: point.time)),
            connection_count=self.connection_count,
            http2=http2_figures(self._http2, self._http2_connection_bytes) if self._http2 is not None else None,
            http3=http3_figures(self._http3, self._http3_connection_bytes) if self._http3 is not None else None,
            sessions={name: sessions_summary(sessions[name]) for name in sorted(sessions)},
            transport_layer=self._transport_layer,
        )


def _forwarded(record: ConnectionRecord) -> bool:
    """Whether a forward proxy served plain HTTP on the connection: its requests are in absolute form."""
    return record.opened.mode.startswith("regular") and any(
        target.startswith(("http://", "https://")) for target in record.targets
    )


def build_report(
    records: Iterable[ConnectionRecord],
    *,
    sources: Sequence[str] = (),
    notes: Sequence[str] = (),
    redact: bool = True,
) -> Report:
    """Summarise connections by transport (a :class:`ReportBuilder` fed ``records`` in order)."""
    builder = ReportBuilder(redact=redact)
    for record in records:
        builder.add(record)
    return builder.report(sources=sources, notes=notes)


def _estimated(summary: TransportSummary) -> bool:
    figures = (summary.bytes_per_message, summary.inter_arrival, summary.time_to_first_byte)
    return any(q is not None and not q.exact for q in figures)


__all__ = [
    "STREAMING",
    "ReportBuilder",
    "build_report",
    "exchange_messages",
    "handshake_duration",
    "WIRE_BYTES_NOTE",
]
