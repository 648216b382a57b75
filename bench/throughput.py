"""Throughput, added latency, CPU and memory of each peer, workload by workload.

    .venv/bin/python -m bench.throughput [--rounds 3] [--seconds 2] [--workloads a,b] [--peers a,b]

Starts the upstream server and every peer (direct, mitmdump-tcp,
mitmdump-http, rtinspect inline, rtinspect-process) on 127.0.0.1, then for each workload runs one
trial per peer in turn, round after round (A B C D A B C D ...), so that
drift in the machine's load spreads evenly over the peers. Prints medians
over the rounds; ratios between peers are the median of the per-round
ratios (each round's trials ran back to back).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict

from bench.peers import PEERS, Peers, start_peers
from bench.table import machine, median, mib, number, percentile, ratio, render
from bench.workloads import WORKLOADS, Trial, run_trial

LATENCY = "ws-latency-64"
ECHO_GOALS = ("ws-echo-64", "ws-echo-1k", "ws-echo-64k")
#: Workloads on which relaying should cost about what mitmdump's TCP relay costs, whatever analysis costs.
RELAY_GOALS = ("ws-echo-64", "ws-echo-1k", "ws-push-1k", "sse-1k", "poll-64")
Results = dict[str, dict[str, list[Trial]]]


async def run_all(
    peers: Peers, workloads: list[str], names: list[str], rounds: int, warmup: float, seconds: float
) -> Results:
    results: Results = {w: {p: [] for p in names} for w in workloads}
    for workload in workloads:
        for round_number in range(rounds):
            for peer in names:
                trial = await run_trial(WORKLOADS[workload], peers.port(peer), peers.pid(peer), warmup, seconds)
                results[workload][peer].append(trial)
                print(
                    f"{workload:<20} round {round_number + 1}/{rounds}  {peer:<14} "
                    f"{trial.rate:>12,.0f} {WORKLOADS[workload].unit}/s",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def paired_ratio(trials: list[Trial], others: list[Trial]) -> float | None:
    """The median over rounds of this peer's rate divided by the other peer's in the same round."""
    pairs = [a.rate / b.rate for a, b in zip(trials, others, strict=False) if b.rate > 0]
    return median(pairs) if pairs else None


def throughput_rows(results: Results, names: list[str]) -> list[list[str]]:
    rows = []
    for workload, by_peer in results.items():
        if workload == LATENCY:
            continue
        unit = WORKLOADS[workload].unit
        for peer in names:
            trials = by_peer[peer]
            proxied = trials[0].cpu is not None
            per_million = [t.cpu / t.units * 1e6 for t in trials if t.cpu is not None and t.units]
            analysed = [t.analyser_cpu / t.analyser_units * 1e6 for t in trials if t.analyser_cpu and t.analyser_units]
            lags = [t.analyser_lag for t in trials if t.analyser_lag is not None]
            busy = [t.cpu / t.seconds * 100 for t in trials if t.cpu is not None]

            def versus(
                other: str, peer: str = peer, trials: list[Trial] = trials, by_peer: dict[str, list[Trial]] = by_peer
            ) -> str:
                if other == peer or other not in by_peer:
                    return ""
                return ratio(paired_ratio(trials, by_peer[other]))

            rows.append(
                [
                    workload,
                    peer,
                    f"{number(median([t.rate for t in trials]))} {unit}/s",
                    number(median([t.megabytes_per_second for t in trials]), 1),
                    versus("direct"),
                    versus("mitmdump-tcp"),
                    versus("mitmdump-http"),
                    number(median(per_million), 1) if proxied else "–",
                    number(median(analysed), 1) if analysed else "–",
                    number(median(lags), 1) if lags else "–",
                    number(median(busy)) if proxied else "–",
                    mib(median([t.rss for t in trials])) if proxied else "–",
                    mib(max(t.peak_rss for t in trials)) if proxied else "–",
                ]
            )
    return rows


THROUGHPUT_HEADINGS = (
    "workload",
    "peer",
    "rate",
    "MB/s",
    "÷ direct",
    "÷ mitm-tcp",
    "÷ mitm-http",
    "proxy CPU s/M",
    "analyser CPU s/M",
    "analyser lag s",
    "proxy CPU %",
    "RSS MiB",
    "peak MiB",
)


def latency_figures(results: Results, names: list[str]) -> dict[str, dict[str, float | None]]:
    """p50 and p99 round trips (medians over rounds) and what each adds over direct, in seconds."""
    by_peer = results[LATENCY]
    figures: dict[str, dict[str, float | None]] = {}
    direct = by_peer.get("direct")
    for peer in names:
        trials = by_peer[peer]
        p50 = [percentile(t.rtts, 50) for t in trials]
        p99 = [percentile(t.rtts, 99) for t in trials]
        entry: dict[str, float | None] = {"p50": median(p50), "p99": median(p99), "added_p50": None, "added_p99": None}
        if direct is not None and peer != "direct":
            entry["added_p50"] = median([a - percentile(d.rtts, 50) for a, d in zip(p50, direct, strict=False)])
            entry["added_p99"] = median([a - percentile(d.rtts, 99) for a, d in zip(p99, direct, strict=False)])
        figures[peer] = entry
    return figures


def latency_rows(figures: dict[str, dict[str, float | None]]) -> list[list[str]]:
    floor = figures.get("mitmdump-tcp", {}).get("added_p50")
    rows = []
    for peer, f in figures.items():
        added = f["added_p50"]
        rows.append(
            [
                LATENCY,
                peer,
                number(f["p50"] * 1e6),
                number(f["p99"] * 1e6),
                number(added * 1e6) if added is not None else "–",
                number(f["added_p99"] * 1e6) if f["added_p99"] is not None else "–",
                ratio(added / floor) if added is not None and floor else "–",
            ]
        )
    return rows


LATENCY_HEADINGS = ("workload", "peer", "p50 µs", "p99 µs", "added p50 µs", "added p99 µs", "added ÷ mitm-tcp's")


def goals(results: Results, names: list[str]) -> list[str]:
    lines = []
    have = set(names)
    echo = [w for w in ECHO_GOALS if w in results]

    def check(other: str, goal: float) -> None:
        if not echo or not {"rtinspect", other} <= have:
            return
        found = {w: paired_ratio(results[w]["rtinspect"], results[w][other]) for w in echo}
        worst = min(v for v in found.values() if v is not None)
        figures = ", ".join(f"{w} {ratio(v)}" for w, v in found.items())
        verdict = "met" if worst >= goal else f"not met (worst {worst / goal:.0%} of the goal)"
        lines.append(f"rtinspect ≥ {goal}× {other} on WebSocket echo: {figures}: {verdict}")

    check("mitmdump-tcp", 0.85)
    check("mitmdump-http", 10)
    if "mitmdump-tcp" in have:
        for peer in names:
            if peer.startswith("rtinspect"):
                lines += relay_goals(results, peer)
    if LATENCY in results and {"direct", "mitmdump-tcp"} <= have:
        figures = latency_figures(results, names)
        floor = figures["mitmdump-tcp"]["added_p50"]
        for peer in names:
            ours = figures[peer]["added_p50"] if peer.startswith("rtinspect") else None
            if ours is not None and floor:
                verdict = "met" if ours <= 1.5 * floor else f"not met ({ours / floor:.2f}×)"
                lines.append(
                    f"{peer} added p50 ≤ 1.5× mitmdump-tcp's: +{ours * 1e6:.0f} µs vs +{floor * 1e6:.0f} µs "
                    f"({ours / floor:.2f}×): {verdict}"
                )
    return lines


def relay_goals(results: Results, peer: str) -> list[str]:
    """Rate and CPU per unit of ``peer`` against mitmdump-tcp on :data:`RELAY_GOALS`:
    rate ≥ 0.85×, relay CPU per unit < 1.5× (and, apart, with the analyser's CPU added)."""
    lines = []
    for workload in RELAY_GOALS:
        if workload not in results:
            continue
        ours, floor = results[workload][peer], results[workload]["mitmdump-tcp"]
        rate = paired_ratio(ours, floor)
        relay = median([t.cpu / t.units for t in ours if t.cpu is not None and t.units])
        base = median([t.cpu / t.units for t in floor if t.cpu is not None and t.units])
        analyser = [t.analyser_cpu / t.analyser_units for t in ours if t.analyser_cpu and t.analyser_units]
        both = f", relay + analyser {(relay + median(analyser)) / base:.2f}×" if analyser else ""
        verdict = "met" if rate is not None and rate >= 0.85 and relay < 1.5 * base else "not met"
        lines.append(
            f"{peer} on {workload}: rate {ratio(rate)} mitmdump-tcp's, relay CPU per unit {relay / base:.2f}×{both}: "
            f"{verdict}"
        )
    return lines


def print_results(results: Results, names: list[str], workloads: list[str], fmt: str) -> None:
    print()
    for workload in workloads:
        print(f"# {workload}: {WORKLOADS[workload].describe}")
    rows = throughput_rows(results, names)
    if rows:
        print()
        print(render(THROUGHPUT_HEADINGS, rows, fmt))
    if LATENCY in results:
        print()
        print(render(LATENCY_HEADINGS, latency_rows(latency_figures(results, names)), fmt))
    if lines := goals(results, names):
        print()
        for line in lines:
            print(f"- {line}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--peers",
        default=",".join(PEERS),
        help=f"comma-separated, from {','.join(PEERS)}; rtinspect@DIR runs the inspector package in DIR",
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, from {','.join(WORKLOADS)}")
    parser.add_argument("--rounds", type=int, default=3, help="trials per workload and peer (default 3)")
    parser.add_argument("--seconds", type=float, default=2.0, help="measured seconds per trial (default 2)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before measuring (default 0.5)")
    parser.add_argument("--format", choices=("text", "markdown"), default="text")
    parser.add_argument("--json", metavar="FILE", help="also write every trial to FILE")
    parser.add_argument("--from-json", metavar="FILE", help="print the tables of a run saved with --json; run nothing")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as saved:
            loaded = json.load(saved)
        results: Results = {
            w: {p: [Trial(**{**t, "rtts": tuple(t["rtts"])}) for t in ts] for p, ts in bp.items()}
            for w, bp in loaded.items()
        }
        print_results(results, list(next(iter(results.values()))), list(results), args.format)
        return
    names = [p for p in args.peers.split(",") if p]
    workloads = [w for w in args.workloads.split(",") if w]
    for name in names:
        if name not in PEERS and not name.startswith("rtinspect@"):
            parser.error(f"unknown peer {name!r}")
    for workload in workloads:
        if workload not in WORKLOADS:
            parser.error(f"unknown workload {workload!r}")

    started = time.monotonic()
    peers = start_peers(names)
    try:
        results = asyncio.run(run_all(peers, workloads, names, args.rounds, args.warmup, args.seconds))
    finally:
        peers.stop()

    print(f"# rtinspect throughput benchmark, {time.strftime('%Y-%m-%d')}")
    print(f"# {machine()}")
    print(
        f"# {args.rounds} rounds × {args.seconds:g} s measured (+{args.warmup:g} s warm-up) per workload and peer; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    print_results(results, names, workloads, args.format)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({w: {p: [asdict(t) for t in ts] for p, ts in bp.items()} for w, bp in results.items()}, out)


if __name__ == "__main__":
    main()
