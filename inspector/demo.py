"""``rtinspect demo``: the experiment, end to end, on this machine.

The demo server (in a thread) offers one feed over every transport; the
rtinspect proxy (a child process) relays to it and records a capture; one real
client per transport reads the whole feed through the proxy, all at once, with
the same message count, rate and size. Then the capture is reported like any
other, with rules that pin the demo's paths to their transports, next to what
the clients themselves measured: messages received, lost and duplicated, and
delivery latency (receipt time minus the server's ``sent_at``; server and
clients share this machine's clock).

Choices that keep the measurement clean:

- Every client connects before the feed starts, so none of them pays for
  connecting during the feed. The start request goes to the server directly,
  not through the proxy, so it is not part of the measured traffic. A poll asks
  for everything after the last message it has, so it cannot miss one; it
  counts as connected once its first request is on its way.
- The proxy is stopped with SIGTERM only after the capture shows every
  connection closed, so the capture ends with each connection's own close.
- Python clients (``websockets``, ``httpx``) behave as browsers do: WebSocket
  without keep-alive pings, polls over one keep-alive connection.
- ``--browser`` drives the demo page in headless Chromium instead and reads its
  results over the DevTools protocol while the page runs in real time. No
  ``--virtual-time-budget``: virtual time would make the page's latencies
  (and the feed's pacing as the page sees it) meaningless. There, the page
  loads and starts the feed through the proxy, so those requests appear in
  the report as ``http``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from rich.console import Console, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websocket_connect
from websockets.exceptions import ConnectionClosed

from demo_server.app import FEED_ENDED_HEADER, create_app
from demo_server.run import serve_in_thread
from demo_server.sse import END_EVENT

from .capture import CaptureError, ConnectionClosed as CaptureClosed, ConnectionOpened, read_capture
from .classify import TransportRule
from .render import render
from .render.json import quantiles_to_dict
from .render.table import TEXT_WIDTH, table_renderables
from .render.units import MISSING, human_bytes
from .replay import analyze_captures
from .report import Report
from .sse import SseStream
from .stats import Distribution
from .summary import build_report

LOOPBACK = "127.0.0.1"
#: Seconds for any one connection, start-up or shutdown step.
CONNECT_TIMEOUT = 15.0
#: Seconds the capture may take to show every connection closed (it is flushed once a second).
CLOSE_TIMEOUT = 5.0
#: Seconds a run may take beyond the feed's own duration and one poll interval.
DEADLINE_SLACK = 20.0
#: Seconds between reads of the page's state in browser mode.
PAGE_POLL = 0.25
#: The page clamps shorter short-polling intervals to this many seconds.
PAGE_MIN_POLL_INTERVAL = 0.05
BROWSER_WINDOW = (1280, 900)
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
CHROMIUM_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
)
PROXY_ENTRY = "from inspector.cli import main; main(prog_name='rtinspect')"
CLIENTS_FORMAT = "rtinspect-demo-clients"


class DemoError(Exception):
    """The demo could not run; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class DemoTransport:
    """One of the demo's transports: its short name, the server path and the report's name for it."""

    key: str
    path: str
    transport: str


TRANSPORTS = (
    DemoTransport("ws", "/ws", "websocket"),
    DemoTransport("sse", "/sse", "sse"),
    DemoTransport("stream", "/stream", "http_stream"),
    DemoTransport("longpoll", "/longpoll", "long_poll"),
    DemoTransport("poll", "/poll", "short_poll"),
)
TRANSPORT_KEYS = tuple(t.key for t in TRANSPORTS)
_BY_KEY = {t.key: t for t in TRANSPORTS}

#: The demo's paths pinned to their transports; the page and the feed's control
#: requests (made through the proxy in browser mode only) are plain ``http``.
DEMO_RULES = (
    *(TransportRule.parse(f"{t.path}={t.transport}") for t in TRANSPORTS),
    TransportRule.parse("/feed/*=http"),
    TransportRule.parse("/=http"),
)


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What ``rtinspect demo`` was asked to do.

    ``poll_interval`` is the pause between short polls in seconds;
    ``compression`` lets WebSocket use permessage-deflate; ``proxy_options``
    are mitmproxy ``key=value`` options for the proxy (e.g. ``confdir=...``).
    """

    output: Path
    count: int = 200
    rate: float = 20.0
    size: int = 256
    transports: tuple[str, ...] = TRANSPORT_KEYS
    poll_interval: float = 1.0
    compression: bool = True
    browser: bool = False
    chromium: str | None = None
    proxy_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.count < 1:
            raise DemoError("--count must be at least 1")
        if self.rate <= 0:
            raise DemoError("--rate must be positive")
        if self.size < 0:
            raise DemoError("--size must not be negative")
        if self.poll_interval < 0:
            raise DemoError("--poll-interval must not be negative")
        unknown = [key for key in self.transports if key not in _BY_KEY]
        if unknown or not self.transports:
            raise DemoError(f"--transports: choose from {','.join(TRANSPORT_KEYS)} (got {','.join(self.transports)})")
        if self.browser and set(self.transports) != set(TRANSPORT_KEYS):
            raise DemoError("--transports cannot be combined with --browser: the page runs every transport")
        if self.browser and self.poll_interval < PAGE_MIN_POLL_INTERVAL:
            raise DemoError(f"--poll-interval: the page polls at most every {PAGE_MIN_POLL_INTERVAL * 1000:g} ms")

    @property
    def selected(self) -> tuple[DemoTransport, ...]:
        """The transports to run, in report order."""
        return tuple(t for t in TRANSPORTS if t.key in self.transports)

    @property
    def deadline(self) -> float:
        """Seconds the clients may take once the feed starts: its duration plus slack."""
        return self.count / self.rate + self.poll_interval + DEADLINE_SLACK


def default_output_folder(now: datetime.datetime | None = None) -> Path:
    """``./rtinspect-demo-YYYYmmdd-HHMMSS``, with a suffix if that folder exists."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    folder = Path(f"rtinspect-demo-{stamp}")
    number = 2
    while folder.exists():
        folder = Path(f"rtinspect-demo-{stamp}-{number}")
        number += 1
    return folder


# -- what a client measured


ProgressCallback = Callable[[str, int], None]
"""Told ``(transport key, messages received so far)`` as messages arrive."""


@dataclass
class ClientTally:
    """What one transport's client received, counted by the client itself.

    ``deliveries`` counts server-to-client messages as the report counts them
    (WebSocket messages, SSE events including the final ``end`` event, NDJSON
    lines, poll responses that carried data); None where the client cannot
    say (the page in browser mode). Latencies are in milliseconds.
    """

    demo: DemoTransport
    expected: int
    received: int = 0
    duplicates: int = 0
    deliveries: int | None = 0
    requests: int = 0
    error: str | None = None
    latency_ms: Distribution = field(default_factory=Distribution)
    on_progress: ProgressCallback | None = None
    _seen: set[int] = field(default_factory=set, repr=False)

    @property
    def lost(self) -> int:
        return max(0, self.expected - self.received)

    def message(self, seq: int, sent_at: float, at: float) -> None:
        """One feed message, received at ``at`` (seconds since the epoch)."""
        if seq in self._seen:
            self.duplicates += 1
            return
        self._seen.add(seq)
        self.received += 1
        self.latency_ms.add((at - sent_at) * 1000)
        if self.on_progress is not None:
            self.on_progress(self.demo.key, self.received)

    def delivered(self, messages: list[dict[str, Any]], at: float) -> None:
        """One server-to-client message on the wire, carrying these feed messages."""
        if self.deliveries is not None:
            self.deliveries += 1
        for message in messages:
            self.message(int(message["seq"]), float(message["sent_at"]), at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.demo.path,
            "received": self.received,
            "lost": self.lost,
            "duplicates": self.duplicates,
            "deliveries": self.deliveries,
            "requests": self.requests,
            "latency_ms": quantiles_to_dict(self.latency_ms.summary()),
            "error": self.error,
        }


# -- the proxy


def free_port() -> int:
    """A TCP port on the loopback address that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


class ProxyProcess:
    """``rtinspect proxy`` in a child process, relaying to ``upstream`` and recording ``capture``."""

    def __init__(self, upstream: str, capture: Path, options: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self._log: IO[bytes] = tempfile.TemporaryFile()
        sets = [arg for option in options for arg in ("--set", option)]
        command = [sys.executable, "-c", PROXY_ENTRY, "proxy", upstream, "-p", str(self.port), "-q", "-w", str(capture), *sets]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def wait_listening(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Return once the proxy accepts connections. A connection that carries no
        bytes is never recorded, so these probes leave no trace in the capture."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise DemoError(f"the proxy exited with status {self.process.returncode}: {self.last_line()}")
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), timeout=1):
                return
            if time.monotonic() > deadline:
                raise DemoError(f"the proxy did not listen on port {self.port} within {timeout:g} s")
            time.sleep(0.05)

    def stop(self) -> str | None:
        """SIGTERM, so the proxy closes the capture; a one-line problem, or None if it stopped cleanly."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(CONNECT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return f"the proxy did not stop within {CONNECT_TIMEOUT:g} s of SIGTERM and was killed"
            return None if status == 0 else f"the proxy exited with status {status}: {self.last_line()}"
        finally:
            self._log.close()

    def last_line(self) -> str:
        """The last line the proxy printed (its error, when it failed)."""
        self._log.seek(0)
        lines = [line.strip() for line in self._log.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else "no output"


def wait_until_closed(capture: Path, timeout: float = CLOSE_TIMEOUT) -> bool:
    """Wait until the capture shows every connection it recorded as closed; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _all_closed(capture):
            return True
        time.sleep(0.2)
    return False


def _all_closed(capture: Path) -> bool:
    opened: set[int] = set()
    closed: set[int] = set()
    try:
        with read_capture(capture) as records:
            for record in records:
                if isinstance(record, ConnectionOpened):
                    opened.add(record.connection_id)
                elif isinstance(record, CaptureClosed):
                    closed.add(record.connection_id)
    except (CaptureError, OSError):
        return False
    return bool(opened) and opened <= closed


# -- Python clients, one per transport


def _http_client() -> httpx.AsyncClient:
    """One keep-alive connection, no proxy from the environment, no read timeout
    (the run's deadline bounds waiting)."""
    return httpx.AsyncClient(
        trust_env=False,
        timeout=httpx.Timeout(CONNECT_TIMEOUT, read=None),
        limits=httpx.Limits(max_connections=1),
    )


def _expect_ok(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise DemoError(f"{response.request.url.path}: HTTP {response.status_code}")


async def websocket_client(base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/ws``: one connection, a text message per feed message, then a normal close."""
    url = "ws" + base.removeprefix("http") + tally.demo.path
    async with websocket_connect(
        url,
        compression="deflate" if settings.compression else None,
        proxy=None,
        ping_interval=None,
        max_size=None,
        open_timeout=CONNECT_TIMEOUT,
    ) as connection:
        tally.requests += 1
        connected.set()
        async for text in connection:
            tally.delivered([json.loads(text)], time.time())


async def sse_client(base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/sse``: one response, an event per feed message, then the ``end`` event."""
    async with _http_client() as client, client.stream(
        "GET", base + tally.demo.path, headers={"Accept": "text/event-stream"}
    ) as response:
        tally.requests += 1
        _expect_ok(response)
        connected.set()
        events = SseStream()
        async for chunk in response.aiter_bytes():
            for event in events.feed(chunk, time.time()):
                tally.delivered([] if event.type == END_EVENT else [json.loads(event.data)], event.timestamp)


async def stream_client(base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/stream``: one chunked response, an NDJSON line per feed message."""
    async with _http_client() as client, client.stream("GET", base + tally.demo.path) as response:
        tally.requests += 1
        _expect_ok(response)
        connected.set()
        async for line in response.aiter_lines():
            if line.strip():
                tally.delivered([json.loads(line)], time.time())


async def _poll(base: str, tally: ClientTally, connected: asyncio.Event, pause: float) -> None:
    """Ask for everything after the last message held, until the feed has ended;
    ``pause`` seconds between requests."""
    after = 0
    async with _http_client() as client:
        while True:
            connected.set()
            response = await client.get(base + tally.demo.path, params={"after": after})
            tally.requests += 1
            if response.status_code == 200:
                messages = response.json()
                tally.delivered(messages, time.time())
                after = max([after, *(int(message["seq"]) for message in messages)])
            elif response.status_code == 204:
                if response.headers.get(FEED_ENDED_HEADER) == "1":
                    return
            else:
                _expect_ok(response)
            if pause:
                await asyncio.sleep(pause)


async def long_poll_client(base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/longpoll?after=``: each request is held until there is news; asks again at once."""
    await _poll(base, tally, connected, 0.0)


async def short_poll_client(base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """``/poll?after=``: answered at once; asks again every ``poll_interval`` seconds."""
    await _poll(base, tally, connected, settings.poll_interval)


Client = Callable[[str, ClientTally, asyncio.Event, DemoSettings], Awaitable[None]]
CLIENTS: dict[str, Client] = {
    "ws": websocket_client,
    "sse": sse_client,
    "stream": stream_client,
    "longpoll": long_poll_client,
    "poll": short_poll_client,
}


def _describe(error: BaseException) -> str:
    """One line for a client's failure: our own message, else the exception's type and text."""
    text = str(error)
    if isinstance(error, DemoError) or not text:
        return text or type(error).__name__
    return f"{type(error).__name__}: {text}"


async def _run_client(client: Client, base: str, tally: ClientTally, connected: asyncio.Event, settings: DemoSettings) -> None:
    """Run one client; a failure is recorded in its tally, never raised."""
    try:
        await client(base, tally, connected, settings)
    except Exception as error:  # noqa: BLE001 - any failure is that client's result
        tally.error = _describe(error)
    finally:
        connected.set()


async def start_feed(server_url: str) -> None:
    """``POST /feed/start``, straight to the server."""
    async with httpx.AsyncClient(trust_env=False, timeout=CONNECT_TIMEOUT) as client:
        response = await client.post(server_url + "/feed/start")
        if response.status_code != 200:
            raise DemoError(f"starting the feed: HTTP {response.status_code}")


async def run_python_clients(
    settings: DemoSettings, server_url: str, proxy_url: str, on_progress: ProgressCallback | None = None
) -> dict[str, ClientTally]:
    """Connect a client per transport through the proxy, start the feed, and
    wait (at most ``settings.deadline``) until every client has finished."""
    tallies = {t.key: ClientTally(t, settings.count, on_progress=on_progress) for t in settings.selected}
    connected = {key: asyncio.Event() for key in tallies}
    tasks = {
        key: asyncio.create_task(_run_client(CLIENTS[key], proxy_url, tally, connected[key], settings))
        for key, tally in tallies.items()
    }
    try:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await asyncio.gather(*(event.wait() for event in connected.values()))
        except TimeoutError:
            raise DemoError(f"the clients did not connect through the proxy within {CONNECT_TIMEOUT:g} s") from None
        await start_feed(server_url)
        _, late = await asyncio.wait(tasks.values(), timeout=settings.deadline)
        for key, task in tasks.items():
            if task in late:
                tallies[key].error = f"did not finish within {settings.deadline:g} s"
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
    return tallies


# -- the page in headless Chromium


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium (or Chrome) executable: ``explicit`` if given, else the first on PATH."""
    if explicit:
        return shutil.which(explicit)
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class DevTools:
    """A connection to Chromium's DevTools protocol: commands and their answers (events are ignored)."""

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str) -> DevTools:
        connection = await websocket_connect(
            url, proxy=None, compression=None, ping_interval=None, max_size=None, open_timeout=CONNECT_TIMEOUT
        )
        return cls(connection)

    async def call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send a command (to a page's ``session``, if given) and return its result."""
        self._next_id += 1
        ident = self._next_id
        answer = asyncio.get_running_loop().create_future()
        self._waiting[ident] = answer
        command: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session is not None:
            command["sessionId"] = session
        await self._connection.send(json.dumps(command))
        async with asyncio.timeout(CONNECT_TIMEOUT):
            reply = await answer
        if "error" in reply:
            raise DemoError(f"Chromium refused {method}: {reply['error'].get('message', reply['error'])}")
        return reply.get("result", {})

    async def _read(self) -> None:
        try:
            async for text in self._connection:
                reply = json.loads(text)
                answer = self._waiting.pop(reply["id"], None) if "id" in reply else None
                if answer is not None and not answer.done():
                    answer.set_result(reply)
        except ConnectionClosed:
            pass
        finally:
            for answer in self._waiting.values():
                if not answer.done():
                    answer.set_exception(DemoError("the DevTools connection to Chromium closed"))
            self._waiting.clear()

    async def close(self) -> None:
        await self._connection.close()
        await asyncio.gather(self._reader, return_exceptions=True)


class Chromium:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, process: asyncio.subprocess.Process, devtools: DevTools, session: str) -> None:
        self.process = process
        self.devtools = devtools
        self.session = session

    @classmethod
    async def launch(cls, executable: str, profile: Path) -> Chromium:
        """Start Chromium with a fresh ``profile`` folder and attach to its blank page."""
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0"]
        flags.append("--window-size={},{}".format(*BROWSER_WINDOW))
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            flags.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox.
        log_path = profile.parent / f"{profile.name}.log"
        with open(log_path, "wb") as log:
            process = await asyncio.create_subprocess_exec(
                executable, *flags, "about:blank", stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            url = await _devtools_url(process, profile, log_path)
            devtools = await DevTools.connect(url)
            targets = await devtools.call("Target.getTargets")
            page = next(t for t in targets["targetInfos"] if t["type"] == "page")
            attached = await devtools.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        except BaseException:
            await _end_process(process)
            raise
        browser = cls(process, devtools, attached["sessionId"])
        width, height = BROWSER_WINDOW
        await browser.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        return browser

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        return await self.devtools.call(method, self.session, **params)

    async def open(self, url: str) -> None:
        await self.call("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page."""
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise DemoError(f"the page failed: {result['exceptionDetails'].get('text', 'exception')}")
        return result["result"].get("value")

    async def screenshot(self) -> bytes:
        """The page as it looks now, as PNG."""
        result = await self.call("Page.captureScreenshot", format="png")
        return base64.b64decode(result["data"])

    async def close(self) -> None:
        """Close the browser (and so its connections); killed if it does not exit."""
        with contextlib.suppress(DemoError, ConnectionClosed, TimeoutError):
            await self.devtools.call("Browser.close")
        await self.devtools.close()
        await _end_process(self.process)


async def _devtools_url(process: asyncio.subprocess.Process, profile: Path, log_path: Path) -> str:
    """The browser's DevTools address, from the file Chromium writes once it listens."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + CONNECT_TIMEOUT
    while time.monotonic() < deadline:
        if process.returncode is not None:
            lines = log_path.read_text(errors="replace").strip().splitlines()
            raise DemoError(f"Chromium exited with status {process.returncode}: {lines[-1] if lines else 'no output'}")
        with contextlib.suppress(OSError):
            lines = port_file.read_text().split()
            if len(lines) == 2:
                return f"ws://{LOOPBACK}:{lines[0]}{lines[1]}"
        await asyncio.sleep(0.05)
    raise DemoError(f"Chromium did not open its DevTools port within {CONNECT_TIMEOUT:g} s")


async def _end_process(process: asyncio.subprocess.Process) -> None:
    try:
        await asyncio.wait_for(process.wait(), CONNECT_TIMEOUT)
    except TimeoutError:
        process.kill()
        await process.wait()


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


# -- the run


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
        proxy = ProxyProcess(server.url, files.capture, settings.proxy_options)
        try:
            proxy.wait_listening()
            if chromium is not None:
                clients, screenshot = asyncio.run(run_browser_clients(settings, chromium, proxy.url, on_progress))
            else:
                clients = asyncio.run(run_python_clients(settings, server.url, proxy.url, on_progress))
            wait_until_closed(files.capture)
        finally:
            stopped = proxy.stop()
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
        analysis = analyze_captures([capture])
    except (CaptureError, OSError) as error:
        raise DemoError(f"cannot read the capture {capture}: {error}") from None
    return build_report(analysis.records, rules=DEMO_RULES, sources=(str(capture),), notes=analysis.notes)


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


# -- what the command prints


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
            f"{tally.received:,} / {tally.expected:,}",
            Text(f"{tally.lost:,}", style="bold red" if tally.lost else ""),
            f"{tally.duplicates:,}",
            f"{tally.requests:,}",
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
