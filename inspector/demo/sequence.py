"""The plain demo: one transport at a time, each with a fresh server process and a fresh proxy.

Every transport's demo server starts in a process of its own
(:mod:`.server_process`), and an rtinspect proxy in front of each, recording
that transport's capture and writing its own report on exit: all before any
transport runs, the servers at once, the first proxy meanwhile and then the
others at once (:func:`start_processes`), since starting them is most of a
short run's time and they cost nothing while they wait. Then, for each transport, in report
order:

1. its processes are left to settle, then sampled (:mod:`.processes`);
   a transport's figures count from here, and are its processes' own;
2. the clients connect through the proxy: ``--clients N`` Python clients, or
   with ``--browser`` the demo page in a Chromium of its own; the feed
   starts (over the server's standard input), and the run waits until every
   client has finished and the capture shows every connection closed;
3. both are sampled again and the server is asked what it handled; they
   wait, idle, while the next transports run.

Once every transport has run, every process stops, all at once
(:func:`stop_processes`); each proxy is read once more as it exits, for its
analyser's share (:meth:`.costs.ProcessCost.between`): the analyser runs at
idle priority, so it may finish the transport's traffic after the connections
close, and takes next to nothing from the transports that run meanwhile.

The run then joins the captures into one (:mod:`.captures`) and turns the
samples into costs (:mod:`.costs`).
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Future, ThreadPoolExecutor, wait
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
from .settings import DEMO_RULE_TEXTS, START_TIMEOUT, DemoSettings, DemoTransport
from .tally import ClientTally, PhaseCallback, ProgressCallback


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


class TransportProcesses:
    """One transport's demo server (started) and the proxy this starts in front of it, both
    listening; its capture and the proxy's report go in the folder given. If the proxy
    cannot start, the server is stopped too."""

    def __init__(self, settings: DemoSettings, demo: DemoTransport, folder: Path, server: ServerProcess) -> None:
        self.demo = demo
        self.capture = folder / f"{demo.key}.rtcap"
        self.proxy_report = folder / f"{demo.key}.report.json"
        rules = [argument for text in DEMO_RULE_TEXTS for argument in ("--transport", text)]
        self.server = server
        try:
            self.proxy = DemoProxy.rtinspect(
                self.server.url,
                "--report",
                str(self.proxy_report),
                *rules,
                *settings.proxy_arguments,
                capture=self.capture,
                options=settings.proxy_options,
            )
            try:
                self.proxy.wait_listening(START_TIMEOUT)
            except BaseException:
                self.proxy.stop_problem()
                raise
        except BaseException:
            self.server.stop()
            raise
        self._stopped = False

    def stop_measured(self, timeout: float) -> tuple[str | None, ProcessSample | None]:
        """Stop both at once: :meth:`DemoProxy.stop_measured` (its problem, and its last CPU
        times) while the server stops."""
        if self._stopped:
            return None, None
        self._stopped = True
        with ThreadPoolExecutor(max_workers=1) as pool:
            server_stopped = pool.submit(self.server.stop)
            try:
                return self.proxy.stop_measured(timeout)
            finally:
                server_stopped.result()

    def stop(self) -> None:
        """Stop both, if :meth:`stop_measured` has not."""
        self.stop_measured(0.0)


def start_processes(settings: DemoSettings, folder: Path, stack: contextlib.ExitStack) -> list[TransportProcesses]:
    """Every selected transport's processes, in report order; each is stopped when ``stack``
    closes unless the run has stopped it. If any fails to start, the first failure (in
    report order) is raised. The servers start at once, and the first transport's proxy
    alone meanwhile: a proxy that cannot start with the options given fails once and at
    once, and the first proxy makes mitmproxy's CA where there is none yet, so that the
    others do not each make one. Then the other proxies at once."""
    demos = list(settings.selected)
    with ThreadPoolExecutor(max_workers=len(demos) + 1) as pool:
        servers = [pool.submit(ServerProcess, settings) for _ in demos]
        first: Future[TransportProcesses] = pool.submit(_with_proxy, settings, demos[0], folder, servers[0])
        starting: list[Future[Any]] = [first, *servers]
        wait(starting)
        for server in servers[1:]:
            if server.exception() is None:
                stack.callback(server.result().stop)
        if first.exception() is None:
            stack.callback(first.result().stop)
        failures = [error for future in starting if (error := future.exception()) is not None]
        if failures:
            raise failures[0]
        rest = [
            pool.submit(TransportProcesses, settings, demo, folder, server.result())
            for demo, server in zip(demos[1:], servers[1:], strict=True)
        ]
        wait(rest)
    started = [first.result()]
    for future in rest:
        if future.exception() is None:
            stack.callback(future.result().stop)
            started.append(future.result())
    failures = [error for future in rest if (error := future.exception()) is not None]
    if failures:
        raise failures[0]
    return started


def _with_proxy(
    settings: DemoSettings, demo: DemoTransport, folder: Path, server: Future[ServerProcess]
) -> TransportProcesses:
    """The proxy in front of ``server`` once it has started."""
    return TransportProcesses(settings, demo, folder, server.result())


def _settled(*pids: int) -> list[TreeSample | None]:
    """Each process tree once it has settled (:func:`.processes.settle`), all waited for at once."""
    with ThreadPoolExecutor(max_workers=len(pids)) as pool:
        return list(pool.map(settle, pids))


def _samples(before: TreeSample | None, pid: int) -> tuple[TreeSample, TreeSample] | None:
    after = sample_tree(pid) if before is not None else None
    return (before, after) if before is not None and after is not None else None


def run_transport(
    settings: DemoSettings,
    processes: TransportProcesses,
    chromium: str | None = None,
    on_progress: ProgressCallback | None = None,
    on_phase: PhaseCallback | None = None,
) -> TransportRun:
    """One transport's turn with its started ``processes`` (see the module's description);
    they are left running, to be stopped by :func:`stop_processes`."""
    demo, server, proxy = processes.demo, processes.server, processes.proxy
    browser: BrowserCost | None = None
    screenshot: bytes | None = None
    if on_phase is not None:
        on_phase(demo.key, "running")
    server_before, proxy_before = _settled(server.pid, proxy.process.pid)
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
    if on_phase is not None:
        on_phase(demo.key, "closing")
    wait_until_closed(processes.capture, settings.connect_timeout)
    server_samples = _samples(server_before, server.pid)
    proxy_samples = _samples(proxy_before, proxy.process.pid)
    counts = server.counts()
    if on_phase is not None:
        on_phase(demo.key, "done")
    return TransportRun(
        demo=demo,
        tally=tally,
        capture=processes.capture,
        proxy_report=processes.proxy_report,
        server_samples=server_samples,
        proxy_samples=proxy_samples,
        server_counts=counts,
        browser=browser,
        screenshot=screenshot,
    )


def stop_processes(settings: DemoSettings, runs: list[TransportRun], started: list[TransportProcesses]) -> None:
    """Stop every transport's processes at once; each run is given its proxy's last CPU times
    and what went wrong stopping it (:meth:`TransportProcesses.stop_measured`)."""
    with ThreadPoolExecutor(max_workers=max(1, len(started))) as pool:
        stops = list(pool.map(lambda processes: processes.stop_measured(settings.connect_timeout), started))
    for run, (stopped, final) in zip(runs, stops, strict=True):
        run.proxy_final = final
        run.problem = f"{run.demo.transport}: {stopped}" if stopped else None
