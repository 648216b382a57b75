"""What a demo run is asked to do: its transports, its settings and their limits."""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

from ..classify import TransportRule
from ..network import NetworkError, network_conditions

LOOPBACK = "127.0.0.1"
#: The default feed: quick, every transport in about 3 s each, start-up included.
DEFAULT_COUNT = 100
DEFAULT_RATE = 50.0
#: ``--long``: the steadier run, 10 s of feed per transport.
LONG_COUNT = 200
LONG_RATE = 20.0
#: Short polls over the feed's duration unless ``--poll-interval`` says otherwise: every 0.2 s for the
#: default feed, every second for ``--long``, so that each poll carries as many messages whatever the feed.
POLLS_PER_FEED = 10
#: Seconds for any one connection, start-up or shutdown step.
CONNECT_TIMEOUT = 15.0
#: Seconds the demo server and the proxy may take to start: every transport's start at once,
#: and a busy machine starts them slowly.
START_TIMEOUT = 60.0
#: Seconds a run may take beyond the feed's own duration and one poll interval.
DEADLINE_SLACK = 20.0
#: The page clamps shorter short-polling intervals to this many seconds.
PAGE_MIN_POLL_INTERVAL = 0.05
#: Rows the demo page keeps in its message log unless ``--ui-rows`` says otherwise.
DEFAULT_UI_ROWS = 50
#: Seconds between the synthetic clicks sent to the page while the feed runs (``--browser``).
CLICK_INTERVAL = 0.2
#: Clients of one transport that may be connecting at once (the rest wait their turn).
CONNECTING_AT_ONCE = 50
#: Seconds more, per client of a transport, for connecting and for finishing.
PER_CLIENT_SLACK = 0.05

#: The protocols ``--http2`` compares, by their ALPN names (the report's ``by_protocol`` keys),
#: and ``--http3`` with HTTP/3 as well.
HTTP1 = "http/1.1"
H2 = "h2"
H3 = "h3"
PROTOCOLS = (HTTP1, H2)
HTTP3_PROTOCOLS = (HTTP1, H2, H3)


class DemoError(Exception):
    """The demo could not run; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class DemoTransport:
    """One of the demo's transports: its short name, the server path and the report's name for it.

    With ``app_protocol`` it is a framework's run rather than one transport: the report
    names it by that protocol (its ``sessions`` key), and its run uses whichever
    transports the framework chooses (Socket.IO: long polling, then WebSocket).

    ``h3_only``: offered over HTTP/3 alone (WebTransport); ``name`` is the demo's name for it
    where the report's transport name is shared (WebTransport's datagram variant)."""

    key: str
    path: str
    transport: str
    app_protocol: str | None = None
    h3_only: bool = False
    name: str | None = None

    @property
    def title(self) -> str:
        """The demo's name for it: its own, else the report's transport name."""
        return self.name or self.transport


TRANSPORTS = (
    DemoTransport("ws", "/ws", "websocket"),
    DemoTransport("sse", "/sse", "sse"),
    DemoTransport("stream", "/stream", "http_stream"),
    DemoTransport("longpoll", "/longpoll", "long_poll"),
    DemoTransport("poll", "/poll", "short_poll"),
    DemoTransport("socketio", "/socket.io/", "socket.io", app_protocol="socket.io"),
    # WebTransport, served on the HTTP/3 port only (demo_server.h3): each feed message a
    # unidirectional stream, or a DATAGRAM; the report names both "webtransport".
    DemoTransport("wt", "/wt", "webtransport", h3_only=True),
    DemoTransport("wtdgram", "/wt-datagram", "webtransport", h3_only=True, name="webtransport-datagram"),
)
TRANSPORT_KEYS = tuple(t.key for t in TRANSPORTS)
_BY_KEY = {t.key: t for t in TRANSPORTS}
#: The transports the demo page reads, and ``--http2`` too: every one but the frameworks' runs
#: and those HTTP/3 alone offers.
PAGE_TRANSPORTS = tuple(t for t in TRANSPORTS if t.app_protocol is None and not t.h3_only)
PAGE_KEYS = tuple(t.key for t in PAGE_TRANSPORTS)
#: What ``--http3`` runs: the page's transports over every protocol, WebTransport over HTTP/3.
HTTP3_TRANSPORTS = tuple(t for t in TRANSPORTS if t.app_protocol is None)
HTTP3_KEYS = tuple(t.key for t in HTTP3_TRANSPORTS)

#: The demo's paths pinned to their transports, as ``--transport`` takes them; the page and
#: the feed's control requests (made through the proxy in browser mode only) are plain ``http``.
#: A framework's run is recognised by its protocol, its transports as the framework uses them.
DEMO_RULE_TEXTS = (*(f"{t.path}={t.transport}" for t in PAGE_TRANSPORTS), "/feed/*=http", "/=http")
DEMO_RULES = tuple(TransportRule.parse(text) for text in DEMO_RULE_TEXTS)


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """What ``rtinspect demo`` was asked to do.

    ``poll_interval`` is the pause between short polls in seconds;
    ``compression`` lets WebSocket use permessage-deflate; ``proxy_options``
    are mitmproxy ``key=value`` options for the proxy (e.g. ``confdir=...``).
    ``http2`` serves the demo over TLS with Hypercorn and reads every
    transport twice, over HTTP/1.1 and over h2; ``http3`` also serves it over
    HTTP/3 (:mod:`demo_server.h3`) and reads every transport over HTTP/3 too,
    WebTransport over HTTP/3 alone. ``network`` names network
    conditions the proxy adds (``rtinspect proxy --network``).

    Without ``http2`` the transports run one after another, each against a
    fresh demo-server process and a fresh proxy process, so the CPU time and
    memory of each are that transport's: ``clients`` Python clients per
    transport, or with ``browser`` one page per transport, whose message log
    keeps ``ui_rows`` rows (None: :data:`DEFAULT_UI_ROWS`).
    """

    output: Path
    count: int = DEFAULT_COUNT
    rate: float = DEFAULT_RATE
    size: int = 256
    transports: tuple[str, ...] = TRANSPORT_KEYS
    poll_interval: float = DEFAULT_COUNT / DEFAULT_RATE / POLLS_PER_FEED
    compression: bool = True
    browser: bool = False
    chromium: str | None = None
    proxy_options: tuple[str, ...] = ()
    http2: bool = False
    http3: bool = False
    network: str | None = None
    clients: int = 1
    ui_rows: int | None = None

    def __post_init__(self) -> None:
        try:
            network_conditions(self.network)
        except NetworkError as error:
            raise DemoError(str(error)) from None
        if self.count < 1:
            raise DemoError("--count must be at least 1")
        if self.rate <= 0:
            raise DemoError("--rate must be positive")
        if self.size < 0:
            raise DemoError("--size must not be negative")
        if self.poll_interval < 0:
            raise DemoError("--poll-interval must not be negative")
        unknown = [key for key in self.transports if key not in _BY_KEY]
        if unknown or not self.transports:
            raise DemoError(f"--transports: choose from {','.join(TRANSPORT_KEYS)} (got {','.join(self.transports)})")
        if self.browser and self.side_by_side and {t.key for t in self.selected} != set(self.offered_keys):
            raise DemoError(
                f"--transports cannot be combined with --browser {self.mode}: the page runs every transport"
            )
        if not self.selected:
            mode = self.mode or ("--browser" if self.browser else "the demo without --http3")
            raise DemoError(
                f"--transports: {mode} runs {','.join(self.offered_keys)} only (the Socket.IO run is left out)"
            )
        if self.browser and self.poll_interval < PAGE_MIN_POLL_INTERVAL:
            raise DemoError(f"--poll-interval: the page polls at most every {PAGE_MIN_POLL_INTERVAL * 1000:g} ms")
        if self.clients < 1:
            raise DemoError("--clients must be at least 1")
        if self.clients > 1 and self.browser:
            raise DemoError("--clients is for the Python clients: --browser runs one page per transport")
        if self.clients > 1 and self.side_by_side:
            raise DemoError(f"--clients cannot be combined with {self.mode}, which reads every transport at once")
        if self.ui_rows is not None and not self.browser:
            raise DemoError("--ui-rows is for the demo page: add --browser")
        if self.ui_rows is not None and self.ui_rows < 1:
            raise DemoError("--ui-rows must be at least 1")
        if self.side_by_side and self.browser and not self.compression:
            raise DemoError(
                f"--no-compression cannot be combined with --browser {self.mode}: Chromium always offers "
                "permessage-deflate and Hypercorn always accepts it"
            )
        if self.network and self.http3:
            raise DemoError("--network cannot be combined with --http3: the proxy shapes TCP connections only")

    @property
    def proxy_arguments(self) -> tuple[str, ...]:
        """The proxy's command-line arguments for this run's network conditions."""
        return ("--network", self.network) if self.network else ()

    @property
    def side_by_side(self) -> bool:
        """Whether the run reads every transport over several protocols at once, over TLS
        (``--http2`` or ``--http3``)."""
        return self.http2 or self.http3

    @property
    def mode(self) -> str:
        """The option that chose a side-by-side run (``--http3`` or ``--http2``), else empty."""
        return "--http3" if self.http3 else "--http2" if self.http2 else ""

    @property
    def offered_keys(self) -> tuple[str, ...]:
        """The transports this kind of run can read."""
        if self.http3:
            return HTTP3_KEYS
        if self.browser or self.http2:
            return PAGE_KEYS
        return tuple(t.key for t in TRANSPORTS if not t.h3_only)

    @property
    def selected(self) -> tuple[DemoTransport, ...]:
        """The transports to run, in report order; ``--browser``, ``--http2`` and ``--http3``
        leave out the frameworks' runs (the page has no Socket.IO client); WebTransport runs
        with ``--http3`` only."""
        return tuple(_BY_KEY[key] for key in TRANSPORT_KEYS if key in self.offered_keys and key in self.transports)

    @property
    def protocols(self) -> tuple[str | None, ...]:
        """The protocols each transport is read over: HTTP/1.1 and h2 with ``--http2``, and h3
        with ``--http3``; else None, the plain demo's HTTP/1.1 without TLS."""
        if self.http3:
            return HTTP3_PROTOCOLS
        return PROTOCOLS if self.http2 else (None,)

    def protocols_of(self, demo: DemoTransport) -> tuple[str | None, ...]:
        """The protocols ``demo`` is read over in this run (WebTransport: HTTP/3 alone)."""
        return (H3,) if demo.h3_only else self.protocols

    @property
    def one_by_one(self) -> bool:
        """Whether the transports run one after another, each with its own server and proxy
        process (every run but ``--http2`` and ``--http3``, which read every transport at once)."""
        return not self.side_by_side

    @property
    def page_rows(self) -> int:
        """Rows the demo page keeps in its message log."""
        return self.ui_rows if self.ui_rows is not None else DEFAULT_UI_ROWS

    @property
    def feed_seconds(self) -> float:
        """How long the feed takes to send every message."""
        return self.count / self.rate

    @property
    def confdir(self) -> Path | None:
        """mitmproxy's configuration folder if ``--set confdir=...`` gave one (the last wins)."""
        folders = [
            option.partition("=")[2] for option in self.proxy_options if option.partition("=")[0].strip() == "confdir"
        ]
        return Path(folders[-1]).expanduser() if folders else None

    @property
    def deadline(self) -> float:
        """Seconds the clients may take once the feed starts: its duration plus slack
        (more with many clients)."""
        return self.feed_seconds + self.poll_interval + DEADLINE_SLACK + self.clients * PER_CLIENT_SLACK

    @property
    def connect_timeout(self) -> float:
        """Seconds the clients of one transport may take to connect."""
        return CONNECT_TIMEOUT + self.clients * PER_CLIENT_SLACK


def default_poll_interval(count: int, rate: float) -> float:
    """Seconds between short polls when none is asked for: the feed's duration over
    :data:`POLLS_PER_FEED`, at least what the page allows."""
    return max(PAGE_MIN_POLL_INTERVAL, round(count / rate / POLLS_PER_FEED, 3))


def default_output_folder(now: datetime.datetime | None = None) -> Path:
    """``./rtinspect-demo-YYYYmmdd-HHMMSS``, with a suffix if that folder exists."""
    stamp = (now or datetime.datetime.now()).strftime("%Y%m%d-%H%M%S")
    folder = Path(f"rtinspect-demo-{stamp}")
    number = 2
    while folder.exists():
        folder = Path(f"rtinspect-demo-{stamp}-{number}")
        number += 1
    return folder
