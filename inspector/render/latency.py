"""The clients' latency as rows and notes: the same figures in the terminal, Markdown and HTML views.

The figures come from :class:`~inspector.measurements.ClientMeasurements`, what
the clients measured themselves (a demo's ``clients.json``), not from the capture.
"""

from __future__ import annotations

from ..measurements import ClientMeasurements, TransportLatency
from ..report import Report
from .rows import Column, Grid
from .units import ESTIMATE, MISSING, count, milliseconds

LATENCY_COLUMNS = (
    Column("Transport", numeric=False),
    Column("Messages", short="Msgs"),
    Column("Lost"),
    Column("Duplicates", short="Dups"),
    Column("p50"),
    Column("p90"),
    Column("p95"),
    Column("p99"),
    Column("Max"),
)

#: Who measured, as ``clients.json`` names them.
_WHO = {"python": "the Python clients", "chromium": "the page in Chromium"}


def _optional(n: int | None) -> str:
    return MISSING if n is None else count(n)


def _percentile(t: TransportLatency, value: float | None) -> str:
    text = milliseconds(value)
    return text if t.exact or text == MISSING else ESTIMATE + text


def latency_rows(clients: ClientMeasurements) -> list[tuple[str, ...]]:
    """A row per client: messages timed, lost, duplicated, and their latency percentiles."""
    return [
        (
            t.label,
            count(t.count),
            _optional(t.lost),
            _optional(t.duplicates),
            _percentile(t, t.p50),
            _percentile(t, t.p90),
            _percentile(t, t.p95),
            _percentile(t, t.p99),
            milliseconds(t.max),
        )
        for t in clients.transports
    ]


def latency_caption(clients: ClientMeasurements) -> str:
    """What the figures are and where they came from."""
    who = _WHO.get(clients.clients, "the clients")
    feed = ""
    if clients.feed is not None:
        f = clients.feed
        feed = f" The feed: {count(f.count)} messages of {count(f.size)} B at {f.rate:g} per second."
    return (
        f"Measured by {who} ({clients.source}): when a client had a message minus when the server sent it "
        f"(one machine, one clock).{feed}"
    )


def latency_notes(clients: ClientMeasurements, report: Report) -> list[str]:
    """Each client's error, transports the report has no traffic of (a clients file of
    another run?), and what the marks mean when figures are missing or estimated."""
    notes = [f"{t.label}: {t.error}" for t in clients.transports if t.error]
    absent = [t.transport for t in clients.transports if t.transport not in report.transports]
    if absent:
        names = ", ".join(dict.fromkeys(absent))
        notes.append(f"The report holds no traffic of {names}: are these the clients of this capture?")
    if any(t.count and not t.values for t in clients.transports):
        notes.append("p90 and p99 need the latencies themselves, which this file does not hold.")
    if any(not t.exact for t in clients.transports):
        notes.append(f"{ESTIMATE} marks percentiles estimated from a sample (count and max are exact).")
    return notes


def latency_grid(clients: ClientMeasurements | None, report: Report) -> Grid | None:
    """The clients' latency table, what it measured as its caption; None without clients."""
    if clients is None or not clients.transports:
        return None
    return Grid(
        "Latency measured by the clients",
        LATENCY_COLUMNS,
        latency_rows(clients),
        caption=latency_caption(clients),
        notes=tuple(latency_notes(clients, report)),
    )
