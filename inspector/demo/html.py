"""The demo's own sections in report.html: the verdicts, what each transport cost the page
(``--browser``), and what it cost the server and the proxy.

The report's HTML is rendered as for any capture; these sections go in before
its footer, with the report's own styles and SVG charts
(:mod:`inspector.render.svg`), and the demo's verdicts in place of the
report's. Nothing here is needed by ``rtinspect report``.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from ..processes import describe_machine
from ..render.html import VERDICT_SECTION
from ..render.svg import Bar, Segment, stacked_bars
from ..render.units import count, human_bytes
from .browser_cost import BROWSER_HEADINGS
from .costs import PROCESS_HEADINGS, TransportCosts, duration_ms, process_cells
from .result import DemoResult, in_report_order
from .verdicts import Verdict, demo_verdicts

#: The parts of the page's main-thread time, in bar order, with their colours.
PAGE_PARTS = (("layout", "#8b5cf6"), ("style", "#ec4899"), ("script", "#f59e0b"), ("other tasks", "#94a3b8"))
#: The processes' CPU time, in bar order, with their colours.
PROCESS_PARTS = (("server", "#2563eb"), ("proxy relay", "#10b981"), ("proxy analyser", "#f59e0b"))


def _table(headings: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """A table in the report's style: the first ``text_columns`` columns text, the rest numbers."""

    def css(i: int) -> str:
        return "num" if i >= text_columns else "name" if i == 0 else "text"

    head = "".join(f'<th class="{"num" if i >= text_columns else ""}">{escape(h)}</th>' for i, h in enumerate(headings))
    body = "".join(
        "<tr>" + "".join(f'<td class="{css(i)}">{escape(cell)}</td>' for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _legend(parts: tuple[tuple[str, str], ...]) -> str:
    entries = "".join(f'<li style="--swatch: {color}">{escape(label)}</li>' for label, color in parts)
    return f'<ul class="legend">{entries}</ul>'


def _costs_in_order(result: DemoResult) -> list[tuple[str, TransportCosts]]:
    return [
        (tally.demo.transport, result.costs[tally.label])
        for tally in in_report_order(result.clients.values())
        if tally.label in result.costs
    ]


def verdicts_section(verdicts: Sequence[Verdict]) -> str:
    if not verdicts:
        return ""
    items = "".join(f"<li><strong>{escape(v.dimension)}:</strong> {escape(v.text)}</li>" for v in verdicts)
    return (
        '<section class="verdict"><h2>The demo\'s verdicts</h2>'
        '<p class="caption">One per dimension; transports too close for one run to tell apart are said to be.</p>'
        f"<ul>{items}</ul></section>"
    )


def browser_section(result: DemoResult) -> str:
    costs = [(name, cost.browser) for name, cost in _costs_in_order(result) if cost.browser is not None]
    if not costs:
        return ""
    colors = dict(PAGE_PARTS)
    bars = []
    rows = []
    for name, browser in costs:
        other = max(0.0, browser.task_ms - browser.layout_ms - browser.recalc_style_ms - browser.script_ms)
        parts = {
            "layout": browser.layout_ms,
            "style": browser.recalc_style_ms,
            "script": browser.script_ms,
            "other tasks": other,
        }
        bars.append(Bar(name, tuple(Segment(part, value, colors[part]) for part, value in parts.items())))
        rows.append(
            (
                name,
                count(browser.layout_count),
                count(browser.recalc_style_count),
                duration_ms(browser.layout_ms),
                duration_ms(browser.recalc_style_ms),
                duration_ms(browser.script_ms),
                duration_ms(browser.task_ms),
                human_bytes(browser.js_heap_bytes),
                duration_ms(browser.inp_ms),
                count(browser.interactions),
            )
        )
    settings = result.settings
    headings = BROWSER_HEADINGS
    return (
        "<section><h2>The page's main-thread time, by transport</h2>"
        f'<p class="caption">Each transport in its own page in headless Chromium, one after another, '
        f"{count(settings.count)} messages each; every page adds a row per message to a "
        f"{count(settings.page_rows)}-row log and scrolls to it. Chromium's Performance.getMetrics, "
        "the difference over the run; script time (ScriptDuration) counts less of the work run from fetch callbacks "
        "(the stream and the polls) than from event handlers (WebSocket, SSE). "
        "INP from clicks sent while the feed ran (Event Timing, 8 ms steps).</p>"
        f"{_legend(PAGE_PARTS)}{stacked_bars(bars, duration_ms)}{_table(headings, rows)}</section>"
    )


def process_section(result: DemoResult) -> str:
    costs = [
        (name, cost) for name, cost in _costs_in_order(result) if cost.server is not None or cost.proxy is not None
    ]
    if not costs:
        return ""
    colors = dict(PROCESS_PARTS)
    bars = []
    rows = []
    for name, cost in costs:
        parts: dict[str, float] = {}
        if cost.server is not None and cost.server.messages:
            parts["server"] = cost.server.cpu_ms * 1000 / cost.server.messages
        if cost.proxy is not None and cost.proxy.messages:
            per = 1000 / cost.proxy.messages
            parts["proxy relay"] = cost.proxy.cpu_ms_by_process.get("relay", 0.0) * per
            parts["proxy analyser"] = cost.proxy.cpu_ms_by_process.get("analyser", 0.0) * per
        bars.append(Bar(name, tuple(Segment(part, value, colors[part]) for part, value in parts.items())))
        for process, figures in (("server", cost.server), ("proxy", cost.proxy)):
            if figures is None:
                continue
            rows.append((name if process == "server" else "", process, *process_cells(figures)))
    settings = result.settings
    machine = describe_machine(dict(result.machine)) if result.machine else "this machine"
    clients = "the demo page" if settings.browser else f"{count(settings.clients)} Python client(s)"
    return (
        "<section><h2>CPU time per 1,000 feed messages: server and proxy</h2>"
        f'<p class="caption">A fresh server process and proxy process per transport, {clients} per transport, '
        f"measured from /proc from just before the clients connected until every connection had closed, on "
        f"{escape(machine)}. RSS per conn: the resident set's growth divided by the connections held at once.</p>"
        f"{_legend(PROCESS_PARTS)}{stacked_bars(bars, duration_ms)}{_table(PROCESS_HEADINGS, rows, text_columns=2)}</section>"
    )


def with_demo_sections(html: str, result: DemoResult) -> str:
    """The report's HTML with the demo's sections before its footer (at the end of its body
    if it has none). Where the demo has a bytes verdict, its verdicts take the place of the
    report's own: both rank the transports' wire bytes, the report's exactly, the demo's
    with the tolerance its repeated runs showed, so the page gives one."""
    verdicts = demo_verdicts(result)
    sections = browser_section(result) + process_section(result)
    start = html.find(VERDICT_SECTION)
    end = html.find("</section>", start) + len("</section>")
    if any(v.dimension == "Bytes" for v in verdicts) and start >= 0 and end > start:
        html = html[:start] + verdicts_section(verdicts) + html[end:]
    else:
        sections = verdicts_section(verdicts) + sections
    if not sections:
        return html
    at = html.rfind("<footer>")
    if at < 0:
        at = html.rfind("</main>")
    if at < 0:
        return html
    return html[:at] + sections + html[at:]
