"""The report as GitHub-flavoured Markdown, for pasting into issues and documents."""

from __future__ import annotations

import re

from ..measurements import ClientMeasurements
from ..report import Report
from .latency import LATENCY_COLUMNS, latency_caption, latency_notes, latency_rows
from .rows import (
    CONNECTION_COLUMNS,
    ESTIMATE_LEGEND,
    PROJECTION_COLUMNS,
    SESSION_COLUMNS,
    SESSIONS_CAPTION,
    TRANSPORT_COLUMNS,
    Column,
    connection_rows,
    has_estimates,
    http2_summary,
    projection_rows,
    projection_title,
    session_rows,
    transport_rows,
)
from .verdict import verdict

# Characters that Markdown (or the HTML it may contain) would interpret.
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#!])")


def escape(text: str) -> str:
    """Text that renders as itself in a Markdown paragraph or table cell."""
    return _SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _table(columns: tuple[Column, ...], rows: list[tuple[str, ...]]) -> list[str]:
    lines = [
        "| " + " | ".join(escape(c.title) for c in columns) + " |",
        "|" + "|".join("---:" if c.numeric else ":---" for c in columns) + "|",
    ]
    lines.extend("| " + " | ".join(escape(cell) for cell in row) + " |" for row in rows)
    return lines


def render_markdown(report: Report, connections: bool = False, clients: ClientMeasurements | None = None) -> str:
    """The transport table, the verdict and the notes; with ``clients``, their
    latency; with ``connections``, a table of every connection after them."""
    lines = ["# rtinspect report", ""]
    if report.sources:
        lines += ["Sources: " + ", ".join(escape(s) for s in report.sources), ""]
    if report.transports:
        lines += [*_table(TRANSPORT_COLUMNS, transport_rows(report)), ""]
    if report.sessions:
        lines += ["## Application sessions", "", *_table(SESSION_COLUMNS, session_rows(report)), ""]
        lines += [f"- {escape(SESSIONS_CAPTION)}", ""]
    sentences = verdict(report)
    lines += [" ".join([f"**{escape(sentences[0])}**", *(escape(s) for s in sentences[1:])]), ""]
    notes = list(report.notes)
    frames = http2_summary(report)
    if frames is not None:
        notes.insert(0, frames)
    if has_estimates(report):
        notes.append(ESTIMATE_LEGEND)
    if notes:
        lines += [*(f"- {escape(note)}" for note in notes), ""]
    title = projection_title(report)
    if title is not None and report.projection is not None:
        lines += [f"## {escape(title)}", "", *_table(PROJECTION_COLUMNS, projection_rows(report)), ""]
        lines += [*(f"- {escape(a)}" for a in report.projection.assumptions), ""]
    if clients is not None and clients.transports:
        lines += ["## Latency measured by the clients", "", escape(latency_caption(clients)), ""]
        lines += [*_table(LATENCY_COLUMNS, latency_rows(clients)), ""]
        notes = latency_notes(clients, report)
        if notes:
            lines += [*(f"- {escape(note)}" for note in notes), ""]
    if connections and report.connections:
        lines += ["## Connections", "", *_table(CONNECTION_COLUMNS, connection_rows(report)), ""]
    return "\n".join(lines)
