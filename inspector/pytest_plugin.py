"""pytest plugin: pin what your real-time traffic costs on the wire in your test suite.

Installed with rtinspect (the ``pytest11`` entry point ``rtinspect``), it offers:

- ``rtinspect_report``: a function from captures (``.rtcap`` files recorded
  with ``rtinspect proxy -w``) to the report as typed results
  (:class:`~inspector.report.Report`, the same numbers as the JSON report).
  A relative path is looked up next to the test file first, then in the
  current directory.
- ``rtinspect_proxy``: starts ``rtinspect proxy`` in front of a server for the
  test and hands back where clients connect; ``proxy.report()`` stops it and
  reports what it recorded.
- :func:`assert_transport` (from :mod:`inspector.expectations`): checks
  figures of one transport with failures that name the transport, the figure,
  the expected and the measured value, and the connections involved.

Example::

    from inspector.pytest_plugin import assert_transport

    def test_chat_costs(rtinspect_report):
        report = rtinspect_report("flows/chat.rtcap", rules=["/updates=long_poll"])
        assert_transport(report, "websocket", messages_server_to_client=200, max_overhead_ratio=0.1)
        assert report.transport("long_poll").empty_polls == 0
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .expectations import assert_transport, check_transport
from .proxy_process import ProxyProcess, ProxyProcessError
from .report import Report

if TYPE_CHECKING:
    from .app_messages import AppMessageRule
    from .classify import AppProtocolRule, TransportRule

# The plugin is loaded by every pytest run where rtinspect is installed, so the
# parsers (h11, wsproto and the rest of the core) are imported on first use only.

Rules = Iterable["str | TransportRule"]
AppMessageRules = Iterable["str | AppMessageRule"]
AppProtocolRules = Iterable["str | AppProtocolRule"]


def transport_rules(rules: Rules) -> tuple[TransportRule, ...]:
    """Rules as given on the command line (``"[METHOD ]PATH=TRANSPORT"``) or already parsed."""
    from .classify import TransportRule

    return tuple(rule if isinstance(rule, TransportRule) else TransportRule.parse(rule) for rule in rules)


def load_report(
    paths: Iterable[str | os.PathLike[str]],
    *,
    rules: Rules = (),
    long_poll_threshold: float | None = None,
    app_messages: AppMessageRules = (),
    app_protocols: AppProtocolRules = (),
) -> Report:
    """The report of captures; a capture that cannot be read fails the test with its reason alone.
    ``long_poll_threshold`` is ``rtinspect report``'s (1 s) unless given; ``app_messages``
    are ``--app-messages`` rules, ``app_protocols`` ``--app-protocol`` rules."""
    __tracebackhide__ = True
    from .app_messages import AppMessageRule
    from .capture import CaptureError
    from .classify import AppProtocolRule
    from .replay import report_from_captures

    paths = list(paths)
    if not paths:
        raise TypeError("give at least one capture")
    try:
        places = tuple(
            rule if isinstance(rule, AppMessageRule) else AppMessageRule.parse(rule) for rule in app_messages
        )
        protocols = tuple(
            rule if isinstance(rule, AppProtocolRule) else AppProtocolRule.parse(rule) for rule in app_protocols
        )
        if long_poll_threshold is None:
            return report_from_captures(
                paths, rules=transport_rules(rules), app_messages=places, app_protocols=protocols
            )
        return report_from_captures(
            paths,
            rules=transport_rules(rules),
            app_messages=places,
            app_protocols=protocols,
            long_poll_threshold=long_poll_threshold,
        )
    except CaptureError as error:
        pytest.fail(str(error), pytrace=False)


class RecordingProxy:
    """``rtinspect proxy`` in front of one server for one test, recording :attr:`capture`.

    Clients connect to :attr:`url` (HTTP) or :attr:`ws_url` (WebSocket) with the
    server's paths. :meth:`report` stops the proxy with SIGTERM, as Ctrl-C would,
    so the capture is complete, and reports it.
    """

    def __init__(self, process: ProxyProcess, capture: Path) -> None:
        self._process = process
        self.capture = capture

    @property
    def url(self) -> str:
        return self._process.url

    @property
    def ws_url(self) -> str:
        return self._process.ws_url

    @property
    def port(self) -> int:
        return self._process.port

    @property
    def output(self) -> str:
        """What the proxy printed (warnings and errors; it runs with ``-q``)."""
        return self._process.output

    def stop(self) -> None:
        """Stop the proxy (once); a proxy that fails to stop cleanly fails the test."""
        __tracebackhide__ = True
        try:
            status = self._process.stop()
        except ProxyProcessError as error:
            pytest.fail(f"rtinspect proxy: {error}", pytrace=False)
        if status != 0:
            pytest.fail(f"rtinspect proxy exited with status {status}: {self.output.strip()}", pytrace=False)

    def report(
        self,
        *,
        rules: Rules = (),
        long_poll_threshold: float | None = None,
        app_messages: AppMessageRules = (),
        app_protocols: AppProtocolRules = (),
    ) -> Report:
        """Stop the proxy and report everything it relayed."""
        __tracebackhide__ = True
        self.stop()
        return load_report(
            [self.capture],
            rules=rules,
            long_poll_threshold=long_poll_threshold,
            app_messages=app_messages,
            app_protocols=app_protocols,
        )


@pytest.fixture
def rtinspect_report(request: pytest.FixtureRequest) -> Callable[..., Report]:
    """``rtinspect_report(*captures, rules=(), long_poll_threshold=1.0, app_messages=(),
    app_protocols=())``: the report of the captures, merged."""
    here = request.path.parent

    def report(
        *captures: str | os.PathLike[str],
        rules: Rules = (),
        long_poll_threshold: float | None = None,
        app_messages: AppMessageRules = (),
        app_protocols: AppProtocolRules = (),
    ) -> Report:
        __tracebackhide__ = True
        return load_report(
            [_next_to(here, capture) for capture in captures],
            rules=rules,
            long_poll_threshold=long_poll_threshold,
            app_messages=app_messages,
            app_protocols=app_protocols,
        )

    return report


def _next_to(directory: Path, path: str | os.PathLike[str]) -> Path:
    candidate = Path(path)
    if not candidate.is_absolute() and (directory / candidate).exists():
        return directory / candidate
    return candidate


@pytest.fixture(scope="session")
def rtinspect_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mitmproxy's configuration directory (its CA) for every proxy of the session."""
    return tmp_path_factory.mktemp("rtinspect-mitmproxy")


@pytest.fixture
def rtinspect_proxy(tmp_path: Path, rtinspect_confdir: Path) -> Iterator[Callable[..., RecordingProxy]]:
    """``rtinspect_proxy(upstream, *args)``: ``rtinspect proxy UPSTREAM ARGS`` on a free
    loopback port, listening when it returns, recording to a capture in ``tmp_path``.
    Proxies still running when the test ends are stopped."""
    started: list[ProxyProcess] = []

    def start(upstream: str, *args: str) -> RecordingProxy:
        __tracebackhide__ = True
        capture = tmp_path / f"rtinspect-{len(started) + 1}.rtcap"
        process = ProxyProcess.rtinspect(upstream, *args, confdir=rtinspect_confdir, capture=capture)
        started.append(process)
        try:
            process.wait_listening()
        except ProxyProcessError as error:
            pytest.fail(f"rtinspect proxy {upstream}: {error}", pytrace=False)
        return RecordingProxy(process, capture)

    yield start
    for process in started:
        if process.running:
            try:
                process.stop()
            except ProxyProcessError:
                pass


__all__ = ["RecordingProxy", "assert_transport", "check_transport", "load_report", "transport_rules"]
