"""Every TCP connection counts: one its client closes before sending a byte is in
the proxy's report as it is in a packet capture's of the same traffic.

mitmproxy hands a connection to its layers only once the client speaks; the
addon records the others when their client goes. dumpcap, watching the
client's leg on loopback, is the independent account.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from oracles import ORACLE_MISSING
from servers import DEADLINE, LOOPBACK, AppServer, running_proxy, wait_until

from inspector.replay import report_from_captures


def _dumpcap(port: int, target: Path) -> subprocess.Popen[bytes]:
    dumpcap = shutil.which("dumpcap")
    if dumpcap is None:
        pytest.skip(f"dumpcap {ORACLE_MISSING} (apt-get install tshark)")
    process = subprocess.Popen(
        [dumpcap, "-q", "-i", "lo", "-f", f"tcp port {port}", "-w", str(target)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_until(lambda: target.exists() and target.stat().st_size > 0, "dumpcap to start writing")
    time.sleep(0.3)
    return process


def test_a_connection_closed_before_its_first_byte_is_counted_by_the_proxy_and_by_pcap_import(
    app_server: AppServer, confdir: Path, tmp_path: Path
) -> None:
    capture, pcap = tmp_path / "proxy.rtcap", tmp_path / "client-leg.pcapng"
    with running_proxy(app_server.url, confdir=confdir, capture=capture) as proxy:
        watcher = _dumpcap(proxy.port, pcap)
        try:
            socket.create_connection((LOOPBACK, proxy.port), timeout=DEADLINE).close()
            assert httpx.get(f"{proxy.url}/plain", timeout=DEADLINE).status_code == 200
            time.sleep(0.5)
        finally:
            watcher.terminate()
            watcher.wait(DEADLINE)
    proxied = report_from_captures([capture])
    imported = report_from_captures([pcap], server_ports=[proxy.port])
    assert proxied.connection_count == imported.connection_count == 2
    idle = [c for c in proxied.connections if c.wire_bytes.total == 0]
    assert len(idle) == 1 and idle[0].close_reason == "client closed"
    assert sum(t.tcp_connects for t in proxied.transports.values()) == sum(
        t.tcp_connects for t in imported.transports.values()
    )
