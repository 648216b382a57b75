"""What ``rtinspect demo`` prints: its settings, progress bars, and the clients' table next to the report;
with ``--http2``, each transport's HTTP/1.1 and h2 figures side by side (and h3's with ``--http3``); otherwise what each transport
cost the server, the proxy and (``--browser``) the page, and a verdict per dimension."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..processes import describe_machine
from ..render.table import TEXT_WIDTH, SplitTable, table_renderables
from ..render.units import MISSING, count, factor, human_bytes, percent
from .browser_cost import BROWSER_HEADINGS
from .costs import PROCESS_HEADINGS, duration_ms, process_cells
from .result import DemoResult, in_report_order, run_connections, session_path, transport_summary
from .settings import CLICK_INTERVAL, DemoSettings, DemoTransport
from .tally import ClientTally, client_label
from .verdicts import demo_verdicts


def demo_console() -> Console:
    """Standard output; when it is not a terminal and COLUMNS is unset, as wide as
    the text report, so the tables do not fold at 80 columns."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=TEXT_WIDTH)
    return console


class DemoProgress:
    """On a terminal, on standard error: a line per transport (and protocol) saying what it is
    doing (waiting, running, received, closing, done), a bar of the messages its clients have
    received of all they expect, and how long it ran; and a line for the whole run (starting
    the servers and proxies, running, stopping them, reporting, done) with the transports whose
    clients have received every message.
    Nothing is shown when standard error is not a terminal. Pass :meth:`__call__` as the run's
    progress callback and :meth:`phase` as its phase callback (:func:`.run.run_demo`)."""

    def __init__(self, settings: DemoSettings, console: Console | None = None) -> None:
        console = console if console is not None else Console(stderr=True)
        self._progress = Progress(
            TextColumn("{task.description}"),
            TextColumn("{task.fields[phase]:<9}"),
            BarColumn(),
            TextColumn("{task.fields[messages]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self._total = settings.count * settings.clients
        width = max(len(t.title) for t in settings.selected) + (9 if settings.side_by_side else 0)
        self._tasks = {
            client_label(t.key, protocol): self._progress.add_task(
                (t.title if protocol is None else f"{t.title} {protocol}").ljust(width),
                total=self._total,
                start=False,
                phase="waiting",
                messages=f"0/{self._total:,}",
            )
            for t in settings.selected
            for protocol in settings.protocols_of(t)
        }
        self._done: set[str] = set()
        self._run = self._progress.add_task("all".ljust(width), total=len(self._tasks), phase="", messages="")

    def _count_done(self) -> None:
        self._progress.update(
            self._run, completed=len(self._done), messages=f"{len(self._done)}/{len(self._tasks)} transports"
        )

    def __call__(self, key: str, received: int) -> None:
        task = self._tasks.get(key)
        if task is None:
            return
        if not self._progress.tasks[task].started:
            self._progress.start_task(task)
        phase = "received" if received >= self._total else "running"
        self._progress.update(task, completed=received, phase=phase, messages=f"{received:,}/{self._total:,}")
        self._progress.update(self._run, phase="running")
        if phase == "received" and key not in self._done:
            self._done.add(key)
            self._count_done()

    def phase(self, key: str | None, phase: str) -> None:
        """The run (``key`` None: starting, stopping, reporting) or a transport's clients
        (by transport key: running, closing, done) entered ``phase``."""
        if key is None:
            self._progress.update(self._run, phase=phase)
            return
        for label, task in self._tasks.items():
            if label.split(" ")[0] != key:
                continue
            if phase == "running" and not self._progress.tasks[task].started:
                self._progress.start_task(task)
            if phase == "done":
                self._progress.stop_task(task)
            self._progress.update(task, phase=phase)

    def __enter__(self) -> DemoProgress:
        self._progress.start()
        return self

    def __exit__(self, error_type: type[BaseException] | None, *_: object) -> None:
        if error_type is None:
            self._progress.update(self._run, phase="done")
        self._progress.stop_task(self._run)
        self._progress.stop()


def describe_settings(settings: DemoSettings) -> str:
    """One line saying what the run does."""
    names = ", ".join(t.title for t in settings.selected)
    if settings.http3 and settings.browser:
        clients = "the demo page in three headless Chromiums, over HTTP/1.1, h2 and h3 (WebTransport over h3 only),"
    elif settings.http3:
        clients = "three Python clients per transport, over HTTP/1.1, h2 and h3 (WebTransport: one, over h3),"
    elif settings.http2 and settings.browser:
        clients = "the demo page in two headless Chromiums, one over HTTP/1.1 and one over h2,"
    elif settings.http2:
        clients = "two Python clients per transport, one over HTTP/1.1 and one over h2,"
    elif settings.browser:
        clients = f"the demo page in headless Chromium, a page per transport, one after another ({settings.page_rows}-row log)"
    elif settings.clients == 1:
        clients = "one Python client per transport, one transport after another,"
    else:
        clients = f"{settings.clients:,} Python clients per transport, one transport after another,"
    polls = f"short polls every {settings.poll_interval:g} s" if "poll" in settings.transports else None
    compression = "WebSocket compression " + ("on" if settings.compression else "off")
    tls = (
        "TLS and QUIC both sides; Hypercorn serves TCP, aioquic QUIC"
        if settings.http3
        else "TLS both sides; Hypercorn serves"
        if settings.http2
        else None
    )
    network = f"network {settings.network}" if settings.network else None
    details = "; ".join(part for part in (polls, compression, tls, network) if part)
    return (
        f"rtinspect demo: {settings.count} messages at {settings.rate:g}/s, {settings.size} B each, "
        f"over {names}, read by {clients} through the rtinspect proxy ({details})"
    )


def _demo_table(
    title: str, headings: Sequence[str], rows: Sequence[Sequence[str | Text]], text_columns: int = 1
) -> Table:
    """One of the demo's tables: the first ``text_columns`` columns text, the rest figures; no cell
    wraps, and where the table is wider than the console it is split, its text columns leading
    each part (:class:`~inspector.render.table.SplitTable`)."""

    def build(indices: Sequence[int], heading: str, kind: type[Table]) -> Table:
        table = kind(title=heading or title, title_justify="left", title_style="bold", header_style="bold", box=None)
        for i in indices:
            table.add_column(headings[i], justify="left" if i < text_columns else "right", no_wrap=True)
        for row in rows:
            table.add_row(*(row[i] for i in indices))
        return table

    return SplitTable.of(build, len(headings), lead=text_columns)


def clients_table(result: DemoResult) -> Table:
    """What each client measured, with the report's wire bytes per feed message received."""
    source = "the page in Chromium" if result.settings.browser else "the Python clients"
    if result.settings.clients > 1:
        source += f", {result.settings.clients:,} per transport"
    http2 = result.settings.side_by_side
    headings = (
        "Transport",
        *(("Protocol",) if http2 else ()),
        "Received",
        "Lost",
        "Duplicates",
        "Requests",
        "Latency p50",
        "p95",
        "max",
        "Wire per feed msg",
    )
    rows: list[tuple[str | Text, ...]] = []
    for tally in in_report_order(result.clients.values()):
        latency = tally.latency_ms.summary()
        figures = result.figures(tally)
        wire = figures.per_feed_message(tally) if figures is not None else None
        protocol = (tally.protocol or "",) if http2 else ()
        rows.append(
            (
                tally.demo.title if not http2 or tally.protocol == result.settings.protocols_of(tally.demo)[0] else "",
                *protocol,
                f"{count(tally.received)} / {count(tally.expected)}",
                Text(count(tally.lost), style="bold red" if tally.lost else ""),
                count(tally.duplicates),
                count(tally.requests),
                duration_ms(latency.p50 if latency else None),
                duration_ms(latency.p95 if latency else None),
                duration_ms(latency.max if latency else None),
                human_bytes(wire),
            )
        )
    return _demo_table(f"Clients ({source})", headings, rows, text_columns=2 if http2 else 1)


CLIENT_LEGEND = (
    "Latency: when the client had the message minus the server's sent_at (one machine, one clock). "
    "Wire per feed msg: the transport's wire bytes, both directions, divided by the feed messages its client "
    "received; the report's Wire/msg divides by messages on the wire, and one poll response can carry many."
)


def framework_lines(result: DemoResult) -> list[str]:
    """A line per framework's run (Socket.IO): its sessions' path, bytes and messages, from the report of
    that run, and what its wire bytes per feed message are against plain WebSocket's."""
    lines = []
    for tally in in_report_order(result.clients.values()):
        figures = result.figures(tally)
        session = figures.session if figures is not None else None
        if figures is None or session is None:
            continue
        control = session.control_messages
        sessions = "one session" if session.count == 1 else f"{session.count:,} sessions"
        lines.append(
            f"{tally.demo.transport}: python-socketio's client and server, {sessions} ({session_path(session)}); "
            f"the run's wire bytes ({human_bytes(figures.wire_bytes)}) are the framework's whole traffic: "
            f"{human_bytes(session.wire_bytes_per_app_message)} per application message "
            f"({count(session.app_messages.server_to_client)} server to client, the feed's and its end event), "
            f"{count(control.total)} control messages ({count(control.server_to_client)} from the server)."
        )
    return lines


def protocols_table(result: DemoResult) -> Table:
    """``--http2`` and ``--http3``: per transport, its figures over each protocol one above the other,
    from the report's ``by_protocol`` and the clients' latency; each row after the first says how it
    compares with the first (HTTP/1.1; WebTransport's h3 row stands alone)."""
    headings = (
        "Transport",
        "Protocol",
        "Conns",
        "Handshakes",
        "Wire/msg",
        "Overhead",
        "Wire per feed msg",
        "vs HTTP/1.1",
        "Latency p50",
        "p95",
    )
    rows: list[tuple[str, ...]] = []
    by_transport: dict[DemoTransport, dict[str | None, ClientTally]] = {}
    for tally in in_report_order(result.clients.values()):
        by_transport.setdefault(tally.demo, {})[tally.protocol] = tally
    for demo, tallies in by_transport.items():
        baseline: float | None = None
        for i, protocol in enumerate(p for p in result.settings.protocols_of(demo) if p is not None):
            client = tallies.get(protocol)
            # WebTransport's two runs share the report's transport: their rows are their connections'.
            summary = None if demo.h3_only else transport_summary(result.report, demo.transport, protocol)
            figures = result.figures(client) if client is not None else None
            wire = figures.per_feed_message(client) if figures is not None and client is not None else None
            if i == 0:
                baseline = wire
            compared = factor(wire / baseline) if i and wire is not None and baseline else ""
            latency = client.latency_ms.summary() if client is not None else None
            connections = len(run_connections(result.report, demo)) if demo.h3_only else None
            rows.append(
                (
                    demo.title if i == 0 else "",
                    protocol,
                    count(summary.connections) if summary else count(connections) if connections else MISSING,
                    f"{count(summary.handshakes)} · {human_bytes(summary.handshake_bytes)}" if summary else MISSING,
                    human_bytes(summary.wire_bytes_per_message) if summary else MISSING,
                    percent(summary.overhead_ratio) if summary else MISSING,
                    human_bytes(wire),
                    compared,
                    duration_ms(latency.p50 if latency else None),
                    duration_ms(latency.p95 if latency else None),
                )
            )
    names = "HTTP/1.1, h2 and h3" if result.settings.http3 else "HTTP/1.1 and h2"
    return _demo_table(f"{names}, side by side", headings, rows, text_columns=2)


PROTOCOLS_LEGEND = (
    "HTTP/1.1 and h2: the report's figures for each transport's share over each protocol (its by_protocol), "
    "and the latency its client measured. Handshakes: how many, and their bytes. vs HTTP/1.1 compares wire bytes "
    "per feed message. Both ran at once, over TLS, through the same proxy; TLS bytes are not counted. On one "
    "machine, latencies a few milliseconds apart say as much about the Python implementations (server and "
    "clients) as about the protocols."
)
HTTP3_LEGEND = (
    "HTTP/1.1, h2 and h3: the report's figures for each transport's share over each protocol (its by_protocol), "
    "and the latency its client measured; vs HTTP/1.1 compares wire bytes per feed message. All ran at once "
    "through the same proxy, h3 over QUIC on the same port numbers, WebTransport over h3 alone (its rows from its "
    "sessions' own connections, as the report has one webtransport transport for both). On one machine, "
    "latencies a few milliseconds apart say as much about the Python implementations (server and clients) as "
    "about the protocols."
)


def _signed_bytes(n: int) -> str:
    return ("+" if n > 0 else "−" if n < 0 else "") + human_bytes(abs(n))


def browser_table(result: DemoResult) -> Table:
    """``--browser``: what each transport's page cost over its run, from Chromium's own counters."""
    headings = BROWSER_HEADINGS
    rows: list[tuple[str, ...]] = []
    for tally in in_report_order(result.clients.values()):
        cost = result.costs.get(tally.label)
        browser = cost.browser if cost is not None else None
        if browser is None:
            rows.append((tally.demo.transport, *([MISSING] * (len(headings) - 1))))
            continue
        rows.append(
            (
                tally.demo.transport,
                count(browser.layout_count),
                count(browser.recalc_style_count),
                duration_ms(browser.layout_ms),
                duration_ms(browser.recalc_style_ms),
                duration_ms(browser.script_ms),
                duration_ms(browser.task_ms),
                _signed_bytes(browser.js_heap_bytes),
                duration_ms(browser.inp_ms),
                count(browser.interactions),
            )
        )
    return _demo_table("Clients: the page's cost in Chromium (over each transport's run)", headings, rows)


def browser_legend(result: DemoResult) -> str:
    return (
        f"Each transport had its own page in its own headless Chromium, one after another; every page did the same "
        f"DOM work per message (a row added to a {result.settings.page_rows:,}-row log, which is then scrolled, so "
        f"laid out). Layouts to Tasks: Chromium's Performance.getMetrics, the difference over the run. Tasks is all "
        f"main-thread work; Script (ScriptDuration) counts less of the work run from fetch callbacks (the stream and "
        f"the polls) than from event handlers (WebSocket, SSE), so compare Tasks. JS heap Δ: the heap after "
        f"garbage collection, end minus start. INP: clicks every {CLICK_INTERVAL:g} s while the feed ran, measured "
        f"in the page (Event Timing, rounded to 8 ms; 0 means every interaction took under 16 ms)."
    )


def process_table(result: DemoResult) -> Table:
    """What each transport cost the demo server and the proxy, measured in their own processes."""
    rows: list[tuple[str, ...]] = []
    for tally in in_report_order(result.clients.values()):
        cost = result.costs.get(tally.label)
        rows.append((tally.demo.transport, "server", *process_cells(cost.server if cost else None)))
        rows.append(("", "proxy", *process_cells(cost.proxy if cost else None)))
    return _demo_table("Server and proxy (a fresh process of each per transport)", PROCESS_HEADINGS, rows, 2)


def process_legend(result: DemoResult) -> str:
    machine = describe_machine(dict(result.machine)) if result.machine else "this machine"
    return (
        "CPU: user and system time from /proc (10 ms ticks), from just before the clients connected until every "
        "connection had closed; the proxy's is its relay's and its analyser's (Analysing: the analyser's part, the "
        "cost of inspecting, counted until it had analysed the whole run and exited, its final report included). "
        "Per 1k msgs divides it by the feed messages the clients received. Peak RSS: the "
        "highest resident set in that time (the proxy's relay and analyser added up). RSS per conn: its growth over "
        "the starting resident set divided by the connections held at once (Held); meaningful with many clients. "
        f"Conns and Requests: as the server counted them, and as the proxy's report has them. Measured on {machine}."
    )


def verdict_lines(result: DemoResult) -> list[str]:
    return [f"{verdict.dimension}: {verdict.text}" for verdict in demo_verdicts(result)]


def result_renderables(result: DemoResult) -> Iterator[RenderableType]:
    """The report's tables and verdict, the clients' table, the costs, notes, verdicts and the files written."""
    yield from table_renderables(result.report)
    yield Text("")
    if result.settings.side_by_side:
        yield protocols_table(result)
        yield Text(f"• {HTTP3_LEGEND if result.settings.http3 else PROTOCOLS_LEGEND}", style="dim")
        yield Text("")
    yield clients_table(result)
    legend = (CLIENT_LEGEND, *framework_lines(result), *result.notes)
    yield Text("\n".join(f"• {line}" for line in legend), style="dim")
    yield Text("")
    if any(cost.browser for cost in result.costs.values()):
        yield browser_table(result)
        yield Text(f"• {browser_legend(result)}", style="dim")
        yield Text("")
    if any(cost.server or cost.proxy for cost in result.costs.values()):
        yield process_table(result)
        yield Text(f"• {process_legend(result)}", style="dim")
        yield Text("")
    lines = verdict_lines(result)
    if lines:
        yield Text("Verdicts", style="bold")
        yield Text("\n".join(f"• {line}" for line in lines))
        yield Text("")
    for path in result.files.written():
        yield Text(f"wrote {path}")
    yield Text(f"finished in {result.seconds:.1f} s", style="dim")
