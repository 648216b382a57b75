"""What a finished demo run holds, as the run (:mod:`.run`) makes it and the printed
output (:mod:`.display`), report.html (:mod:`.html`) and the verdicts (:mod:`.verdicts`)
read it: the files written, the report, the clients' tallies and the costs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..report import Report, TransportSummary
from .costs import TransportCosts
from .protocols import WireConnection
from .settings import PROTOCOLS, TRANSPORT_KEYS, TRANSPORTS, DemoSettings
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
    #: by the transport's key), or with ``--http2`` one per protocol (``page-h2.png``).
    screenshots: Mapping[str | None, Path]

    @classmethod
    def in_folder(cls, folder: Path, browser: bool, http2: bool = False) -> DemoFiles:
        screenshots: dict[str | None, Path] = {}
        if browser and http2:
            screenshots = {protocol: folder / f"page-{protocol.replace('/', '')}.png" for protocol in PROTOCOLS}
        elif browser:
            screenshots = {t.key: folder / f"page-{t.transport}.png" for t in TRANSPORTS}
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

    @property
    def ok(self) -> bool:
        return not self.problems


def transport_summary(report: Report, transport: str, protocol: str | None = None) -> TransportSummary | None:
    """The report's figures for a transport, or for its share over one protocol
    (``TransportSummary.by_protocol``)."""
    summary = report.transports.get(transport)
    if summary is None or protocol is None:
        return summary
    return summary.by_protocol.get(protocol)


def in_report_order(tallies: Iterable[ClientTally]) -> list[ClientTally]:
    """Transports in report order, each one's clients together, HTTP/1.1 before h2."""
    order = {protocol: i for i, protocol in enumerate(PROTOCOLS)}
    return sorted(tallies, key=lambda t: (TRANSPORT_KEYS.index(t.demo.key), order.get(t.protocol or "", -1)))
