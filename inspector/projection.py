"""What a fleet would cost: the measured traffic's costs projected to many clients.

``rtinspect report --project 10000@1/s`` asks what 10,000 clients, each
receiving one application message a second from the server, would cost a day
with each transport. The rate counts the server's messages only: the measured
traffic's bytes, both directions', are divided by the application messages the
server sent, so what a client sends (a WebSocket client's own messages) is part
of the cost of what it receives, as it would be in the fleet. It is a
projection from the measured traffic, not a measurement, and says so with its
assumptions (:data:`ASSUMPTIONS`):

- every client opens one connection a day and keeps it (its stream, its held
  long poll, or the keep-alive connection it polls on), so a day has one TCP
  connect and, for a streaming transport, one handshake per client;
- everything else costs, per application message from the server, what it
  cost in the measured traffic: a stream's wire bytes besides its handshake,
  and a poll's whole exchange, heads included, with polls as frequent per
  message as measured (empty ones included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .report import STREAMING, Projection, Report, TransportProjection, TransportSummary

SECONDS_PER_DAY = 86_400

_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0, "hour": 3600.0}
_FLEET = re.compile(r"^\s*(?P<clients>[\d_,]+)\s*@\s*(?P<count>[\d.]+)\s*/\s*(?P<unit>[a-z]+)\s*$")

ASSUMPTIONS = (
    "Every client opens one connection a day and keeps it (its stream, its held long poll, or the keep-alive "
    "connection it polls on): one TCP connect a day and, for a streaming transport, one handshake.",
    "Everything else costs, per application message from the server, what it cost in the measured traffic (both "
    "directions' bytes, the client's messages included): a stream's wire bytes besides its handshake; a poll's "
    "whole exchange, with polls as frequent per message as measured.",
    "TLS record overhead, TCP/IP headers and TLS handshakes are not in the wire bytes.",
)


@dataclass(frozen=True, slots=True)
class Fleet:
    """How many clients, and how many application messages each receives from the server per second."""

    clients: int
    messages_per_second: float

    @classmethod
    def parse(cls, text: str) -> Fleet:
        """``CLIENTS@COUNT/UNIT``, e.g. ``10000@1/s`` or ``500@30/min``; ValueError says what is wrong."""
        match = _FLEET.match(text.lower())
        if match is None or match["unit"] not in _UNITS:
            raise ValueError(f"{text!r} is not CLIENTS@RATE, e.g. 10000@1/s (per s, min or h)")
        clients = int(match["clients"].replace(",", "").replace("_", ""))
        try:
            count = float(match["count"])
        except ValueError:
            raise ValueError(f"{text!r}: {match['count']!r} is not a number") from None
        if clients <= 0 or count <= 0:
            raise ValueError(f"{text!r}: clients and rate must be more than zero")
        return cls(clients, count / _UNITS[match["unit"]])

    def __str__(self) -> str:
        return f"{self.clients:,} clients each receiving {self.messages_per_second:g} application messages/s from the server"


def _project(summary: TransportSummary, fleet: Fleet) -> TransportProjection | None:
    # The rate is of messages received: the server's. What the client sent is part of their cost.
    messages = summary.app_messages.server_to_client
    if not messages:
        return None
    clients = fleet.clients
    per_second = clients * fleet.messages_per_second
    wire = summary.wire_bytes.total
    if summary.transport in STREAMING and summary.handshakes:
        per_message = (wire - summary.handshake_bytes) / messages
        per_day = per_second * SECONDS_PER_DAY * per_message + clients * summary.handshake_bytes / summary.handshakes
        return TransportProjection(
            wire_bytes_per_day=per_day,
            requests_per_second=clients / SECONDS_PER_DAY,
            handshakes_per_hour=clients / 24,
            tcp_connects_per_hour=clients / 24,
            open_connections=clients,
        )
    return TransportProjection(
        wire_bytes_per_day=per_second * SECONDS_PER_DAY * wire / messages,
        requests_per_second=per_second * summary.requests / messages,
        handshakes_per_hour=0.0,
        tcp_connects_per_hour=clients / 24,
        open_connections=clients,
    )


def project(report: Report, fleet: Fleet) -> Projection:
    """The fleet's costs with each transport whose server delivered application messages."""
    projected = {name: _project(summary, fleet) for name, summary in report.transports.items()}
    return Projection(
        clients=fleet.clients,
        messages_per_second=fleet.messages_per_second,
        transports={name: figures for name, figures in projected.items() if figures is not None},
        assumptions=ASSUMPTIONS,
    )
