"""A throwaway RabbitMQ node (Debian's ``rabbitmq-server``) with its Web STOMP
and Web MQTT plugins, listening on 127.0.0.1 only, with its data in a
temporary directory. Starting one takes about ten seconds."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from servers import LOOPBACK

#: Seconds a node may take to start listening (it takes about ten on two busy cores).
START_DEADLINE = 60.0


def rabbitmq_missing() -> str | None:
    """Why RabbitMQ cannot run here (a reason saying "is not installed"), or None."""
    if not Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists():
        return "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
    return None


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), timeout=0.5):
        return True
    return False


def _descendants(pid: int) -> list[int]:
    """The processes started, directly or not, by process ``pid`` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End the node and every process its script started (the Debian script runs
    the Erlang VM as another user in a session of its own), by their ids."""
    pids = [*reversed(_descendants(process.pid)), process.pid]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    try:
        process.wait(20)
        for pid in pids:
            deadline = time.monotonic() + 20
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
    except subprocess.TimeoutExpired:
        for pid in [*_descendants(process.pid), process.pid]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        process.wait(20)


@dataclass
class RabbitMQ:
    stomp_url: str
    mqtt_url: str
    start_seconds: float


@contextlib.contextmanager
def rabbitmq_node() -> Iterator[RabbitMQ]:
    """A RabbitMQ node with Web STOMP at ``http://127.0.0.1:P/ws`` and Web MQTT at
    ``http://127.0.0.1:Q/ws``; stopped (its process group ended) on exit."""
    # The script behind Debian's wrapper, which would switch to the rabbitmq user.
    executable = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    base = Path(tempfile.mkdtemp(prefix="rtinspect-rabbitmq-"))
    stomp, mqtt, amqp, dist = _free_port(), _free_port(), _free_port(), _free_port()
    (base / "rabbitmq.conf").write_text(
        f"listeners.tcp.default = {LOOPBACK}:{amqp}\n"
        f"web_stomp.tcp.ip = {LOOPBACK}\nweb_stomp.tcp.port = {stomp}\n"
        f"web_mqtt.tcp.ip = {LOOPBACK}\nweb_mqtt.tcp.port = {mqtt}\n"
        "loopback_users = none\n"
        # Only the WebSocket listeners: the plain STOMP and MQTT ports (61613, 1883) stay free.
        "stomp.listeners.tcp = none\nmqtt.listeners.tcp = none\n"
    )
    (base / "enabled_plugins").write_text("[rabbitmq_web_stomp,rabbitmq_web_mqtt].\n")
    environment = {
        **os.environ,
        "HOME": str(base),
        "RABBITMQ_NODENAME": f"rtinspect{os.getpid()}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": LOOPBACK,
        "RABBITMQ_DIST_PORT": str(dist),
        "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
        "RABBITMQ_LOG_BASE": str(base / "log"),
        "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
    }
    output = (base / "output.log").open("wb")
    started = time.monotonic()
    process = subprocess.Popen(
        [executable],
        env=environment,
        cwd=base,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    try:
        # The listeners open before the node has finished booting; it says when it has.
        while not (_listening(stomp) and _listening(mqtt) and b"completed with" in (base / "output.log").read_bytes()):
            if process.poll() is not None or time.monotonic() - started > START_DEADLINE:
                log = (base / "output.log").read_text(errors="replace")[-2000:]
                raise AssertionError(f"RabbitMQ did not start: {log}")
            time.sleep(0.1)
        yield RabbitMQ(f"http://{LOOPBACK}:{stomp}/ws", f"http://{LOOPBACK}:{mqtt}/ws", time.monotonic() - started)
    finally:
        _stop(process)
        output.close()
        shutil.rmtree(base, ignore_errors=True)
