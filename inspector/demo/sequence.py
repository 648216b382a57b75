"""The plain demo: one transport at a time, each with a fresh server process and a fresh proxy.

For each transport, in report order:

1. the demo server starts in a process of its own (:mod:`.server_process`),
   and the rtinspect proxy in front of it, recording that transport's capture
   and writing its own report on exit;
2. both are left to settle, then sampled (:mod:`.processes`);
3. the clients connect through the proxy: ``--clients N`` Python clients, or
   with ``--browser`` the demo page in a Chromium of its own; the feed
   starts (over the server's standard input), and the run waits until every
   client has finished and the capture shows every connection closed;
4. both are sampled again, the server is asked what it handled, and both stop;
   the proxy is read once more as it exits, for its analyser's share
   (:meth:`.costs.ProcessCost.between`).

The run then joins the captures into one (:mod:`.captures`) and turns the
samples into costs (:mod:`.costs`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..processes import ProcessSample, TreeSample, reset_peaks, sample_tree, settle
from ..proxy_process import wait_until_closed
from .browser_cost import BrowserCost
from .captures import PartFacts
from .clients import Target, run_transport_clients
from .costs import ProcessCost, TransportCosts, proxy_counts
from .page import run_transport_page
from .recording_proxy import DemoProxy
from .server_process import ServerProcess
from .settings import DEMO_RULE_TEXTS, DemoSettings, DemoTransport
from .tally import ClientTally, ProgressCallback


@dataclass
class TransportRun:
    """What one transport's turn left: its clients' tally, its capture, the proxy's report,
    the samples of both processes, what the server counted, and in browser mode the page's
    cost and a screenshot. ``problem`` says what went wrong stopping the proxy."""

    demo: DemoTransport
    tally: ClientTally
    capture: Path
    proxy_report: Path
    server_samples: tuple[TreeSample, TreeSample] | None
    proxy_samples: tuple[TreeSample, TreeSample] | None
    server_counts: dict[str, Any]
    proxy_final: ProcessSample | None = None
    browser: BrowserCost | None = None
    screenshot: bytes | None = None
    problem: str | None = None

    def costs(self, facts: PartFacts) -> TransportCosts:
        """Its costs, with the proxy's connections held at once from the capture's ``facts``."""
        messages = self.tally.received
        server = proxy = None
        if self.server_samples is not None:
            server = ProcessCost.between(
                *self.server_samples,
                messages=messages,
                connections=int(self.server_counts.get("connections", 0)),
                connections_held=int(self.server_counts.get("peak_open", 0)),
                requests=int(self.server_counts.get("requests", 0)),
            )
        if self.proxy_samples is not None:
            connections, requests = proxy_counts(self.proxy_report)
            proxy = ProcessCost.between(
                *self.proxy_samples,
                messages=messages,
                connections=connections or facts.connections,
                connections_held=facts.peak_open,
                requests=requests,
                final=self.proxy_final,
            )
        return TransportCosts(server=server, proxy=proxy, browser=self.browser)


def _samples(before: TreeSample | None, pid: int) -> tuple[TreeSample, TreeSample] | None:
    after = sample_tree(pid) if before is not None else None
    return (before, after) if before is not None and after is not None else None


def run_transport(
    settings: DemoSettings,
    demo: DemoTransport,
    folder: Path,
    chromium: str | None = None,
    on_progress: ProgressCallback | None = None,
) -> TransportRun:
    """One transport's turn (see the module's description); its files go in ``folder``."""
    capture = folder / f"{demo.key}.rtcap"
    proxy_report = folder / f"{demo.key}.report.json"
    rules = [argument for text in DEMO_RULE_TEXTS for argument in ("--transport", text)]
    browser: BrowserCost | None = None
    screenshot: bytes | None = None
    with ServerProcess(settings) as server:
        proxy = DemoProxy.rtinspect(
            server.url,
            "--report",
            str(proxy_report),
            *rules,
            *settings.proxy_arguments,
            capture=capture,
            options=settings.proxy_options,
        )
        try:
            proxy.wait_listening()
            server_before = settle(server.pid)
            proxy_before = settle(proxy.process.pid)
            for sample in (server_before, proxy_before):
                if sample is not None:
                    reset_peaks(sample)
            server.restart_counts()

            async def start() -> None:
                await asyncio.to_thread(server.start_feed)

            target = Target(proxy.url)
            if chromium is not None:
                tally, browser, screenshot = asyncio.run(
                    run_transport_page(settings, chromium, demo, target, start, on_progress)
                )
            else:
                tally = asyncio.run(run_transport_clients(settings, demo, target, start, on_progress))
            wait_until_closed(capture, settings.connect_timeout)
            server_samples = _samples(server_before, server.pid)
            proxy_samples = _samples(proxy_before, proxy.process.pid)
            counts = server.counts()
        finally:
            stopped, proxy_final = proxy.stop_measured(settings.connect_timeout)
    return TransportRun(
        demo=demo,
        tally=tally,
        capture=capture,
        proxy_report=proxy_report,
        server_samples=server_samples,
        proxy_samples=proxy_samples,
        server_counts=counts,
        proxy_final=proxy_final,
        browser=browser,
        screenshot=screenshot,
        problem=f"{demo.transport}: {stopped}" if stopped else None,
    )
