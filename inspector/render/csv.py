"""The report as CSV, for spreadsheets and scripts.

By default one row per transport (:data:`TRANSPORT_FIELDS`), with ``protocol``
``all``, followed by one row per transport and protocol ("http/1.1", "h2");
with ``connections=True`` one row per connection instead
(:data:`CONNECTION_FIELDS`).
Headers are stable snake_case names; byte and message figures are exact
integers, flags are ``true``/``false``, and a figure that does not exist is an
empty cell.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

from ..report import ConnectionSummary, PerDirection, Report, TransportProjection, TransportSummary
from ..transport_layer import COUNTS, TransportLayer
from ..wire import Direction
from .rows import transports_in_order
from .units import is_number

Cell = str | int | float | bool | None


def _directions(name: str) -> tuple[str, str]:
    return f"{name}_client_to_server", f"{name}_server_to_client"


#: The figures below the byte streams, each by direction (see :mod:`inspector.transport_layer`).
LAYER_FIELDS = (*COUNTS, "ip_header_bytes_estimated")

TRANSPORT_FIELDS = (
    "transport",
    "protocol",
    "connections",
    "tcp_connects",
    "handshakes",
    "handshake_bytes",
    *_directions("messages"),
    *_directions("payload_bytes"),
    *_directions("wire_bytes"),
    "overhead_bytes",
    "overhead_ratio",
    "head_bytes",
    "framing_bytes",
    "control_bytes",
    "empty_polls",
    "empty_poll_bytes",
    "wire_bytes_per_message",
    *_directions("app_messages"),
    "wire_bytes_per_app_message",
    "bytes_per_message_mean",
    "bytes_per_message_p50",
    "bytes_per_message_p95",
    "bytes_per_message_max",
    "bytes_per_message_exact",
    "anomalies",
    "projected_wire_bytes_per_day",
    "projected_requests_per_second",
    "projected_handshakes_per_hour",
    "projected_tcp_connects_per_hour",
    "projected_open_connections",
    *_directions("control_messages"),
    "app_control_bytes",
    *(column for name in LAYER_FIELDS for column in _directions(name)),
)

CONNECTION_FIELDS = (
    "id",
    "transport",
    "protocol",
    "client",
    "server",
    "opened_at",
    "closed_at",
    "close_reason",
    "exchanges",
    *_directions("wire_bytes"),
    *_directions("payload_bytes"),
    *_directions("messages"),
    "anomalies",
    "targets",
    "app_protocol",
    "session",
)


def _split(d: PerDirection) -> tuple[int, int]:
    return d.client_to_server, d.server_to_client


def cell(value: Cell) -> Cell:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not is_number(value):
        return None
    return value


def transport_record(
    t: TransportSummary, protocol: str = "all", projected: TransportProjection | None = None
) -> tuple[Cell, ...]:
    """One transport's cells, in :data:`TRANSPORT_FIELDS` order (the projected
    ones empty without a projection)."""
    q = t.bytes_per_message if t.bytes_per_message and t.bytes_per_message.count else None
    return (
        t.transport,
        protocol,
        t.connections,
        t.tcp_connects,
        t.handshakes,
        t.handshake_bytes,
        *_split(t.messages),
        *_split(t.payload_bytes),
        *_split(t.wire_bytes),
        t.overhead_bytes,
        t.overhead_ratio,
        t.head_bytes,
        t.framing_bytes,
        t.control_bytes,
        t.empty_polls,
        t.empty_poll_bytes,
        t.wire_bytes_per_message,
        *_split(t.app_messages),
        t.wire_bytes_per_app_message,
        *((q.mean, q.p50, q.p95, q.max, q.exact) if q else (None,) * 5),
        t.anomalies,
        *(
            (
                projected.wire_bytes_per_day,
                projected.requests_per_second,
                projected.handshakes_per_hour,
                projected.tcp_connects_per_hour,
                projected.open_connections,
            )
            if projected is not None
            else (None,) * 5
        ),
        *_split(t.control_messages),
        t.categories["app_control"].total if "app_control" in t.categories else 0,
        *_layer_cells(t.transport_layer),
    )


def _layer_cells(layer: TransportLayer | None) -> tuple[Cell, ...]:
    """The :data:`LAYER_FIELDS` cells, each by direction (empty when nothing recorded them)."""
    if layer is None:
        return (None,) * (2 * len(LAYER_FIELDS))
    return tuple(getattr(layer[d], name) for name in LAYER_FIELDS for d in Direction)


def connection_record(c: ConnectionSummary) -> tuple[Cell, ...]:
    """One connection's cells, in :data:`CONNECTION_FIELDS` order; targets are
    separated by spaces."""
    return (
        c.id,
        c.transport,
        c.protocol,
        c.client,
        c.server,
        c.opened_at,
        c.closed_at,
        c.close_reason,
        c.exchanges,
        *_split(c.wire_bytes),
        *_split(c.payload_bytes),
        *_split(c.messages),
        len(c.anomalies),
        " ".join(c.targets),
        c.app_protocol,
        c.session,
    )


def _write(header: tuple[str, ...], records: Iterable[tuple[Cell, ...]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([cell(v) for v in record] for record in records)
    return out.getvalue()


def render_csv(report: Report, connections: bool = False) -> str:
    """Transport rows, or connection rows with ``connections``."""
    if connections:
        return _write(CONNECTION_FIELDS, map(connection_record, report.connections))
    transports = transports_in_order(report)
    projected = report.projection.transports if report.projection is not None else {}
    records = [transport_record(t, projected=projected.get(t.transport)) for t in transports]
    records += [transport_record(part, protocol) for t in transports for protocol, part in t.by_protocol.items()]
    return _write(TRANSPORT_FIELDS, records)
