"""``rtinspect proxy``: mitmproxy with the rtinspect addon, a live view and a final summary.

This module turns the command's settings into mitmproxy options, starts the
proxy in this process, shows what each transport has cost so far while it
runs, and on SIGINT or SIGTERM prints the summary, writes the report and
closes the capture.

Analysis runs either in this process, on the relay's path (``inline``), or in
an analyser process that the relay feeds (``process``, the default; see
:mod:`inspector.analyser_process`). Both run the same core on the same
records and give the same report; the analyser process keeps the cost of
analysis, and any failure of it, away from relaying.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from mitmproxy import exceptions, master, options
from mitmproxy.addons import default_addons
from mitmproxy.proxy.mode_specs import ProxyMode
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from inspector.addon import RtInspect
from inspector.analyser import AnalyserSettings, Finished, InProcessAnalysis
from inspector.analyser_process import BACKLOG_LIMIT, AnalyserProcess
from inspector.app_messages import AppMessageRule
from inspector.classify import DEFAULT_LONG_POLL_THRESHOLD, AppProtocolRule, TransportRule
from inspector.connection import ConnectionRecord
from inspector.metrics import SCRAPE_TIMEOUT, LiveMetrics, MetricsLedger, MetricsServer, is_loopback, listen_error
from inspector.network import NetworkConditions
from inspector.processes import raise_open_file_limit
from inspector.render import render, table_renderables
from inspector.replay import report_from_captures
from inspector.report import Report, with_network
from inspector.summary import ReportBuilder

#: The report format a report file's suffix implies.
_FORMAT_BY_SUFFIX = {
    ".json": "json",
    ".md": "markdown",
    ".csv": "csv",
    ".html": "html",
    ".htm": "html",
    ".txt": "table",
}

_UPSTREAM_SCHEMES = {"http": "http", "ws": "http", "https": "https", "wss": "https"}
_LIVE_REFRESH = 1.0
#: Where the analysis runs: on the relay's path, or in an analyser process.
ANALYSIS_MODES = ("process", "inline")
DEFAULT_ANALYSIS = "process"
#: Seconds a metrics scrape waits for the analyser process to catch up.
_SYNC_TIMEOUT = SCRAPE_TIMEOUT / 2
#: Seconds the proxy waits at exit for the analyser before it says that it is waiting.
_PATIENCE = 1.0


class ProxyError(Exception):
    """A mistake in how the proxy was asked to run; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """What ``rtinspect proxy`` was asked to do.

    ``upstream`` is the server URL of a reverse proxy; a forward proxy
    (``mode="regular"``) has none. ``mitmproxy_options`` are ``key=value``
    settings passed to mitmproxy as given (its ``--set``). With
    ``metrics_port``, Prometheus metrics are served on
    ``metrics_host:metrics_port``.
    """

    upstream: str | None
    mode: str = "reverse"
    listen_host: str = "127.0.0.1"
    listen_port: int = 8080
    listen_tls: bool = False
    upstream_insecure: bool = False
    #: Offer only HTTP/1.1 over TLS; otherwise the client's ALPN offer passes to a TLS upstream
    #: (TLS clients of a cleartext upstream get HTTP/1.1: see RtInspect.tls_start_client).
    http1_only: bool = False
    #: Listen on UDP too, for QUIC, when the upstream is HTTPS (see inspector.quic_relay).
    http3: bool = True
    write: str | None = None
    #: No live view (what the proxy listens on and the summary on exit still print).
    quiet: bool = False
    report: str | None = None
    report_format: str | None = None
    long_poll_threshold: float = DEFAULT_LONG_POLL_THRESHOLD
    rules: tuple[TransportRule, ...] = ()
    app_messages: tuple[AppMessageRule, ...] = ()
    app_protocols: tuple[AppProtocolRule, ...] = ()
    #: Reports show request targets without credentials (see :mod:`inspector.redact`).
    redact: bool = True
    mitmproxy_options: tuple[str, ...] = ()
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = None
    #: "process" (an analyser process) or "inline" (analysis on the relay's path).
    analysis: str = DEFAULT_ANALYSIS
    #: Delay and bandwidth added to every connection (see :mod:`inspector.network`); None adds nothing.
    network: NetworkConditions | None = None


def mitmproxy_mode(settings: ProxySettings) -> str:
    """The mitmproxy mode spec for these settings, e.g. ``reverse:https://example.com:443``."""
    if settings.mode == "regular":
        if settings.upstream:
            raise ProxyError("a forward proxy (--mode regular) takes no upstream URL")
        if settings.listen_tls:
            raise ProxyError("--listen-tls applies to a reverse proxy only")
        return "regular"
    if settings.mode != "reverse":
        raise ProxyError(f"unknown mode {settings.mode!r}: use reverse or regular")
    if not settings.upstream:
        raise ProxyError("give the upstream server's URL, e.g. rtinspect proxy http://127.0.0.1:8000")
    return "reverse:" + upstream_origin(settings.upstream)


def upstream_origin(url: str) -> str:
    """``scheme://host:port`` of an upstream URL; ws and wss count as http and https."""
    parts = urllib.parse.urlsplit(url)
    scheme = _UPSTREAM_SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise ProxyError(f"upstream {url!r}: use an http:// or https:// URL")
    try:
        port = parts.port
    except ValueError:
        raise ProxyError(f"upstream {url!r}: the port is not a number from 1 to 65535") from None
    if not parts.hostname:
        raise ProxyError(f"upstream {url!r} has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ProxyError(
            f"upstream {url!r}: give only scheme://host:port (the proxy relays whole connections and rewrites nothing)"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port or (443 if scheme == 'https' else 80)}"


def report_format_for(path: str, explicit: str | None) -> str:
    """The report format: the one asked for, else the one the file's suffix implies, else json."""
    return explicit or _FORMAT_BY_SUFFIX.get(Path(path).suffix.lower(), "json")


def run(settings: ProxySettings) -> bool:
    """Run the proxy until SIGINT or SIGTERM; whether it listened on UDP (for QUIC).
    Raises :class:`ProxyError` for user mistakes."""
    raise_open_file_limit()
    proxy_run = _ProxyRun(settings)
    asyncio.run(proxy_run.serve())
    return proxy_run.served_quic


class _StderrLog(logging.Handler):
    """Prints warnings and errors as lines on stderr.

    While the proxy starts, lines are held back and errors collected: an error
    during startup ends the run with that error alone.
    """

    def __init__(self, console: Console) -> None:
        super().__init__(logging.WARNING)
        self._console = console
        self._held: list[str] | None = []
        self.startup_errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        line = f"{record.levelname.lower()}: {message}"
        if self._held is None:
            self._console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            self._held.append(line)
            if record.levelno >= logging.ERROR:
                self.startup_errors.append(message.splitlines()[0] if message else record.levelname)

    def stop_holding(self) -> None:
        """Print what was held and print from now on."""
        held, self._held = self._held or [], None
        for line in held:
            self._console.print(line, markup=False, highlight=False, soft_wrap=True)


class _Started:
    """Tells the runner that mitmproxy has finished starting up."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def running(self) -> None:
        self.event.set()


class _ProxyRun:
    """One run of the proxy, from settings to the final summary."""

    def __init__(self, settings: ProxySettings) -> None:
        self.settings = settings
        self.mode = mitmproxy_mode(settings)
        self.out = Console()
        self.err = Console(stderr=True)
        self.inspect = RtInspect()
        #: Whether it listened on UDP for QUIC.
        self.served_quic = False
        self.metrics: MetricsServer | None = None
        if settings.analysis not in ANALYSIS_MODES:
            raise ProxyError(f"unknown analysis {settings.analysis!r}: use {' or '.join(ANALYSIS_MODES)}")

    async def serve(self) -> None:
        settings = self.settings
        if settings.report:
            _check_writable(settings.report)
        log = _StderrLog(self.err)
        root = logging.getLogger()
        root.addHandler(log)
        report: Report | None = None
        try:
            proxy = self._make_master()
            analysis = AnalyserProcess if settings.analysis == "process" else InProcessAnalysis
            self.inspect.analysis = analysis(self._analyser_settings())
            self.metrics = self._serve_metrics(asyncio.get_running_loop())
            started = _Started()
            proxy.addons.add(started)
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(_ignore_cancelled_connections)
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, proxy.shutdown)
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)

            serving = asyncio.create_task(proxy.run())
            waiting = asyncio.create_task(started.event.wait())
            await asyncio.wait([serving, waiting], return_when=asyncio.FIRST_COMPLETED)
            waiting.cancel()
            if failure := _listen_failure(proxy) or next(iter(log.startup_errors), None):
                proxy.shutdown()
                await serving
                raise ProxyError(failure)
            log.stop_holding()
            await self._announce(proxy)
            if settings.quiet or not self.out.is_terminal:
                await serving
            else:
                await self._show_live(serving)
            report = with_network(await self._final_report(), settings.network)
        finally:
            root.removeHandler(log)
            if self.metrics is not None:
                self.metrics.close()
            self.inspect.analysis.close()
        self._finish(report)

    def _analyser_settings(self) -> AnalyserSettings:
        settings = self.settings
        return AnalyserSettings(
            rules=tuple(settings.rules),
            long_poll_threshold=settings.long_poll_threshold,
            app_messages=settings.app_messages,
            app_protocols=settings.app_protocols,
            redact=settings.redact,
            sources=(settings.write,) if settings.write else (),
            capture=settings.write,
            live_view=not settings.quiet and self.out.is_terminal,
            metrics=settings.metrics_port is not None,
            backlog_limit=BACKLOG_LIMIT,
        )

    async def _final_report(self) -> Report:
        """The report of the whole run, once the analysis has caught up with everything relayed."""
        settings = self.settings
        finished = await self._analyser_finished()
        if finished is not None:
            return finished.report
        # The analyser died (it said so once already) or was not waited for: the capture,
        # closed by now, has every byte.
        why = "stopped during the run" if not self.inspect.analysis.alive else "was not waited for at exit"
        if settings.write and Path(settings.write).is_file():
            note = f"The analyser process {why}; these figures were read from the capture at exit."
            report = report_from_captures(
                [settings.write],
                long_poll_threshold=settings.long_poll_threshold,
                rules=settings.rules,
                app_messages=settings.app_messages,
                app_protocols=settings.app_protocols,
                redact=settings.redact,
            )
            return dataclasses.replace(report, notes=(*report.notes, note))
        note = f"The analyser process {why} and there is no capture (-w): no figures."
        return ReportBuilder(redact=settings.redact).report(notes=[note])

    async def _analyser_finished(self) -> Finished | None:
        """The analyser's final report, once it has caught up; None if it died, or
        if a second Ctrl-C or SIGTERM said not to wait for it."""
        loop = asyncio.get_running_loop()
        waiting = asyncio.ensure_future(self.inspect.analysis.finish())
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, waiting.cancel)
        try:
            done, _ = await asyncio.wait([waiting], timeout=_PATIENCE)
            if not done:
                self.err.print(
                    "waiting for the analyser process to catch up; Ctrl-C again reads the figures from the capture",
                    highlight=False,
                )
            return await waiting
        except asyncio.CancelledError:
            if not waiting.cancelled():
                raise
            return None
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    def _make_master(self) -> master.Master:
        settings = self.settings
        proxy = master.Master(options.Options())
        proxy.addons.add(*default_addons(), self.inspect)
        try:
            if not settings.http3:
                _listen_on_tcp_only(self.mode)
            proxy.options.update(
                mode=[self.mode],
                listen_host=settings.listen_host,
                listen_port=settings.listen_port,
                http2=not settings.http1_only,
                ssl_insecure=settings.upstream_insecure,
                rtinspect_write=settings.write,
                rtinspect_client_tls=settings.listen_tls,
            )
            proxy.options.set(*settings.mitmproxy_options)
            if settings.network is not None:
                proxy.options.update(**network_options(settings.network))
        except exceptions.OptionsError as e:
            raise ProxyError(str(e)) from None
        return proxy

    def _serve_metrics(self, loop: asyncio.AbstractEventLoop) -> MetricsServer | None:
        """Start the metrics server, if asked for, before the proxy listens."""
        settings = self.settings
        if settings.metrics_port is None:
            return None
        ledger = MetricsLedger()
        try:
            return MetricsServer(
                LiveMetrics(ledger, self._analysed_records, loop), settings.metrics_host, settings.metrics_port
            )
        except OSError as e:
            address = _address(settings.metrics_host, settings.metrics_port)
            raise ProxyError(f"cannot serve metrics on {address}: {listen_error(e)}") from None

    async def _analysed_records(self) -> tuple[list[ConnectionRecord], tuple[ConnectionRecord, ...]]:
        """Connections closed since the last call, in the order they closed, and a snapshot of each open one,
        once the analysis has caught up with what was relayed so far."""
        return await self.inspect.analysis.records(_SYNC_TIMEOUT)

    async def _announce(self, proxy: master.Master) -> None:
        settings = self.settings
        logger = logging.getLogger(__name__)
        if not is_loopback(proxy.options.listen_host):
            logger.warning(f"listening on {_listen_address(proxy)}: the proxy is reachable from the network")
        if self.metrics is not None and not is_loopback(self.metrics.host):
            address = _address(self.metrics.host, self.metrics.port)
            logger.warning(f"serving metrics on {address}: the metrics are reachable from the network")
        if settings.upstream and not await _reachable(upstream_origin(settings.upstream)):
            logger.warning(f"upstream {settings.upstream} is not reachable now; serving anyway")
        scheme = "https" if settings.listen_tls else "http"
        target = upstream_origin(settings.upstream) if settings.upstream else "forward proxy"
        self.out.print(f"rtinspect: {scheme}://{_listen_address(proxy)} → {target}", highlight=False)
        if _udp_listening(proxy):
            self.served_quic = True
            self.out.print(f"QUIC (HTTP/3): udp {_listen_address(proxy)} → {target}, relayed raw", highlight=False)
        if settings.listen_tls or _udp_listening(proxy):
            ca = Path(proxy.options.confdir).expanduser() / "mitmproxy-ca-cert.pem"
            self.out.print(f"clients must trust mitmproxy's CA: {ca}", highlight=False)
        if settings.write:
            self.out.print(f"capture: {settings.write}", highlight=False)
        if settings.network is not None:
            quic = " (TCP only: QUIC is relayed as it comes)" if _udp_listening(proxy) else ""
            self.out.print(f"network: {settings.network.describe()}, per connection{quic}", highlight=False)
        if self.metrics is not None:
            self.out.print(f"metrics: {self.metrics.url}", highlight=False)

    async def _show_live(self, serving: asyncio.Task[None]) -> None:
        with Live(self._live_view(), console=self.out, auto_refresh=False, transient=True) as live:
            while not serving.done():
                await asyncio.wait([serving], timeout=_LIVE_REFRESH)
                live.update(self._live_view(), refresh=True)
        await serving

    def _live_view(self) -> RenderableType:
        view = self.inspect.analysis.view
        seen = view.seen if view is not None else 0
        table = live_table(view.report if view is not None else ReportBuilder().report())
        status = Text(
            f"{self.inspect.open_connections} open · {seen} seen · Ctrl-C stops and prints the summary",
            style="dim",
        )
        return Group(status, table)

    def _finish(self, report: Report | None) -> None:
        settings = self.settings
        if report is None:
            return
        self.out.print(*table_renderables(report))
        if settings.write:
            self.out.print(f"capture written to {settings.write}", highlight=False)
        if settings.report:
            fmt = report_format_for(settings.report, settings.report_format)
            try:
                Path(settings.report).write_text(render(report, fmt), encoding="utf-8")
            except OSError as e:
                raise ProxyError(f"cannot write report {settings.report}: {e.strerror or e}") from None
            self.out.print(f"report written to {settings.report}", highlight=False)


def network_options(network: NetworkConditions) -> dict[str, str | None]:
    """The addon's options that set ``network`` (every figure given, so the preset's are all replaced)."""

    def rate(bits: int | None) -> str:
        return "unlimited" if bits is None else f"{bits}bit"

    return {
        "rtinspect_network": network.preset,
        "rtinspect_rtt": f"{network.rtt_ms!r}",
        "rtinspect_jitter": f"{network.jitter_ms!r}",
        "rtinspect_down": rate(network.down_bits_per_second),
        "rtinspect_up": rate(network.up_bits_per_second),
    }


def live_table(report: Report) -> Table:
    """A compact table of what each transport has cost so far."""
    table = Table(box=None, pad_edge=False)
    for heading in ("transport", "connections", "messages", "wire bytes", "payload bytes", "overhead"):
        table.add_column(heading, justify="left" if heading == "transport" else "right")
    for name, summary in report.transports.items():
        table.add_row(
            name,
            f"{summary.connections:,}",
            f"{summary.messages.total:,}",
            f"{summary.wire_bytes.total:,}",
            f"{summary.payload_bytes.total:,}",
            f"{summary.overhead_ratio:.1%}",
        )
    return table


def _listen_on_tcp_only(spec: str) -> None:
    """Keep a mode that listens on TCP and UDP (``reverse:https://``) off UDP.

    mitmproxy has no option for it; the transport is an attribute of the parsed
    mode, and mitmproxy parses a spec once and keeps that object
    (``ProxyMode.parse`` is cached), so setting it here holds for its servers.
    """
    mode = ProxyMode.parse(spec)
    if mode.transport_protocol == "both":
        mode.transport_protocol = "tcp"  # type: ignore[misc]


def _udp_listening(proxy: master.Master) -> bool:
    """Whether the proxy listens on UDP (for QUIC) as well as on TCP."""
    return any(mode.transport_protocol != "tcp" for mode in map(ProxyMode.parse, proxy.options.mode))


def _listen_address(proxy: master.Master) -> str:
    return _address(proxy.options.listen_host or "*", proxy.options.listen_port)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _listen_failure(proxy: master.Master) -> str | None:
    """Why the proxy is not listening, or None if it is."""
    servers = proxy.addons.get("proxyserver").servers
    for server in servers:
        if error := server.last_exception:
            if _udp_failed(error):
                return (
                    f"cannot listen on UDP {_listen_address(proxy)} (for HTTP/3; --no-http3 listens on TCP only): "
                    f"{_listen_error(error)}"
                )
            return f"cannot listen on {_listen_address(proxy)}: {_listen_error(error)}"
    if not any(server.is_running for server in servers):
        return f"cannot listen on {_listen_address(proxy)}"
    return None


def _udp_failed(error: Exception) -> bool:
    """Whether a listener failed on its UDP socket: mitmproxy binds those with
    mitmproxy_rs, whose error (the cause of mitmproxy's) names UDP."""
    return "UDP" in str(error.__cause__ or "")


def _listen_error(error: Exception) -> str:
    """The reason a listener failed, without mitmproxy's advice on other modes."""
    if isinstance(error.__cause__, socket.gaierror):
        return str(error.__cause__.strerror)
    if isinstance(error, OSError) and error.errno:
        return os.strerror(error.errno)
    return str(error)


def _ignore_cancelled_connections(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
    """Connections still open at exit are cancelled; Python 3.12.1's asyncio streams
    report each as an error. Everything else goes to the default handler."""
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


async def _reachable(origin: str) -> bool:
    parts = urllib.parse.urlsplit(origin)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), 3)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


def _check_writable(path: str) -> None:
    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise ProxyError(f"cannot write report {path}: it is a directory")
    if not directory.is_dir():
        raise ProxyError(f"cannot write report {path}: no directory {directory}")
    if not os.access(target if target.exists() else directory, os.W_OK):
        raise ProxyError(f"cannot write report {path}: permission denied")
