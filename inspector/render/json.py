"""The report as JSON: the machine-readable contract other tools rely on.

Shape (``"format": "rtinspect-report"``, ``"version": 1``): ``transports`` is
an object keyed by transport name (only transports seen, in report order) and
``connections`` a list (of at most the first 10,000 connections;
``connection_count`` counts them all). Each transport has ``by_protocol``, its
figures again for each protocol ("http/1.1", "h2", "h3"), ``http2``, its streams'
HTTP/2 frame figures (null without HTTP/2), and ``http3``, its HTTP/3 figures
(null without HTTP/3); the top-level ``http2`` and ``http3`` total every such
connection's frames, its own streams' included. The ``webtransport`` transport
adds ``sessions``, and ``streams``, ``datagrams`` and ``datagram_bytes`` by
direction. ``network`` gives the network conditions the
proxy added (null for none). Where an application protocol was recognised
(Socket.IO, GraphQL over WebSocket, ...), each connection names it
(``app_protocol``) and its ``session``; each transport's ``app_messages``
count the application's messages only, ``control_messages`` the protocol's
own, and ``by_app_protocol`` splits both by protocol; the top-level
``sessions`` summarises each protocol's sessions (an object, empty when none).
Each transport's ``transport_layer`` (and the top-level one, their total)
holds what the client legs cost below the byte streams, by direction:
``tls_records``, ``tls_record_bytes``, ``quic_packets``, ``quic_packet_bytes``,
``quic_ack_only_packets``, ``quic_padding_bytes``, ``ip_header_bytes`` and
``ip_header_bytes_estimated`` (null when nothing recorded them; see
:mod:`inspector.transport_layer`). Figures "by direction" are objects with exactly
the keys ``client_to_server`` and ``server_to_client``. Numbers that do not exist (no
messages, nothing to divide by) are ``null``, never NaN or Infinity.

Given what the clients measured (``report --clients``), ``clients`` holds it:
its ``source`` file, who measured, the feed, and per transport (per protocol,
under ``by_protocol``, when the clients were) messages received, lost and
duplicated and their latency in milliseconds (``latency_ms``: count, mean, p50,
p90, p95, p99, max, exact). Without it there is no ``clients`` key.
"""

from __future__ import annotations

import json
from typing import Any

from ..measurements import ClientMeasurements, TransportLatency
from ..network import NetworkConditions
from ..report import (
    REPORT_FORMAT,
    REPORT_VERSION,
    ConnectionSummary,
    Http2Figures,
    Http3Figures,
    MessagePoint,
    Projection,
    Quantiles,
    Report,
    SessionsSummary,
    TransportSummary,
    WebSocketFigures,
    WebTransportFigures,
)
from ..wire import Anomaly
from .rows import transports_in_order
from .units import is_number


def _number(value: float | None) -> float | None:
    return value if is_number(value) else None


def quantiles_to_dict(q: Quantiles | None) -> dict[str, Any] | None:
    """``{"mean", "p50", "p95", "max", "count", "exact"}``, or None when empty."""
    if q is None or q.count == 0:
        return None
    return {
        "mean": _number(q.mean),
        "p50": _number(q.p50),
        "p95": _number(q.p95),
        "max": _number(q.max),
        "count": q.count,
        "exact": q.exact,
    }


def _websocket_to_dict(ws: WebSocketFigures) -> dict[str, Any]:
    return {
        "frames": {"data": ws.data_frames.as_dict(), "control": ws.control_frames.as_dict()},
        "frame_header_bytes": ws.frame_header_bytes.as_dict(),
        "wire_payload_bytes": ws.wire_payload_bytes.as_dict(),
        "compressed_messages": ws.compressed_messages.as_dict(),
    }


def http2_to_dict(h: Http2Figures) -> dict[str, Any]:
    """HTTP/2 frame figures: each an object by direction; ``frames`` by direction, then by frame type."""
    return _frames_to_dict(h)


def http3_to_dict(h: Http3Figures) -> dict[str, Any]:
    """HTTP/3 figures: each an object by direction; ``frames`` by direction, then by frame type."""
    return _frames_to_dict(h)


def _frames_to_dict(h: Http2Figures | Http3Figures) -> dict[str, Any]:
    figures: dict[str, Any] = {"frames": {direction.value: dict(counts) for direction, counts in h.frames.items()}}
    for name in h.__slots__:
        if name != "frames":
            figures[name] = getattr(h, name).as_dict()
    return figures


def _webtransport_to_dict(wt: WebTransportFigures) -> dict[str, Any]:
    return {
        "sessions": wt.sessions,
        "streams": wt.streams.as_dict(),
        "datagrams": wt.datagrams.as_dict(),
        "datagram_bytes": wt.datagram_bytes.as_dict(),
    }


def projection_to_dict(p: Projection) -> dict[str, Any]:
    """The fleet, its assumptions, and each transport's projected costs."""
    return {
        "clients": p.clients,
        "app_messages_per_second_per_client": p.messages_per_second,
        "app_messages_direction": "server_to_client",
        "assumptions": list(p.assumptions),
        "transports": {
            name: {
                "wire_bytes_per_day": t.wire_bytes_per_day,
                "requests_per_second": t.requests_per_second,
                "handshakes_per_hour": t.handshakes_per_hour,
                "tcp_connects_per_hour": t.tcp_connects_per_hour,
                "open_connections": t.open_connections,
            }
            for name, t in p.transports.items()
        },
    }


def transport_to_dict(t: TransportSummary) -> dict[str, Any]:
    """One transport's figures; WebSocket adds its frame-level figures, HTTP/2
    its own (``http2``), and ``by_protocol`` the same figures per protocol."""
    d: dict[str, Any] = {
        "connections": t.connections,
        "tcp_connects": t.tcp_connects,
        "handshakes": t.handshakes,
        "handshake_bytes": t.handshake_bytes,
        "messages": t.messages.as_dict(),
        "payload_bytes": t.payload_bytes.as_dict(),
        "wire_bytes": t.wire_bytes.as_dict(),
        "overhead_bytes": t.overhead_bytes,
        "overhead_ratio": _number(t.overhead_ratio),
        "bytes_per_message": quantiles_to_dict(t.bytes_per_message),
        "anomalies": t.anomalies,
        "categories": {name: split.as_dict() for name, split in t.categories.items()},
        "head_bytes": t.head_bytes,
        "framing_bytes": t.framing_bytes,
        "control_bytes": t.control_bytes,
        "empty_polls": t.empty_polls,
        "empty_poll_bytes": t.empty_poll_bytes,
        "wire_bytes_per_message": _number(t.wire_bytes_per_message),
        "requests": t.requests,
        "app_messages": t.app_messages.as_dict(),
        "control_messages": t.control_messages.as_dict(),
        "wire_bytes_per_app_message": _number(t.wire_bytes_per_app_message),
        "by_app_protocol": {
            name: {
                "app_messages": app.app_messages.as_dict(),
                "control_messages": app.control_messages.as_dict(),
                "control_bytes": app.control_bytes,
                "wire_bytes": app.wire_bytes,
            }
            for name, app in t.by_app_protocol.items()
        },
        "inter_arrival": quantiles_to_dict(t.inter_arrival),
        "time_to_first_byte": quantiles_to_dict(t.time_to_first_byte),
        "time_to_first_message": quantiles_to_dict(t.time_to_first_message),
        "handshake_duration": quantiles_to_dict(t.handshake_duration),
        "tls_handshakes": t.tls_handshakes,
        "tls_handshake_duration": quantiles_to_dict(t.tls_handshake_duration),
    }
    if t.websocket is not None:
        d.update(_websocket_to_dict(t.websocket))
    if t.webtransport is not None:
        d.update(_webtransport_to_dict(t.webtransport))
    d["http2"] = http2_to_dict(t.http2) if t.http2 is not None else None
    d["http3"] = http3_to_dict(t.http3) if t.http3 is not None else None
    d["transport_layer"] = t.transport_layer.as_dict() if t.transport_layer is not None else None
    if t.by_protocol:
        d["by_protocol"] = {protocol: transport_to_dict(part) for protocol, part in t.by_protocol.items()}
    return d


def anomaly_to_dict(a: Anomaly) -> dict[str, Any]:
    return {"offset": a.offset, "direction": a.direction.value, "reason": a.reason, "security": a.security}


def connection_to_dict(c: ConnectionSummary) -> dict[str, Any]:
    return {
        "id": c.id,
        "transport": c.transport,
        "client": c.client,
        "server": c.server,
        "opened_at": _number(c.opened_at),
        "closed_at": _number(c.closed_at),
        "close_reason": c.close_reason,
        "exchanges": c.exchanges,
        "wire_bytes": c.wire_bytes.as_dict(),
        "payload_bytes": c.payload_bytes.as_dict(),
        "messages": c.messages.as_dict(),
        "anomalies": [anomaly_to_dict(a) for a in c.anomalies],
        "targets": list(c.targets),
        "reconstructed": c.reconstructed,
        "protocol": c.protocol,
        "app_protocol": c.app_protocol,
        "session": c.session,
    }


def sessions_to_dict(s: SessionsSummary) -> dict[str, Any]:
    """The sessions of one application protocol."""
    return {
        "count": s.count,
        "upgraded": s.upgraded,
        "paths": dict(s.paths),
        "wire_bytes": s.wire_bytes,
        "app_messages": s.app_messages.as_dict(),
        "control_messages": s.control_messages.as_dict(),
        "wire_bytes_per_app_message": _number(s.wire_bytes_per_app_message),
        "before_upgrade_wire_bytes": s.before_upgrade_wire_bytes,
    }


def network_to_dict(n: NetworkConditions) -> dict[str, Any]:
    """The conditions the proxy added: the preset they started from (or null), the
    round trip and jitter in milliseconds, and each direction's rate (null: no limit)."""
    return {
        "preset": n.preset,
        "rtt_ms": n.rtt_ms,
        "jitter_ms": n.jitter_ms,
        "down_bits_per_second": n.down_bits_per_second,
        "up_bits_per_second": n.up_bits_per_second,
    }


def _point_to_dict(p: MessagePoint) -> dict[str, Any]:
    return {"time": p.time, "transport": p.transport, "direction": p.direction.value, "wire_bytes": p.wire_bytes}


def _client_to_dict(t: TransportLatency) -> dict[str, Any]:
    latency = None
    if t.count:
        latency = {
            "count": t.count,
            **{name: _number(getattr(t, name)) for name in ("mean", "p50", "p90", "p95", "p99", "max")},
            "exact": t.exact,
        }
    return {"received": t.received, "lost": t.lost, "duplicates": t.duplicates, "latency_ms": latency, "error": t.error}


def clients_to_dict(clients: ClientMeasurements) -> dict[str, Any]:
    """What the clients measured, keyed by transport, then by protocol where they were measured per protocol."""
    transports: dict[str, Any] = {}
    for t in clients.transports:
        if t.protocol is None:
            transports[t.transport] = _client_to_dict(t)
        else:
            transports.setdefault(t.transport, {"by_protocol": {}})["by_protocol"][t.protocol] = _client_to_dict(t)
    feed = clients.feed
    return {
        "source": clients.source,
        "clients": clients.clients,
        "feed": {"count": feed.count, "rate": feed.rate, "size": feed.size} if feed is not None else None,
        "transports": transports,
    }


def report_to_dict(report: Report, clients: ClientMeasurements | None = None) -> dict[str, Any]:
    """The whole report as plain JSON-compatible data; with ``clients``, what they measured."""
    document = {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "sources": list(report.sources),
        "started_at": _number(report.started_at),
        "ended_at": _number(report.ended_at),
        "notes": list(report.notes),
        "transports": {t.transport: transport_to_dict(t) for t in transports_in_order(report)},
        "connection_count": report.connection_count,
        "http2": http2_to_dict(report.http2) if report.http2 is not None else None,
        "http3": http3_to_dict(report.http3) if report.http3 is not None else None,
        "transport_layer": report.transport_layer.as_dict() if report.transport_layer is not None else None,
        "projection": projection_to_dict(report.projection) if report.projection is not None else None,
        "network": network_to_dict(report.network) if report.network is not None else None,
        "sessions": {name: sessions_to_dict(s) for name, s in report.sessions.items()},
        "connections": [connection_to_dict(c) for c in report.connections],
        "timeline": [_point_to_dict(p) for p in report.timeline if is_number(p.time)],
    }
    if clients is not None:
        document["clients"] = clients_to_dict(clients)
    return document


def render_json(report: Report, clients: ClientMeasurements | None = None) -> str:
    """The report as indented JSON text (ends with a newline)."""
    return json.dumps(report_to_dict(report, clients), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
