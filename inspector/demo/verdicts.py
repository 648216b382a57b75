"""One verdict per dimension the demo measures: bytes, latency, browser, server.

Each names the transports from cheapest to dearest on one figure, says under
which conditions it was measured, and groups the transports whose figures are
too close for one run on one machine to tell apart, rather than ranking them.
The ranking and its words are :mod:`inspector.render.ranking`'s, as for
``rtinspect report``; what is the demo's are its dimensions and the tolerances
its repeated runs showed, given here as data:

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

from dataclasses import dataclass

from ..processes import describe_machine
from ..render.ranking import Dimension, Tolerance
from ..render.units import factor, human_bytes
from .result import DemoResult, session_path


def _ms(value: float) -> str:
    return f"{value:.1f} ms" if abs(value) < 10 else f"{value:,.0f} ms"


#: Wire bytes per feed message: they do not vary from run to run beyond a few bytes.
WIRE_BYTES = Dimension("Wire bytes per feed message received", human_bytes, Tolerance(relative=0.02))
#: The clients' median latency: within 20% (or 1 ms) is too close to call on one machine.
LATENCY = Dimension("Median delivery latency", _ms, Tolerance(relative=0.2, absolute=1.0, unit="ms"))
#: The page's main-thread time: four runs of the same pages here differed by up to 1.7 times.
PAGE_TIME = Dimension("The page's main-thread task time over the run", _ms, Tolerance(relative=0.75))
#: The server's CPU time, ranked only where every transport used enough of it (:data:`MIN_CPU_TO_RANK_MS`).
SERVER_CPU = Dimension("The demo server's CPU time per 1,000 feed messages delivered", _ms, Tolerance(relative=0.2))
#: INP: four runs of the same pages here (50 clicks each) differed by up to three Event Timing steps.
INP = Tolerance(absolute=24.0, unit="ms")
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
    figures: list[tuple[str, float]] = []
    frameworks = []
    for tally in result.clients.values():
        found = result.figures(tally)
        per_message = found.per_feed_message(tally) if found is not None else None
        if found is not None and per_message is not None and tally.protocol is None:
            figures.append((tally.demo.transport, per_message))
            if found.session is not None:
                frameworks.append((tally.demo.transport, found.session, per_message))
    if not figures:
        return None
    compression = "on" if result.settings.compression else "off"
    text = WIRE_BYTES.verdict(figures)
    plain = dict(figures).get("websocket")
    added = ""
    for name, session, per_message in frameworks:
        if plain:
            difference = per_message - plain
            more = f"{human_bytes(difference)} more" if difference >= 0 else f"{human_bytes(-difference)} less"
            added += (
                f" {name} ({session_path(session)}) took {factor(per_message / plain)} plain WebSocket's bytes per "
                f"feed message, {more} each: what the framework adds, its handshake, polling and upgrade included."
            )
    return Verdict(
        "Bytes",
        f"{text}.{added} Counted by the proxy, both directions, heads and handshakes included, TCP and TLS "
        f"overhead not; WebSocket compression {compression}, short polls every {result.settings.poll_interval:g} s.",
    )


#: What ``--http3``'s byte verdicts compare, said with them.
DECRYPTED_BYTES = (
    "Counted by the proxy after decryption, both directions, heads and handshakes included: TCP streams after TLS, "
    "QUIC streams and DATAGRAM payloads after QUIC; TLS records, QUIC packet headers, ACKs, padding and AEAD tags "
    "and TCP/UDP/IP headers are not, so this compares the protocols' framing, not what crossed the network."
)


def _per_feed_message(result: DemoResult, protocol: str) -> list[tuple[str, float]]:
    """Each transport's wire bytes per feed message received over ``protocol``."""
    figures = []
    for tally in result.clients.values():
        found = result.figures(tally) if tally.protocol == protocol else None
        per_message = found.per_feed_message(tally) if found is not None else None
        if per_message is not None:
            figures.append((tally.demo.title, per_message))
    return figures


def http3_verdicts(result: DemoResult) -> list[Verdict]:
    """``--http3``: the transports ranked over h3 (WebTransport among them), and each transport's
    protocols ranked, by wire bytes per feed message, at the decrypted level."""
    if not result.settings.http3:
        return []
    verdicts = []
    over_h3 = _per_feed_message(result, "h3")
    if over_h3:
        verdicts.append(Verdict("Bytes over h3", f"{WIRE_BYTES.verdict(over_h3)}. {DECRYPTED_BYTES}"))
    sentences = []
    for demo in result.settings.selected:
        figures = []
        for protocol in result.settings.protocols_of(demo):
            tally = result.clients.get(f"{demo.key} {protocol}")
            found = result.figures(tally) if tally is not None else None
            per_message = found.per_feed_message(tally) if found is not None and tally is not None else None
            if per_message is not None and protocol is not None:
                figures.append((protocol, per_message))
        if len(figures) > 1:
            sentences.append(f"{demo.title}: {WIRE_BYTES.verdict(figures)}.")
    if sentences:
        verdicts.append(Verdict("Protocols", " ".join(sentences) + " At the same level as above."))
    return verdicts


def latency_verdict(result: DemoResult) -> Verdict | None:
    figures = []
    for tally in result.clients.values():
        summary = tally.latency_ms.summary()
        if summary is not None and tally.protocol is None:
            figures.append((tally.demo.transport, summary.p50))
    if not figures:
        return None
    text = LATENCY.verdict(figures)
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
    tasks = PAGE_TIME.verdict((name, browser.task_ms) for name, browser in costs)
    layouts = ", ".join(f"{name} {browser.layout_count:,}" for name, browser in costs)
    inps = [(browser.inp_ms, browser.interactions) for _, browser in costs if browser.inp_ms is not None]
    if inps:
        low = min(value for value, _ in inps)
        high = max(value for value, _ in inps)
        clicks = min(n for _, n in inps)
        separates = "does not separate" if INP.close(low, high) else "may separate"
        span = f"{_ms(low)} on every page" if _ms(low) == _ms(high) else f"{_ms(low)} to {_ms(high)}"
        inp = (
            f"INP was {span} (at least {clicks} clicks a page, in 8 ms steps); runs of the same "
            f"page have differed by up to {INP} here, so this {separates} the transports"
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
        text = SERVER_CPU.verdict((name, server.cpu_ms_per_1000_messages or 0.0) for name, server in servers)
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
    frameworks = sorted({tally.demo.transport for tally in result.clients.values() if tally.demo.app_protocol})
    code = "the same code for every transport" + (
        f", python-socketio's server for {', '.join(frameworks)}" if frameworks else ""
    )
    return Verdict(
        "Server",
        f"{text}. {memory}{proxy} uvicorn in one process, {code}; WebSocket compression {compression}.",
    )


def demo_verdicts(result: DemoResult) -> list[Verdict]:
    """The verdicts the run has figures for, in the order bytes, latency, browser, server,
    and a last line with the conditions they share."""
    verdicts = [
        verdict
        for verdict in (bytes_verdict(result), latency_verdict(result), browser_verdict(result), server_verdict(result))
        if verdict is not None
    ]
    verdicts += http3_verdicts(result)
    if verdicts:
        verdicts.append(Verdict("Conditions", conditions(result) + "."))
    return verdicts
