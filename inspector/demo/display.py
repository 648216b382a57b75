"""What ``rtinspect demo`` prints: its settings, progress bars, and the clients' table next to the report."""

from __future__ import annotations

import os
from collections.abc import Iterator

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..render.table import TEXT_WIDTH, table_renderables
from ..render.units import MISSING, count, human_bytes
from .run import DemoResult
from .settings import DemoSettings


def demo_console() -> Console:
    """Standard output; when it is not a terminal and COLUMNS is unset, as wide as
    the text report, so the tables do not fold at 80 columns."""
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=TEXT_WIDTH)
    return console


class DemoProgress:
    """A bar per transport of the messages its client has received, on a terminal only."""

    def __init__(self, console: Console, settings: DemoSettings) -> None:
        self._progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._tasks = {t.key: self._progress.add_task(t.transport, total=settings.count) for t in settings.selected}

    def __call__(self, key: str, received: int) -> None:
        task = self._tasks.get(key)
        if task is not None:
            self._progress.update(task, completed=received)

    def __enter__(self) -> DemoProgress:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()


def describe_settings(settings: DemoSettings) -> str:
    """One line saying what the run does."""
    names = ", ".join(t.transport for t in settings.selected)
    clients = "the demo page in headless Chromium" if settings.browser else "one Python client per transport"
    polls = f"short polls every {settings.poll_interval:g} s" if "poll" in settings.transports else None
    compression = "WebSocket compression " + ("on" if settings.compression else "off")
    details = "; ".join(part for part in (polls, compression) if part)
    return (
        f"rtinspect demo: {settings.count} messages at {settings.rate:g}/s, {settings.size} B each, "
        f"over {names}, read by {clients} through the rtinspect proxy ({details})"
    )


def _ms(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.1f} ms" if abs(value) < 10 else f"{value:,.0f} ms"


def clients_table(result: DemoResult) -> Table:
    """What each client measured, with the report's wire bytes per feed message received."""
    source = "the page in Chromium" if result.settings.browser else "the Python clients"
    table = Table(title=f"Clients ({source})", title_justify="left", title_style="bold", header_style="bold")
    table.box = None
    headings = ("Transport", "Received", "Lost", "Duplicates", "Requests", "Latency p50", "p95", "max", "Wire per feed msg")
    for i, heading in enumerate(headings):
        table.add_column(heading, justify="left" if i == 0 else "right")
    for tally in result.clients.values():
        latency = tally.latency_ms.summary()
        summary = result.report.transports.get(tally.demo.transport)
        wire = summary.wire_bytes.total / tally.received if summary is not None and tally.received else None
        table.add_row(
            tally.demo.transport,
            f"{count(tally.received)} / {count(tally.expected)}",
            Text(count(tally.lost), style="bold red" if tally.lost else ""),
            count(tally.duplicates),
            count(tally.requests),
            _ms(latency.p50 if latency else None),
            _ms(latency.p95 if latency else None),
            _ms(latency.max if latency else None),
            human_bytes(wire),
        )
    return table


CLIENT_LEGEND = (
    "Latency: when the client had the message minus the server's sent_at (one machine, one clock). "
    "Wire per feed msg: the transport's wire bytes, both directions, divided by the feed messages its client "
    "received; the report's Wire/msg divides by messages on the wire, and one poll response can carry many."
)


def result_renderables(result: DemoResult) -> Iterator[RenderableType]:
    """The report's tables and verdict, the clients' table, notes and the files written."""
    yield from table_renderables(result.report)
    yield Text("")
    yield clients_table(result)
    yield Text("\n".join(f"• {line}" for line in (CLIENT_LEGEND, *result.notes)), style="dim")
    yield Text("")
    for path in result.files.written():
        yield Text(f"wrote {path}")
    yield Text(f"finished in {result.seconds:.1f} s", style="dim")
