"""The demo server in a child process of its own (:mod:`demo_server.child`), one per transport.

A fresh process per transport means the server's CPU time and memory during
that transport's run are that transport's. The run talks to it over its
standard input and output, not over TCP, so the server counts only the
clients' connections and requests.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import tempfile
from typing import IO, Any

from .settings import CONNECT_TIMEOUT, START_TIMEOUT, DemoError, DemoSettings


class ServerProcess:
    """``python -m demo_server.child`` with the run's feed, listening on a free loopback port."""

    def __init__(self, settings: DemoSettings) -> None:
        command = [
            sys.executable,
            "-m",
            "demo_server.child",
            "--count",
            str(settings.count),
            "--rate",
            repr(settings.rate),
            "--size",
            str(settings.size),
        ]
        if not settings.compression:
            command.append("--no-ws-compression")
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1
        )
        try:
            hello = self._answer("start up", START_TIMEOUT)
        except DemoError:
            self.stop()
            raise
        self.url: str = hello["url"]
        self.pid: int = int(hello["pid"])

    def _answer(self, what: str, timeout: float = CONNECT_TIMEOUT) -> dict[str, Any]:
        """The next line the server prints, as JSON; DemoError if none comes within ``timeout`` seconds."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise DemoError(f"the demo server did not {what} within {timeout:g} s: {self.error_output()}")
        return json.loads(line)

    def _command(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        except OSError:
            raise DemoError(f"the demo server has exited: {self.error_output()}") from None
        return self._answer(f"answer {command!r}")

    def start_feed(self) -> None:
        self._command("start")

    def counts(self) -> dict[str, Any]:
        """Connections and requests the server has handled since :meth:`restart_counts`
        (:class:`demo_server.counting.ServerCounts`)."""
        return self._command("stats")

    def restart_counts(self) -> None:
        """Count from now on."""
        self._command("restart")

    def error_output(self) -> str:
        self._stderr.seek(0)
        lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else "no output"

    def stop(self) -> None:
        """End the feed and the server; killed if it has not exited within the timeout."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write("stop\n")
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(CONNECT_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                try:
                    stream.close()
                except OSError:
                    pass
        self._stderr.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
