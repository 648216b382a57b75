"""Where ``rtinspect proxy`` spends its CPU under one workload: a sampling profile with py-spy.

    .venv/bin/python -m bench.profile_proxy [--workload ws-echo-64] [--seconds 5] [--nowrite]

Starts the upstream server and ``rtinspect proxy -q -w TEMP`` under
``py-spy record`` (``pip install py-spy``; without it, under cProfile, which
slows Python code down several times and so overstates it), drives the
workload for ``--seconds``, stops the proxy and prints:

- the share of busy samples spent in (below) a few functions that matter:
  the addon hook, the analyzer, the parsers, capture writing, mitmproxy's
  hook dispatch, socket writes;
- the functions with the most samples of their own.

Only samples taken while the event loop was serving count (start-up imports
do not). ``--report CAPTURE`` profiles ``rtinspect report CAPTURE`` instead.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.peers import LOOPBACK, Upstream, free_port, wait_listening
from bench.table import render
from bench.workloads import WORKLOADS, run_trial

_PY_SPY = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
_KEY_FUNCTIONS = (
    ("RtInspect.relayed", "the addon's work per read, all of it"),
    ("RtInspect.tcp_message", "the addon's hook, all of it"),
    ("ConnectionAnalyzer.feed", "per-connection accounting"),
    ("WebSocketStream.feed", "WebSocket frame parser"),
    ("Http1Parser.feed", "HTTP/1.1 parser (h11)"),
    ("SseStream.feed", "SSE parser"),
    ("_Exchange.message", "per-message figures (distributions, time line)"),
    ("CaptureWriter.write", "capture writing"),
    ("AddonManager.trigger_event", "mitmproxy hook dispatch, addons included"),
    ("_SelectorSocketTransport.write", "socket writes"),
    ("ConnectionAnalyzer.close", "closing a connection's record"),
    ("analyze_captures", "replaying the capture"),
    ("build_report", "building the report"),
)
_SERVING = ("BaseEventLoop.run_forever", "analyze_captures", "build_report")


def folded_summary(path: Path, top: int) -> tuple[int, list[list[str]], list[list[str]]]:
    """Busy samples while serving; rows for the key functions and for the top self-time functions."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if not any(f.startswith(_SERVING) for f in frames):
            continue
        n = int(count)
        total += n
        names = {f.split(" (", 1)[0] for f in frames}
        for name in names:
            inclusive[name] += n
        own[re.sub(r":\d+\)$", ")", frames[-1])] += n
    key_rows = [
        [name, what, f"{inclusive[name] / total:.1%}"] for name, what in _KEY_FUNCTIONS if total and inclusive[name]
    ]
    top_rows = [[name, f"{n / total:.1%}"] for name, n in own.most_common(top)] if total else []
    return total, key_rows, top_rows


def profile_command(command: list[str], output: Path, rate: int, py_spy: bool) -> subprocess.Popen[bytes]:
    if py_spy:
        return subprocess.Popen(
            [_PY_SPY, "record", "-r", str(rate), "-f", "raw", "-o", str(output), "--", *command],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    return subprocess.Popen(
        [command[0], "-m", "cProfile", "-o", str(output), *command[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as children:
            return [int(child) for child in children.read().split()]
    except OSError:
        return []


def print_profile(output: Path, top: int, fmt: str, py_spy: bool) -> None:
    if py_spy:
        total, key_rows, top_rows = folded_summary(output, top)
        print(f"# py-spy: {total:,} busy samples while serving")
        print()
        print(render(("function", "what", "share (inclusive)"), key_rows, fmt))
        print()
        print(render(("function (own samples)", "share"), top_rows, fmt))
    else:
        import pstats

        print("# cProfile: the top functions by own time")
        pstats.Stats(str(output)).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile_proxy", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", default="ws-echo-64", choices=list(WORKLOADS))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--nowrite", action="store_true", help="run the proxy without -w (no capture)")
    parser.add_argument("--report", metavar="CAPTURE", help="profile rtinspect report CAPTURE instead")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--cprofile", action="store_true", help="use cProfile even where py-spy is installed")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    args = parser.parse_args(argv)
    py_spy = bool(_PY_SPY) and not args.cprofile
    workdir = Path(tempfile.mkdtemp(prefix="rtinspect-bench-profile-"))
    output = workdir / ("profile.folded" if py_spy else "profile.pstats")
    python = [sys.executable, "-m", "inspector"]

    if args.report:
        process = profile_command(
            [*python, "report", args.report, "-f", "json", "-o", str(workdir / "r.json")], output, args.rate, py_spy
        )
        if process.wait() != 0:
            raise SystemExit(f"profiling rtinspect report failed ({process.returncode})")
        print(f"# rtinspect report {args.report}")
        print_profile(output, args.top, args.format, py_spy)
        shutil.rmtree(workdir, ignore_errors=True)
        return

    upstream = Upstream.start()
    port = free_port()
    command = [
        *python,
        "proxy",
        f"http://{LOOPBACK}:{upstream.port}",
        "-p",
        str(port),
        "-q",
        "--set",
        f"confdir={workdir / 'confdir'}",
    ]
    if not args.nowrite:
        command += ["-w", str(workdir / "profile.rtcap")]
    process = profile_command(command, output, args.rate, py_spy)
    try:
        wait_listening(port, process, "rtinspect proxy under the profiler")
        trial = asyncio.run(run_trial(WORKLOADS[args.workload], port, None, 0.5, args.seconds))
    finally:
        children = _children(process.pid)
        # py-spy writes its profile on SIGINT; cProfile once the proxy returns from SIGTERM.
        process.send_signal(signal.SIGINT if py_spy else signal.SIGTERM)
        process.wait(60)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGTERM)
        upstream.stop()
    print(
        f"# rtinspect proxy{' (no capture)' if args.nowrite else ''}, {args.workload}: "
        f"{trial.rate:,.0f} {WORKLOADS[args.workload].unit}/s under the profiler"
    )
    print_profile(output, args.top, args.format, py_spy)
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
