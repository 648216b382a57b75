"""What one transport's client measured: messages received, lost and duplicated, and their latency."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..render.json import quantiles_to_dict
from ..stats import Distribution
from .settings import DemoTransport

ProgressCallback = Callable[[str, int], None]
"""Told ``(client label, messages received so far)`` as messages arrive (see :attr:`ClientTally.label`)."""

PhaseCallback = Callable[[str | None, str], None]
"""Told ``(transport key, what it is doing)`` as a run goes on (``running``, ``closing``, ``done``),
and ``(None, what the run is doing)`` for the run as a whole (``starting``, ``stopping``, ``reporting``)."""


def client_label(key: str, protocol: str | None) -> str:
    """A client's name in a run: the transport's key, and with ``--http2`` its protocol (``ws h2``)."""
    return key if protocol is None else f"{key} {protocol}"


@dataclass
class ClientTally:
    """What one transport's client received, counted by the client itself.

    ``deliveries`` counts server-to-client messages as the report counts them
    (WebSocket messages, SSE events including the final ``end`` event, NDJSON
    lines, poll responses that carried data); None where the client cannot
    say (the page in browser mode). Latencies are in milliseconds.

    ``protocol`` is what the client was asked to speak with ``--http2``
    (``"http/1.1"`` or ``"h2"``; None in the plain demo), ``http_version``
    what it got (``"HTTP/1.1"``, ``"HTTP/2"``), where the client can tell.

    ``clients`` is how many clients' figures it holds: :meth:`combined` adds
    up the tallies of a transport's clients (``--clients N``).
    """

    demo: DemoTransport
    expected: int
    received: int = 0
    duplicates: int = 0
    deliveries: int | None = 0
    requests: int = 0
    error: str | None = None
    protocol: str | None = None
    http_version: str | None = None
    latency_ms: Distribution = field(default_factory=Distribution)
    on_progress: ProgressCallback | None = None
    clients: int = 1
    _seen: set[int] = field(default_factory=set, repr=False)

    @classmethod
    def combined(cls, tallies: list[ClientTally]) -> ClientTally:
        """One tally for several clients of the same transport: counts added up, latencies
        merged; the error says how many clients failed and how the first one did."""
        first = tallies[0]
        total = cls(first.demo, sum(t.expected for t in tallies), protocol=first.protocol, clients=len(tallies))
        total.http_version = first.http_version
        for tally in tallies:
            total.received += tally.received
            total.duplicates += tally.duplicates
            total.requests += tally.requests
            total.latency_ms.merge(tally.latency_ms)
        deliveries = [t.deliveries for t in tallies]
        total.deliveries = None if None in deliveries else sum(d for d in deliveries if d is not None)
        failed = [t.error for t in tallies if t.error]
        if failed:
            total.error = (
                failed[0]
                if len(tallies) == 1
                else f"{len(failed)} of {len(tallies)} clients failed; the first: {failed[0]}"
            )
        return total

    @property
    def label(self) -> str:
        return client_label(self.demo.key, self.protocol)

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    def message(self, seq: int, sent_at: float, at: float) -> None:
        """One feed message, received at ``at`` (seconds since the epoch)."""
        if seq in self._seen:
            self.duplicates += 1
            return
        self._seen.add(seq)
        self.received += 1
        self.latency_ms.add((at - sent_at) * 1000)
        if self.on_progress is not None:
            self.on_progress(self.label, self.received)

    def delivered(self, messages: list[dict[str, Any]], at: float) -> None:
        """One server-to-client message on the wire, carrying these feed messages."""
        if self.deliveries is not None:
            self.deliveries += 1
        for message in messages:
            self.message(int(message["seq"]), float(message["sent_at"]), at)

    def to_dict(self) -> dict[str, Any]:
        protocol = {} if self.protocol is None else {"protocol": self.protocol, "http_version": self.http_version}
        return {
            "path": self.demo.path,
            "clients": self.clients,
            **protocol,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "deliveries": self.deliveries,
            "requests": self.requests,
            "latency_ms": self.latency_to_dict(),
            "error": self.error,
        }

    def latency_to_dict(self) -> dict[str, Any] | None:
        """The latency summary and ``values``: every latency as it came, up to the
        distribution's capacity, else that many at evenly spaced ranks in order of size;
        to the microsecond."""
        summary = quantiles_to_dict(self.latency_ms.summary())
        if summary is None:
            return None
        return {**summary, "values": [round(v, 3) for v in self.latency_ms.values() if math.isfinite(v)]}
