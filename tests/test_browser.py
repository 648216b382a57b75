"""The demo page in headless Chromium, through the rtinspect proxy.

A real browser negotiates what it negotiates (permessage-deflate for its
WebSocket, its own connection reuse for fetches), so these tests check that
the proxy's capture of a browser's traffic reports every transport, and they
save screenshots of the page and of the HTML report for people to look at:
under ``$RTINSPECT_ARTIFACTS`` when set, else in the test's temporary folder.

The page runs in real time (no ``--virtual-time-budget``) and its state is
read over the DevTools protocol, as ``rtinspect demo --browser`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from servers import DEADLINE, run_rtinspect, running_proxy

from demo_server.app import create_app
from demo_server.run import serve_in_thread
from inspector.capture import ConnectionOpened, read_capture
from inspector.demo import DemoSettings
from inspector.demo.chromium import Chromium, find_chromium
from inspector.demo.page import page_url
from inspector.demo.protocols import wire_connections

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (chromium, chromium-browser or google-chrome on PATH)"
)

COUNT = 20
RATE = 50.0
PAGE_TRANSPORTS = ("ws", "sse", "stream", "longpoll", "poll")
DEMO_RULES = ("/ws=websocket", "/sse=sse", "/stream=http_stream", "/longpoll=long_poll", "/poll=short_poll")


@pytest.fixture
def artifacts(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """Where this test leaves its screenshots."""
    root = os.environ.get("RTINSPECT_ARTIFACTS")
    folder = Path(root) / request.node.name if root else tmp_path / "artifacts"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def read_the_feed_in_chromium(url: str, profile: Path) -> tuple[dict[str, Any], bytes]:
    """Open ``url`` in headless Chromium and wait for the page to finish; its state and a screenshot."""
    assert CHROMIUM is not None
    browser = await Chromium.launch(CHROMIUM, profile)
    try:
        await browser.open(url)
        deadline = time.monotonic() + DEADLINE
        while True:
            state = await browser.evaluate(
                "window.rtinspectDemo && window.rtinspectDemo.done ? JSON.stringify(window.rtinspectDemo) : null"
            )
            if state is not None:
                return json.loads(state), await browser.screenshot()
            assert time.monotonic() < deadline, "the page did not finish"
            await asyncio.sleep(0.1)
    finally:
        await browser.close()


def screenshot_file(path: Path, out: Path, profile: Path) -> None:
    """A full-width screenshot of a local HTML file, by Chromium's own --screenshot."""
    assert CHROMIUM is not None
    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--no-first-run",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--hide-scrollbars",
            "--window-size=1280,2200",
            f"--screenshot={out}",
            path.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=DEADLINE,
    )
    assert out.stat().st_size > 0


def test_the_page_through_the_proxy_is_reported_per_transport(tmp_path: Path, confdir: Path, artifacts: Path) -> None:
    capture = tmp_path / "browser.rtcap"
    app = create_app(rate=RATE, count=COUNT, size=256, autostart=False)
    with serve_in_thread(app) as server, running_proxy(server.url, confdir=confdir, capture=capture) as proxy:
        settings = DemoSettings(output=tmp_path, count=COUNT, rate=RATE, poll_interval=0.2, browser=True)
        state, page_png = asyncio.run(read_the_feed_in_chromium(page_url(proxy.url, settings), tmp_path / "profile"))
        (artifacts / "page.png").write_bytes(page_png)
        assert proxy.stop() == 0

    assert state["done"] is True
    for key in PAGE_TRANSPORTS:
        figures = state["transports"][key]
        assert (key, figures["received"], figures["lost"], figures["duplicates"]) == (key, COUNT, 0, 0)

    rules = [arg for rule in DEMO_RULES for arg in ("--transport", rule)]
    done = run_rtinspect("report", str(capture), *rules, "-f", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    transports = report["transports"]
    assert {"websocket", "sse", "http_stream", "long_poll", "short_poll"} <= set(transports)
    websocket = transports["websocket"]
    assert websocket["connections"] == 1
    assert websocket["messages"]["server_to_client"] == COUNT
    # Chromium offers permessage-deflate and the demo server accepts it.
    assert websocket["compressed_messages"]["server_to_client"] > 0
    assert websocket["wire_payload_bytes"]["server_to_client"] < websocket["payload_bytes"]["server_to_client"]
    assert transports["sse"]["messages"]["server_to_client"] == COUNT + 1  # and the "end" event
    assert transports["http_stream"]["messages"]["server_to_client"] == COUNT
    # Every feed message came back in some poll response.
    for name in ("long_poll", "short_poll"):
        assert 1 <= transports[name]["messages"]["server_to_client"] <= COUNT
        assert transports[name]["payload_bytes"]["server_to_client"] >= websocket["payload_bytes"]["server_to_client"]
    # The page itself and its feed requests are plain HTTP.
    paths = {target.split("?")[0] for c in report["connections"] for target in c["targets"]}
    assert {"/", "/feed/status"} <= paths

    html = tmp_path / "report.html"
    done = run_rtinspect("report", str(capture), *rules, "-f", "html", "-o", str(html))
    assert done.returncode == 0, done.stderr
    screenshot_file(html, artifacts / "report.png", tmp_path / "report-profile")


#: The browser-cost run's feed: long enough for CLICK_INTERVAL's clicks to make at least 5 interactions.
COST_COUNT = 30
COST_RATE = 20.0
BROWSER_KEYS = {
    "layout_count",
    "recalc_style_count",
    "layout_ms",
    "recalc_style_ms",
    "script_ms",
    "task_ms",
    "js_heap_bytes",
    "inp_ms",
    "interactions",
}


def test_demo_browser_mode(tmp_path: Path, confdir: Path, artifacts: Path) -> None:
    """Each transport in a page of its own, one after another, and what each page cost."""
    output = tmp_path / "demo"
    done = run_rtinspect(
        "demo",
        "--browser",
        "--count",
        str(COST_COUNT),
        "--rate",
        str(COST_RATE),
        "--poll-interval",
        "0.2",
        "-o",
        str(output),
        "--set",
        f"confdir={confdir}",
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    clients = json.loads((output / "clients.json").read_text())
    report = json.loads((output / "report.json").read_text())
    assert clients["clients"] == "chromium" and clients["one_transport_at_a_time"] is True
    assert clients["page"]["ui_rows"] == 50
    for name, measured in clients["transports"].items():
        assert (name, measured["received"], measured["lost"], measured["error"]) == (name, COST_COUNT, 0, None)
        # The page ran in real time, so each message arrived after the server sent it.
        assert measured["latency_ms"]["count"] == COST_COUNT and measured["latency_ms"]["p50"] > 0, name

        browser = measured["browser"]
        assert BROWSER_KEYS <= set(browser), name
        for key in ("layout_count", "recalc_style_count", "interactions"):
            assert isinstance(browser[key], int) and browser[key] >= 0, (name, key, browser[key])
        for key in ("layout_ms", "recalc_style_ms", "script_ms", "task_ms"):
            assert browser[key] >= 0, (name, key, browser[key])
        assert isinstance(browser["js_heap_bytes"], int), name
        # Every message adds a row to the log and scrolls to it, which lays the log out: layout
        # work grows with the messages, at least one layout for each.
        assert browser["layout_count"] >= measured["received"], (name, browser)
        assert browser["layout_ms"] > 0 and browser["task_ms"] >= browser["layout_ms"], (name, browser)
        # INP is taken over the clicks sent while the feed ran, each one an interaction.
        assert browser["interactions"] >= 5, (name, browser)
        assert browser["inp_ms"] is not None and browser["inp_ms"] >= 0, (name, browser)
        assert browser["observed_interactions"] <= browser["interactions"], (name, browser)
        # The server and the proxy saw the page's own requests (the page, the feed's status) too.
        assert measured["server"]["requests"] >= measured["requests"], (name, measured["server"])
    assert set(clients["transports"]) <= set(report["transports"])
    assert report["transports"]["websocket"]["compressed_messages"]["server_to_client"] > 0
    assert "Clients (the page in Chromium)" in done.stdout
    assert "Clients: the page's cost in Chromium" in done.stdout
    assert "Browser: " in done.stdout
    for name in clients["transports"]:
        page = output / f"page-{name}.png"
        assert page.read_bytes().startswith(b"\x89PNG"), name
        (artifacts / f"demo-page-{name}.png").write_bytes(page.read_bytes())
    html = (output / "report.html").read_text()
    assert "main-thread time, by transport" in html and "CPU time per 1,000 feed messages" in html
    screenshot_file(output / "report.html", artifacts / "demo-report.png", tmp_path / "report-profile")


def test_demo_browser_mode_over_http2(tmp_path: Path, confdir: Path, artifacts: Path) -> None:
    """Two Chromiums at once through the TLS proxy: one with --disable-http2, one speaking h2 for the
    page, EventSource, fetch and WebSocket (RFC 8441, which Hypercorn's SETTINGS allow and the raw
    relay passes on)."""
    output = tmp_path / "demo"
    done = run_rtinspect(
        "demo",
        "--browser",
        "--http2",
        "--count",
        str(COUNT),
        "--rate",
        str(RATE),
        "--poll-interval",
        "0.2",
        "-o",
        str(output),
        "--set",
        f"confdir={confdir}",
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    clients = json.loads((output / "clients.json").read_text())
    report = json.loads((output / "report.json").read_text())
    assert clients["clients"] == "chromium" and clients["protocols"] == ["http/1.1", "h2"]
    for name, entry in clients["transports"].items():
        for protocol, measured in entry["by_protocol"].items():
            where = (name, protocol)
            assert (where, measured["received"], measured["lost"], measured["error"]) == (where, COUNT, 0, None)
    assert {"websocket", "sse", "http_stream", "long_poll", "short_poll"} <= set(report["transports"])

    capture = output / "capture.rtcap"
    with read_capture(capture) as records:
        alpn = {r.connection_id: r.tls.alpn for r in records if isinstance(r, ConnectionOpened)}
    wire = wire_connections(capture)
    assert not [c.problem for c in wire if c.problem]
    h2 = [c for c in wire if c.protocol == "h2" and c.requests]
    assert h2 and all(alpn[c.connection_id] == "h2" for c in h2)
    h2_paths = set().union(*(c.paths for c in h2))
    assert {"/", "/feed/status", "/ws", "/sse", "/stream", "/longpoll", "/poll"} <= h2_paths
    # WebSocket over h2: an extended CONNECT answered 200 (not 101), on a connection it shares.
    connects = [(c, r) for c in h2 for r in c.requests if r.method == "CONNECT"]
    assert [(r.protocol, r.path, r.status) for _, r in connects] == [("websocket", "/ws", "200")]
    assert {"/sse", "/stream"} <= connects[0][0].paths
    # Only the HTTP/1.1 Chromium sent an Upgrade; the h2 one did not fall back to HTTP/1.1 for WebSocket.
    http1 = [c for c in wire if c.protocol == "http/1.1"]
    assert all(alpn[c.connection_id] == "http/1.1" for c in http1)
    assert sum(c.websocket_upgrades for c in http1) == 1

    words = " ".join(done.stdout.split())
    assert "the demo page in two headless Chromiums, one over HTTP/1.1 and one over h2" in words
    assert "HTTP/1.1 and h2, side by side" in done.stdout and "Clients (the page in Chromium)" in done.stdout
    for protocol in ("http1.1", "h2"):
        page = output / f"page-{protocol}.png"
        assert page.read_bytes().startswith(b"\x89PNG")
        (artifacts / f"demo-page-{protocol}.png").write_bytes(page.read_bytes())
