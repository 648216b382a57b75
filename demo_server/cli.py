"""The ``demo-server`` command: run the demo server in the foreground."""

from __future__ import annotations

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
    log_level: str,
) -> None:
    """Serve one message feed over WebSocket, SSE, NDJSON streaming, long and short polling,
    and Socket.IO.

    \b
    /                            a page that consumes every transport (press Start)
    /ws  /sse  /stream           push: WebSocket, Server-Sent Events, NDJSON
    /longpoll?after=SEQ  /poll?after=SEQ
    /socket.io/                  Socket.IO: auth {"after": SEQ}, a message event each, then end
    POST /feed/start             start the feed (unless --autostart)
    GET /feed/status             parameters and progress
    """
    # Imported here: listing the command (rtinspect --help) needs none of the demo extra.
    from demo_server.app import create_app
    from demo_server.run import DemoServer, bind, url_for

    app = create_app(rate=rate, count=count, size=size, heartbeat=heartbeat, autostart=autostart)
    try:
        sock = bind(host, port)
    except OSError as error:
        raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from error
    click.echo(
        f"demo server on {url_for(sock)}/  ({count} messages at {rate:g}/s, {size} bytes each; "
        f"feed starts {'now' if autostart else 'on Start or POST /feed/start'})"
    )
    DemoServer(app, ws_compression, log_level).run(sockets=[sock])
