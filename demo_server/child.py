"""The demo server as a child process of ``rtinspect demo``, driven over its standard input.

``python -m demo_server.child --count N --rate R --size S [--no-ws-compression]``
listens on a free loopback port and prints one JSON line,
``{"url": "http://127.0.0.1:PORT", "pid": PID}``. Then it reads commands, one a
line, and answers each with one JSON line:

- ``start``: start the feed; answers the feed's status;
- ``stats``: what the server has handled (:class:`~demo_server.counting.ServerCounts`);
- ``restart``: count from now on (before the clients connect; the proxy's own probes,
  and the connections it opens upstream for them, are then left out); answers the counts;
- ``stop`` (or the end of its input): end the feed and shut down; nothing is answered.

The commands travel outside TCP, so every connection and request the server
counts is a client's: its own process holds only the demo's server, and its
CPU time and memory are the server's. Linux and macOS raise the open-file limit
to the hard limit first, so a thousand clients fit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import threading
from typing import Any

from fastapi import FastAPI

from demo_server.app import create_app
from demo_server.counting import ServerCounts
from demo_server.run import DemoServer, bind, url_for
from inspector.processes import raise_open_file_limit


class ControlledServer(DemoServer):
    """The demo server, its counts kept, its commands read from standard input by a thread
    and carried out on the server's event loop."""

    def __init__(self, app: FastAPI, ws_compression: bool, counts: ServerCounts) -> None:
        super().__init__(app, ws_compression, counts=counts)
        self.counts = counts
        self._loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if not self.should_exit:
            threading.Thread(target=self._read_commands, name="demo-server-commands", daemon=True).start()

    def _read_commands(self) -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "stop":
                break
            if command and self._loop is not None:
                self._loop.call_soon_threadsafe(self._carry_out, command)
        self.should_exit = True

    def _carry_out(self, command: str) -> None:
        if command == "start":
            self.feed.start()
            answer: dict[str, Any] = self.feed.status()
        elif command == "stats":
            answer = self.counts.to_dict()
        elif command == "restart":
            self.counts.restart()
            answer = self.counts.to_dict()
        else:
            answer = {"error": f"unknown command {command!r}"}
        _say(answer)


def _say(answer: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m demo_server.child", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--no-ws-compression", action="store_true")
    parser.add_argument("--host", default="127.0.0.1")
    options = parser.parse_args(argv)
    raise_open_file_limit()
    app = create_app(rate=options.rate, count=options.count, size=options.size, autostart=False)
    sock = bind(options.host, 0)
    server = ControlledServer(app, not options.no_ws_compression, counts=ServerCounts())
    _say({"url": url_for(sock), "pid": os.getpid()})
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
