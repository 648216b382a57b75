"""The report as one self-contained HTML page, the view people share.

Everything is inline (CSS and SVG charts); the page fetches nothing. Every
string that came from traffic is escaped.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from html import escape

from ..measurements import ClientMeasurements, TransportLatency
from ..report import REPORT_FORMAT, REPORT_VERSION, Report, TransportSummary
from .latency import latency_grid
from .rows import (
    Grid,
    connection_grid,
    projection_grid,
    report_notes,
    session_grid,
    transport_grid,
    transport_parts,
    transports_in_order,
)
from .svg import Bar, Mark, Segment, Series, Strip, log_strips, stacked_bars, step_lines
from .units import count, human_bytes, is_number, milliseconds, seconds
from .verdict import basis, cheapest_row, delivered_messages, verdict

#: How the verdict's section starts: the first in the page, after the header.
VERDICT_SECTION = '<section class="verdict">'

#: Line colours of the transports in the time chart.
TRANSPORT_COLORS = {
    "websocket": "#2563eb",
    "sse": "#16a34a",
    "http_stream": "#9333ea",
    "long_poll": "#ea580c",
    "short_poll": "#dc2626",
    "http": "#64748b",
}
_OTHER_TRANSPORT_COLOR = "#0891b2"

#: The parts of a message's wire cost, in bar order, with their colours.
COST_PARTS = (
    ("payload", "#10b981"),
    ("framing", "#f59e0b"),
    ("heads", "#8b5cf6"),
    ("handshakes", "#ec4899"),
    ("app control", "#0ea5e9"),
    ("other", "#94a3b8"),
)

#: The latency percentiles marked on each client's strip, cool to hot, with their colours.
LATENCY_MARKS = {
    "p50": "#0284c7",
    "p90": "#7c3aed",
    "p95": "#c026d3",
    "p99": "#e11d48",
    "max": "#ea580c",
}

_CSS = """
:root {
  --bg: #f6f7f9; --card: #ffffff; --text: #1f2430; --muted: #667085; --line: #e4e7ec;
  --stripe: #f9fafb; --accent: #2563eb; --best: #ecfdf3; --best-line: #a6f4c5;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #0f1218; --card: #171b23; --text: #e6e8ec; --muted: #98a2b3; --line: #2a303c;
    --stripe: #1b2029; --accent: #60a5fa; --best: #10261b; --best-line: #1f6f43;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0; background: var(--bg); color: var(--text);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
}
main { max-width: 1180px; margin: 0 auto; padding: 32px 24px 48px; }
header h1 { margin: 0; font-size: 28px; letter-spacing: -0.02em; }
header h1 span { color: var(--accent); }
.meta { margin: 6px 0 0; color: var(--muted); font-size: 14px; }
.meta code { font-size: 13px; }
section {
  background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  padding: 20px 24px; margin-top: 20px; box-shadow: 0 1px 2px rgba(16, 24, 40, 0.05);
}
h2 { margin: 0 0 4px; font-size: 18px; }
.caption { margin: 0 0 14px; color: var(--muted); font-size: 14px; }
.verdict { border-left: 4px solid var(--accent); }
.verdict .headline { margin: 0; font-size: 20px; font-weight: 600; }
.verdict ul { margin: 8px 0 0; padding-left: 20px; }
.verdict li { margin: 2px 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13.5px; }
th, td { padding: 7px 9px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { text-align: left; font-weight: 600; color: var(--muted); font-size: 12.5px;
     vertical-align: bottom; }
td { font-variant-numeric: tabular-nums; }
tbody tr:nth-child(even) { background: var(--stripe); }
tr.best td { background: var(--best); }
tr.best td:first-child { box-shadow: inset 3px 0 0 var(--best-line); }
.num { text-align: right; }
td.num { white-space: nowrap; }
td.name { font-weight: 600; white-space: nowrap; }
td.text { white-space: nowrap; }
td.wrap { overflow-wrap: anywhere; min-width: 10em; }
.notes { margin: 14px 0 0; padding-left: 20px; color: var(--muted); font-size: 13px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 0 0 10px; padding: 0;
          list-style: none; font-size: 13px; color: var(--muted); }
.legend li::before { content: ""; display: inline-block; width: 12px; height: 12px;
                     border-radius: 3px; margin-right: 6px; vertical-align: -1px;
                     background: var(--swatch); }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart + .scroll { margin-top: 14px; }
svg .grid { stroke: var(--line); stroke-width: 1; }
svg .axis { fill: var(--muted); font-size: 12px; }
svg .axis.title { font-size: 13px; }
svg .label { fill: var(--text); font-size: 14px; font-weight: 600; }
svg .value { fill: var(--text); font-size: 13px; font-weight: 600; }
svg .inside { fill: #ffffff; font-size: 12px; font-weight: 600; }
svg .density { fill: var(--muted); }
svg .whisker { stroke: var(--muted); stroke-width: 1.5; }
details summary { cursor: pointer; font-size: 18px; font-weight: 600; }
details[open] summary { margin-bottom: 12px; }
footer { margin-top: 24px; color: var(--muted); font-size: 12px; text-align: center; }
"""


def _color(transport: str) -> str:
    return TRANSPORT_COLORS.get(transport, _OTHER_TRANSPORT_COLOR)


def message_cost_parts(t: TransportSummary, *, per_app_message: bool = False) -> dict[str, float]:
    """Wire bytes per message (or per application message) split into payload,
    framing, heads, handshakes, an application protocol's own messages and other
    (control frames, unparsed bytes); the parts add up to the all-in figure.

    Payload is counted as it travelled, so compressed WebSocket messages count
    their compressed size here.
    """
    messages = t.app_messages.total if per_app_message else t.messages.total
    payload = t.websocket.wire_payload_bytes.total if t.websocket else t.payload_bytes.total
    parts = {
        "payload": payload,
        "framing": t.framing_bytes,
        "heads": t.head_bytes,
        "handshakes": t.handshake_bytes,
        "app control": t.categories["app_control"].total if "app_control" in t.categories else 0,
    }
    parts["other"] = max(0, t.wire_bytes.total - sum(parts.values()))
    return {name: n / messages for name, n in parts.items()}


def _legend(items: list[tuple[str, str]]) -> str:
    entries = "".join(f'<li style="--swatch: {color}">{escape(label)}</li>' for label, color in items)
    return f'<ul class="legend">{entries}</ul>'


def _table(grid: Grid, best_row: int | None = None) -> str:
    head = "".join(f'<th class="{"num" if c.numeric else ""}">{escape(c.title)}</th>' for c in grid.columns)
    body = []
    for i, row in enumerate(grid.rows):
        cells = []
        for j, (column, cell) in enumerate(zip(grid.columns, row, strict=True)):
            if column.numeric:
                css = "num"
            elif j == 0:
                css = "name"
            else:
                css = "wrap" if len(cell) > 24 else "text"
            cells.append(f'<td class="{css}">{escape(cell)}</td>')
        css = ' class="best"' if i == best_row else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _moment(ts: float | None) -> str | None:
    if not is_number(ts):
        return None
    assert ts is not None
    try:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return None


def _header(report: Report) -> str:
    facts = []
    start = _moment(report.started_at)
    if start:
        facts.append(escape(start))
    if is_number(report.started_at) and is_number(report.ended_at):
        facts.append(escape(seconds((report.ended_at or 0) - (report.started_at or 0))))
    facts.append(f"{count(len(report.connections))} connections")
    facts.append(f"{count(len(report.transports))} transports")
    sources = ""
    if report.sources:
        names = ", ".join(f"<code>{escape(s)}</code>" for s in report.sources)
        sources = f'<p class="meta">From {names}</p>'
    return f'<header><h1><span>rtinspect</span> report</h1><p class="meta">{" · ".join(facts)}</p>{sources}</header>'


def _verdict(report: Report) -> str:
    headline, *rest = verdict(report)
    items = "".join(f"<li>{escape(s)}</li>" for s in rest)
    return (
        f'{VERDICT_SECTION}<p class="headline">{escape(headline)}</p>{f"<ul>{items}</ul>" if items else ""}</section>'
    )


def _cost_chart(report: Report) -> str:
    # Plain HTTP (page loads, assets, API calls) is not a real-time channel: it does not set the scale.
    ranked = [(label, t) for label, t in transport_parts(report) if delivered_messages(t) and t.transport != "http"]
    if not ranked:
        return ""
    _, unit = basis([t for _, t in ranked])
    per_app = unit == "application message"
    colors = dict(COST_PARTS)
    bars = [
        Bar(
            label,
            tuple(
                Segment(name, value, colors[name])
                for name, value in message_cost_parts(t, per_app_message=per_app).items()
            ),
        )
        for label, t in ranked
    ]
    return (
        f"<section><h2>Wire bytes per {unit}, by transport</h2>"
        f'<p class="caption">All wire bytes of a transport divided by the {unit}s it delivered, '
        "split by what the bytes were for. Payload is counted as it travelled.</p>"
        f"{_legend([(name, color) for name, color in COST_PARTS])}"
        f"{stacked_bars(bars, human_bytes)}</section>"
    )


def _notes(notes: Sequence[str]) -> str:
    return "".join(f"<li>{escape(n)}</li>" for n in notes)


def _transport_table(report: Report) -> str:
    grid = transport_grid(report)
    if grid is None:
        return ""
    notes = _notes(report_notes(report))
    return (
        f"<section><h2>{grid.title}</h2>"
        '<p class="caption">Wire bytes are HTTP and WebSocket bytes in both directions; '
        "exact counts are in the JSON report.</p>"
        f"{_table(grid, cheapest_row(report))}"
        f"{f'<ul class="notes">{notes}</ul>' if notes else ''}</section>"
    )


def _sessions(report: Report) -> str:
    grid = session_grid(report)
    if grid is None:
        return ""
    return f'<section><h2>{grid.title}</h2><p class="caption">{escape(grid.caption)}</p>{_table(grid)}</section>'


def _projection(report: Report) -> str:
    grid = projection_grid(report)
    if grid is None:
        return ""
    return f'<section><h2>{escape(grid.title)}</h2>{_table(grid)}<ul class="notes">{_notes(grid.notes)}</ul></section>'


def _latency_marks(t: TransportLatency) -> tuple[Mark, ...]:
    """p50, p90, p99 and max; p50, p95 and max where the file holds no values."""
    names = ("p50", "p90", "p99", "max") if t.values else ("p50", "p95", "max")
    figures = {"p50": t.p50, "p90": t.p90, "p95": t.p95, "p99": t.p99, "max": t.max}
    return tuple(
        Mark(name, value, LATENCY_MARKS[name])
        for name in names
        if (value := figures[name]) is not None and is_number(value)
    )


def _latency(report: Report, clients: ClientMeasurements | None) -> str:
    """The clients' latency per transport (per protocol too): a strip each on a log
    axis, then the figures in a table."""
    grid = latency_grid(clients, report)
    if clients is None or grid is None:
        return ""
    strips = [
        Strip(
            t.label,
            values=t.values,
            marks=_latency_marks(t),
            low=t.values[0] if t.values else t.p50,
            high=t.max,
            note=f"p50 {milliseconds(t.p50)}" if t.p50 is not None else "",
        )
        for t in clients.transports
    ]
    chart = log_strips(strips, milliseconds, "milliseconds from the server's send to the client (log scale)")
    used = {m.label for s in strips for m in s.marks}
    legend = [(name, color) for name, color in LATENCY_MARKS.items() if name in used]
    if any(t.values for t in clients.transports):
        legend.append(("messages (darker: more)", "var(--muted)"))
    notes = _notes(grid.notes)
    return (
        f"<section><h2>{grid.title}</h2>"
        f'<p class="caption">{escape(grid.caption)}</p>'
        f"{f'{_legend(legend)}{chart}' if chart else ''}"
        f"{_table(grid)}"
        f"{f'<ul class="notes">{notes}</ul>' if notes else ''}</section>"
    )


def _timeline_chart(report: Report) -> str:
    points = sorted(report.timeline, key=lambda p: p.time)
    points = [p for p in points if is_number(p.time)]
    if not points:
        return ""
    origin = report.started_at if is_number(report.started_at) else points[0].time
    assert origin is not None
    arrivals: dict[str, list[float]] = defaultdict(list)
    for p in points:
        offset = p.time - origin
        if is_number(offset) and offset < 1e12:  # seconds; anything larger is not a time line
            arrivals[p.transport].append(max(0.0, offset))
    if not arrivals:
        return ""
    names = [t.transport for t in transports_in_order(report) if t.transport in arrivals]
    names += [n for n in arrivals if n not in names]
    series: list[Series] = []
    sampled: list[str] = []
    for name in names:
        times = arrivals[name]
        total = report.transports[name].messages.total if name in report.transports else 0
        # A sampled time line stands for all of a transport's messages.
        weight = total / len(times) if total > len(times) else 1.0
        if weight > 1:
            sampled.append(f"{name} ({count(len(times))} of {count(total)})")
        cumulative = tuple((t, (i + 1) * weight) for i, t in enumerate(times))
        series.append(Series(name, _color(name), cumulative))
    caption = "Cumulative messages delivered by each transport (both directions)."
    if sampled:
        caption += (
            " Lines drawn from a sample of arrivals are scaled to the transport's total: " + ", ".join(sampled) + "."
        )
    chart = step_lines(
        series,
        x_text=lambda x: f"{x:g} s",
        y_text=lambda y: count(round(y)),
        x_title="seconds since the start of the capture",
        y_title="messages",
    )
    return (
        f'<section><h2>Messages over time</h2><p class="caption">{escape(caption)}</p>'
        f"{_legend([(n, _color(n)) for n in names])}{chart}</section>"
    )


def _connections(report: Report) -> str:
    grid = connection_grid(report)
    if grid is None:
        return ""
    return (
        f"<section><details><summary>{grid.title} ({count(len(grid.rows))})</summary>{_table(grid)}</details></section>"
    )


def render_html(report: Report, clients: ClientMeasurements | None = None) -> str:
    """The whole report as one HTML document; with ``clients``, what the clients
    measured (their latency) after the transports."""
    body = "".join(
        [
            _header(report),
            _verdict(report),
            _cost_chart(report),
            _transport_table(report),
            _sessions(report),
            _projection(report),
            _latency(report, clients),
            _timeline_chart(report),
            _connections(report),
            f"<footer>{escape(REPORT_FORMAT)} v{REPORT_VERSION}</footer>",
        ]
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        "<title>rtinspect report</title>"
        f"<style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )
