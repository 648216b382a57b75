"""The processes a benchmark starts on 127.0.0.1: the upstream server and the peers in front of it.

A peer is what the load generator connects to:

- ``direct``: the upstream itself, no proxy (the limit);
- ``mitmdump-tcp``: ``mitmdump --mode reverse:tcp://…``, no addon (mitmproxy's own relay floor);
- ``mitmdump-http``: ``mitmdump --mode reverse:http://…``, its HTTP and WebSocket layers
  (``stream_large_bodies=1``, or it holds a text/event-stream until the response ends);
- ``rtinspect``: ``rtinspect proxy http://… -q -w TEMP.rtcap --analysis inline``, inspecting (on the
  relay's path) and recording;
- ``rtinspect-process``: the same with ``--analysis process``: the relay records and hands the
  records to an analyser process (its CPU is counted apart, see :func:`inspector.processes.descendants_cpu_seconds`);
- ``rtinspect@DIR``: the same, with the ``inspector`` package found in DIR (to measure a change
  against the working tree, side by side).

Every mitmproxy runs with ``http2=false`` and a temporary confdir. Process
figures (CPU seconds, resident set size) come from ``/proc`` (:mod:`inspector.processes`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
PEERS = ("direct", "mitmdump-tcp", "mitmdump-http", "rtinspect", "rtinspect-process")
PROXIES = PEERS[1:]
_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen[bytes], what: str, deadline: float = 30.0) -> None:
    give_up = time.monotonic() + deadline
    while time.monotonic() < give_up:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode} before listening on {port}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} is not listening on {port} after {deadline:.0f} s")


@dataclass
class Process:
    """A child process serving on ``port``."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


class Upstream(Process):
    """``python -m bench.upstream`` on a free port."""

    @classmethod
    def start(cls) -> Upstream:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.upstream", "--port", "0"],
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert process.stdout is not None
        line = process.stdout.readline().decode()
        if not line.startswith("listening "):
            process.kill()
            raise RuntimeError(f"upstream server did not start: {line!r}")
        return cls("upstream", int(line.split()[1]), process)


@dataclass
class Peers:
    """The upstream and the chosen peers, all started; ``workdir`` holds confdir, logs and captures
    and is deleted by :meth:`stop`."""

    upstream: Upstream
    workdir: Path
    running: dict[str, Process | None] = field(default_factory=dict)

    def port(self, peer: str) -> int:
        proxy = self.running[peer]
        return self.upstream.port if proxy is None else proxy.port

    def pid(self, peer: str) -> int | None:
        proxy = self.running[peer]
        return None if proxy is None else proxy.pid

    def stop(self) -> None:
        """Stop every process and delete the work directory (captures grow to gigabytes)."""
        for proxy in self.running.values():
            if proxy is not None:
                proxy.stop()
        self.upstream.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_peer(name: str, upstream_port: int, workdir: Path) -> Process | None:
    """Start one peer in front of ``upstream_port``; ``direct`` starts nothing."""
    if name == "direct":
        return None
    port = free_port()
    env: dict[str, str] | None = None
    cwd: Path | None = None
    confdir = workdir / "confdir"
    confdir.mkdir(exist_ok=True)
    common = ["--listen-host", LOOPBACK, "-p", str(port), "--set", f"confdir={confdir}"]
    if name == "mitmdump-tcp":
        command = [
            str(_BIN / "mitmdump"),
            "-q",
            "--mode",
            f"reverse:tcp://{LOOPBACK}:{upstream_port}",
            *common,
            "--set",
            "http2=false",
        ]
    elif name == "mitmdump-http":
        command = [
            str(_BIN / "mitmdump"),
            "-q",
            "--mode",
            f"reverse:http://{LOOPBACK}:{upstream_port}",
            *common,
            "--set",
            "http2=false",
            "--set",
            "stream_large_bodies=1",
        ]
    elif name in ("rtinspect", "rtinspect-process"):
        command = [
            str(_BIN / "rtinspect"),
            "proxy",
            f"http://{LOOPBACK}:{upstream_port}",
            *common,
            "-q",
            "-w",
            str(workdir / f"{name}.rtcap"),
            "--analysis",
            "inline" if name == "rtinspect" else "process",
        ]
    elif name.startswith("rtinspect@"):
        # Another copy of the inspector package (a directory holding inspector/), to compare a change.
        tree = Path(name.partition("@")[2]).resolve()
        if not (tree / "inspector" / "__init__.py").is_file():
            raise ValueError(f"{name!r}: no inspector package in {tree}")
        command = [
            sys.executable,
            "-m",
            "inspector",
            "proxy",
            f"http://{LOOPBACK}:{upstream_port}",
            *common,
            "-q",
            "-w",
            str(workdir / f"rtinspect-{tree.name}.rtcap"),
        ]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        cwd = tree
    else:
        raise ValueError(f"unknown peer {name!r}: choose from {', '.join(PEERS)}")
    log = workdir / f"{name.replace('/', '_')}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd
        )
    peer = Process(name, port, process, log)
    try:
        wait_listening(port, process, name)
    except RuntimeError as e:
        process.kill()
        raise RuntimeError(f"{e}; log: {log.read_text(errors='replace')[-2000:]}") from None
    return peer


def start_peers(names: list[str] | tuple[str, ...]) -> Peers:
    """The upstream server and every peer in ``names``, listening."""
    workdir = Path(tempfile.mkdtemp(prefix="rtinspect-bench-"))
    upstream = Upstream.start()
    peers = Peers(upstream, workdir)
    try:
        for name in names:
            peers.running[name] = start_peer(name, upstream.port, workdir)
    except BaseException:
        peers.stop()
        raise
    return peers
