"""The report as terminal tables (rich): what ``rtinspect report`` prints by default."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

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

#: Width of the text export when no terminal decides it.
TEXT_WIDTH = 120


def _table(title: str, columns: tuple[Column, ...], rows: list[tuple[str, ...]]) -> Table:
    table = Table(
        title=title,
        title_justify="left",
        title_style="bold",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    for i, column in enumerate(columns):
        # Figures, names and addresses keep their width; titles and long strings wrap.
        widest = max((len(row[i]) for row in rows), default=0)
        keep = column.numeric or i == 0 or widest <= 24
        table.add_column(
            column.short or column.title,
            justify="right" if column.numeric else "left",
            min_width=widest if keep else None,
            overflow="fold",
        )
    for row in rows:
        # Text, not markup: cells carry strings that came from traffic.
        table.add_row(*map(Text, row))
    return table


def table_renderables(
    report: Report, connections: bool = False, clients: ClientMeasurements | None = None
) -> list[RenderableType]:
    """The transport table, the verdict, the notes, with ``clients`` their latency and,
    with ``connections``, a table of every connection: separate blocks for a rich
    console or live view."""
    parts: list[RenderableType] = []
    if report.transports:
        parts.append(_table("Transports", TRANSPORT_COLUMNS, transport_rows(report)))
    if report.sessions:
        parts.append(_table("Application sessions", SESSION_COLUMNS, session_rows(report)))
        parts.append(Text(f"• {SESSIONS_CAPTION}", style="dim"))
    sentences = verdict(report)
    parts.append(Text("\n").join([Text(sentences[0], style="bold"), *map(Text, sentences[1:])]))
    notes = list(report.notes)
    frames = http2_summary(report)
    if frames is not None:
        notes.insert(0, frames)
    if has_estimates(report):
        notes.append(ESTIMATE_LEGEND)
    if notes:
        parts.append(Text("\n".join(f"• {note}" for note in notes), style="dim"))
    title = projection_title(report)
    if title is not None and report.projection is not None:
        parts.append(_table(title, PROJECTION_COLUMNS, projection_rows(report)))
        parts.append(Text("\n".join(f"• {a}" for a in report.projection.assumptions), style="dim"))
    if clients is not None and clients.transports:
        parts.append(_table("Latency measured by the clients", LATENCY_COLUMNS, latency_rows(clients)))
        about = [latency_caption(clients), *latency_notes(clients, report)]
        parts.append(Text("\n".join(f"• {line}" for line in about), style="dim"))
    if connections and report.connections:
        parts.append(_table("Connections", CONNECTION_COLUMNS, connection_rows(report)))
    return parts


def render_table(
    report: Report, connections: bool = False, width: int = TEXT_WIDTH, clients: ClientMeasurements | None = None
) -> str:
    """The terminal view as plain text (no colour codes), blocks separated by blank lines."""
    out = io.StringIO()
    console = Console(
        file=out,
        width=width,
        color_system=None,
        force_terminal=False,
        force_jupyter=False,
        force_interactive=False,
        legacy_windows=False,
    )
    for i, renderable in enumerate(table_renderables(report, connections, clients)):
        if i:
            console.line()
        console.print(renderable)
    return out.getvalue()
