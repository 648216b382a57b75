"""One demo run: the demo server, the proxy and the clients, then the capture's report and the files.

The plain demo serves HTTP/1.1 without TLS (uvicorn) and runs the transports
one after another, each with a server process and a proxy process of its own
(:mod:`.sequence`), so that what each cost them is measured apart; their
captures are joined into the run's one capture. With ``--http2`` the
server is Hypercorn over TLS with a throwaway CA (``trustme``, in a temporary
folder), offering ``h2`` and ``http/1.1``; the proxy listens with TLS
(mitmproxy's CA, in a temporary confdir unless ``--set confdir=`` names one),
verifies the server against the throwaway CA, and relays whatever protocol
the two ends agree on. Each transport is then read over both protocols.
``--http3`` serves HTTP/3 as well, on the same port number over UDP
(:mod:`demo_server.h3`); the proxy relays QUIC there, and each transport is
read over HTTP/1.1, h2 and h3, WebTransport over h3 alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from demo_server.app import create_app
from demo_server.run import RunningServer, serve_tls_in_thread
from demo_server.tls import make_tls_files

from ..capture import CaptureError
from ..measurements import CLIENTS_FORMAT, CLIENTS_VERSION, ClientMeasurements
from ..processes import machine, raise_open_file_limit
from ..proxy_process import wait_until_closed
from ..render import render
from ..replay import report_from_captures
from ..report import Report
from .captures import join_captures
from .clients import Target, run_python_clients
from .costs import TransportCosts
from .html import with_demo_sections
from .page import require_chromium, run_browser_clients
from .protocols import WireConnection, wire_connections
from .recording_proxy import DemoProxy
from .result import DemoFiles, DemoResult, RunFigures, run_figures, session_path
from .sequence import TransportRun, run_transport, start_processes, stop_processes
from .settings import CLICK_INTERVAL, DEMO_RULES, H2, H3, HTTP1, LOOPBACK, PROTOCOLS, DemoError, DemoSettings
from .tally import ClientTally, PhaseCallback, ProgressCallback

#: mitmproxy's CA certificate in its confdir, for clients of a proxy that listens with TLS.
MITMPROXY_CA = "mitmproxy-ca-cert.pem"


@dataclass
class _Ran:
    """What the clients' part of a run gave, before the capture is reported."""

    clients: dict[str, ClientTally]
    screenshots: dict[str | None, bytes] = field(default_factory=dict)
    costs: dict[str, TransportCosts] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: The reports of runs reported on their own (:func:`own_reports`), by client label.
    reports: dict[str, Report] = field(default_factory=dict)


def run_demo(
    settings: DemoSettings, on_progress: ProgressCallback | None = None, on_phase: PhaseCallback | None = None
) -> DemoResult:
    """Run the experiment and write its files; raises :class:`DemoError` if it could not run at all.
    ``on_progress`` is told the messages each client has received, ``on_phase`` what the run is doing."""
    began = time.monotonic()
    chromium = require_chromium(settings) if settings.browser else None
    try:
        settings.output.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DemoError(f"cannot create {settings.output}: {error.strerror or error}") from None
    files = DemoFiles.in_folder(settings.output, settings.browser, settings.protocols)
    raise_open_file_limit()
    if on_phase is not None:
        on_phase(None, "starting")
    if settings.one_by_one:
        ran = _run_one_by_one(settings, files, chromium, on_progress, on_phase)
    else:
        ran = _run_at_once(settings, files, chromium, on_progress)
    if on_phase is not None:
        on_phase(None, "reporting")
    clients = ran.clients
    problems = ran.problems
    report = report_capture(files.capture)
    wire = tuple(wire_connections(files.capture)) if settings.side_by_side else ()
    for key, png in ran.screenshots.items():
        if key in files.screenshots:
            files.screenshots[key].write_bytes(png)
    facts = machine()
    figures = {key: run_figures(ran.reports.get(key, report), tally) for key, tally in clients.items()}
    document = clients_document(settings, clients, ran.costs, facts, figures)
    measured = ClientMeasurements.from_document(document, str(files.clients_json))
    files.report_json.write_text(render(report, "json"), encoding="utf-8")
    files.clients_json.write_text(json_text(document), encoding="utf-8")
    result = DemoResult(
        settings=settings,
        report=report,
        clients=clients,
        files=files,
        problems=(),
        notes=(),
        seconds=0.0,
        wire=wire,
        costs=ran.costs,
        machine=facts,
        reports=ran.reports,
    )
    problems += client_problems(result)
    problems += wire_problems(settings, wire)
    notes = [*count_notes(result), *shared_notes(result), *wire_notes(settings, wire)]
    result = dataclasses.replace(result, problems=tuple(problems), notes=tuple(notes), seconds=time.monotonic() - began)
    html = render(report, "html", clients=measured)
    files.report_html.write_text(with_demo_sections(html, result), encoding="utf-8")
    return result


def _run_one_by_one(
    settings: DemoSettings,
    files: DemoFiles,
    chromium: str | None,
    on_progress: ProgressCallback | None,
    on_phase: PhaseCallback | None,
) -> _Ran:
    """Each transport in turn with its own server and proxy (:mod:`.sequence`), all started
    first; their captures joined into ``files.capture``."""
    with contextlib.ExitStack() as stack:
        parts = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=".parts-", dir=files.folder)))
        started = start_processes(settings, parts, stack)
        runs = [run_transport(settings, processes, chromium, on_progress, on_phase) for processes in started]
        if on_phase is not None:
            on_phase(None, "stopping")
        stop_processes(settings, runs, started)
        facts = join_captures([run.capture for run in runs], files.capture)
        costs = {run.tally.label: run.costs(part) for run, part in zip(runs, facts, strict=True)}
        reports = own_reports(runs)
    return _Ran(
        clients={run.tally.label: run.tally for run in runs},
        screenshots={run.demo.key: run.screenshot for run in runs if run.screenshot is not None},
        costs=costs,
        problems=[run.problem for run in runs if run.problem],
        reports=reports,
    )


def own_reports(runs: list[TransportRun]) -> dict[str, Report]:
    """The report of each run whose traffic the run's one report mixes with another's, from
    its own capture, by client label: a framework's run (Socket.IO's polling and WebSocket),
    and each plain run of a transport that a framework's run also used. The others' figures
    are their transports' in the run's report."""
    reports = {run.tally.label: report_capture(run.capture) for run in runs if run.demo.app_protocol}
    shared = {name for report in reports.values() for name in report.transports}
    for run in runs:
        if run.demo.app_protocol is None and run.demo.transport in shared:
            reports[run.tally.label] = report_capture(run.capture)
    return reports


def _run_at_once(
    settings: DemoSettings, files: DemoFiles, chromium: str | None, on_progress: ProgressCallback | None
) -> _Ran:
    """``--http2`` and ``--http3``: one server over TLS in a thread, one proxy, every client at once."""
    problems: list[str] = []
    screenshots: dict[str | None, bytes] = {}
    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rtinspect-demo-tls-")))
        _, proxy, server_target, proxy_target = _start_tls(settings, files, folder, stack)
        try:
            proxy.wait_listening()
            if chromium is not None:
                clients, screenshots = asyncio.run(
                    run_browser_clients(settings, chromium, server_target, proxy_target, on_progress)
                )
            else:
                clients = asyncio.run(run_python_clients(settings, server_target, proxy_target, on_progress))
            wait_until_closed(files.capture)
        finally:
            stopped = proxy.stop_problem()
        if stopped:
            problems.append(stopped)
    return _Ran(clients=clients, screenshots=screenshots, problems=problems)


def _start_tls(
    settings: DemoSettings, files: DemoFiles, folder: Path, stack: contextlib.ExitStack
) -> tuple[RunningServer, DemoProxy, Target, Target]:
    """``--http2``: a throwaway CA and certificate in ``folder``, Hypercorn over TLS,
    and the proxy listening with TLS, verifying the server against that CA; with
    ``--http3`` the server also serves HTTP/3, and the proxy relays QUIC, on the same port numbers."""
    tls = make_tls_files(folder)
    server = stack.enter_context(
        serve_tls_in_thread(app_for(settings), tls, LOOPBACK, http3=settings.http3, ws_compression=settings.compression)
    )
    confdir = settings.confdir
    options = (f"ssl_verify_upstream_trusted_ca={tls.ca_cert}", *settings.proxy_options)
    proxy = DemoProxy.rtinspect(
        server.url,
        "--listen-tls",
        *settings.proxy_arguments,
        capture=files.capture,
        confdir=None if confdir else folder / "mitmproxy",
        options=options,
    )
    proxy_ca = (confdir or folder / "mitmproxy") / MITMPROXY_CA
    return server, proxy, Target(server.url, tls.ca_cert), Target(f"https://{LOOPBACK}:{proxy.port}", proxy_ca)


def app_for(settings: DemoSettings) -> FastAPI:
    """The demo server's app for this run, its feed waiting for the run to start it."""
    return create_app(rate=settings.rate, count=settings.count, size=settings.size, autostart=False)


def report_capture(capture: Path) -> Report:
    """The report of the demo's capture, its paths pinned by :data:`DEMO_RULES`."""
    try:
        return report_from_captures([capture], rules=DEMO_RULES)
    except (CaptureError, OSError) as error:
        raise DemoError(f"cannot read the capture {capture}: {error}") from None


def clients_document(
    settings: DemoSettings,
    clients: dict[str, ClientTally],
    costs: Mapping[str, TransportCosts] | None = None,
    facts: Mapping[str, Any] | None = None,
    figures: Mapping[str, RunFigures | None] | None = None,
) -> dict[str, Any]:
    """``clients.json``: the run's parameters and what each client measured, keyed by report
    transport name; with ``--http2``, each transport's clients keyed by protocol (``by_protocol``).
    Without ``--http2``, each transport also holds what it cost (``server``, ``proxy`` and
    with ``--browser`` ``browser``; :class:`.costs.TransportCosts`), and the document says
    how the run was made (``clients_per_transport``, ``one_transport_at_a_time``, ``page``)
    and on what (``machine``); with ``figures``, each transport holds what the report of its
    run says of it (``report``: ``wire_bytes``, ``deliveries``, ``app_messages``; and for a
    framework's run, ``path``, its sessions' transports).
    :mod:`inspector.measurements` reads it."""
    document: dict[str, Any] = {
        "format": CLIENTS_FORMAT,
        "version": CLIENTS_VERSION,
        "clients": "chromium" if settings.browser else "python",
        "feed": {"count": settings.count, "rate": settings.rate, "size": settings.size},
        "poll_interval": settings.poll_interval,
        "websocket_compression": settings.compression,
    }
    if facts is not None:
        document["machine"] = dict(facts)
    if not settings.side_by_side:
        costs = costs or {}
        document["clients_per_transport"] = settings.clients
        document["one_transport_at_a_time"] = True
        if settings.browser:
            document["page"] = {"ui_rows": settings.page_rows, "click_interval": CLICK_INTERVAL}
        figures = figures or {}
        document["transports"] = {
            tally.demo.transport: {
                **tally.to_dict(),
                **(costs[key].to_dict() if key in costs else {}),
                **({"report": figures_to_dict(found)} if (found := figures.get(key)) is not None else {}),
            }
            for key, tally in clients.items()
        }
        return document
    document["protocols"] = list(settings.protocols)
    transports: dict[str, Any] = {}
    for tally in clients.values():
        entry = transports.setdefault(tally.demo.title, {"path": tally.demo.path, "by_protocol": {}})
        entry["by_protocol"][tally.protocol] = tally.to_dict()
    document["transports"] = transports
    return document


def figures_to_dict(figures: RunFigures) -> dict[str, Any]:
    """A run's figures in ``clients.json``."""
    document: dict[str, Any] = {
        "wire_bytes": figures.wire_bytes,
        "deliveries": figures.deliveries,
        "app_messages": figures.app_messages,
    }
    if figures.session is not None:
        document["path"] = session_path(figures.session)
        document["control_messages"] = figures.session.control_messages.as_dict()
    return document


def json_text(document: dict[str, Any]) -> str:
    """The document as indented JSON, each list on one line (a client's latencies are thousands of numbers)."""
    return _json(document, "") + "\n"


def _json(value: Any, indent: str) -> str:
    if isinstance(value, dict) and value:
        inner = indent + "  "
        items = ",\n".join(f"{inner}{json.dumps(key)}: {_json(item, inner)}" for key, item in value.items())
        return f"{{\n{items}\n{indent}}}"
    return json.dumps(value, allow_nan=False, separators=(",", ":") if isinstance(value, list) else None)


def client_problems(result: DemoResult) -> list[str]:
    """One line per failure: a client's error, lost messages, a transport (or a framework's
    sessions) missing from the report."""
    problems = []
    for tally in result.clients.values():
        name = _client_name(tally)
        if tally.error:
            problems.append(f"{name}: {tally.error}")
        if tally.lost:
            problems.append(f"{name}: lost {tally.lost} of {tally.expected} messages")
        if result.figures(tally) is not None:
            continue
        if tally.demo.app_protocol is not None:
            problems.append(f"{name}: the report recognised no {tally.demo.app_protocol} session")
        elif tally.protocol is None or tally.demo.transport not in result.report.transports:
            problems.append(f"{name}: the capture holds none of its traffic")
        else:
            problems.append(f"{name}: the report holds none of its traffic over {tally.protocol}")
    return list(dict.fromkeys(problems))


def count_notes(result: DemoResult) -> list[str]:
    """Where the report's server-to-client message count differs from what the client counted
    (a framework's application messages: its events)."""
    notes = []
    for tally in result.clients.values():
        figures = result.figures(tally)
        if figures is None or tally.deliveries is None:
            continue
        if figures.deliveries != tally.deliveries:
            kind = "application messages" if tally.demo.app_protocol else "messages"
            notes.append(
                f"{_client_name(tally)}: the report counted {figures.deliveries} server-to-client {kind}, "
                f"the client {tally.deliveries}."
            )
    return notes


def shared_notes(result: DemoResult) -> list[str]:
    """Which of the report's transports hold a framework's run too, so that its tables sum runs
    the clients' table gives apart."""
    notes = []
    for tally in result.clients.values():
        figures = result.figures(tally)
        if figures is None or figures.session is None:
            continue
        own = result.reports.get(tally.label)
        names = [name for name in (own.transports if own is not None else ()) if name in result.report.transports]
        if names:
            notes.append(
                f"The report's {' and '.join(names)} figures include the {tally.demo.transport} run's "
                f"({session_path(figures.session)}); the clients' table takes each run from its own capture."
            )
    return notes


def wire_problems(settings: DemoSettings, wire: tuple[WireConnection, ...]) -> list[str]:
    """With ``--http2`` (and ``--http3``): each transport must have crossed the wire over HTTP/1.1
    and h2; WebSocket over h2 as an extended CONNECT, over HTTP/1.1 as an Upgrade. (Over h3,
    :func:`client_problems` finds each transport in the report's ``by_protocol``.)"""
    if not settings.side_by_side:
        return []
    problems = [f"connection {c.connection_id}: {c.problem}" for c in wire if c.problem]
    for demo in settings.selected:
        for protocol in (p for p in settings.protocols_of(demo) if p in PROTOCOLS):
            carriers = [c for c in wire if c.protocol == protocol and demo.path in c.paths]
            if demo.key == "ws":
                opened = sum(c.extended_connects if protocol == H2 else c.websocket_upgrades for c in carriers)
                if not opened:
                    how = "an extended CONNECT (RFC 8441)" if protocol == H2 else "an Upgrade"
                    fallback = (
                        " (it went over HTTP/1.1 instead)" if protocol == H2 and _upgraded(wire, demo.path) else ""
                    )
                    problems.append(f"websocket over {protocol}: no WebSocket opened by {how} on the wire{fallback}")
            elif not carriers:
                problems.append(f"{demo.transport} over {protocol}: no {protocol} connection carried {demo.path}")
    return problems


def _upgraded(wire: tuple[WireConnection, ...], path: str) -> bool:
    return any(c.websocket_upgrades for c in wire if c.protocol == HTTP1 and path in c.paths)


def wire_notes(settings: DemoSettings, wire: tuple[WireConnection, ...]) -> list[str]:
    """With ``--http2`` (and ``--http3``): what the capture shows of HTTP/1.1 and h2."""
    if not settings.side_by_side:
        return []
    by_protocol = {protocol: [c for c in wire if c.protocol == protocol] for protocol in PROTOCOLS}
    http1, h2 = by_protocol[HTTP1], by_protocol[H2]
    upgrades = sum(c.websocket_upgrades for c in http1)
    streams = sum(len(c.requests) for c in h2)
    connects = sum(c.extended_connects for c in h2)
    notes = [
        f"On the wire: {_plural(len(http1), 'HTTP/1.1 connection')} ({_plural(upgrades, 'WebSocket Upgrade')}); "
        f"{_plural(len(h2), 'h2 connection')} with {_plural(streams, 'request stream')} "
        f"({_plural(connects, 'extended CONNECT')} for WebSocket, RFC 8441)"
        + (f"; {_plural(sum(c.protocol == H3 for c in wire), 'QUIC connection')} (h3)." if settings.http3 else ".")
    ]
    return notes


def _plural(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _client_name(tally: ClientTally) -> str:
    """``websocket``, or with ``--http2`` ``websocket over h2``."""
    return tally.demo.transport if tally.protocol is None else f"{tally.demo.transport} over {tally.protocol}"
