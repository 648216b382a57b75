"""The ``demo-server`` command: run the demo server in the foreground."""

from __future__ import annotations

from typing import Any

import click

from inspector.extras import DemoCommand

LOG_LEVELS = ["critical", "error", "warning", "info", "debug", "trace"]


@click.command(name="demo-server", cls=DemoCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8000,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 = any free port).",
)
@click.option(
    "--rate",
    default=20.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Messages per second.",
)
@click.option(
    "--count",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Messages in all; then the feed ends.",
)
@click.option(
    "--size",
    default=256,
    show_default=True,
    type=click.IntRange(min=0),
    help="Bytes of JSON per message (at least what seq and sent_at take).",
)
@click.option(
    "--heartbeat",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds between SSE heartbeat comments (0 = none).",
)
@click.option(
    "--autostart/--no-autostart",
    default=False,
    show_default=True,
    help="Start the feed with the server instead of on POST /feed/start (the page's Start button).",
)
@click.option(
    "--ws-compression/--no-ws-compression",
    default=True,
    show_default=True,
    help="Accept WebSocket permessage-deflate when a client offers it.",
)
@click.option(
    "--http3",
    is_flag=True,
    help="Serve over TLS (Hypercorn, a certificate from a throwaway CA made for the run) and over HTTP/3 on "
    "the same port number over UDP, WebTransport included (/wt, /wt-datagram); prints how to open the page "
    "in Chromium over HTTP/3.",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(LOG_LEVELS),
    help="uvicorn's log level.",
)
def main(
    host: str,
    port: int,
    rate: float,
    count: int,
    size: int,
    heartbeat: float,
    autostart: bool,
    ws_compression: bool,
    http3: bool,
    log_level: str,
) -> None:
    """Serve one message feed over WebSocket, SSE, NDJSON streaming, long and short polling,
    and Socket.IO.

    \b
    /                            a page that consumes every transport (press Start)
    /ws  /sse  /stream           push: WebSocket, Server-Sent Events, NDJSON
    /longpoll?after=SEQ  /poll?after=SEQ
    /socket.io/                  Socket.IO: auth {"after": SEQ}, a message event each, then end
    /wt  /wt-datagram            WebTransport (--http3): a stream, or a datagram, per message
    POST /feed/start             start the feed (unless --autostart)
    GET /feed/status             parameters and progress
    """
    # Imported here: listing the command (rtinspect --help) needs none of the demo extra.
    from demo_server.app import create_app
    from demo_server.run import DemoServer, bind, url_for

    app = create_app(rate=rate, count=count, size=size, heartbeat=heartbeat, autostart=autostart)
    if http3:
        _serve_http3(app, host, port, ws_compression, log_level)
        return
    try:
        sock = bind(host, port)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from error
    click.echo(
        f"demo server on {url_for(sock)}/  ({count} messages at {rate:g}/s, {size} bytes each; "
        f"feed starts {'now' if autostart else 'on Start or POST /feed/start'})"
    )
    DemoServer(app, ws_compression, log_level).run(sockets=[sock])


def _serve_http3(app: Any, host: str, port: int, ws_compression: bool, log_level: str) -> None:
    """``--http3``: Hypercorn over TLS and aioquic over UDP on one port number, until Ctrl-C."""
    import tempfile
    import threading
    from pathlib import Path

    from demo_server.run import serve_tls_in_thread
    from demo_server.tls import make_tls_files
    from inspector.demo.chromium import http3_flags

    with tempfile.TemporaryDirectory(prefix="rtinspect-demo-tls-") as folder:
        tls = make_tls_files(Path(folder))
        try:
            server = serve_tls_in_thread(app, tls, host, port, log_level, http3=True, ws_compression=ws_compression)
        except (OSError, RuntimeError) as error:
            raise click.ClickException(f"cannot serve on {host}:{port}: {error}") from error
        with server:
            origin = server.url.removeprefix("https://")
            click.echo(f"demo server on {server.url}/ over TLS (HTTP/1.1, h2) and over HTTP/3 (UDP, same port)")
            click.echo(f"the CA, while it runs: {tls.ca_cert}")
            click.echo(f"Chromium over HTTP/3: chromium {' '.join(http3_flags(origin, tls.cert_chain))} {server.url}/")
            try:
                threading.Event().wait()
            except KeyboardInterrupt:
                pass
