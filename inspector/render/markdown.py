"""The report as GitHub-flavoured Markdown, for pasting into issues and documents."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ..measurements import ClientMeasurements
from ..report import Report
from .latency import latency_grid
from .rows import Grid, connection_grid, projection_grid, report_notes, session_grid, transport_grid
from .verdict import verdict

# Characters that Markdown (or the HTML it may contain) would interpret.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#!])")


def escape(text: str) -> str:
    """Text that renders as itself in a Markdown paragraph or table cell."""
    return _SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _table(grid: Grid) -> list[str]:
    lines = [
        "| " + " | ".join(escape(c.title) for c in grid.columns) + " |",
        "|" + "|".join("---:" if c.numeric else ":---" for c in grid.columns) + "|",
    ]
    lines.extend("| " + " | ".join(escape(cell) for cell in row) + " |" for row in grid.rows)
    return lines


def _notes(notes: Sequence[str]) -> list[str]:
    return [*(f"- {escape(note)}" for note in notes), ""]


def render_markdown(report: Report, connections: bool = False, clients: ClientMeasurements | None = None) -> str:
    """The transport table, the verdict and the notes; with ``clients``, their
    latency; with ``connections``, a table of every connection after them."""
    lines = ["# rtinspect report", ""]
    if report.sources:
        lines += ["Sources: " + ", ".join(escape(s) for s in report.sources), ""]
    transports = transport_grid(report)
    if transports is not None:
        lines += [*_table(transports), ""]
    sessions = session_grid(report)
    if sessions is not None:
        lines += [f"## {sessions.title}", "", *_table(sessions), "", *_notes((sessions.caption,))]
    sentences = verdict(report)
    lines += [" ".join([f"**{escape(sentences[0])}**", *(escape(s) for s in sentences[1:])]), ""]
    notes = report_notes(report)
    if notes:
        lines += _notes(notes)
    projection = projection_grid(report)
    if projection is not None:
        lines += [f"## {escape(projection.title)}", "", *_table(projection), "", *_notes(projection.notes)]
    latency = latency_grid(clients, report)
    if latency is not None:
        lines += [f"## {latency.title}", "", escape(latency.caption), "", *_table(latency), ""]
        if latency.notes:
            lines += _notes(latency.notes)
    if connections and (grid := connection_grid(report)) is not None:
        lines += [f"## {grid.title}", "", *_table(grid), ""]
    return "\n".join(lines)
