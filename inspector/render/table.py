"""The report as terminal tables (rich): what ``rtinspect report`` prints by default."""

from __future__ import annotations

import io

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from ..measurements import ClientMeasurements
from ..report import Report
from .latency import latency_grid
from .rows import Grid, connection_grid, projection_grid, report_notes, session_grid, transport_grid
from .verdict import verdict

#: Width of the text export when no terminal decides it.
TEXT_WIDTH = 120


def _table(grid: Grid) -> Table:
    table = Table(
        title=grid.title,
        title_justify="left",
        title_style="bold",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )
    for i, column in enumerate(grid.columns):
        # Figures, names and addresses keep their width; titles and long strings wrap.
        widest = max((len(row[i]) for row in grid.rows), default=0)
        keep = column.numeric or i == 0 or widest <= 24
        table.add_column(
            column.short or column.title,
            justify="right" if column.numeric else "left",
            min_width=widest if keep else None,
            overflow="fold",
        )
    for row in grid.rows:
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
    transports = transport_grid(report)
    if transports is not None:
        parts.append(_table(transports))
    sessions = session_grid(report)
    if sessions is not None:
        parts.append(_table(sessions))
        parts.append(Text(f"• {sessions.caption}", style="dim"))
    sentences = verdict(report)
    parts.append(Text("\n").join([Text(sentences[0], style="bold"), *map(Text, sentences[1:])]))
    notes = report_notes(report)
    if notes:
        parts.append(Text("\n".join(f"• {note}" for note in notes), style="dim"))
    for grid in (projection_grid(report), latency_grid(clients, report)):
        if grid is not None:
            parts.append(_table(grid))
            about = [grid.caption, *grid.notes] if grid.caption else grid.notes
            parts.append(Text("\n".join(f"• {line}" for line in about), style="dim"))
    if connections and (grid := connection_grid(report)) is not None:
        parts.append(_table(grid))
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
