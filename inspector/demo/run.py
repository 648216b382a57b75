"""One demo run: the demo server, the proxy and the clients, then the capture's report and the files."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from demo_server.app import create_app
from demo_server.run import serve_in_thread

from ..capture import CaptureError
from ..proxy_process import wait_until_closed
from ..render import render
from ..replay import report_from_captures
from ..report import Report
from .clients import run_python_clients
from .page import require_chromium, run_browser_clients
from .recording_proxy import DemoProxy
from .settings import DEMO_RULES, LOOPBACK, DemoError, DemoSettings
from .tally import ClientTally, ProgressCallback

CLIENTS_FORMAT = "rtinspect-demo-clients"


@dataclass(frozen=True, slots=True)
class DemoFiles:
    """Where a run writes its results."""

    folder: Path
    capture: Path
    report_json: Path
    report_html: Path
    clients_json: Path
    screenshot: Path | None

    @classmethod
    def in_folder(cls, folder: Path, browser: bool) -> DemoFiles:
        return cls(
            folder=folder,
            capture=folder / "capture.rtcap",
            report_json=folder / "report.json",
            report_html=folder / "report.html",
            clients_json=folder / "clients.json",
            screenshot=folder / "page.png" if browser else None,
        )

    def written(self) -> list[Path]:
        paths = [self.capture, self.report_json, self.report_html, self.clients_json, self.screenshot]
        return [path for path in paths if path is not None and path.exists()]


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

    @property
    def ok(self) -> bool:
        return not self.problems


def run_demo(settings: DemoSettings, on_progress: ProgressCallback | None = None) -> DemoResult:
    """Run the experiment and write its files; raises :class:`DemoError` if it could not run at all."""
    began = time.monotonic()
    chromium = require_chromium(settings) if settings.browser else None
    try:
        settings.output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DemoError(f"cannot create {settings.output}: {error.strerror or error}") from None
    files = DemoFiles.in_folder(settings.output, settings.browser)
    app = create_app(rate=settings.rate, count=settings.count, size=settings.size, autostart=False)
    problems: list[str] = []
    screenshot: bytes | None = None
    with serve_in_thread(app, LOOPBACK, ws_compression=settings.compression) as server:
        proxy = DemoProxy.rtinspect(server.url, capture=files.capture, options=settings.proxy_options)
        try:
            proxy.wait_listening()
            if chromium is not None:
                clients, screenshot = asyncio.run(run_browser_clients(settings, chromium, proxy.url, on_progress))
            else:
                clients = asyncio.run(run_python_clients(settings, server.url, proxy.url, on_progress))
            wait_until_closed(files.capture)
        finally:
            stopped = proxy.stop_problem()
        if stopped:
            problems.append(stopped)
    report = report_capture(files.capture)
    if screenshot is not None and files.screenshot is not None:
        files.screenshot.write_bytes(screenshot)
    files.report_json.write_text(render(report, "json"), encoding="utf-8")
    files.report_html.write_text(render(report, "html"), encoding="utf-8")
    files.clients_json.write_text(json.dumps(clients_document(settings, clients), indent=2) + "\n", encoding="utf-8")
    problems += client_problems(settings, clients, report)
    return DemoResult(
        settings=settings,
        report=report,
        clients=clients,
        files=files,
        problems=tuple(problems),
        notes=tuple(count_notes(clients, report)),
        seconds=time.monotonic() - began,
    )


def report_capture(capture: Path) -> Report:
    """The report of the demo's capture, its paths pinned by :data:`DEMO_RULES`."""
    try:
        return report_from_captures([capture], rules=DEMO_RULES)
    except (CaptureError, OSError) as error:
        raise DemoError(f"cannot read the capture {capture}: {error}") from None


def clients_document(settings: DemoSettings, clients: dict[str, ClientTally]) -> dict[str, Any]:
    """``clients.json``: the run's parameters and what each client measured, keyed by report transport name."""
    return {
        "format": CLIENTS_FORMAT,
        "version": 1,
        "clients": "chromium" if settings.browser else "python",
        "feed": {"count": settings.count, "rate": settings.rate, "size": settings.size},
        "poll_interval": settings.poll_interval,
        "websocket_compression": settings.compression,
        "transports": {tally.demo.transport: tally.to_dict() for tally in clients.values()},
    }


def client_problems(settings: DemoSettings, clients: dict[str, ClientTally], report: Report) -> list[str]:
    """One line per failure: a client's error, lost messages, a transport missing from the report."""
    problems = []
    for tally in clients.values():
        name = tally.demo.transport
        if tally.error:
            problems.append(f"{name}: {tally.error}")
        if tally.lost:
            problems.append(f"{name}: lost {tally.lost} of {settings.count} messages")
        if name not in report.transports:
            problems.append(f"{name}: the capture holds none of its traffic")
    return problems


def count_notes(clients: dict[str, ClientTally], report: Report) -> list[str]:
    """Where the report's server-to-client message count differs from what the client counted."""
    notes = []
    for tally in clients.values():
        summary = report.transports.get(tally.demo.transport)
        if summary is None or tally.deliveries is None:
            continue
        on_wire = summary.messages.server_to_client
        if on_wire != tally.deliveries:
            notes.append(
                f"{tally.demo.transport}: the report counted {on_wire} server-to-client messages, "
                f"the client {tally.deliveries}."
            )
    return notes
