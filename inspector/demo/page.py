"""``--browser``: the demo page in headless Chromium is the client of every transport.

Its results are read over the DevTools protocol while the page runs in real
time. No ``--virtual-time-budget``: virtual time would make the page's
latencies (and the feed's pacing as the page sees it) meaningless. The page
loads and starts the feed through the proxy, so those requests appear in the
report as ``http``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from .chromium import CHROMIUM_NAMES, Chromium, find_chromium
from .settings import CONNECT_TIMEOUT, DemoError, DemoSettings
from .tally import ClientTally, ProgressCallback

#: Seconds between reads of the page's state in browser mode.
PAGE_POLL = 0.25
PAGE_STATE = "window.rtinspectDemo ? JSON.stringify(window.rtinspectDemo) : null"


def page_url(proxy_url: str, settings: DemoSettings) -> str:
    """The demo page through the proxy, starting at once, polling at the demo's interval."""
    return f"{proxy_url}/?autostart=1&poll={round(settings.poll_interval * 1000)}"


def require_chromium(settings: DemoSettings) -> str:
    """The Chromium executable for ``--browser``; DemoError if there is none."""
    executable = find_chromium(settings.chromium)
    if executable is None:
        wanted = settings.chromium or " or ".join(CHROMIUM_NAMES[:3])
        raise DemoError(f"--browser needs Chromium, and {wanted} was not found on PATH")
    return executable


async def run_browser_clients(
    settings: DemoSettings, executable: str, proxy_url: str, on_progress: ProgressCallback | None = None
) -> tuple[dict[str, ClientTally], bytes]:
    """Open the demo page in Chromium (``executable``) through the proxy and wait
    (at most ``settings.deadline`` plus a page load) until every transport is
    done. Returns what the page measured and a screenshot of it."""
    with tempfile.TemporaryDirectory(prefix="rtinspect-chromium-") as folder:
        browser = await Chromium.launch(executable, Path(folder) / "profile")
        try:
            await browser.open(page_url(proxy_url, settings))
            state, finished = await _watch_page(browser, settings, on_progress)
            screenshot = await browser.screenshot()
        finally:
            await browser.close()
    return page_tallies(state, settings, finished), screenshot


async def _watch_page(
    browser: Chromium, settings: DemoSettings, on_progress: ProgressCallback | None
) -> tuple[dict[str, Any], bool]:
    """The page's final state, and whether every transport finished in time."""
    deadline = time.monotonic() + settings.deadline + CONNECT_TIMEOUT
    state: dict[str, Any] = {}
    while True:
        text = await browser.evaluate(PAGE_STATE)
        state = json.loads(text) if text else {}
        transports = state.get("transports", {})
        if on_progress is not None:
            for key, figures in transports.items():
                on_progress(key, int(figures["received"]))
        if transports and all(t["done"] or t["state"] == "error" for t in transports.values()):
            return state, True
        if time.monotonic() > deadline:
            return state, False
        await asyncio.sleep(PAGE_POLL)


def page_tallies(state: dict[str, Any], settings: DemoSettings, finished: bool = True) -> dict[str, ClientTally]:
    """What the page measured (``window.rtinspectDemo``), as client tallies.
    The page does not count poll responses or SSE events apart from messages,
    so ``deliveries`` is None."""
    tallies: dict[str, ClientTally] = {}
    transports = state.get("transports", {})
    for demo in settings.selected:
        tally = ClientTally(demo, settings.count, deliveries=None)
        figures = transports.get(demo.key)
        if figures is None:
            tally.error = "the page did not run it"
        else:
            tally.received = int(figures["received"])
            tally.duplicates = int(figures["duplicates"])
            tally.requests = int(figures["requests"])
            for latency in figures["latencies"]:
                tally.latency_ms.add(float(latency) * 1000)
            if figures["state"] == "error":
                tally.error = figures.get("error") or "failed in the page"
            elif not figures["done"]:
                tally.error = "did not finish in time" if not finished else "did not finish"
        tallies[demo.key] = tally
    return tallies
