"""``rtinspect proxy`` as a child process that records the demo's capture.

The proxy is stopped with SIGTERM only after the capture shows every connection
closed, so the capture ends with each connection's own close.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

from ..capture import CaptureError, ConnectionClosed, ConnectionOpened, read_capture
from ..proxy_process import free_port, rtinspect_command
from .settings import CONNECT_TIMEOUT, LOOPBACK, DemoError

#: Seconds the capture may take to show every connection closed (it is flushed once a second).
CLOSE_TIMEOUT = 5.0


class RecordingProxy:
    """``rtinspect proxy`` in a child process, relaying to ``upstream`` and recording ``capture``."""

    def __init__(self, upstream: str, capture: Path, options: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self._log: IO[bytes] = tempfile.TemporaryFile()
        sets = [arg for option in options for arg in ("--set", option)]
        command = rtinspect_command("proxy", upstream, "-p", str(self.port), "-q", "-w", str(capture), *sets)
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
                elif isinstance(record, ConnectionClosed):
                    closed.add(record.connection_id)
    except (CaptureError, OSError):
        return False
    return bool(opened) and opened <= closed
