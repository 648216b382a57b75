"""Every benchmark in bench/ runs end to end at a tiny size and prints its table.

These check that the benchmarks work (peers start, workloads complete, the
tools agree on what they counted), not how fast anything is: figures from a
few hundred milliseconds on a shared machine mean nothing, so none is
asserted.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def bench(module: str, *args: str, timeout: float = 60) -> str:
    """Run ``python -m bench.MODULE ARGS`` from the repository root; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"bench.{module} exited with {done.returncode}:\n{done.stderr[-3000:]}"
    print(done.stdout)
    return done.stdout


def test_throughput_runs_every_workload_against_every_peer() -> None:
    out = bench("throughput", "--rounds", "1", "--seconds", "0.1", "--warmup", "0.1")
    for peer in ("direct", "mitmdump-tcp", "mitmdump-http", "rtinspect"):
        assert peer in out
    for workload in ("ws-echo-64", "ws-echo-64k", "ws-push-1k-deflate", "sse-1k", "poll-64", "ws-connect"):
        assert f"\n{workload} " in out
    assert "p50 µs" in out
    assert "rtinspect ≥ 0.85× mitmdump-tcp" in out


def test_memory_reads_the_proxy_rss() -> None:
    out = bench(
        "memory",
        "--messages",
        "2000",
        "--polls",
        "200",
        "--connections",
        "20",
        "--churn",
        "20",
        "--peers",
        "rtinspect",
        "--open-peers",
        "rtinspect",
    )
    assert "one WebSocket connection, 2,000 echoes" in out
    assert "one keep-alive HTTP connection, 200 short polls" in out
    assert "20 WebSocket connections open at once" in out
    assert "rtinspect RSS flat over 2,000 messages" in out


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_report_speed_agrees_with_tshark() -> None:
    out = bench("report_speed", "--scale", "0.002", "--runs", "1")
    assert "rtinspect report" in out and "tshark -z io,stat" in out and "tshark -T fields" in out
    assert "- counts agree: yes" in out


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_report_speed_of_one_websocket_connection_both_paths() -> None:
    out = bench("report_speed", "--websocket-connection", "500", "--runs", "1", "--no-fields", "--pure")
    assert "one WebSocket connection" in out and "rtinspect report -j 1 pure" in out
    assert "- counts agree: yes" in out


def test_percentiles_compare_with_exact_quantiles() -> None:
    out = bench("percentiles", "--values", "3000", "--against", str(ROOT))
    assert "lognormal sizes" in out and "50,000 adds" in out


def test_profile_names_the_hot_spots() -> None:
    out = bench("profile_proxy", "--workload", "ws-echo-64", "--seconds", "1")
    assert "rtinspect proxy, ws-echo-64" in out
    assert "WebSocketStream.feed" in out or "tottime" in out


def test_network_conditions_measure_every_condition() -> None:
    out = bench("network", "--rounds", "1", "--echoes", "3", "--bytes", "20000")
    for condition in ("rtt 100 jitter 20", "down 1mbit", "up 1mbit", "4g", "transatlantic"):
        assert f"\n{condition} " in out
    assert "0.02 MB download" in out
