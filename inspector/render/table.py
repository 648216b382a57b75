"""The report as terminal tables (rich): what ``rtinspect report`` prints by default."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Sequence

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from ..measurements import ClientMeasurements
from ..report import Report
from .latency import latency_grid
from .rows import Grid, connection_grid, projection_grid, report_notes, session_grid, transport_grid
from .verdict import verdict

#: Width of the text export when no terminal decides it.
TEXT_WIDTH = 120


#: Wider than any console: what a table measures with room for every cell on one line.
_UNBOUNDED = 100_000


class SplitTable(Table):
    """A table whose every cell keeps its width: where it is wider than the console, it is
    shown as several tables of consecutive columns, each led by the first ``lead`` columns
    and the later ones titled "(continued)", so that no title wraps and no figure is cut.
    Made by :meth:`of`."""

    part: Callable[[Sequence[int], str], Table]
    lead: int

    @classmethod
    def of(cls, build: Callable[[Sequence[int], str, type[Table]], Table], columns: int, lead: int = 1) -> Table:
        """The table ``build`` makes of every column; ``build(indices, title, kind)`` makes a ``kind``
        of the columns at ``indices`` under ``title`` (its own title when empty)."""
        table = build(range(columns), "", cls)
        assert isinstance(table, SplitTable)
        table.part = lambda indices, title: build(indices, title, Table)
        table.lead = lead
        return table

    def _natural_width(self, table: Table, console: Console, options: ConsoleOptions) -> int:
        return table.__rich_measure__(console, options.update_width(_UNBOUNDED)).maximum

    def _width(self, columns: Sequence[int], console: Console, options: ConsoleOptions) -> int:
        return self._natural_width(self.part(columns, ""), console, options)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lead = list(range(self.lead))
        rest = range(self.lead, len(self.columns))
        if len(rest) < 2 or self._natural_width(self, console, options) <= options.max_width:
            yield from super().__rich_console__(console, options)
            return
        # As few tables as the width allows (filled greedily), then the split of the columns
        # into that many whose widest table is narrowest.
        greedy: list[list[int]] = [[]]
        for i in rest:
            if greedy[-1] and self._width([*lead, *greedy[-1], i], console, options) > options.max_width:
                greedy.append([])
            greedy[-1].append(i)
        splits = [
            [[*lead, *rest[start:end]] for start, end in itertools.pairwise((0, *cuts, len(rest)))]
            for cuts in itertools.combinations(range(1, len(rest)), len(greedy) - 1)
        ]
        groups = min(splits, key=lambda split: max(self._width(group, console, options) for group in split))
        title = str(self.title or "")
        for n, group in enumerate(groups):
            if n and self.box is None:
                yield Text("")  # a table without a box ends without a blank line of its own
            yield self.part(group, title if n == 0 or not title else f"{title} (continued)")


def _table(grid: Grid) -> Table:
    columns, rows, title = grid.columns, grid.rows, grid.title
    # Figures, names and addresses keep their width; titles and long strings wrap.
    widest = [max((len(row[i]) for row in rows), default=0) for i in range(len(columns))]
    keep = [column.numeric or i == 0 or widest[i] <= 24 for i, column in enumerate(columns)]

    def build(indices: Sequence[int], heading: str, kind: type[Table] = Table) -> Table:
        table = kind(
            title=heading or title,
            title_justify="left",
            title_style="bold",
            header_style="bold",
            box=box.SIMPLE_HEAD,
            collapse_padding=True,
            pad_edge=False,
        )
        for i in indices:
            table.add_column(
                columns[i].short or columns[i].title,
                justify="right" if columns[i].numeric else "left",
                min_width=widest[i] if keep[i] else None,
                overflow="fold",
            )
        for row in rows:
            # Text, not markup: cells carry strings that came from traffic.
            table.add_row(*(Text(row[i]) for i in indices))
        return table

    if not all(keep):
        return build(range(len(columns)), title)
    return SplitTable.of(build, len(columns))


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
