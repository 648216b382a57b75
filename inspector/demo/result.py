"""What a finished demo run holds, as the run (:mod:`.run`) makes it and the printed
output (:mod:`.display`), report.html (:mod:`.html`) and the verdicts (:mod:`.verdicts`)
read it: the files written, the report, the clients' tallies and the costs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..report import ConnectionSummary, Report, SessionsSummary, TransportSummary
from .costs import TransportCosts
from .protocols import WireConnection
from .settings import HTTP3_PROTOCOLS, PAGE_TRANSPORTS, TRANSPORT_KEYS, DemoSettings, DemoTransport
from .tally import ClientTally


@dataclass(frozen=True, slots=True)
class DemoFiles:
    """Where a run writes its results."""

    folder: Path
    capture: Path
    report_json: Path
    report_html: Path
    clients_json: Path
    #: The page's screenshots in browser mode: one per transport (``page-websocket.png``, keyed
    #: by the transport's key), or with ``--http2`` and ``--http3`` one per protocol (``page-h2.png``).
    screenshots: Mapping[str | None, Path]

    @classmethod
    def in_folder(cls, folder: Path, browser: bool, protocols: tuple[str | None, ...] = (None,)) -> DemoFiles:
        """The files of a run in ``folder``; ``protocols`` are those the run compares (None: the plain demo)."""
        screenshots: dict[str | None, Path] = {}
        if browser and None not in protocols:
            screenshots = {p: folder / f"page-{p.replace('/', '')}.png" for p in protocols if p is not None}
        elif browser:
            screenshots = {t.key: folder / f"page-{t.transport}.png" for t in PAGE_TRANSPORTS}
        return cls(
            folder=folder,
            capture=folder / "capture.rtcap",
            report_json=folder / "report.json",
            report_html=folder / "report.html",
            clients_json=folder / "clients.json",
            screenshots=screenshots,
        )

    def written(self) -> list[Path]:
        paths = [self.capture, self.report_json, self.report_html, self.clients_json, *self.screenshots.values()]
        return [path for path in paths if path.exists()]


@dataclass(frozen=True, slots=True)
class DemoResult:
    """A finished run: the report of its capture, what the clients measured, and what went wrong."""

    settings: DemoSettings
    report: Report
    clients: dict[str, ClientTally]
    files: DemoFiles
    problems: tuple[str, ...]
    notes: tuple[str, ...]
    seconds: float
    #: With ``--http2``: each connection's protocol and requests as the capture shows them.
    wire: tuple[WireConnection, ...] = ()
    #: Without ``--http2``: what each transport cost the server, the proxy and the page, by client label.
    costs: Mapping[str, TransportCosts] = field(default_factory=dict)
    #: The machine the run was measured on (:func:`.costs.machine`).
    machine: Mapping[str, Any] = field(default_factory=dict)
    #: Without ``--http2``: the report of each transport's own run (its own capture), by client label.
    reports: Mapping[str, Report] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def figures(self, tally: ClientTally) -> RunFigures | None:
        """What the report of ``tally``'s run says of it (:func:`run_figures`)."""
        return run_figures(self.reports.get(tally.label, self.report), tally)


@dataclass(frozen=True, slots=True)
class RunFigures:
    """What the capture says of one client's run, in the client's terms.

    ``wire_bytes``: every wire byte of the run, both directions; ``deliveries``:
    server-to-client messages as the client counts its deliveries (a transport's
    messages; a framework's application messages, its events); ``app_messages``:
    application messages, server to client. ``session`` is the framework's
    sessions (None for a plain transport)."""

    wire_bytes: int
    deliveries: int
    app_messages: int
    session: SessionsSummary | None = None

    def per_feed_message(self, tally: ClientTally) -> float | None:
        """Wire bytes per feed message the client received."""
        return self.wire_bytes / tally.received if tally.received else None


def run_figures(report: Report, tally: ClientTally) -> RunFigures | None:
    """The figures of ``tally``'s run in ``report`` (the report of that run alone, for a
    framework's run, whose transports the others share): a transport's summary (its share
    over the client's protocol with ``--http2``), or a framework's sessions with every
    transport of the run; None where the report holds none of it."""
    if tally.demo.h3_only:
        return webtransport_figures(report, tally)
    protocol = tally.demo.app_protocol
    if protocol is not None:
        session = report.sessions.get(protocol)
        if session is None:
            return None
        wire = sum(summary.wire_bytes.total for summary in report.transports.values())
        apps = session.app_messages.server_to_client
        return RunFigures(wire_bytes=wire, deliveries=apps, app_messages=apps, session=session)
    summary = transport_summary(report, tally.demo.transport, tally.protocol)
    if summary is None:
        return None
    return RunFigures(
        wire_bytes=summary.wire_bytes.total,
        deliveries=summary.messages.server_to_client,
        app_messages=summary.app_messages.server_to_client,
    )


def webtransport_figures(report: Report, tally: ClientTally) -> RunFigures | None:
    """A WebTransport run's figures from its own QUIC connections (:func:`run_connections`)."""
    connections = run_connections(report, tally.demo)
    if not connections:
        return None
    messages = sum(c.messages.server_to_client for c in connections)
    return RunFigures(
        wire_bytes=sum(c.wire_bytes.total for c in connections), deliveries=messages, app_messages=messages
    )


def run_connections(report: Report, demo: DemoTransport) -> list[ConnectionSummary]:
    """The HTTP/3 connections that opened ``demo``'s path: the report has one ``webtransport``
    transport for the stream and the datagram runs alike, and each WebTransport session has a
    connection of its own (Python's clients and Chromium's)."""
    return [
        c
        for c in report.connections
        if c.protocol == "h3" and any(target.split("?")[0] == demo.path for target in c.targets)
    ]


def transport_summary(report: Report, transport: str, protocol: str | None = None) -> TransportSummary | None:
    """The report's figures for a transport, or for its share over one protocol
    (``TransportSummary.by_protocol``)."""
    summary = report.transports.get(transport)
    if summary is None or protocol is None:
        return summary
    return summary.by_protocol.get(protocol)


def in_report_order(tallies: Iterable[ClientTally]) -> list[ClientTally]:
    """Transports in report order, each one's clients together, HTTP/1.1 before h2 before h3."""
    order = {protocol: i for i, protocol in enumerate(HTTP3_PROTOCOLS)}
    return sorted(tallies, key=lambda t: (TRANSPORT_KEYS.index(t.demo.key), order.get(t.protocol or "", -1)))


def session_path(session: SessionsSummary) -> str:
    """The transports a framework's sessions used, in order: ``long_poll → websocket``; with
    sessions on several paths, each with how many took it."""
    if len(session.paths) == 1:
        return next(iter(session.paths))
    return ", ".join(f"{path} ({count:,})" for path, count in session.paths.items())
