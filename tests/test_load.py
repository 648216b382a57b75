"""Load at CI size through the real proxy (``tests/load.py`` runs it at full size).

100 WebSocket connections held open together, 20 numbered echoes each, with
10 SSE clients and 10 pollers reading the demo feed at the same time: no
message lost or reordered, and the report (replayed from the capture) counts
exactly what the clients sent and received. The proxy lifts its own limit on
open files, so a low soft limit does not cap the connections it can hold.
"""

from __future__ import annotations

import resource
import shutil
from pathlib import Path

import httpx
import pytest
from load import LoadSettings, run_load
from servers import DEADLINE, AppServer, CheckoutProxyProcess, free_port, open_file_descriptors

from inspector.proxy_process import proxy_arguments, rtinspect_command

CI_SIZE = LoadSettings(
    connections=100,
    messages=20,
    sse_clients=10,
    pollers=10,
    feed_messages=40,
    feed_rate=40.0,
    timeout=120.0,
)


def test_load_at_ci_size_loses_nothing_and_the_report_counts_it_exactly(confdir: Path, tmp_path: Path) -> None:
    result = run_load(CI_SIZE, tmp_path, confdir)
    print(result.summary())
    assert result.problems == []
    clients = result.clients
    assert (clients.websocket_sent, clients.websocket_received) == (2_000, 2_000)
    assert clients.sse_events == 10 * (40 + 1)  # every feed message and the end event
    assert result.held == 120
    # Two sockets a connection: the client's and the upstream's.
    assert result.fds_when_held >= 2 * result.held


def open_files_limit(pid: int) -> tuple[int, int]:
    """The soft and hard limits on open files of process ``pid``."""
    with open(f"/proc/{pid}/limits", encoding="ascii") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError(f"no open-files limit in /proc/{pid}/limits")


@pytest.mark.skipif(shutil.which("prlimit") is None, reason="needs prlimit (util-linux) to lower the proxy's limit")
def test_the_proxy_lifts_a_low_open_file_limit(app_server: AppServer, confdir: Path) -> None:
    held = 100
    low = 64
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4 * held:
        pytest.skip(f"the hard limit on open files ({hard}) is too low to hold {held} connections")
    port = free_port()
    command = rtinspect_command(*proxy_arguments(app_server.url, port=port, confdir=confdir))
    proxy = CheckoutProxyProcess(["prlimit", f"--nofile={low}:{hard}", *command], port, None)
    try:
        proxy.wait_listening()
        assert open_files_limit(proxy.process.pid)[0] > low
        clients = [httpx.Client(base_url=proxy.url, timeout=DEADLINE) for _ in range(held)]
        try:
            for client in clients:
                assert client.get("/plain").status_code == 200
            # Every keep-alive connection is still open, through the proxy to the server.
            assert open_file_descriptors(proxy.process.pid) > 2 * held > low
        finally:
            for client in clients:
                client.close()
    finally:
        assert proxy.stop() == 0, proxy.stderr
