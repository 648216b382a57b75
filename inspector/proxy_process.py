"""``rtinspect proxy`` as a child process on a loopback port, for tests and scripts.

A proxy in a separate process behaves as users run it (its own event loop,
signals, exit status), and stopping it with SIGTERM closes its capture the way
Ctrl-C does; :func:`wait_until_closed` first waits for the capture to show each
connection's own close. Every wait here is bounded.
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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Self

LOOPBACK = "127.0.0.1"
#: Seconds a proxy may take to start listening or to stop.
DEADLINE = 20.0
#: Seconds a capture may take to show every connection closed (the proxy flushes it once a second).
CLOSE_TIMEOUT = 5.0


#: Linux's lists of TCP sockets; a listening socket's state is 0A.
_TCP_TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
_LISTEN = "0A"


def listening(port: int) -> bool | None:
    """Whether a socket of this machine listens on TCP ``port``, read from the
    system's socket tables; None where there are none to read."""
    found = False
    readable = False
    for table in _TCP_TABLES:
        try:
            with open(table, encoding="ascii") as lines:
                next(lines, None)
                readable = True
                for line in lines:
                    fields = line.split()
                    if len(fields) > 3 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        found = True
        except OSError:
            continue
    return found if readable else None


class ProxyProcessError(Exception):
    """The proxy did not start or stop as asked; the message says why, with its output."""


def free_port(host: str = LOOPBACK) -> int:
    """A port on ``host`` that nothing uses right now, on TCP or on UDP (a proxy
    to an HTTPS upstream listens on both)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as tcp, socket.socket(family, socket.SOCK_DGRAM) as udp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind((host, port))
            except OSError:
                continue
            return port


def rtinspect_command(*args: str) -> list[str]:
    """The command line that runs ``rtinspect ARGS`` with this Python."""
    return [sys.executable, "-m", "inspector", *args]


def proxy_arguments(
    upstream: str | None,
    *args: str,
    port: int,
    confdir: str | os.PathLike[str] | None = None,
    capture: str | os.PathLike[str] | None = None,
    options: Iterable[str] = (),
    quiet: bool = True,
) -> list[str]:
    """``proxy [UPSTREAM] -p PORT [--set confdir=DIR] [--set OPTION]... ARGS [-q] [-w CAPTURE]``.

    ``confdir`` holds mitmproxy's CA; creating one takes a moment, so share it
    between proxies where you can. ``options`` are mitmproxy options as
    ``key=value``.
    """
    arguments = ["proxy", *([upstream] if upstream else []), "-p", str(port)]
    if confdir is not None:
        arguments += ["--set", f"confdir={os.fspath(confdir)}"]
    arguments += [arg for option in options for arg in ("--set", option)]
    arguments += args
    if quiet:
        arguments.append("-q")
    if capture is not None:
        arguments += ["-w", os.fspath(capture)]
    return arguments


class ProxyProcess:
    """A proxy command running as a child process, listening on ``LOOPBACK:port``.

    Its output goes to temporary files, readable as :attr:`stdout` and
    :attr:`stderr` at any time (in full once it has stopped) until :meth:`close`.
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

    @classmethod
    def rtinspect(
        cls,
        upstream: str | None,
        *args: str,
        confdir: str | os.PathLike[str] | None = None,
        capture: Path | None = None,
        options: Iterable[str] = (),
        quiet: bool = True,
    ) -> Self:
        """``rtinspect proxy`` (see :func:`proxy_arguments`) on a free port, started;
        :meth:`wait_listening` waits until it accepts connections."""
        port = free_port()
        arguments = proxy_arguments(
            upstream, *args, port=port, confdir=confdir, capture=capture, options=options, quiet=quiet
        )
        return cls(rtinspect_command(*arguments), port, capture)

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
        """Return once the proxy accepts connections. Where the system lists its
        listening sockets (Linux's /proc), that list is read: the proxy records
        every TCP connection, an idle one too, so a probe would be in the capture."""
        end = time.monotonic() + deadline
        while True:
            if self.process.poll() is not None:
                status = self.process.returncode
                raise ProxyProcessError(f"the proxy exited with status {status}: {self.error_output()}")
            listed = listening(self.port)
            if listed:
                return
            if listed is None:
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

    @property
    def output(self) -> str:
        """Everything it printed: standard output, then standard error."""
        return self.stdout + self.stderr

    def error_output(self) -> str:
        """What an error about the proxy quotes of its output: its standard error."""
        return self.stderr.strip()

    def close(self) -> None:
        """Close the files that hold its output; it cannot be read after this."""
        self._stdout.close()
        self._stderr.close()


def wait_until_closed(capture: Path, timeout: float = CLOSE_TIMEOUT) -> bool:
    """Wait until the capture shows every connection it recorded as closed; False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _all_closed(capture):
            return True
        time.sleep(0.2)
    return False


def _all_closed(capture: Path) -> bool:
    # Imported here: the pytest plugin imports this module and leaves the core to first use.
    from .capture import CaptureError, ConnectionClosed, ConnectionOpened, read_capture

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
