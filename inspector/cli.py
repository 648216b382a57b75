"""The ``rtinspect`` command line: thin shells around the core."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, NoReturn

import click

from .app_messages import AppMessageRule
from .capture import CaptureError
from .classify import DEFAULT_LONG_POLL_THRESHOLD, AppProtocolRule, Classifier, TransportRule
from .extras import DemoCommand
from .formats.export import EXPORT_FORMATS
from .formats.pcapng import MAX_SEGMENT
from .measurements import ClientMeasurements, ClientMeasurementsError, load_client_measurements
from .network import PRESETS, NetworkConditions, NetworkError, network_conditions, preset_help
from .partial import merge_partials, partial_from_captures, write_partial
from .projection import Fleet, project
from .render import FORMATS, render
from .render.stream import STREAMED_FORMATS, ConnectionStream
from .replay import default_jobs, report_from_captures
from .report import Report
from .speedups import describe as describe_parsers


class _Commands(click.Group):
    """The commands, with ``demo-server`` (and the FastAPI it needs) loaded only when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "demo-server"])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "demo-server":
            from demo_server.cli import main as demo_server_command

            return demo_server_command
        return super().get_command(ctx, name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rtinspect", message=f"%(prog)s %(version)s (parsers: {describe_parsers()})")
def main() -> None:
    """Measure what each real-time transport costs on the wire.

    \b
    rtinspect proxy http://127.0.0.1:8000 -w chat.rtcap   # inspect and record
    rtinspect report chat.rtcap                           # what each transport cost
    rtinspect demo                                        # the experiment, end to end
    """


def _rules[R](parse: Callable[[str], R]) -> Callable[[click.Context, click.Parameter, tuple[str, ...]], tuple[R, ...]]:
    """An option callback that parses each of a repeatable option's rules, one line for a mistake."""

    def parsed(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[R, ...]:
        try:
            return tuple(parse(value) for value in values)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None

    return parsed


def _fleet(ctx: click.Context, param: click.Parameter, value: str | None) -> Fleet | None:
    try:
        return Fleet.parse(value) if value is not None else None
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


def classification_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options that steer classification, shared by every command that reports."""
    command = click.option(
        "--transport",
        "rules",
        multiple=True,
        metavar="[METHOD ]PATH=TRANSPORT",
        callback=_rules(TransportRule.parse),
        help="Classify requests to PATH (exact, or a glob like /api/*) as TRANSPORT "
        "(websocket, sse, http_stream, long_poll, short_poll, http). Repeatable.",
    )(command)
    command = click.option(
        "--long-poll-threshold",
        type=click.FloatRange(min=0),
        default=DEFAULT_LONG_POLL_THRESHOLD,
        show_default=True,
        metavar="SECONDS",
        help="A repeated request the server held at least this long is a long poll.",
    )(command)
    command = click.option(
        "--app-messages",
        "app_messages",
        multiple=True,
        metavar="[METHOD ]PATH=$.MEMBER",
        callback=_rules(AppMessageRule.parse),
        help="The application's messages in responses to PATH are the items of the JSON array at "
        "$.MEMBER (or $ for the whole body), e.g. 'GET /poll=$.items'. Without a rule, a JSON array "
        "body (or an object whose one member is an array) counts its items. Repeatable.",
    )(command)
    command = click.option(
        "--app-protocol",
        "app_protocols",
        multiple=True,
        metavar="[METHOD ]PATH=NAME",
        callback=_rules(AppProtocolRule.parse),
        help="Requests to PATH speak application protocol NAME (socket.io, graphql-transport-ws, graphql-ws, "
        "sockjs, stomp, mqtt, signalr, phoenix, actioncable), whatever their URL or subprotocol says; "
        "without a rule each is recognised from the traffic. Repeatable.",
    )(command)
    return command


def output_options(command: Callable[..., None]) -> Callable[..., None]:
    """-f and -o, for the commands that render a report."""
    command = click.option(
        "-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE, not standard output."
    )(command)
    return click.option(
        "-f", "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format."
    )(command)


def redaction_option(command: Callable[..., None]) -> Callable[..., None]:
    """``--redact/--no-redact``, shared by every command that writes a report."""
    return click.option(
        "--redact/--no-redact",
        default=True,
        show_default=True,
        help="Show request targets without credentials (userinfo, and values of parameters "
        "such as token= or api_key=). Reports never show header values.",
    )(command)


@main.command(context_settings={"max_content_width": 100})
@click.argument("captures", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="CAPTURE...")
@output_options
@click.option(
    "--connections",
    is_flag=True,
    help="List each connection too. With -f json or csv every connection is written as it closes; "
    "the other formats list the first 10,000.",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    metavar="N",
    help="Processes that share the connections; the report is the same for any N "
    "[default: every CPU for captures of 16 MB or more, else 1].",
)
@click.option(
    "--project",
    "fleet",
    metavar="CLIENTS@RATE",
    callback=_fleet,
    help="Project each transport's measured costs per application message to a fleet, e.g. 10000@1/s "
    "(clients @ application messages each client receives from the server per s, min or h): wire bytes a day, requests a second, "
    "handshakes and TCP connects an hour, open connections.",
)
@click.option(
    "--clients",
    "clients_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="What the clients measured (a demo's clients.json): adds their latency per transport "
    "(a chart in -f html; a table in table, markdown and json; not in csv).",
)
@click.option(
    "--server-port",
    "server_ports",
    multiple=True,
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="pcap and pcapng files: a TCP port the servers listened on; segments from it are server to client "
    "(as in Wireshark's -d tcp.port==PORT,http). Repeatable. Packet files need at least one.",
)
@click.option(
    "--partial",
    "partial_file",
    type=click.Path(dir_okay=False, writable=True),
    metavar="FILE",
    help="Write a partial summary to FILE (- for standard output) instead of the report: "
    "rtinspect merge combines partial summaries from any machines into one report.",
)
@classification_options
@redaction_option
@click.pass_context
def report(
    ctx: click.Context,
    captures: tuple[str, ...],
    fmt: str,
    output: str | None,
    connections: bool,
    jobs: int | None,
    fleet: Fleet | None,
    clients_file: str | None,
    server_ports: tuple[int, ...],
    partial_file: str | None,
    rules: tuple[TransportRule, ...],
    long_poll_threshold: float,
    app_messages: tuple[AppMessageRule, ...],
    app_protocols: tuple[AppProtocolRule, ...],
    redact: bool,
) -> None:
    """What each transport cost in one or more captures (merged).

    Captures are read in one pass, with memory that does not grow with their
    size, by as many processes as there are CPUs when they are large.
    A CAPTURE may also be a HAR file or a mitmproxy flow file (mitmdump -w);
    their HTTP and WebSocket bytes are rebuilt, and the report says so.
    Or a pcap or pcapng file (tcpdump, dumpcap, Wireshark) of plaintext
    HTTP/1.1, WebSocket or h2c traffic, with --server-port: its TCP
    connections are put back together from their segments, and connections
    that lack segments are marked rebuilt.

    \b
    Examples:
      rtinspect report chat.rtcap
      rtinspect report chat.rtcap --connections
      rtinspect report a.rtcap b.rtcap -f html -o report.html
      rtinspect report feed.rtcap --transport /updates=long_poll -f json
      rtinspect report day.rtcap -j 2 --connections -f csv -o connections.csv
      rtinspect report feed.rtcap --project 10000@1/s
      rtinspect report feed.rtcap --app-messages 'GET /poll=$.items'
      rtinspect report chat.rtcap --app-protocol '/live/*=socket.io'
      rtinspect report session.har
      rtinspect report traffic.pcapng --server-port 8000
      rtinspect report demo/capture.rtcap --clients demo/clients.json -f html -o report.html
      rtinspect report monday.rtcap --partial monday.partial   # then: rtinspect merge *.partial
    """
    if partial_file is not None:
        _refuse_with_partial(ctx)
    clients = _client_measurements(clients_file, fmt)
    _check_server_ports(captures, server_ports)
    options = {
        "long_poll_threshold": long_poll_threshold,
        "rules": rules,
        "app_messages": app_messages,
        "app_protocols": app_protocols,
        "redact": redact,
    }
    options["server_ports"] = server_ports
    options["jobs"] = jobs if jobs is not None else default_jobs(captures)
    if partial_file is not None:
        _write_partial(captures, partial_file, options)
        return
    if connections and fmt in STREAMED_FORMATS:
        _report_streaming_connections(captures, fmt, output, options, fleet, clients)
        return
    try:
        built = report_from_captures(captures, **options)  # type: ignore[arg-type]
    except CaptureError as error:
        raise click.ClickException(str(error)) from None
    if not built.connection_count:
        raise click.ClickException(f"{', '.join(captures)}: no connections recorded; nothing to report")
    _write_report(built, fmt, output, connections, fleet, clients)


def _write_report(
    built: Report,
    fmt: str,
    output: str | None,
    connections: bool,
    fleet: Fleet | None,
    clients: ClientMeasurements | None,
) -> None:
    """A report rendered in ``fmt``, projected to ``fleet`` if one is given, to ``output`` or standard output."""
    if fleet is not None:
        built = replace(built, projection=project(built, fleet))
    text = render(built, fmt, connections=connections, clients=clients)
    if output is None:
        click.echo(text, nl=not text.endswith("\n"))
        return
    try:
        with open(output, "w", encoding="utf-8") as file:
            file.write(text)
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror or error}") from None
    click.echo(f"wrote {output}", err=True)


#: What a partial summary leaves to ``rtinspect merge``: the options that render a report.
_RENDERING_OPTIONS = {
    "fmt": "-f",
    "output": "-o",
    "connections": "--connections",
    "fleet": "--project",
    "clients_file": "--clients",
}


def _refuse_with_partial(ctx: click.Context) -> None:
    """--partial writes no report: the options that shape one belong to ``rtinspect merge``."""
    given = [
        flag
        for name, flag in _RENDERING_OPTIONS.items()
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE
    ]
    if given:
        raise click.UsageError(
            f"--partial writes a partial summary, not a report: give {', '.join(given)} to rtinspect merge"
        )


def _write_partial(captures: tuple[str, ...], target: str, options: dict[str, Any]) -> None:
    """``report --partial``: the captures' partial summary, written whole or not at all."""
    classifier = Classifier(
        tuple(options["rules"]),
        options["long_poll_threshold"],
        tuple(options["app_messages"]),
        tuple(options["app_protocols"]),
    )
    with _output(target, binary=True) as out:
        partial = partial_from_captures(
            captures,
            classifier,
            redact=options["redact"],
            jobs=options["jobs"],
            server_ports=options["server_ports"],
        )
        write_partial(partial, out)
    if target != "-":
        click.echo(f"wrote {target}", err=True)


@main.command(context_settings={"max_content_width": 100})
@click.argument("partials", nargs=-1, required=True, type=click.Path(dir_okay=False), metavar="PARTIAL...")
@output_options
@click.option(
    "--connections",
    is_flag=True,
    help="List each connection too: the first 10,000 of them, in every format.",
)
@click.option(
    "--project",
    "fleet",
    metavar="CLIENTS@RATE",
    callback=_fleet,
    help="Project each transport's measured costs per application message to a fleet, as rtinspect report does.",
)
@click.option(
    "--clients",
    "clients_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="What the clients measured (a demo's clients.json), as rtinspect report shows it.",
)
def merge(
    partials: tuple[str, ...],
    fmt: str,
    output: str | None,
    connections: bool,
    fleet: Fleet | None,
    clients_file: str | None,
) -> None:
    """The report of partial summaries (rtinspect report --partial), from any machines.

    The report is the one rtinspect report would give of all their captures
    at once, in the order the files are given: the first file's captures, then
    the second's. Every partial summary must have been written with the same
    --transport, --long-poll-threshold, --app-messages, --app-protocol and
    --redact options. Connection ids read N:ID, N the capture's number among
    all of them.

    \b
    Examples:
      rtinspect report monday.rtcap --partial monday.partial
      rtinspect report tuesday.rtcap --partial tuesday.partial
      rtinspect merge monday.partial tuesday.partial
      rtinspect merge host-*.partial -f html -o fleet.html
      ls captures/*.rtcap | xargs -P 4 -I{} rtinspect report {} --partial {}.partial
    """
    clients = _client_measurements(clients_file, fmt)
    try:
        merged = merge_partials(partials)
    except CaptureError as error:
        raise click.ClickException(str(error)) from None
    built = merged.report()
    if not built.connection_count:
        raise click.ClickException(f"{', '.join(partials)}: no connections recorded; nothing to report")
    _write_report(built, fmt, output, connections, fleet, clients)


def _check_server_ports(captures: tuple[str, ...], server_ports: tuple[int, ...]) -> None:
    """--server-port names the servers of packet files: given for none, it is a mistake to say so."""
    from .formats.detect import FileFormat, detect_format

    if not server_ports:
        return
    try:
        formats = {detect_format(capture) for capture in captures}
    except CaptureError:
        return  # the report says what is wrong with the file
    if not formats & {FileFormat.PCAP, FileFormat.PCAPNG}:
        raise click.UsageError("--server-port is for pcap and pcapng files; none of the files given is one")


def _client_measurements(path: str | None, fmt: str) -> ClientMeasurements | None:
    """``--clients FILE`` read, or one line saying why it cannot be."""
    if path is None:
        return None
    if fmt == "csv":
        raise click.UsageError(
            "--clients does not apply to -f csv (a CSV report is one table); use table, markdown, json or html"
        )
    try:
        return load_client_measurements(path)
    except ClientMeasurementsError as error:
        raise click.ClickException(str(error)) from None


@contextlib.contextmanager
def _output(target: str, *, binary: bool = False) -> Iterator[Any]:
    """Standard output for "-", else a file that is written whole or not at all
    (TARGET.partial, renamed when done); a capture that cannot be read and a
    file that cannot be written end the command with one line."""
    partial = f"{target}.partial"
    try:
        if target == "-":
            stdout: Any = click.get_binary_stream("stdout") if binary else sys.stdout  # type: ignore[operator]
            yield stdout
        else:
            with open(partial, "wb" if binary else "w", encoding=None if binary else "utf-8") as out:
                yield out
            os.replace(partial, target)
    except CaptureError as error:
        raise click.ClickException(str(error)) from None
    except OSError as error:
        raise click.ClickException(f"cannot write {target}: {error.strerror or error}") from None
    finally:
        if target != "-" and os.path.exists(partial):
            os.unlink(partial)


def _report_streaming_connections(
    captures: tuple[str, ...],
    fmt: str,
    output: str | None,
    options: dict[str, object],
    fleet: Fleet | None,
    clients: ClientMeasurements | None = None,
) -> None:
    """``report --connections`` as JSON or CSV: each connection written as it is summarised."""
    target = output if output is not None else "-"
    with _output(target) as out:
        stream = ConnectionStream(fmt, out)
        built = report_from_captures(captures, on_connection=stream.write, **options)  # type: ignore[arg-type]
        if not built.connection_count:
            raise click.ClickException(f"{', '.join(captures)}: no connections recorded; nothing to report")
        if fleet is not None:
            built = replace(built, projection=project(built, fleet))
        stream.finish(built, clients)
    if target != "-":
        click.echo(f"wrote {target}", err=True)


# `export` command: below, owned with inspector/formats/


@main.command(context_settings={"max_content_width": 100})
@click.argument("capture", type=click.Path(dir_okay=False), metavar="CAPTURE")
@click.option(
    "--to",
    "fmt",
    type=click.Choice(EXPORT_FORMATS),
    required=True,
    help="pcapng (Wireshark, tshark), har (browsers' DevTools) or mitmproxy (a flow file for mitmweb).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Where to write ('-' for standard output; default: CAPTURE with the format's suffix).",
)
@click.option(
    "--mss",
    type=click.IntRange(1, MAX_SEGMENT),
    metavar="BYTES",
    help=f"pcapng: the largest TCP payload of a packet [default: {MAX_SEGMENT}].",
)
@click.option(
    "--server-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="pcapng: show every server on PORT (e.g. 80) for tools that choose dissectors by port.",
)
def export(capture: str, fmt: str, output: str | None, mss: int | None, server_port: int | None) -> None:
    """Write a capture (or a HAR or mitmproxy flow file) in another tool's format.

    pcapng holds the recorded streams as TCP packets, byte for byte, with the
    capture's addresses, ports and times; Wireshark and tshark dissect HTTP
    and WebSocket in it (by heuristics on any port; where a port belongs to
    another protocol, use --server-port 80 or tshark's -d tcp.port==PORT,http).
    har and mitmproxy hold each exchange's heads, bodies and WebSocket messages.

    \b
    Examples:
      rtinspect export chat.rtcap --to pcapng          # writes chat.pcapng
      rtinspect export chat.rtcap --to pcapng -o - | tshark -r - -Y websocket
      rtinspect export chat.rtcap --to har -o chat.har
    """
    from pathlib import Path

    from inspector.formats import open_traffic
    from inspector.formats.export import EXPORT_SUFFIXES, export_records

    if fmt != "pcapng" and (mss is not None or server_port is not None):
        raise click.UsageError("--mss and --server-port shape pcapng packets; they do not apply to --to " + fmt)
    from inspector.formats.detect import FileFormat, detect_format

    try:
        found = detect_format(capture)
    except CaptureError as error:
        raise click.ClickException(str(error)) from None
    if found in (FileFormat.PCAP, FileFormat.PCAPNG):
        raise click.ClickException(
            f"{capture}: a {found} file of packets already; export writes captures and the files rtinspect reads "
            f"(rtinspect report reads it: rtinspect report {capture} --server-port PORT)"
        )
    target = output or str(Path(capture).with_suffix(EXPORT_SUFFIXES[fmt]))
    if target != "-" and Path(target).resolve() == Path(capture).resolve():
        raise click.UsageError(f"the export would overwrite {capture}; choose another file with -o")
    with _output(target, binary=True) as out, open_traffic(capture) as traffic:
        exported = export_records(traffic, fmt, out, mss=mss, server_port=server_port)
    where = "standard output" if target == "-" else target
    click.echo(f"wrote {where}: {exported.summary}", err=True)
    for note in exported.notes:
        click.echo(f"note: {note}", err=True)


# `proxy` command: below, owned with inspector/addon.py and inspector/proxy.py


def network_preset_option(command: Callable[..., None]) -> Callable[..., None]:
    """``--network PRESET``, shared by the proxy and the demo."""
    return click.option(
        "--network",
        "network_preset",
        metavar="PRESET",
        help=f"Add a named network profile to every connection: {', '.join(PRESETS)} "
        "(their figures and sources are listed below).",
    )(command)


def network_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options that add network conditions to the proxy's connections."""
    command = click.option(
        "--up",
        metavar="RATE",
        help="Bandwidth from client to server, per connection (like --down).",
    )(command)
    command = click.option(
        "--down",
        metavar="RATE",
        help="Bandwidth from server to client, per connection: bits per second as tc and DevTools give them, "
        "e.g. 500kbit, 1.6mbit, 1gbit; or bytes: 2mbyte; or unlimited. Decimal units (1kbit = 1,000 bit/s).",
    )(command)
    command = click.option(
        "--jitter",
        metavar="MS",
        help="Vary each direction's delay at random by up to MS either way; bytes are never reordered.",
    )(command)
    command = click.option(
        "--rtt",
        metavar="MS",
        help="Add MS milliseconds of round-trip time, half to each direction. This and the three "
        "options below replace a --network preset's figures.",
    )(command)
    return network_preset_option(command)


def parse_network(
    preset: str | None,
    *,
    rtt: str | None = None,
    jitter: str | None = None,
    down: str | None = None,
    up: str | None = None,
) -> NetworkConditions | None:
    """The conditions the options ask for; a value that cannot be used ends the command with one line."""
    try:
        return network_conditions(preset, rtt=rtt, jitter=jitter, down=down, up=up)
    except NetworkError as error:
        raise click.ClickException(str(error)) from None


_NETWORK_EPILOG = "\b\nNetwork presets (--network):\n" + "\n".join(f"  {line}" for line in preset_help().splitlines())


@main.command(context_settings={"max_content_width": 100}, epilog=_NETWORK_EPILOG)
@click.argument("upstream", required=False, metavar="[URL]")
@click.option("--upstream", "upstream_option", metavar="URL", help="The server to relay to (same as URL).")
@click.option(
    "--mode",
    type=click.Choice(["reverse", "regular"]),
    default="reverse",
    show_default=True,
    help="reverse: clients talk to the proxy as if it were the server. "
    "regular: a forward proxy; CONNECT tunnels are inspected, plain-HTTP requests counted on the client's leg.",
)
@click.option(
    "-p", "--listen-port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port to listen on."
)
@click.option("--listen-host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--listen-tls", is_flag=True, help="Accept TLS clients only (certificates from mitmproxy's CA).")
@click.option("--upstream-insecure", is_flag=True, help="Do not verify the upstream's certificate (self-signed).")
@click.option(
    "--http1-only",
    is_flag=True,
    help="Offer only HTTP/1.1 in TLS (ALPN), so clients and server do not agree on HTTP/2 "
    "(mitmproxy's --set http2=false). By default a TLS upstream gets the client's ALPN offer and the "
    "client its choice; TLS clients of a cleartext upstream are offered HTTP/1.1 only. Also --no-http3.",
)
@click.option(
    "--no-http3",
    is_flag=True,
    help="Do not listen on UDP. With an https:// upstream the proxy also listens on UDP, on the same host and "
    "port, and relays QUIC (HTTP/3, WebSocket over HTTP/3, WebTransport) stream by stream, unchanged; this "
    "turns that off, e.g. when the port's UDP side is taken or clients should stay on TCP.",
)
@click.option("-w", "--write", metavar="CAPTURE", help="Record the raw traffic to this file (.rtcap).")
@click.option("-q", "--quiet", is_flag=True, help="No live view; the summary on exit still prints.")
@click.option("--report", metavar="FILE", help="Write the report to FILE on exit.")
@click.option(
    "--report-format",
    type=click.Choice(FORMATS),
    help="Format of --report (default: from FILE's suffix, else json).",
)
@classification_options
@redaction_option
@click.option(
    "--set",
    "mitmproxy_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a mitmproxy option, e.g. confdir=~/.mitmproxy or tcp_timeout=60.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    metavar="PORT",
    help="Serve Prometheus metrics on this port (http://HOST:PORT/metrics).",
)
@click.option(
    "--metrics-host", default="127.0.0.1", show_default=True, help="Address to serve metrics on (with --metrics-port)."
)
@click.option(
    "--analysis",
    type=click.Choice(["process", "inline"]),
    default="process",
    show_default=True,
    help="process: analyse in a second process, off the relay's path (relaying never waits for analysis). "
    "inline: analyse each read in the relay before forwarding it.",
)
@network_options
def proxy(
    upstream: str | None,
    upstream_option: str | None,
    mode: str,
    listen_port: int,
    listen_host: str,
    listen_tls: bool,
    upstream_insecure: bool,
    http1_only: bool,
    no_http3: bool,
    write: str | None,
    quiet: bool,
    report: str | None,
    report_format: str | None,
    rules: tuple[TransportRule, ...],
    long_poll_threshold: float,
    app_messages: tuple[AppMessageRule, ...],
    app_protocols: tuple[AppProtocolRule, ...],
    redact: bool,
    mitmproxy_options: tuple[str, ...],
    metrics_port: int | None,
    metrics_host: str,
    analysis: str,
    network_preset: str | None,
    rtt: str | None,
    jitter: str | None,
    down: str | None,
    up: str | None,
) -> None:
    """Relay clients to a server and measure what each transport costs.

    Every byte is relayed unchanged: after TLS, the proxy sees the raw TCP
    stream and hands it to the analysers. With an https:// upstream it also
    takes QUIC on UDP (same host and port): each QUIC stream and DATAGRAM
    frame is relayed unchanged and recorded. Clients may also connect with TLS;
    their certificates come from mitmproxy's CA (in ~/.mitmproxy unless
    --set confdir=... says otherwise). Ctrl-C or SIGTERM stops the proxy,
    prints the summary, writes --report and closes the capture.

    In --mode regular (a forward proxy), CONNECT tunnels are inspected byte
    for byte, after TLS interception where the client starts TLS. Plain-HTTP
    requests (GET http://...) go through mitmproxy's HTTP layer, which sends
    them on in origin form with their heads written again: they are counted
    on the client's leg, as the client sent and received them (the report
    says so), and network conditions are not added to them.

    --network, --rtt, --jitter, --down and --up add delay and limit bandwidth
    on every connection, each direction on its own, without reordering or
    changing a byte; the capture keeps the times bytes reached the proxy, and
    notes the conditions for the report. Only bytes after TLS are held: TCP
    and TLS handshakes are not delayed.

    \b
    Examples:
      rtinspect proxy http://127.0.0.1:8000 -w chat.rtcap
      rtinspect proxy https://api.example.com -p 9000 --report cost.html
      rtinspect proxy https://127.0.0.1:8443 --upstream-insecure --listen-tls
      rtinspect proxy --mode regular -w browsing.rtcap
      rtinspect proxy http://127.0.0.1:8000 --metrics-port 9464
      rtinspect proxy http://127.0.0.1:8000 --network 4g -w chat-4g.rtcap
      rtinspect proxy http://127.0.0.1:8000 --rtt 100 --jitter 10 --down 1.6mbit --up 750kbit
      rtinspect report chat.rtcap
    """
    from inspector.proxy import ProxyError, ProxySettings, run

    metrics_host_source = click.get_current_context().get_parameter_source("metrics_host")
    if metrics_port is None and metrics_host_source is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError("--metrics-host needs --metrics-port")

    if upstream and upstream_option and upstream != upstream_option:
        raise click.ClickException("give the upstream once: as URL or as --upstream")
    network = parse_network(network_preset, rtt=rtt, jitter=jitter, down=down, up=up)
    settings = ProxySettings(
        upstream=upstream or upstream_option,
        mode=mode,
        listen_host=listen_host,
        listen_port=listen_port,
        listen_tls=listen_tls,
        upstream_insecure=upstream_insecure,
        http1_only=http1_only,
        http3=not (no_http3 or http1_only),
        write=write,
        quiet=quiet,
        report=report,
        report_format=report_format,
        long_poll_threshold=long_poll_threshold,
        rules=rules,
        app_messages=app_messages,
        app_protocols=app_protocols,
        redact=redact,
        mitmproxy_options=mitmproxy_options,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        analysis=analysis,
        network=network,
    )
    try:
        served_quic = run(settings)
    except ProxyError as e:
        raise click.ClickException(str(e)) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    if served_quic:
        _leave(0)


def _leave(status: int) -> NoReturn:
    """End the process of a proxy that listened on UDP, once every file is written and
    closed, without finalizing the interpreter: a thread of mitmproxy's UDP server (in
    Rust) can take the GIL while Python finalizes, and the process then faults on its way out."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


@main.command("addon-path")
def addon_path() -> None:
    """Print the path of the mitmproxy script, to load rtinspect into mitmdump.

    \b
    Example:
      mitmdump -s "$(rtinspect addon-path)" --mode reverse:http://127.0.0.1:8000 \\
          --set rtinspect_write=chat.rtcap
    """
    import importlib.util

    spec = importlib.util.find_spec("inspector.mitmproxy_script")
    assert spec is not None and spec.origin is not None
    click.echo(spec.origin)


# `demo` / `demo-server` commands: below, owned with demo_server/


def _transport_keys(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...]:
    from inspector.demo import TRANSPORT_KEYS

    if value is None:
        return TRANSPORT_KEYS
    keys = tuple(dict.fromkeys(key.strip() for key in value.split(",") if key.strip()))
    unknown = [key for key in keys if key not in TRANSPORT_KEYS]
    if unknown or not keys:
        raise click.BadParameter(f"choose from {','.join(TRANSPORT_KEYS)} (got {value!r})")
    return keys


@main.command(cls=DemoCommand, context_settings={"max_content_width": 100}, epilog=_NETWORK_EPILOG)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    help="Messages in the feed (default: 100; 200 with --long).",
)
@click.option(
    "--rate",
    type=click.FloatRange(0, min_open=True),
    help="Messages per second (default: 50; 20 with --long).",
)
@click.option(
    "--long",
    "long_run",
    is_flag=True,
    help="The steadier run: 200 messages at 20/s (10 s per transport) instead of 100 at 50/s; "
    "--count and --rate still override.",
)
@click.option("--size", default=256, show_default=True, type=click.IntRange(min=0), help="Bytes of JSON per message.")
@click.option(
    "--transports",
    callback=_transport_keys,
    help="Which transports to run, comma-separated (default: every one the run offers: "
    "ws,sse,stream,longpoll,poll,socketio; with --http3 also wt,wtdgram); socketio is the same feed over Socket.IO "
    "(python-socketio: long polling upgraded to WebSocket), which --browser, --http2 and --http3 leave out; "
    "wt and wtdgram are WebTransport (a stream, or a datagram, per message), which only --http3 offers.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Pause between short polls (default: the feed's duration / 10, so 0.2 s; 1 s with --long).",
)
@click.option("--compression/--no-compression", default=True, show_default=True, help="WebSocket permessage-deflate.")
@click.option(
    "--clients",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Python clients per transport, all connected at once; the transports run one after another.",
)
@click.option(
    "--browser",
    is_flag=True,
    help="Read the feed with the demo page in headless Chromium instead: a page per transport, "
    "and what each cost the page (layouts, style, script and task time, heap, INP).",
)
@click.option("--chromium", metavar="PATH", help="The Chromium executable for --browser (default: found on PATH).")
@click.option(
    "--ui-rows",
    type=click.IntRange(min=1),
    metavar="N",
    help="With --browser: rows the page's message log keeps (default 50); each message adds one and "
    "scrolls to it, so a larger log is a heavier update per message (e.g. 2000 for an app-sized table).",
)
@click.option(
    "--http2",
    is_flag=True,
    help="Serve over TLS with Hypercorn and read every transport twice at once, over HTTP/1.1 and over h2 "
    "(WebSocket over h2 by RFC 8441); prints both side by side. With --browser, one Chromium per protocol.",
)
@click.option(
    "--http3",
    is_flag=True,
    help="As --http2, and over HTTP/3 too (the demo server on QUIC, the proxy relaying it): every transport "
    "over HTTP/1.1, h2 and h3 at once (WebSocket over h3 by RFC 9220), and WebTransport over h3 (a stream per "
    "message, and a datagram per message). With --browser, one Chromium per protocol.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False),
    help="Folder for the results (default: a new ./rtinspect-demo-YYYYmmdd-HHMMSS).",
)
@click.option(
    "--set",
    "mitmproxy_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set a mitmproxy option for the proxy, e.g. confdir=~/.mitmproxy.",
)
@network_preset_option
def demo(
    count: int | None,
    rate: float | None,
    long_run: bool,
    size: int,
    transports: tuple[str, ...],
    poll_interval: float | None,
    compression: bool,
    clients: int,
    browser: bool,
    chromium: str | None,
    ui_rows: int | None,
    http2: bool,
    http3: bool,
    output: str | None,
    mitmproxy_options: tuple[str, ...],
    network_preset: str | None,
) -> None:
    """Run the experiment: the same feed over every transport, measured on the wire.

    Runs the transports one after another, then the same feed over Socket.IO
    (python-socketio's server and client, long polling upgraded to WebSocket),
    to show what the framework adds over plain WebSocket. Each has the demo
    server and the rtinspect proxy as processes of its own on free loopback ports (all started
    at once, before the first transport runs). For each transport in turn, reads
    the feed through its proxy with --clients clients at once, and
    measures what that cost the server and the proxy (CPU time per 1,000
    messages, peak memory, connections and requests). Then prints the report of
    the capture next to what the clients measured (messages received and lost,
    delivery latency), the costs and a verdict per dimension. Writes
    capture.rtcap, report.json, report.html and clients.json to the output
    folder. Exits non-zero if any client lost a message or failed.

    With --browser each transport is read by the demo page in a headless
    Chromium of its own, clicked at a steady pace while the feed runs, and what
    the page spent (layouts, style, script and task time, heap growth, INP) is
    read over the DevTools protocol. The page has no Socket.IO client, so
    --browser (and --http2) leave the Socket.IO run out.

    With --http2 the demo server is Hypercorn over TLS (a throwaway CA made for
    the run), the proxy listens with TLS (mitmproxy's CA in a temporary confdir
    unless --set confdir= names one), and each transport is read by two clients
    at once, one over HTTP/1.1 and one over h2, every transport at once; the
    output puts the two side by side per transport (no process or page costs).

    With --http3 the demo server also serves HTTP/3 on the same port number over
    UDP (aioquic: the same routes, WebSocket over HTTP/3 by RFC 9220, and
    WebTransport), the proxy relays QUIC there, and each transport is read over
    HTTP/1.1, h2 and h3, WebTransport over h3 alone; bytes are compared after
    TLS and QUIC decryption.

    With --network the proxy adds that profile's delay and bandwidth limits to
    every connection (presets below); the clients' latencies include them,
    the report's times are taken at the proxy.

    The default feed takes 2 s per transport; --long takes 10 s per transport,
    for steadier figures. On a terminal, standard error shows what the run and
    each transport are doing.

    \b
    Examples:
      rtinspect demo
      rtinspect demo --long
      rtinspect demo --network 4g
      rtinspect demo --count 1000 --rate 100 --size 64
      rtinspect demo --clients 1000 --count 100 --rate 5
      rtinspect demo --transports ws,sse --no-compression
      rtinspect demo --browser -o demo-browser
      rtinspect demo --browser --ui-rows 2000
      rtinspect demo --http2
      rtinspect demo --http2 --browser
      rtinspect demo --http3
      rtinspect demo --http3 --browser
    """
    from pathlib import Path

    from inspector.demo import (
        DemoError,
        DemoProgress,
        DemoSettings,
        default_output_folder,
        demo_console,
        describe_settings,
        result_renderables,
        run_demo,
    )
    from inspector.demo.settings import DEFAULT_COUNT, DEFAULT_RATE, LONG_COUNT, LONG_RATE, default_poll_interval

    parse_network(network_preset)
    if count is None:
        count = LONG_COUNT if long_run else DEFAULT_COUNT
    if rate is None:
        rate = LONG_RATE if long_run else DEFAULT_RATE
    if poll_interval is None:
        poll_interval = default_poll_interval(count, rate)
    try:
        settings = DemoSettings(
            output=Path(output) if output else default_output_folder(),
            count=count,
            rate=rate,
            size=size,
            transports=transports,
            poll_interval=poll_interval,
            compression=compression,
            browser=browser,
            chromium=chromium,
            proxy_options=mitmproxy_options,
            http2=http2,
            http3=http3,
            network=network_preset,
            clients=clients,
            ui_rows=ui_rows,
        )
    except DemoError as error:
        raise click.UsageError(str(error)) from None
    console = demo_console()
    console.print(describe_settings(settings), highlight=False)
    try:
        with DemoProgress(settings) as progress:
            result = run_demo(settings, progress, progress.phase)
    except DemoError as error:
        raise click.ClickException(str(error)) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    console.print()
    for renderable in result_renderables(result):
        console.print(renderable, highlight=False)
    if not result.ok:
        raise click.ClickException("; ".join(result.problems))
