"""Prometheus metrics from the addon in a user's own mitmdump.

``mitmdump -s "$(rtinspect addon-path)" --set rtinspect_metrics_port=9464``
serves, at ``http://127.0.0.1:9464/metrics``, the metrics ``rtinspect proxy
--metrics-port`` serves (:mod:`inspector.metrics`: the same ledger, the same
families, labels and meanings), for the connections the script's
:class:`~inspector.addon.RtInspect` analyses. ``rtinspect_metrics_host``
says where to listen (127.0.0.1 unless set; any other address is warned
about, as the proxy warns). The counters count connections closed since the
metrics were switched on; changing either option moves the server and keeps
the counts.
"""

from __future__ import annotations

import asyncio
import logging

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from .addon import RtInspect
from .analyser import InProcessAnalysis
from .connection import ConnectionRecord
from .metrics import SCRAPE_TIMEOUT, LiveMetrics, MetricsLedger, MetricsServer, is_loopback, listen_error

logger = logging.getLogger(__name__)

#: The options this addon adds to mitmproxy's.
PORT_OPTION = "rtinspect_metrics_port"
HOST_OPTION = "rtinspect_metrics_host"
DEFAULT_HOST = "127.0.0.1"


class RtInspectMetrics:
    """Serves Prometheus metrics of the connections an :class:`RtInspect` analyses inline."""

    def __init__(self, inspect: RtInspect) -> None:
        self._inspect = inspect
        self._ledger = MetricsLedger()
        self.server: MetricsServer | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            PORT_OPTION,
            int | None,  # type: ignore[arg-type]  # mitmproxy takes a union; its loader says type
            None,
            "Serve Prometheus metrics of what each transport cost on this port (/metrics), as "
            "rtinspect proxy --metrics-port does.",
        )
        loader.add_option(HOST_OPTION, str, DEFAULT_HOST, f"The address {PORT_OPTION} listens on.")

    def configure(self, updated: set[str]) -> None:
        if not {PORT_OPTION, HOST_OPTION} & updated:
            return
        port = ctx.options.rtinspect_metrics_port
        if port is not None and not 0 < port < 65536:
            raise exceptions.OptionsError(f"{PORT_OPTION} must be a port number (1-65535), not {port}")
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._serve(loop)

    def running(self) -> None:
        if self.server is None:
            self._serve(asyncio.get_running_loop())

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        """(Re)start the server where the options say, or stop it when no port is set."""
        self._stop()
        port, host = ctx.options.rtinspect_metrics_port, ctx.options.rtinspect_metrics_host
        if port is None:
            return
        try:
            self.server = MetricsServer(LiveMetrics(self._ledger, self._records, loop), host, port)
        except OSError as e:
            address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
            raise exceptions.OptionsError(f"cannot serve metrics on {address}: {listen_error(e)}") from None
        self._keep_closed(True)
        logger.info(f"rtinspect metrics: {self.server.url}")
        if not is_loopback(host):
            logger.warning(f"serving metrics on {host}:{port}: the metrics are reachable from the network")

    async def _records(self) -> tuple[list[ConnectionRecord], tuple[ConnectionRecord, ...]]:
        """Connections closed since the last scrape, in the order they closed, and a snapshot of each open one."""
        return await self._inspect.analysis.records(SCRAPE_TIMEOUT / 2)

    def _keep_closed(self, keep: bool) -> None:
        """Closed connections are kept for the metrics only while they are served."""
        if isinstance(self._inspect.analysis, InProcessAnalysis):
            self._inspect.analysis.analyser.keep_closed = keep

    def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
            self._keep_closed(False)

    def done(self) -> None:
        self._stop()


__all__ = ["HOST_OPTION", "PORT_OPTION", "RtInspectMetrics"]
