"""One verdict per dimension the demo measures: bytes, latency, browser, server.

Each names the transports from cheapest to dearest on one figure, says under
which conditions it was measured, and groups the transports whose figures are
too close for one run on one machine to tell apart, rather than ranking them:

- bytes: wire bytes per feed message received, from the capture. They do not
  vary from run to run beyond a few bytes, so only differences under 2% count
  as the same;
- latency: the clients' median delivery latency; within 20% (or 1 ms) of
  each other is too close to call on one machine;
- browser: the page's main-thread task time and layouts over the run, within
  75% too close to call (four runs of the same pages differed by up to 1.7
  times here); INP differences of three Event Timing steps (24 ms) or less are
  no difference (the same four runs differed by that much);
- server (and proxy): CPU time per 1,000 feed messages, within 20% too close,
  and not ranked at all where a transport used less than a second of CPU time
  (runs of one client per transport differed by up to 150 ms here; ``/proc``
  counts in 10 ms ticks); the
  resident set per connection held is only given for 100 connections or more,
  since with fewer the growth is mostly other things.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..render.units import factor, human_bytes
from .costs import describe_machine
from .result import DemoResult, transport_summary

#: Transports within this ratio of each other are not told apart (latency, CPU).
CLOSE_RATIO = 1.2
#: The page's main-thread time: four runs of the same pages here differed by up to 1.7 times.
PAGE_CLOSE_RATIO = 1.75
#: Wire bytes within this ratio are the same.
BYTES_CLOSE_RATIO = 1.02
#: INP: four runs of the same pages here (50 clicks each) differed by up to three Event Timing steps.
INP_NOISE_MS = 24.0
#: The least CPU time, for any transport, for ranking the server's: runs of one client per transport
#: (200 messages, a few hundred milliseconds each) differed by up to 150 ms for the same transport here.
MIN_CPU_TO_RANK_MS = 1000.0
#: The fewest connections held at once for which the resident set per connection is given.
MIN_CONNECTIONS_FOR_RSS = 100


@dataclass(frozen=True, slots=True)
class Verdict:
    """One dimension's verdict: its name (``Bytes``) and its sentences."""

    dimension: str
    text: str


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if abs(value) < 10 else f"{value:,.0f} ms"


def _names(names: Sequence[str]) -> str:
    if len(names) <= 2:
        return " and ".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def rank(
    figures: Sequence[tuple[str, float]],
    close: Callable[[float, float], bool],
    shown: Callable[[float], str],
    what: str,
    tolerance: str,
) -> str:
    """``what`` from lowest to highest, in groups: a group starts with the lowest figure not
    yet placed and takes every figure ``close`` to it, so transports one run cannot tell apart
    are named together, never ranked. Each later group says how many times the lowest it is."""
    ordered = sorted(figures, key=lambda item: item[1])
    if not ordered:
        return f"no transport had {what}"
    if len(ordered) == 1:
        name, value = ordered[0]
        return f"{what} was {shown(value)} for {name}, the one transport run"
    groups: list[list[tuple[str, float]]] = []
    for name, value in ordered:
        if groups and close(groups[-1][0][1], value):
            groups[-1].append((name, value))
        else:
            groups.append([(name, value)])
    best = ordered[0][1]

    def figures_of(group: list[tuple[str, float]]) -> str:
        low, high = shown(group[0][1]), shown(group[-1][1])
        if len(group) == 1:
            return low
        return f"{low if low == high else f'{low} to {high}'}, within {tolerance} of each other"

    def names_of(group: list[tuple[str, float]]) -> str:
        return _names([name for name, _ in group])

    if len(groups) == 1:
        return (
            f"{what}: {names_of(groups[0])} were within {tolerance} of each other ({shown(best)} to "
            f"{shown(ordered[-1][1])}), too close for one run to rank"
        )
    parts = [f"{what} was lowest for {names_of(groups[0])} ({figures_of(groups[0])})"]
    for group in groups[1:]:
        times = f"{factor(group[0][1] / best)} the lowest, " if best > 0 else ""
        parts.append(f"then {names_of(group)} ({times}{figures_of(group)})")
    return "; ".join(parts)


def _ratio_close(ratio: float, floor: float = 0.0) -> Callable[[float, float], bool]:
    # The margin keeps figures made of whole clock ticks from missing the floor by a rounding error.
    return lambda low, high: high - low <= floor * (1 + 1e-9) or (low > 0 and high / low < ratio)


def conditions(result: DemoResult) -> str:
    """The run's conditions in one clause."""
    settings = result.settings
    if settings.browser:
        clients = "the demo page in headless Chromium"
    else:
        clients = f"{settings.clients:,} Python client{'s' if settings.clients != 1 else ''} per transport"
    order = "one transport at a time" if settings.one_by_one else "every transport at once"
    machine = f" on {describe_machine(dict(result.machine))}" if result.machine else ""
    return (
        f"{settings.count:,} messages of {settings.size} B at {settings.rate:g}/s, {clients}, {order}, "
        f"through the rtinspect proxy on loopback{machine}; one run"
    )


def bytes_verdict(result: DemoResult) -> Verdict | None:
    figures = []
    for tally in result.clients.values():
        summary = transport_summary(result.report, tally.demo.transport, tally.protocol)
        if summary is not None and tally.received and tally.protocol is None:
            figures.append((tally.demo.transport, summary.wire_bytes.total / tally.received))
    if not figures:
        return None
    compression = "on" if result.settings.compression else "off"
    text = rank(figures, _ratio_close(BYTES_CLOSE_RATIO), human_bytes, "Wire bytes per feed message received", "2%")
    return Verdict(
        "Bytes",
        f"{text}. Counted by the proxy, both directions, heads and handshakes included, TCP and TLS "
        f"overhead not; WebSocket compression {compression}, short polls every {result.settings.poll_interval:g} s.",
    )


def latency_verdict(result: DemoResult) -> Verdict | None:
    figures = []
    for tally in result.clients.values():
        summary = tally.latency_ms.summary()
        if summary is not None and tally.protocol is None:
            figures.append((tally.demo.transport, summary.p50))
    if not figures:
        return None
    text = rank(figures, _ratio_close(CLOSE_RATIO, 1.0), _ms, "Median delivery latency", "20% or 1 ms")
    polls = ""
    if any(name == "short_poll" for name, _ in figures):
        polls = f" A short poll waits for its next request, every {result.settings.poll_interval:g} s here."
    if result.settings.clients >= MIN_CONNECTIONS_FOR_RSS:
        polls += (
            f" With {result.settings.clients:,} clients in one process, sharing the machine with the server and the "
            f"proxy, this is queueing as much as the transport."
        )
    return Verdict(
        "Latency",
        f"{text}. Measured by the clients as arrival minus the server's send time, with one clock.{polls}",
    )


def browser_verdict(result: DemoResult) -> Verdict | None:
    costs = [(result.clients[key].demo.transport, cost.browser) for key, cost in result.costs.items() if cost.browser]
    if not costs:
        return None
    rows = result.settings.page_rows
    tasks = rank(
        [(name, browser.task_ms) for name, browser in costs],
        _ratio_close(PAGE_CLOSE_RATIO),
        _ms,
        "The page's main-thread task time over the run",
        "75%",
    )
    layouts = ", ".join(f"{name} {browser.layout_count:,}" for name, browser in costs)
    inps = [(browser.inp_ms, browser.interactions) for _, browser in costs if browser.inp_ms is not None]
    if inps:
        low = min(value for value, _ in inps)
        high = max(value for value, _ in inps)
        clicks = min(n for _, n in inps)
        separates = "does not separate" if high - low <= INP_NOISE_MS else "may separate"
        span = f"{_ms(low)} on every page" if _ms(low) == _ms(high) else f"{_ms(low)} to {_ms(high)}"
        inp = (
            f"INP was {span} (at least {clicks} clicks a page, in 8 ms steps); runs of the same "
            f"page have differed by up to {INP_NOISE_MS:g} ms here, so this {separates} the transports"
        )
    else:
        inp = "INP: no interaction was recorded"
    return Verdict(
        "Browser",
        f"{tasks}; runs of the same page have differed by up to 1.7 times here. Layouts: {layouts}. {inp}. "
        f"Each transport had its own page, each doing the same DOM work per message (a {rows:,}-row message log); "
        f"Chromium's own counters, headless.",
    )


def server_verdict(result: DemoResult) -> Verdict | None:
    named = [(result.clients[key].demo.transport, cost, result.clients[key]) for key, cost in result.costs.items()]
    servers = [
        (name, cost.server)
        for name, cost, _ in named
        if cost.server and cost.server.cpu_ms_per_1000_messages is not None
    ]
    if not servers:
        return None
    least = min(server.cpu_ms for _, server in servers)
    if least < MIN_CPU_TO_RANK_MS:
        low = min(server.cpu_ms_per_1000_messages or 0.0 for _, server in servers)
        high = max(server.cpu_ms_per_1000_messages or 0.0 for _, server in servers)
        text = (
            f"The demo server's CPU time per 1,000 feed messages delivered was {_ms(low)} to {_ms(high)}, from "
            f"{_ms(least)} of CPU time or more per transport: too little for one run to rank them (runs of "
            f"one client here differed by up to 150 ms; run with more clients)"
        )
    else:
        text = rank(
            [(name, server.cpu_ms_per_1000_messages or 0.0) for name, server in servers],
            _ratio_close(CLOSE_RATIO),
            _ms,
            "The demo server's CPU time per 1,000 feed messages delivered",
            "20%",
        )
    held = [(name, server) for name, server in servers if server.connections_held >= MIN_CONNECTIONS_FOR_RSS]
    if held:
        memory = (
            "Its resident set grew per connection held by "
            + ", ".join(
                f"{human_bytes(server.rss_per_connection_bytes)} ({name}, {server.connections_held:,} held)"
                for name, server in held
            )
            + "."
        )
    else:
        most = max(server.connections_held for _, server in servers)
        memory = (
            f"With at most {most:,} connection{'s' if most != 1 else ''} held at once, the resident set "
            f"says nothing per connection (run with --clients 100 or more)."
        )
    proxies = [(cost.proxy, cost.server) for _, cost, _ in named if cost.proxy and cost.server]
    proxy_ms = sum(p.cpu_ms for p, _ in proxies)
    server_ms = sum(s.cpu_ms for _, s in proxies)
    if proxies and min(min(p.cpu_ms, s.cpu_ms) for p, s in proxies) >= MIN_CPU_TO_RANK_MS:
        analysing = sum(p.cpu_ms_by_process.get("analyser", 0.0) for p, _ in proxies)
        proxy = (
            f" Over all transports the proxy used {factor(proxy_ms / server_ms)} the server's CPU time "
            f"({_ms(proxy_ms)} against {_ms(server_ms)}; {_ms(analysing)} of it analysing)."
        )
    else:
        proxy = " The proxy's CPU time is in the table; too little of it here to compare with the server's."
    compression = (
        "on (each WebSocket connection deflates every message itself)" if result.settings.compression else "off"
    )
    return Verdict(
        "Server",
        f"{text}. {memory}{proxy} uvicorn in one process, the same code for every transport; WebSocket "
        f"compression {compression}.",
    )


def demo_verdicts(result: DemoResult) -> list[Verdict]:
    """The verdicts the run has figures for, in the order bytes, latency, browser, server,
    and a last line with the conditions they share."""
    verdicts = [
        verdict
        for verdict in (bytes_verdict(result), latency_verdict(result), browser_verdict(result), server_verdict(result))
        if verdict is not None
    ]
    if verdicts:
        verdicts.append(Verdict("Conditions", conditions(result) + "."))
    return verdicts
