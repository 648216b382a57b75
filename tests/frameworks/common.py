"""What the harnesses share: the tally and Node processes (an ASGI server in a thread, the
loopback address and the waits are tests/servers.py's)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from servers import DEADLINE, wait_until

NODE_DIR = Path(__file__).resolve().parent / "node"


@dataclass
class Tally:
    """What one side's handlers received and sent.

    ``received`` and ``sent`` count application messages as the handlers saw
    them; ``control`` counts what the framework itself reports of the rest
    (``"ping received"``, ``"pong sent"``, ``"puback received"``, ...), where it
    reports anything.
    """

    received: int = 0
    sent: int = 0
    control: Counter[str] = field(default_factory=Counter)
    #: Anything else the side reported (the transport it ended on, the payloads it got, ...).
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        return cls(
            received=int(data["received"]),
            sent=int(data["sent"]),
            control=Counter({str(k): int(v) for k, v in data.get("control", {}).items()}),
            details=dict(data.get("details", {})),
        )


# -- Node


def node_missing() -> str | None:
    """Why the Node harnesses cannot run here (a reason saying "is not installed"), or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (NODE_DIR / "node_modules").is_dir():
        return f"{NODE_DIR / 'node_modules'} is not installed (npm ci in {NODE_DIR})"
    return None


def node_command(script: str, *args: str) -> list[str]:
    return ["node", str(NODE_DIR / script), *args]


class NodeProcess:
    """A Node script that talks one JSON object a line: the first line it prints
    says it is ready (``{"port": N}``); each ``tally`` line written to it is
    answered with its tally; closing its standard input stops it."""

    def __init__(self, script: str, *args: str) -> None:
        self.script = script
        self.process = subprocess.Popen(
            node_command(script, *args),
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._stderr: list[str] = []
        threading.Thread(target=self._read, args=(self.process.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.process.stderr, self._stderr), daemon=True).start()
        self.ready = self._next_line("its ready line")

    def _read(self, stream: IO[str] | None, into: list[str]) -> None:
        assert stream is not None
        for line in stream:
            with self._lock:
                into.append(line)

    def _next_line(self, what: str) -> dict[str, Any]:
        def arrived() -> bool:
            if self.process.poll() is not None and not self._lines:
                raise AssertionError(f"{self.script} exited: {''.join(self._stderr)}")
            return bool(self._lines)

        wait_until(arrived, f"{what} from {self.script}")
        with self._lock:
            return dict(json.loads(self._lines.pop(0)))

    def ask(self, request: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        return self._next_line(f"the answer to {request}")

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(DEADLINE)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(DEADLINE)

    @property
    def errors(self) -> str:
        return "".join(self._stderr)


def run_node_client(script: str, *args: str, timeout: float = DEADLINE) -> dict[str, Any]:
    """Run a Node client script to the end; its last line of output is its JSON tally."""
    done = subprocess.run(
        node_command(script, *args),
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )
    if done.returncode != 0:
        raise AssertionError(f"{script} failed with status {done.returncode}: {done.stderr}{done.stdout}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))
