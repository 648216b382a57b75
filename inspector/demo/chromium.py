"""Headless Chromium, found on PATH, launched with a fresh profile and driven over the DevTools protocol."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as websocket_connect
from websockets.exceptions import ConnectionClosed

from .settings import CONNECT_TIMEOUT, LOOPBACK, DemoError

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


def spki_fingerprint(ca_cert: Path) -> str:
    """The base64 SHA-256 of a certificate's public key, as ``--ignore-certificate-errors-spki-list``
    takes it: Chromium then accepts certificates from that key (mitmproxy's CA) without trusting it
    system-wide."""
    certificate = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(key).digest()).decode("ascii")


def http3_flags(origin: str, ca_cert: Path) -> tuple[str, ...]:
    """Chromium's flags for HTTP/3 to ``origin`` (``HOST:PORT``) with no Alt-Svc first: QUIC
    forced for that origin, certificates from ``ca_cert``'s key accepted, WebSocket over
    HTTP/3 (RFC 9220) allowed. WebTransport needs no flag."""
    return (
        f"--origin-to-force-quic-on={origin}",
        f"--ignore-certificate-errors-spki-list={spki_fingerprint(ca_cert)}",
        "--enable-features=EnableWebsocketsOverHttp3",
    )


def find_chromium(explicit: str | None = None) -> str | None:
    """The Chromium (or Chrome) executable: ``explicit`` if given, else the first on PATH."""
    if explicit:
        return shutil.which(explicit)
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


class DevTools:
    """A connection to Chromium's DevTools protocol: commands and their answers, and the
    events of the methods someone :meth:`watch` es (the rest are ignored)."""

    def __init__(self, connection: ClientConnection) -> None:
        self._connection = connection
        self._next_id = 0
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._watched: list[tuple[frozenset[str], list[dict[str, Any]]]] = []
        self._reader = asyncio.create_task(self._read())

    def watch(self, *methods: str) -> list[dict[str, Any]]:
        """A list that collects, from now on, every event of these ``methods`` (``method``,
        ``params`` and ``sessionId`` as Chromium sent them)."""
        events: list[dict[str, Any]] = []
        self._watched.append((frozenset(methods), events))
        return events

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
                for methods, events in self._watched:
                    if reply.get("method") in methods:
                        events.append(reply)
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
    async def launch(cls, executable: str, profile: Path, extra_flags: Sequence[str] = ()) -> Chromium:
        """Start Chromium with a fresh ``profile`` folder (and ``extra_flags``) and attach to its blank page."""
        flags = [*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}", "--remote-debugging-port=0"]
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
        await browser.call(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
        )
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
