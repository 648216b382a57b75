"""What ``rtinspect demo`` prints: its settings, progress bars, and the clients' table next to the report;
with ``--http2``, each transport's HTTP/1.1 and h2 figures side by side."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..render.table import TEXT_WIDTH, table_renderables
from ..render.units import MISSING, count, factor, human_bytes, percent
from ..report import TransportSummary
from .run import DemoResult, transport_summary
from .settings import PROTOCOLS, TRANSPORT_KEYS, DemoSettings
from .tally import ClientTally, client_label


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
            TextColumn("{task.description:<20}" if settings.http2 else "{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._tasks = {
            client_label(t.key, protocol): self._progress.add_task(
                t.transport if protocol is None else f"{t.transport} {protocol}", total=settings.count
            )
            for t in settings.selected
            for protocol in settings.protocols
        }

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
    if settings.http2 and settings.browser:
        clients = "the demo page in two headless Chromiums, one over HTTP/1.1 and one over h2,"
    elif settings.http2:
        clients = "two Python clients per transport, one over HTTP/1.1 and one over h2,"
    elif settings.browser:
        clients = "the demo page in headless Chromium"
    else:
        clients = "one Python client per transport"
    polls = f"short polls every {settings.poll_interval:g} s" if "poll" in settings.transports else None
    compression = "WebSocket compression " + ("on" if settings.compression else "off")
    tls = "TLS both sides; Hypercorn serves" if settings.http2 else None
    network = f"network {settings.network}" if settings.network else None
    details = "; ".join(part for part in (polls, compression, tls, network) if part)
    return (
        f"rtinspect demo: {settings.count} messages at {settings.rate:g}/s, {settings.size} B each, "
        f"over {names}, read by {clients} through the rtinspect proxy ({details})"
    )


def _ms(value: float | None) -> str:
    if value is None:
        return MISSING
    return f"{value:.1f} ms" if abs(value) < 10 else f"{value:,.0f} ms"


def _wire_per_feed_message(summary: TransportSummary | None, tally: ClientTally) -> float | None:
    return summary.wire_bytes.total / tally.received if summary is not None and tally.received else None


def _in_report_order(tallies: Iterable[ClientTally]) -> list[ClientTally]:
    """Transports in report order, each one's clients together, HTTP/1.1 before h2."""
    order = {protocol: i for i, protocol in enumerate(PROTOCOLS)}
    return sorted(tallies, key=lambda t: (TRANSPORT_KEYS.index(t.demo.key), order.get(t.protocol or "", -1)))


def clients_table(result: DemoResult) -> Table:
    """What each client measured, with the report's wire bytes per feed message received."""
    source = "the page in Chromium" if result.settings.browser else "the Python clients"
    table = Table(title=f"Clients ({source})", title_justify="left", title_style="bold", header_style="bold")
    table.box = None
    http2 = result.settings.http2
    headings = (
        "Transport", *(("Protocol",) if http2 else ()), "Received", "Lost", "Duplicates", "Requests",
        "Latency p50", "p95", "max", "Wire per feed msg",
    )
    for i, heading in enumerate(headings):
        table.add_column(heading, justify="left" if i == 0 or (http2 and i == 1) else "right")
    for tally in _in_report_order(result.clients.values()):
        latency = tally.latency_ms.summary()
        summary = transport_summary(result.report, tally.demo.transport, tally.protocol)
        wire = _wire_per_feed_message(summary, tally)
        protocol = (tally.protocol or "",) if http2 else ()
        table.add_row(
            tally.demo.transport if not http2 or tally.protocol == PROTOCOLS[0] else "",
            *protocol,
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


def protocols_table(result: DemoResult) -> Table:
    """``--http2``: per transport, its HTTP/1.1 and h2 figures one above the other, from the
    report's ``by_protocol`` and the clients' latency; the h2 row says how it compares."""
    table = Table(
        title="HTTP/1.1 and h2, side by side", title_justify="left", title_style="bold", header_style="bold"
    )
    table.box = None
    headings = (
        "Transport", "Protocol", "Conns", "Handshakes", "Wire/msg", "Overhead",
        "Wire per feed msg", "vs HTTP/1.1", "Latency p50", "p95",
    )
    for i, heading in enumerate(headings):
        table.add_column(heading, justify="left" if i < 2 else "right")
    by_transport: dict[str, dict[str | None, ClientTally]] = {}
    for tally in _in_report_order(result.clients.values()):
        by_transport.setdefault(tally.demo.transport, {})[tally.protocol] = tally
    for transport, tallies in by_transport.items():
        baseline: float | None = None
        for i, protocol in enumerate(PROTOCOLS):
            client = tallies.get(protocol)
            summary = transport_summary(result.report, transport, protocol)
            wire = _wire_per_feed_message(summary, client) if client is not None else None
            if i == 0:
                baseline = wire
            compared = factor(wire / baseline) if i and wire is not None and baseline else ""
            latency = client.latency_ms.summary() if client is not None else None
            table.add_row(
                transport if i == 0 else "",
                protocol,
                count(summary.connections) if summary else MISSING,
                f"{count(summary.handshakes)} · {human_bytes(summary.handshake_bytes)}" if summary else MISSING,
                human_bytes(summary.wire_bytes_per_message) if summary else MISSING,
                percent(summary.overhead_ratio) if summary else MISSING,
                human_bytes(wire),
                compared,
                _ms(latency.p50 if latency else None),
                _ms(latency.p95 if latency else None),
            )
    return table


PROTOCOLS_LEGEND = (
    "HTTP/1.1 and h2: the report's figures for each transport's share over each protocol (its by_protocol), "
    "and the latency its client measured. Handshakes: how many, and their bytes. vs HTTP/1.1 compares wire bytes "
    "per feed message. Both ran at once, over TLS, through the same proxy; TLS bytes are not counted. On one "
    "machine, latencies a few milliseconds apart say as much about the Python implementations (server and "
    "clients) as about the protocols."
)


def result_renderables(result: DemoResult) -> Iterator[RenderableType]:
    """The report's tables and verdict, the clients' table, notes and the files written."""
    yield from table_renderables(result.report)
    yield Text("")
    if result.settings.http2:
        yield protocols_table(result)
        yield Text(f"• {PROTOCOLS_LEGEND}", style="dim")
        yield Text("")
    yield clients_table(result)
    yield Text("\n".join(f"• {line}" for line in (CLIENT_LEGEND, *result.notes)), style="dim")
    yield Text("")
    for path in result.files.written():
        yield Text(f"wrote {path}")
    yield Text(f"finished in {result.seconds:.1f} s", style="dim")
