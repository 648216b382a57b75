"""What a transport cost the demo server and the proxy.

Each transport runs against a fresh server process and a fresh proxy process
(:mod:`.sequence`). Both are sampled (:mod:`inspector.processes`) once they have
settled after starting, just before the clients connect, and again once
every client has finished and the capture shows every connection closed;
their peak resident sets are reset at the first sample. So a transport's
figures cover its clients connecting, the whole feed and the connections
closing, and nothing of start-up or shutdown. The one exception is the
proxy's analyser: it runs at idle priority, so on a busy machine it may still
be working through the run's traffic when the connections close; its CPU
time is counted until it exits (its final report included), read from the
relay once the relay has exited and waited for it:

- CPU time, in all and per 1,000 feed messages the clients received;
- the peak resident set, and its growth over the starting one divided by the
  connections held at once (what one more connection cost, roughly: the
  growth also holds the feed's messages and whatever the allocator kept);
- connections and requests handled: the server counts its own
  (:mod:`demo_server.counting`), the proxy's come from its report of the run.

The proxy is two processes, the relay and its analyser; their CPU time is
also given apart (``cpu_ms_by_process``), since the analyser is the cost of
inspecting and the relay the cost of any proxy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..processes import ProcessSample, TreeSample
from ..render.units import MISSING, count, human_bytes
from .browser_cost import BrowserCost

#: Names for the processes of a tree, by the module or program they run.
PROCESS_NAMES = {
    "demo_server.child": "server",
    "inspector": "relay",
    "inspector.analyser_process": "analyser",
}


@dataclass(frozen=True, slots=True)
class ProcessCost:
    """A server's or proxy's cost over one transport's run."""

    cpu_ms: float
    messages: int
    baseline_rss_bytes: int
    peak_rss_bytes: int
    connections: int
    connections_held: int
    requests: int
    seconds: float
    cpu_ms_by_process: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_ms_per_1000_messages(self) -> float | None:
        return self.cpu_ms * 1000 / self.messages if self.messages else None

    @property
    def rss_growth_bytes(self) -> int:
        return max(0, self.peak_rss_bytes - self.baseline_rss_bytes)

    @property
    def rss_per_connection_bytes(self) -> float | None:
        return self.rss_growth_bytes / self.connections_held if self.connections_held else None

    @classmethod
    def between(
        cls,
        before: TreeSample,
        after: TreeSample,
        *,
        messages: int,
        connections: int,
        connections_held: int,
        requests: int,
        final: ProcessSample | None = None,
    ) -> ProcessCost:
        """The cost from ``before`` to ``after``. With ``final``, the root process's last CPU
        times once it exited: its one child (the proxy's analyser, which runs at idle priority
        and may finish its work after the connections have closed) is then counted until it
        exited, from what the root had waited for."""
        by_process: dict[str, float] = {}
        for name, seconds in after.cpu_seconds_since(before).items():
            key = PROCESS_NAMES.get(name, name)
            by_process[key] = by_process.get(key, 0.0) + seconds * 1000
        root, *children = before.processes
        if final is not None and len(children) == 1 and final.reaped_cpu_seconds > root.reaped_cpu_seconds:
            child = children[0]
            whole = final.reaped_cpu_seconds - root.reaped_cpu_seconds
            by_process[PROCESS_NAMES.get(child.name, child.name)] = max(0.0, whole - child.cpu_seconds) * 1000
        return cls(
            cpu_ms=sum(by_process.values()),
            messages=messages,
            baseline_rss_bytes=before.rss_bytes,
            peak_rss_bytes=max(after.peak_rss_bytes, after.rss_bytes),
            connections=connections,
            connections_held=connections_held,
            requests=requests,
            seconds=after.at - before.at,
            cpu_ms_by_process=by_process,
        )

    def to_dict(self) -> dict[str, Any]:
        per_1000 = self.cpu_ms_per_1000_messages
        per_connection = self.rss_per_connection_bytes
        return {
            "cpu_ms": round(self.cpu_ms, 1),
            "cpu_ms_per_1000_messages": None if per_1000 is None else round(per_1000, 2),
            "messages": self.messages,
            "peak_rss_bytes": self.peak_rss_bytes,
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "rss_per_connection_bytes": None if per_connection is None else round(per_connection),
            "connections": self.connections,
            "connections_held": self.connections_held,
            "requests": self.requests,
            "seconds": round(self.seconds, 2),
            "cpu_ms_by_process": {name: round(ms, 1) for name, ms in self.cpu_ms_by_process.items()},
        }


@dataclass(frozen=True, slots=True)
class TransportCosts:
    """What one transport cost the server, the proxy and (``--browser``) the page; None where
    it was not measured (no ``/proc``, or the page never connected)."""

    server: ProcessCost | None = None
    proxy: ProcessCost | None = None
    browser: BrowserCost | None = None

    def to_dict(self) -> dict[str, Any]:
        """The keys clients.json adds to the transport: ``server``, ``proxy``, ``browser``."""
        parts = {"server": self.server, "proxy": self.proxy, "browser": self.browser}
        return {key: part.to_dict() for key, part in parts.items() if part is not None}


#: The columns of the server's and the proxy's cost, in the terminal and in report.html:
#: the transport, the process, then :func:`process_cells`.
PROCESS_HEADINGS = (
    "Transport",
    "Process",
    "CPU",
    "Analysing",
    "CPU per 1k msgs",
    "Peak RSS",
    "RSS per conn",
    "Held",
    "Conns",
    "Requests",
)


def duration_ms(value: float | None) -> str:
    """``3.5 ms``, ``140 ms``, ``1,050 ms``."""
    if value is None:
        return MISSING
    return f"{value:.1f} ms" if abs(value) < 10 else f"{value:,.0f} ms"


def process_cells(cost: ProcessCost | None) -> tuple[str, ...]:
    """A process's cells after the transport and the process (:data:`PROCESS_HEADINGS`);
    Analysing is the proxy's analyser's part, empty for the server."""
    if cost is None:
        return (MISSING,) * (len(PROCESS_HEADINGS) - 2)
    analysing = cost.cpu_ms_by_process.get("analyser")
    return (
        duration_ms(cost.cpu_ms),
        duration_ms(analysing) if analysing is not None else "",
        duration_ms(cost.cpu_ms_per_1000_messages),
        human_bytes(cost.peak_rss_bytes),
        human_bytes(cost.rss_per_connection_bytes),
        count(cost.connections_held),
        count(cost.connections),
        count(cost.requests),
    )


def proxy_counts(report_json: Path) -> tuple[int, int]:
    """Connections and requests in a proxy's report of its run (every transport it saw)."""
    try:
        report = json.loads(report_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0, 0
    transports = report.get("transports", {}).values()
    return sum(int(t.get("connections", 0)) for t in transports), sum(int(t.get("requests", 0)) for t in transports)
