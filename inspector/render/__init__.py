"""Views of a :class:`~inspector.report.Report`: terminal table, JSON, Markdown, CSV, HTML.

Each view is a pure function of the report. ``connections`` adds a table of
every connection to the terminal and Markdown views and turns the CSV into one
row per connection; the JSON and HTML views always include the connections.
``clients``, what the clients measured themselves (a demo's ``clients.json``),
adds their latency to every view but CSV (one table per file, which has no place for it).
"""

from __future__ import annotations

from ..measurements import ClientMeasurements
from ..report import Report
from .csv import render_csv
from .html import render_html
from .json import render_json, report_to_dict
from .markdown import render_markdown
from .table import render_table, table_renderables

FORMATS = ("table", "json", "markdown", "csv", "html")


def render(report: Report, fmt: str, *, connections: bool = False, clients: ClientMeasurements | None = None) -> str:
    """The report as text in one of :data:`FORMATS`."""
    if fmt == "table":
        return render_table(report, connections, clients=clients)
    if fmt == "json":
        return render_json(report, clients)
    if fmt == "markdown":
        return render_markdown(report, connections, clients)
    if fmt == "csv":
        return render_csv(report, connections)
    if fmt == "html":
        return render_html(report, clients)
    raise ValueError(f"unknown report format {fmt!r} (choose from {', '.join(FORMATS)})")


__all__ = ["FORMATS", "render", "report_to_dict", "table_renderables"]
