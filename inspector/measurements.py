"""What the clients measured themselves: a demo's ``clients.json``, read for the report.

The capture says what crossed the wire; only a client can say when a message
reached it. ``rtinspect demo`` writes ``clients.json`` (``"format":
"rtinspect-demo-clients"``, ``"version": 1``): the feed, and per transport what
its client received, lost and duplicated, and each message's latency in
milliseconds (``latency_ms``: ``count``, ``mean``, ``p50``, ``p95``, ``max``,
``exact``, and ``values``, the latencies kept, at most a few thousand; every
one while there are no more, else that many at evenly spaced ranks). With ``--http2`` each transport
holds its clients by protocol (``{"path", "by_protocol": {"h2": {...}}}``).

``values`` came after the rest of version 1, so a file without it is still
read; its p90 and p99 are then unknown. A file that cannot be read, or is not
such a file, raises :class:`ClientMeasurementsError` with one line saying why.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .report import PROTOCOLS, TRANSPORTS
from .stats import Distribution

CLIENTS_FORMAT = "rtinspect-demo-clients"
CLIENTS_VERSION = 1


class ClientMeasurementsError(ValueError):
    """A clients file that cannot be read or is not one; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class Feed:
    """What the server sent: ``count`` messages of ``size`` bytes at ``rate`` per second."""

    count: int
    rate: float
    size: int


@dataclass(frozen=True, slots=True)
class TransportLatency:
    """One client's measurements: messages received, lost and duplicated, and their
    latency in milliseconds (when the client had a message minus when the server sent it).

    ``protocol`` is None unless the demo ran each transport over several protocols.
    ``exact`` is False where percentiles come from a sample of the latencies (count,
    mean and max stay exact). ``p90`` and ``p99`` are None when the file holds no
    values; ``values`` are the latencies kept, in increasing order.
    """

    transport: str
    protocol: str | None
    received: int
    lost: int | None
    duplicates: int | None
    error: str | None
    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    max: float | None
    exact: bool
    values: tuple[float, ...]

    @property
    def label(self) -> str:
        """``sse``, or with a protocol ``sse (h2)``."""
        return self.transport if self.protocol is None else f"{self.transport} ({self.protocol})"


@dataclass(frozen=True, slots=True)
class ClientMeasurements:
    """A clients file: who measured (``"python"`` or ``"chromium"``), the feed, and each
    client's figures in report order (transports as reports list them, HTTP/1.1 before h2)."""

    source: str
    clients: str
    feed: Feed | None
    transports: tuple[TransportLatency, ...]

    @property
    def by_protocol(self) -> bool:
        """True when the transports were measured per protocol (``demo --http2``)."""
        return any(t.protocol is not None for t in self.transports)

    @classmethod
    def from_document(cls, document: Any, source: str) -> ClientMeasurements:
        """The measurements in a parsed clients file; ``source`` names it in the report and in errors."""
        return _Reader(source).measurements(document)


def load_client_measurements(path: str | Path) -> ClientMeasurements:
    """Read a clients file (a demo's ``clients.json``)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ClientMeasurementsError(f"cannot read {source}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ClientMeasurementsError(f"{source}: not a clients file (not UTF-8 text)") from None
    try:
        document = json.loads(text)
    except ValueError as error:
        reason = f"{error.msg} at line {error.lineno}" if isinstance(error, json.JSONDecodeError) else str(error)
        raise ClientMeasurementsError(f"{source}: not a clients file (not JSON: {reason})") from None
    return ClientMeasurements.from_document(document, source)


class _Reader:
    """Checks a parsed clients file field by field; the first problem is the error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, problem: str) -> ClientMeasurementsError:
        # Names come from the file: whatever they hold, the message stays one line.
        return ClientMeasurementsError(" ".join(f"{self.source}: {where} {problem}".split()))

    def measurements(self, document: Any) -> ClientMeasurements:
        if not isinstance(document, dict) or document.get("format") != CLIENTS_FORMAT:
            raise ClientMeasurementsError(
                f'{self.source}: not a clients file (no "format": "{CLIENTS_FORMAT}"; '
                "rtinspect demo writes one as clients.json)"
            )
        version = document.get("version")
        if type(version) is not int or version < 1:
            raise self.fail('"version"', f"must be a whole number from 1, not {json.dumps(version)}")
        if version > CLIENTS_VERSION:
            raise ClientMeasurementsError(
                f"{self.source}: version {version} is newer than this rtinspect reads ({CLIENTS_VERSION})"
            )
        transports = document.get("transports")
        if not isinstance(transports, dict):
            raise self.fail('"transports"', "must be an object keyed by transport")
        measured = []
        for name, entry in transports.items():
            if not isinstance(entry, dict):
                raise self.fail(f"transport {name!r}", "must be an object")
            if "by_protocol" in entry:
                protocols = entry["by_protocol"]
                if not isinstance(protocols, dict):
                    raise self.fail(f'transport {name!r}: "by_protocol"', "must be an object keyed by protocol")
                for protocol, client in protocols.items():
                    measured.append(self.transport(name, protocol, client))
            else:
                measured.append(self.transport(name, None, entry))
        clients = document.get("clients", "")
        return ClientMeasurements(
            source=self.source,
            clients=clients if isinstance(clients, str) else "",
            feed=self.feed(document.get("feed")),
            transports=tuple(sorted(measured, key=_report_order)),
        )

    def feed(self, value: Any) -> Feed | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.fail('"feed"', "must be an object")
        return Feed(
            count=self.whole(value.get("count"), '"feed" count'),
            rate=self.number(value.get("rate"), '"feed" rate'),
            size=self.whole(value.get("size"), '"feed" size'),
        )

    def transport(self, name: str, protocol: str | None, client: Any) -> TransportLatency:
        where = name if protocol is None else f"{name} over {protocol}"
        if not isinstance(client, dict):
            raise self.fail(f"transport {where!r}", "must be an object")
        error = client.get("error")
        if error is not None and not isinstance(error, str):
            raise self.fail(f'{where} "error"', "must be text or null")
        latency = client.get("latency_ms")
        if latency is not None and not isinstance(latency, dict):
            raise self.fail(f'{where} "latency_ms"', "must be an object or null")
        latency = latency or {}
        values = self.values(latency.get("values", []), f'{where} "latency_ms" values')
        count = self.whole(latency.get("count", 0), f'{where} "latency_ms" count')
        sample = _distribution(values)
        return TransportLatency(
            transport=name,
            protocol=protocol,
            received=self.whole(client.get("received"), f'{where} "received"'),
            lost=self.optional_whole(client.get("lost"), f'{where} "lost"'),
            duplicates=self.optional_whole(client.get("duplicates"), f'{where} "duplicates"'),
            error=error,
            count=count,
            mean=self.optional_number(latency.get("mean"), f'{where} "latency_ms" mean'),
            p50=self.optional_number(latency.get("p50"), f'{where} "latency_ms" p50'),
            p90=sample.quantile(0.9) if sample else None,
            p95=self.optional_number(latency.get("p95"), f'{where} "latency_ms" p95'),
            p99=sample.quantile(0.99) if sample else None,
            max=self.optional_number(latency.get("max"), f'{where} "latency_ms" max'),
            exact=latency.get("exact", True) is not False,
            values=tuple(sorted(values)),
        )

    def whole(self, value: Any, where: str) -> int:
        if type(value) is not int or value < 0:
            raise self.fail(where, f"must be a whole number, not {json.dumps(value)}")
        return value

    def optional_whole(self, value: Any, where: str) -> int | None:
        return None if value is None else self.whole(value, where)

    def number(self, value: Any, where: str) -> float:
        if type(value) not in (int, float) or not math.isfinite(value):
            raise self.fail(where, f"must be a number, not {json.dumps(value)}")
        return float(value)

    def optional_number(self, value: Any, where: str) -> float | None:
        return None if value is None else self.number(value, where)

    def values(self, value: Any, where: str) -> list[float]:
        if not isinstance(value, list):
            raise self.fail(where, "must be a list of numbers")
        return [self.number(v, where) for v in value]


def _distribution(values: list[float]) -> Distribution | None:
    """The values as a distribution, for percentiles computed as the report computes them."""
    if not values:
        return None
    distribution = Distribution(capacity=len(values))
    for v in values:
        distribution.add(v)
    return distribution


def _report_order(t: TransportLatency) -> tuple[int, str, int, str]:
    known = TRANSPORTS.index(t.transport) if t.transport in TRANSPORTS else len(TRANSPORTS)
    protocol = t.protocol or ""
    rank = PROTOCOLS.index(protocol) if protocol in PROTOCOLS else len(PROTOCOLS)
    return known, t.transport, rank, protocol
