"""Prometheus metrics of what each transport cost, derived from the core's connection records.

Labels are ``transport``, ``protocol`` (``http/1.1``, ``h2`` or ``h3``, the HTTP
version the connection spoke) and ``direction`` only, so a proxy exports a
fixed, small set of series (every transport with every protocol is exported
from the start, at zero). ``sum by (transport)`` gives a transport's figures
whatever the protocol.

Counters must never go down, but a connection's transport can change as more
traffic arrives: a path requested a second time turns the first request from
``http`` into a poll, and a request the server held turns a short poll into a
long poll. So the counters (``rtinspect_*_total``) count **closed connections
only**, each once: at the first scrape after it closed, its figures are added
under the transports the classification gives then, with every connection
seen so far (open ones included) in view, and they are never moved. They
equal the report of the capture wherever the classification did not change
after that scrape. Traffic on connections still open (a WebSocket may stay
open for hours) is in the gauges ``rtinspect_open_*``, classified afresh at
each scrape, and in ``rtinspect_relayed_bytes_total{direction}``, every byte
relayed so far whatever its transport.

The ledger (:class:`MetricsLedger`) takes records and returns metric
families, with no threads or sockets; :class:`LiveMetrics` and
:class:`MetricsServer` serve it from a running proxy. With an analyser
process, a scrape first asks it to catch up with every byte relayed so far
(waiting a bounded time), so a scrape counts what an inline proxy would.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import inspect
import ipaddress
import os
import threading
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from .classify import RouteTable
from .connection import ConnectionRecord
from .report import PROTOCOLS, STREAMING, TRANSPORTS, Report, TransportSummary
from .summary import ReportBuilder
from .wire import Category, Direction

#: Upper bounds (seconds) of the handshake duration histogram's buckets.
HANDSHAKE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Seconds a scrape waits for the proxy's event loop before it serves the figures it had.
SCRAPE_TIMEOUT = 5.0

_DIRECTIONS = tuple(Direction)


#: The counters of figures below the byte streams, by their names in the report.
LAYER_DOCUMENTATION = {
    "tls_records": "TLS records on the client legs of closed connections, handshake records included.",
    "tls_record_bytes": "Bytes of those TLS records: 5-byte headers and bodies.",
    "quic_packets": "QUIC packets on the client legs of closed connections.",
    "quic_packet_bytes": "UDP payload bytes of those QUIC packets' datagrams.",
    "quic_ack_only_packets": "QUIC packets that carried only ACK and PADDING frames.",
    "quic_padding_bytes": "Bytes of QUIC PADDING frames.",
    "ip_header_bytes": "IP and TCP or UDP header bytes (the proxy's are estimated; see the report's transport_layer).",
}


def _per_direction() -> dict[Direction, int]:
    return dict.fromkeys(Direction, 0)


@dataclass(slots=True)
class _Settled:
    """One transport's figures over the closed connections counted so far."""

    connections: int = 0
    handshakes: int = 0
    anomalies: int = 0
    empty_polls: int = 0
    tls_handshakes: int = 0
    messages: dict[Direction, int] = field(default_factory=_per_direction)
    wire: dict[Direction, int] = field(default_factory=_per_direction)
    payload: dict[Direction, int] = field(default_factory=_per_direction)
    overhead: dict[Direction, int] = field(default_factory=_per_direction)
    #: Handshakes per bucket of HANDSHAKE_BUCKETS (not cumulative), the last one for +Inf.
    handshake_buckets: list[int] = field(default_factory=lambda: [0] * (len(HANDSHAKE_BUCKETS) + 1))
    handshake_seconds: float = 0.0
    #: Figures below the byte streams, by name (see :mod:`inspector.transport_layer`).
    layer: dict[str, dict[Direction, int]] = field(
        default_factory=lambda: {name: _per_direction() for name in LAYER_DOCUMENTATION}
    )

    def add(self, summary: TransportSummary) -> None:
        self.connections += summary.connections
        self.handshakes += summary.handshakes
        self.anomalies += summary.anomalies
        self.empty_polls += summary.empty_polls
        self.tls_handshakes += summary.tls_handshakes
        for direction in Direction:
            wire = summary.wire_bytes[direction]
            self.messages[direction] += summary.messages[direction]
            self.wire[direction] += wire
            self.payload[direction] += summary.payload_bytes[direction]
            self.overhead[direction] += wire - summary.categories[Category.PAYLOAD.value][direction]
            if summary.transport_layer is not None:
                figures = summary.transport_layer[direction]
                for name in LAYER_DOCUMENTATION:
                    self.layer[name][direction] += getattr(figures, name)

    def observe_handshake(self, seconds: float) -> None:
        self.handshake_buckets[bisect.bisect_left(HANDSHAKE_BUCKETS, seconds)] += 1
        self.handshake_seconds += seconds


def _layer_figure(name: str) -> Callable[[_Settled], dict[Direction, int]]:
    return lambda settled: settled.layer[name]


class MetricsLedger:
    """Counters over closed connections that only go up, and gauges over open ones.

    :meth:`update` takes the connections closed since the last update, in the
    order they closed, and a snapshot of each open connection; :meth:`families`
    returns the metrics as of the last update. What is kept is a few figures
    per transport and protocol and the routes seen (which classify polls), never records.
    """

    def __init__(self) -> None:
        self._settled = {(name, protocol): _Settled() for name in TRANSPORTS for protocol in PROTOCOLS}
        self._routes = RouteTable()
        self._open: Report = ReportBuilder().report()

    def update(self, closed: Sequence[ConnectionRecord], open_now: Sequence[ConnectionRecord]) -> None:
        for record in closed:
            self._routes.add(record.routes)
        routes = self._routes.copy()
        for record in open_now:
            routes.add(record.routes)
        if closed:
            self._settle(closed, routes)
        self._open = self._report(open_now, routes)

    @staticmethod
    def _report(records: Sequence[ConnectionRecord], routes: RouteTable) -> Report:
        builder = ReportBuilder(routes=routes)
        for record in records:
            builder.add(record)
        return builder.report()

    def _settle(self, records: Sequence[ConnectionRecord], routes: RouteTable) -> None:
        for name, summary in self._report(records, routes).transports.items():
            for protocol, part in summary.by_protocol.items():
                self._settled[(name, protocol)].add(part)
        for record in records:
            for key, figures in record.totals.items():
                if isinstance(key, str) and key in STREAMING:
                    for seconds in figures.handshake_duration.values():
                        self._settled[(key, record.protocol)].observe_handshake(seconds)

    def families(self) -> list[Metric]:
        settled = self._settled
        families: list[Metric] = []

        def counter(name: str, documentation: str, value: Callable[[_Settled], int]) -> None:
            family = CounterMetricFamily(name, documentation, labels=["transport", "protocol"])
            for (transport, protocol), figures in settled.items():
                family.add_metric([transport, protocol], value(figures))
            families.append(family)

        def counter_by_direction(
            name: str, documentation: str, value: Callable[[_Settled], dict[Direction, int]]
        ) -> None:
            family = CounterMetricFamily(name, documentation, labels=["transport", "protocol", "direction"])
            for (transport, protocol), figures in settled.items():
                for direction in _DIRECTIONS:
                    family.add_metric([transport, protocol, direction.value], value(figures)[direction])
            families.append(family)

        counter("rtinspect_connections", "Closed TCP connections, by the transport they used.", lambda s: s.connections)
        counter_by_direction("rtinspect_messages", "Messages delivered on closed connections.", lambda s: s.messages)
        counter_by_direction(
            "rtinspect_wire_bytes",
            "Bytes of the TCP streams (after TLS) of closed connections: heads, framing and payload.",
            lambda s: s.wire,
        )
        counter_by_direction(
            "rtinspect_payload_bytes",
            "Message content the application received on closed connections (decompressed for WebSocket).",
            lambda s: s.payload,
        )
        counter_by_direction(
            "rtinspect_overhead_bytes",
            "Wire bytes of closed connections that were not payload as they travelled.",
            lambda s: s.overhead,
        )
        counter(
            "rtinspect_handshakes",
            "Stream handshakes (WebSocket Upgrade, SSE and stream requests).",
            lambda s: s.handshakes,
        )
        counter("rtinspect_tls_handshakes", "TLS handshakes with clients.", lambda s: s.tls_handshakes)
        counter(
            "rtinspect_anomalies",
            "Places where traffic broke a protocol rule or stopped parsing.",
            lambda s: s.anomalies,
        )
        counter("rtinspect_empty_polls", "Polls whose response carried no data.", lambda s: s.empty_polls)
        for name, documentation in LAYER_DOCUMENTATION.items():
            counter_by_direction(f"rtinspect_{name}", documentation, _layer_figure(name))

        histogram = HistogramMetricFamily(
            "rtinspect_handshake_duration_seconds",
            "Seconds from a stream's request head to the response head that accepted it.",
            labels=["transport", "protocol"],
        )
        for (transport, protocol), figures in settled.items():
            cumulative, buckets = 0, []
            for bound, count in zip((*HANDSHAKE_BUCKETS, float("inf")), figures.handshake_buckets, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            histogram.add_metric([transport, protocol], buckets, figures.handshake_seconds)
        families.append(histogram)

        open_summaries = self._open.transports
        connections = GaugeMetricFamily(
            "rtinspect_open_connections",
            "Connections open now, by the transport they use so far.",
            labels=["transport", "protocol"],
        )
        open_wire = GaugeMetricFamily(
            "rtinspect_open_wire_bytes",
            "Wire bytes so far on connections open now (not yet in rtinspect_wire_bytes_total).",
            labels=["transport", "protocol", "direction"],
        )
        open_messages = GaugeMetricFamily(
            "rtinspect_open_messages",
            "Messages so far on connections open now (not yet in rtinspect_messages_total).",
            labels=["transport", "protocol", "direction"],
        )
        for transport in TRANSPORTS:
            whole = open_summaries.get(transport)
            for protocol in PROTOCOLS:
                summary = whole.by_protocol.get(protocol) if whole else None
                connections.add_metric([transport, protocol], summary.connections if summary else 0)
                for direction in _DIRECTIONS:
                    labels = [transport, protocol, direction.value]
                    open_wire.add_metric(labels, summary.wire_bytes[direction] if summary else 0)
                    open_messages.add_metric(labels, summary.messages[direction] if summary else 0)
        families += [connections, open_wire, open_messages]

        relayed = CounterMetricFamily(
            "rtinspect_relayed_bytes",
            "Every byte relayed so far, open connections included, whatever its transport.",
            labels=["direction"],
        )
        for direction in _DIRECTIONS:
            total = sum(figures.wire[direction] for figures in settled.values())
            total += sum(summary.wire_bytes[direction] for summary in open_summaries.values())
            relayed.add_metric([direction.value], total)
        families.append(relayed)
        return families


Records = tuple[Sequence[ConnectionRecord], Sequence[ConnectionRecord]]
RecordSource = Callable[[], Records | Awaitable[Records]]
"""Returns (records of connections closed since the last call, in the order they closed, snapshots of open
connections), or an awaitable of them (an analyser process answers asynchronously)."""


class LiveMetrics:
    """A Prometheus collector for a proxy running on an asyncio event loop.

    The proxy's records change on its event loop, so each scrape (on the HTTP
    server's thread) asks the loop to update the ledger and build the
    families, and waits for them. Once the loop has stopped, scrapes get the
    last families built.
    """

    def __init__(self, ledger: MetricsLedger, records: RecordSource, loop: asyncio.AbstractEventLoop) -> None:
        self._ledger = ledger
        self._records = records
        self._loop = loop
        self._lock = threading.Lock()
        self._families: list[Metric] = ledger.families()

    async def _refresh(self) -> list[Metric]:
        records = self._records()
        closed, open_now = await records if inspect.isawaitable(records) else records
        self._ledger.update(closed, open_now)
        return self._ledger.families()

    def describe(self) -> list[Metric]:
        """Nothing to check for clashes: the registry is this collector's alone."""
        return []

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if self._loop.is_running() and not self._loop.is_closed():
                future = asyncio.run_coroutine_threadsafe(self._refresh(), self._loop)
                try:
                    self._families = future.result(SCRAPE_TIMEOUT)
                except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
                    future.cancel()
            return list(self._families)


class MetricsServer:
    """Serves a collector's metrics over HTTP (``/metrics``, or any path) on
    ``host:port`` from a background thread, with the process's own metrics.

    Raises OSError when it cannot listen (port in use, unknown host).
    """

    def __init__(self, collector: LiveMetrics, host: str, port: int) -> None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        ProcessCollector(registry=registry)
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)
        self.host = host
        self.port: int = self._server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(SCRAPE_TIMEOUT)


def listen_error(error: OSError) -> str:
    """Why a metrics server could not listen, in a few words."""
    if error.errno and not error.strerror:
        return os.strerror(error.errno)
    return error.strerror or str(error)


def is_loopback(host: str) -> bool:
    """Whether a server listening on ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


__all__ = ["HANDSHAKE_BUCKETS", "LiveMetrics", "MetricsLedger", "MetricsServer", "is_loopback", "listen_error"]
