"""``rtinspect proxy`` as a child process on a loopback port, for tests and scripts.

A proxy in a separate process behaves as users run it (its own event loop,
signals, exit status), and stopping it with SIGTERM closes its capture the way
Ctrl-C does. Every wait here is bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

LOOPBACK = "127.0.0.1"
#: Seconds a proxy may take to start listening or to stop.
DEADLINE = 20.0


class ProxyProcessError(Exception):
    """The proxy did not start or stop as asked; the message says why, with its output."""


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def rtinspect_command(*args: str) -> list[str]:
    """The command line that runs ``rtinspect ARGS`` with this Python."""
    return [sys.executable, "-m", "inspector", *args]


def proxy_arguments(
    upstream: str | None,
    *args: str,
    port: int,
    confdir: str | os.PathLike[str] | None = None,
    capture: str | os.PathLike[str] | None = None,
    quiet: bool = True,
) -> list[str]:
    """``proxy [UPSTREAM] -p PORT [--set confdir=DIR] ARGS [-q] [-w CAPTURE]``.

    ``confdir`` holds mitmproxy's CA; creating one takes a moment, so share it
    between proxies where you can.
    """
    arguments = ["proxy", *([upstream] if upstream else []), "-p", str(port)]
    if confdir is not None:
        arguments += ["--set", f"confdir={os.fspath(confdir)}"]
    arguments += args
    if quiet:
        arguments.append("-q")
    if capture is not None:
        arguments += ["-w", os.fspath(capture)]
    return arguments


class ProxyProcess:
    """A proxy command running as a child process, listening on ``LOOPBACK:port``.

    Its output goes to temporary files, readable as :attr:`stdout` and
    :attr:`stderr` at any time (in full once it has stopped).
    """

    def __init__(
        self,
        command: Sequence[str],
        port: int,
        capture: Path | None = None,
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> None:
        self.port = port
        self.capture = capture
        self._stdout: IO[bytes] = tempfile.TemporaryFile()
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            list(command),
            env=dict(env) if env is not None else None,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=self._stderr,
        )

    @property
    def url(self) -> str:
        """Where HTTP clients connect."""
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def ws_url(self) -> str:
        """Where WebSocket clients connect."""
        return f"ws://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def wait_listening(self, deadline: float = DEADLINE) -> None:
        """Return once the proxy accepts connections. A connection that carries no
        bytes is never recorded, so the probes leave no trace in a capture."""
        end = time.monotonic() + deadline
        while True:
            if self.process.poll() is not None:
                status = self.process.returncode
                raise ProxyProcessError(f"the proxy exited with status {status}: {self.stderr.strip()}")
            with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, self.port), timeout=1):
                return
            if time.monotonic() > end:
                raise ProxyProcessError(f"the proxy did not listen on port {self.port} within {deadline:g} s")
            time.sleep(0.02)

    def stop(self, signum: int = signal.SIGTERM, deadline: float = DEADLINE) -> int:
        """Send ``signum`` (unless it has exited) and return the exit status.
        A proxy still running after ``deadline`` seconds is killed and reported."""
        if self.process.poll() is None:
            self.process.send_signal(signum)
        try:
            return self.process.wait(deadline)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(deadline)
            raise ProxyProcessError(f"the proxy did not stop within {deadline:g} s of signal {signum}") from None

    @staticmethod
    def _read(file: IO[bytes]) -> str:
        file.seek(0)
        return file.read().decode(errors="replace")

    @property
    def stdout(self) -> str:
        return self._read(self._stdout)

    @property
    def stderr(self) -> str:
        return self._read(self._stderr)
