"""``--browser``: the demo page in headless Chromium is the client.

Its results are read over the DevTools protocol while the page runs in real
time. No ``--virtual-time-budget``: virtual time would make the page's
latencies (and the feed's pacing as the page sees it) meaningless. The page
loads through the proxy, so those requests appear in the report as ``http``.

In the plain demo each transport has a page of its own, in a Chromium of its
own, one after another (:func:`run_transport_page`): the page connects its one
transport, the run starts the feed, clicks the page at a steady pace while the
feed runs, and reads what the page cost (:mod:`.browser_cost`).

With ``--http2`` two Chromiums read the feed at once through the TLS proxy
(each accepting mitmproxy's CA by its key, ``--ignore-certificate-errors-spki-list``):
one with ``--disable-http2`` (HTTP/1.1 for everything) and one as it comes,
which speaks h2 for the page, EventSource, fetch and, since the server's
SETTINGS allow it, WebSocket. ``--http3`` adds a third, with QUIC forced for the
proxy's origin (:func:`.chromium.http3_flags`): h3 for the page, EventSource,
fetch and WebSocket (RFC 9220), and the page adds its WebTransport transports.
Every page connects every transport first; then the run starts the feed
straight at the server, so no page is late.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from . import browser_cost
from .browser_cost import BrowserCost
from .chromium import CHROMIUM_NAMES, Chromium, find_chromium, http3_flags, spki_fingerprint
from .clients import Target, start_feed
from .settings import CLICK_INTERVAL, CONNECT_TIMEOUT, H3, HTTP1, DemoError, DemoSettings, DemoTransport
from .tally import ClientTally, ProgressCallback, client_label

#: Seconds between reads of the page's state in browser mode.
PAGE_POLL = 0.25
PAGE_STATE = "window.rtinspectDemo ? JSON.stringify(window.rtinspectDemo) : null"
#: What the run reads while the feed runs: a few numbers per transport, not the page's latencies.
PAGE_PROGRESS = (
    "window.rtinspectDemo ? JSON.stringify(Object.fromEntries(Object.entries(window.rtinspectDemo.transports)"
    ".map(([key, t]) => [key, {received: t.received, done: t.done, state: t.state}]))) : null"
)


#: Page states of a transport that has connected (or given up).
CONNECTED_STATES = frozenset({"live", "done", "error", "retrying"})


def page_url(
    proxy_url: str, settings: DemoSettings, start_feed: bool = True, transport: DemoTransport | None = None
) -> str:
    """The demo page through the proxy, starting at once, polling at the demo's interval, its
    message log ``settings.page_rows`` long; without ``start_feed`` it connects its transports
    and leaves starting the feed to the run; with ``transport``, that one only."""
    url = f"{proxy_url}/?autostart=1&poll={round(settings.poll_interval * 1000)}&rows={settings.page_rows}"
    if transport is not None:
        url += f"&transports={transport.key}"
    return url if start_feed else url + "&startfeed=0"


def require_chromium(settings: DemoSettings) -> str:
    """The Chromium executable for ``--browser``; DemoError if there is none."""
    executable = find_chromium(settings.chromium)
    if executable is None:
        wanted = settings.chromium or " or ".join(CHROMIUM_NAMES[:3])
        raise DemoError(f"--browser needs Chromium, and {wanted} was not found on PATH")
    return executable


async def run_browser_clients(
    settings: DemoSettings,
    executable: str,
    server: Target,
    proxy: Target,
    on_progress: ProgressCallback | None = None,
) -> tuple[dict[str, ClientTally], dict[str | None, bytes]]:
    """``--http2`` and ``--http3``: the demo page in a Chromium per protocol (``executable``), all
    through the ``proxy`` and connected before the feed starts on the ``server``; wait (at most
    ``settings.deadline`` plus a page load) until every transport is done. Returns what the
    pages measured, keyed by :attr:`ClientTally.label`, and a screenshot of each protocol's page."""
    if proxy.ca is None:
        raise DemoError(f"--browser {settings.mode} needs the proxy's CA certificate")
    spki = spki_fingerprint(proxy.ca)
    browsers: dict[str, Chromium] = {}
    with tempfile.TemporaryDirectory(prefix="rtinspect-chromium-") as folder:
        try:
            for protocol in settings.protocols:
                assert protocol is not None
                flags = [f"--ignore-certificate-errors-spki-list={spki}"]
                if protocol == HTTP1:
                    flags.append("--disable-http2")
                elif protocol == H3:
                    flags = list(http3_flags(proxy.base.removeprefix("https://"), proxy.ca))
                profile = Path(folder) / f"profile-{protocol.replace('/', '')}"
                browsers[protocol] = await Chromium.launch(executable, profile, flags)
            for browser in browsers.values():
                await browser.open(page_url(proxy.base, settings, start_feed=False))
            await _wait_connected(list(browsers.values()))
            await start_feed(server)
            watched = await asyncio.gather(
                *(
                    _watch_page(browser, settings, _progress_for(protocol, on_progress))
                    for protocol, browser in browsers.items()
                )
            )
            screenshots: dict[str | None, bytes] = {p: await b.screenshot() for p, b in browsers.items()}
        finally:
            await asyncio.gather(*(browser.close() for browser in browsers.values()), return_exceptions=True)
    per_protocol = [
        page_tallies(state, settings, finished, protocol)
        for protocol, (state, finished) in zip(browsers, watched, strict=True)
    ]
    # In report order: each transport's clients together, HTTP/1.1 first.
    tallies = {
        tally.label: tally
        for demo in settings.selected
        for page in per_protocol
        for tally in page.values()
        if tally.demo == demo
    }
    return tallies, screenshots


def _progress_for(protocol: str, on_progress: ProgressCallback | None) -> ProgressCallback | None:
    """Progress of one protocol's page, told with its clients' labels."""
    if on_progress is None:
        return None
    return lambda key, received: on_progress(client_label(key, protocol), received)


async def _wait_connected(browsers: list[Chromium]) -> bool:
    """Until every page has connected every transport, at most ``CONNECT_TIMEOUT`` seconds;
    after that the feed starts anyway (the pages ask for everything from the start, so
    they miss nothing, but their first latencies include connecting). Whether they connected."""
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while time.monotonic() < deadline:
        states = [await browser.evaluate(PAGE_STATE) for browser in browsers]
        if all(text and _connected(json.loads(text)) for text in states):
            return True
        await asyncio.sleep(PAGE_POLL / 5)
    return False


def _connected(state: dict[str, Any]) -> bool:
    transports = state.get("transports", {})
    return (
        bool(state.get("started"))
        and bool(transports)
        and all(figures["state"] in CONNECTED_STATES for figures in transports.values())
    )


async def _watch_page(
    browser: Chromium, settings: DemoSettings, on_progress: ProgressCallback | None
) -> tuple[dict[str, Any], bool]:
    """The page's final state, and whether every transport finished in time."""
    deadline = time.monotonic() + settings.deadline + CONNECT_TIMEOUT
    while True:
        text = await browser.evaluate(PAGE_PROGRESS)
        transports = json.loads(text) if text else {}
        if on_progress is not None:
            for key, figures in transports.items():
                on_progress(key, int(figures["received"]))
        finished = bool(transports) and all(t["done"] or t["state"] == "error" for t in transports.values())
        if finished or time.monotonic() > deadline:
            text = await browser.evaluate(PAGE_STATE)
            return (json.loads(text) if text else {}), finished
        await asyncio.sleep(PAGE_POLL)


async def run_transport_page(
    settings: DemoSettings,
    executable: str,
    demo: DemoTransport,
    proxy: Target,
    start: Callable[[], Awaitable[None]],
    on_progress: ProgressCallback | None = None,
) -> tuple[ClientTally, BrowserCost | None, bytes]:
    """One transport in a page of its own, in a Chromium of its own, through the ``proxy``:
    once the page has connected, ``start`` the feed, click the page every
    :data:`~.settings.CLICK_INTERVAL` seconds while the feed runs, and wait (at most
    ``settings.deadline`` plus a page load) until the transport is done. Returns what the page
    measured, what it cost the page (None if the page never connected) and a screenshot."""
    with tempfile.TemporaryDirectory(prefix="rtinspect-chromium-") as folder:
        browser = await Chromium.launch(executable, Path(folder) / "profile")
        try:
            await browser.call("Performance.enable")
            await browser.open(page_url(proxy.base, settings, start_feed=False, transport=demo))
            connected = await _wait_connected([browser])
            where = tuple(json.loads(await browser.evaluate(browser_cost.CLICK_TARGET)))
            heap_before = await browser_cost.heap_after_gc(browser)
            before = await browser_cost.metrics(browser)
            await start()
            clicking = asyncio.create_task(
                browser_cost.click_for(browser, (where[0], where[1]), settings.feed_seconds, CLICK_INTERVAL)
            )
            try:
                state, finished = await _watch_page(browser, settings, on_progress)
                await clicking
            finally:
                clicking.cancel()
            after = await browser_cost.metrics(browser)
            heap_after = await browser_cost.heap_after_gc(browser)
            interactions = json.loads(await browser.evaluate(browser_cost.PAGE_INTERACTIONS))
            screenshot = await browser.screenshot()
        finally:
            await browser.close()
    cost = (
        BrowserCost.from_readings(
            before,
            after,
            heap_before,
            heap_after,
            int(interactions["count"]),
            [float(d) for d in interactions["durations"]],
        )
        if connected
        else None
    )
    tally = page_tallies(state, settings, finished)[demo.key]
    return tally, cost, screenshot


def page_tallies(
    state: dict[str, Any], settings: DemoSettings, finished: bool = True, protocol: str | None = None
) -> dict[str, ClientTally]:
    """What the page measured (``window.rtinspectDemo``), as client tallies keyed by
    their labels; ``protocol`` is the one that page's Chromium was to speak.
    The page does not count poll responses or SSE events apart from messages,
    so ``deliveries`` is None."""
    tallies: dict[str, ClientTally] = {}
    transports = state.get("transports", {})
    for demo in (d for d in settings.selected if protocol in settings.protocols_of(d)):
        tally = ClientTally(demo, settings.count, deliveries=None, protocol=protocol)
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
        tallies[tally.label] = tally
    return tallies
