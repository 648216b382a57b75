"""How fast ``rtinspect report`` reads a large capture, next to tshark reading the same traffic as a pcap.

    .venv/bin/python -m bench.report_speed [--scale 1] [--runs 3] [--capture FILE]

Writes a synthetic capture of ``scale`` × 1,000,000 WebSocket frames and
``scale`` × 100,000 HTTP exchanges (see bench/synthetic.py), or takes
``--capture`` (one recorded with ``rtinspect proxy -w``), and writes the same
byte streams as a pcap of synthetic TCP segments (see bench/pcap.py). Then,
alternating, ``runs`` times each:

- ``rtinspect report CAPTURE -f json --connections -j N``: WebSocket frames by kind,
  their payload, HTTP exchanges (the per-connection ``exchanges``), with N the
  machine's CPUs and with N = 1;
- ``tshark -q -z io,stat,0,...``: the same counts and sums over the pcap, in
  one pass (tshark's fastest way to answer);
- ``tshark -T fields -e websocket.payload_length ...``: one line per packet,
  summed here (the way one would get per-frame figures out of tshark);
- with ``--pure``, ``rtinspect report`` again with ``RTINSPECT_NO_EXTENSIONS=1``:
  the pure-Python parsers instead of the compiled ones.

``--websocket-connection N`` takes one WebSocket connection of N data frames
instead (chat: one frame per socket read, both ways), to measure the per-frame
cost of one big connection, which ``-j`` cannot share among processes.

Every command runs as a fresh process; its wall time, CPU time and peak RSS
are measured (CPU time includes ``-j`` worker processes; peak RSS is the
largest single process's). Frames per second and MB per second (TCP payload bytes, the
same for both files) are computed from the median wall time. The counts of
every run must agree with each other and, for a synthetic capture, with what
the generator wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.pcap import capture_to_pcap
from bench.synthetic import write_synthetic, write_websocket_connection
from bench.table import machine, median, number, ratio, render
from inspector.capture import ConnectionOpened, DataChunk, read_capture

_RTINSPECT = str(Path(sys.executable).parent / "rtinspect")
_IO_FIELDS = (
    ("COUNT", "websocket.opcode"),
    ("SUM", "websocket.payload_length"),
    ("COUNT", "websocket.payload_length_ext_16"),
    ("SUM", "websocket.payload_length_ext_16"),
    ("COUNT", "websocket.payload_length_ext_64"),
    ("SUM", "websocket.payload_length_ext_64"),
    ("COUNT", "http.request"),
)


@dataclass(frozen=True)
class Counts:
    """The answer each tool gives: WebSocket frames, their payload lengths summed, HTTP exchanges."""

    frames: int
    payload_bytes: int
    http_exchanges: int


@dataclass(frozen=True)
class Run:
    tool: str
    seconds: float
    cpu: float
    peak_rss: int
    counts: Counts


def _timed(
    command: list[str], stdout: int | None = subprocess.DEVNULL, env: dict[str, str] | None = None
) -> tuple[float, float, int, bytes]:
    """Run ``command``; wall seconds, CPU seconds, peak RSS in bytes, and its output if captured."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=stdout, stderr=subprocess.PIPE, env=env)
    # Read the pipes here, not with communicate(): wait4 must reap the process to get its usage.
    output = process.stdout.read() if process.stdout else b""
    errors = process.stderr.read() if process.stderr else b""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} exited with {process.returncode}: {errors.decode(errors='replace')[-2000:]}"
        )
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, output


def run_rtinspect(capture: Path, workdir: Path, jobs: int, *, pure: bool = False) -> Run:
    """``pure``: with the pure-Python parsers (``RTINSPECT_NO_EXTENSIONS=1``)."""
    out = workdir / "report.json"
    command = [_RTINSPECT, "report", str(capture), "-f", "json", "--connections", "-o", str(out), "-j", str(jobs)]
    seconds, cpu, peak, _ = _timed(command, env={**os.environ, "RTINSPECT_NO_EXTENSIONS": "1"} if pure else None)
    report = json.loads(out.read_text())
    ws = report["transports"].get("websocket")
    frames = payload = 0
    if ws:
        frames = sum(ws["frames"]["data"].values()) + sum(ws["frames"]["control"].values())
        payload = sum(ws["categories"]["payload"].values()) + sum(ws["categories"]["control"].values())
    exchanges = sum(c["exchanges"] for c in report["connections"])
    name = f"rtinspect report -j {jobs}" + (" pure" if pure else "")
    return Run(name, seconds, cpu, peak, Counts(frames, payload, exchanges))


def _decode_as(ports: set[int]) -> list[str]:
    return [arg for port in sorted(ports) for arg in ("-d", f"tcp.port=={port},http")]


def run_tshark_iostat(pcap: Path, ports: set[int]) -> Run:
    columns = ",".join(f"{fn}({field}){field}" for fn, field in _IO_FIELDS)
    command = ["tshark", "-r", str(pcap), "-q", *_decode_as(ports), "-z", f"io,stat,0,{columns}"]
    seconds, cpu, peak, output = _timed(command, subprocess.PIPE)
    row = [line for line in output.decode().splitlines() if "<>" in line][-1]
    values = [int(v) for v in re.findall(r"\|\s*(\d+)\s*(?=\|)", row.split("<>", 1)[1])]
    frames, short_sum, n16, sum16, n64, sum64, requests = values[: len(_IO_FIELDS)]
    # payload_length holds 126 or 127 where the real length is in the extended field.
    payload = short_sum - 126 * n16 - 127 * n64 + sum16 + sum64
    return Run("tshark -z io,stat", seconds, cpu, peak, Counts(frames, payload, requests))


def run_tshark_fields(pcap: Path, ports: set[int]) -> Run:
    fields = [
        "websocket.payload_length",
        "websocket.payload_length_ext_16",
        "websocket.payload_length_ext_64",
        "http.request",
    ]
    command = [
        "tshark",
        "-r",
        str(pcap),
        *_decode_as(ports),
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]
    for field in fields:
        command += ["-e", field]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    frames = payload = requests = 0
    for line in process.stdout:
        short, ext16, ext64, request = line.rstrip(b"\n").split(b"\t")
        if short:
            lengths = [int(v) for v in short.split(b",")]
            frames += len(lengths)
            payload += sum(v for v in lengths if v < 126)
            payload += sum(int(v) for v in ext16.split(b",") if v) + sum(int(v) for v in ext64.split(b",") if v)
        if request:
            requests += request.count(b",") + 1
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed")
    return Run(
        "tshark -T fields",
        seconds,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss * 1024,
        Counts(frames, payload, requests),
    )


def capture_facts(capture: Path) -> tuple[int, set[int]]:
    """TCP payload bytes in the capture and the servers' ports."""
    wire = 0
    ports: set[int] = set()
    with read_capture(capture) as records:
        for record in records:
            if isinstance(record, DataChunk):
                wire += len(record.data)
            elif isinstance(record, ConnectionOpened):
                ports.add(int(record.server.rpartition(":")[2]))
    return wire, ports


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.report_speed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="traffic as a fraction of 1M frames + 100k exchanges")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each tool (default 3)")
    parser.add_argument("--capture", metavar="FILE", help="use this capture instead of a synthetic one")
    parser.add_argument(
        "--websocket-connection",
        type=int,
        metavar="FRAMES",
        help="one WebSocket connection of FRAMES data frames instead of the synthetic mix",
    )
    parser.add_argument("--pure", action="store_true", help="also run rtinspect with RTINSPECT_NO_EXTENSIONS=1")
    parser.add_argument("--no-fields", action="store_true", help="skip the tshark -T fields runs")
    parser.add_argument("--keep", metavar="DIR", help="write the capture and pcap to DIR and keep them")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    args = parser.parse_args(argv)
    if not shutil.which("tshark"):
        parser.error("tshark is not installed (apt-get install tshark)")

    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="rtinspect-report-speed-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        truth = None
        started = time.perf_counter()
        if args.capture:
            capture = Path(args.capture)
        elif args.websocket_connection:
            capture = workdir / "websocket.rtcap"
            truth = write_websocket_connection(capture, args.websocket_connection)
        else:
            capture = workdir / "synthetic.rtcap"
            truth = write_synthetic(capture, args.scale)
        generated = time.perf_counter() - started
        pcap = workdir / "synthetic.pcap"
        started = time.perf_counter()
        packets = capture_to_pcap(capture, pcap)
        converted = time.perf_counter() - started
        wire, ports = capture_facts(capture)

        cpus = len(os.sched_getaffinity(0))
        tools = [lambda: run_rtinspect(capture, workdir, cpus), lambda: run_tshark_iostat(pcap, ports)]
        if cpus > 1:
            tools.append(lambda: run_rtinspect(capture, workdir, 1))
        if not args.no_fields:
            tools.append(lambda: run_tshark_fields(pcap, ports))
        if args.pure:
            tools.append(lambda: run_rtinspect(capture, workdir, 1, pure=True))
            if cpus > 1:
                tools.append(lambda: run_rtinspect(capture, workdir, cpus, pure=True))
        runs: dict[str, list[Run]] = {}
        for number_ in range(args.runs):
            for tool in tools:
                run = tool()
                runs.setdefault(run.tool, []).append(run)
                print(
                    f"run {number_ + 1}/{args.runs}  {run.tool:<18} {run.seconds:7.2f} s", file=sys.stderr, flush=True
                )

        reference = truth and Counts(truth.frames, truth.frame_payload_bytes, truth.http_exchanges)
        answers = {run.counts for tool_runs in runs.values() for run in tool_runs}
        if reference:
            answers.add(reference)
        agree = len(answers) == 1

        print(f"# rtinspect report speed, {time.strftime('%Y-%m-%d')}")
        print(f"# {machine()}")
        if truth:
            print(
                "# synthetic capture, "
                + ("one WebSocket connection" if args.websocket_connection else f"scale {args.scale:g}")
                + f": {truth.connections:,} connection{'s' if truth.connections != 1 else ''} "
                f"({truth.websocket_connections:,} WebSocket), {truth.frames:,} WebSocket frames, "
                f"{truth.http_exchanges:,} HTTP exchanges, {truth.chunks:,} socket reads"
            )
        print(
            f"# capture {capture.stat().st_size / 1e6:,.1f} MB (written in {generated:.1f} s); pcap "
            f"{pcap.stat().st_size / 1e6:,.1f} MB, {packets:,} packets (converted in {converted:.1f} s); "
            f"{wire / 1e6:,.1f} MB of TCP payload; median of {args.runs} runs each"
        )
        print()
        fastest_tshark = min(
            (median([r.seconds for r in rs]) for tool, rs in runs.items() if tool.startswith("tshark")),
            default=None,
        )
        rows = []
        for tool, tool_runs in runs.items():
            seconds = median([r.seconds for r in tool_runs])
            counts = tool_runs[0].counts
            rows.append(
                [
                    tool,
                    f"{seconds:.2f}",
                    f"{median([r.cpu for r in tool_runs]):.2f}",
                    number(counts.frames / seconds),
                    number(wire / seconds / 1e6, 1),
                    ratio(fastest_tshark / seconds) if fastest_tshark else "–",
                    f"{max(r.peak_rss for r in tool_runs) / 2**20:,.0f}",
                    number(counts.frames),
                    number(counts.payload_bytes),
                    number(counts.http_exchanges),
                ]
            )
        if reference:
            rows.append(
                [
                    "generator (truth)",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    number(reference.frames),
                    number(reference.payload_bytes),
                    number(reference.http_exchanges),
                ]
            )
        headings = (
            "tool",
            "wall s",
            "CPU s",
            "frames/s",
            "MB/s",
            "÷ fastest tshark",
            "peak RSS MiB",
            "WS frames",
            "WS payload bytes",
            "HTTP exchanges",
        )
        print(render(headings, rows, args.format))
        print()
        print(f"- counts agree: {'yes' if agree else 'NO: ' + '; '.join(map(str, sorted(answers, key=str)))}")
        ours = median([r.seconds for r in runs[f"rtinspect report -j {cpus}"]])
        if fastest_tshark:
            speed = fastest_tshark / ours
            verdict = "met" if speed >= 2 else f"not met ({speed / 2:.0%} of the goal)"
            print(f"- rtinspect report ≥ 2× tshark's frames/s: {ratio(speed)} of the fastest tshark: {verdict}")
        if not agree:
            raise SystemExit(1)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
