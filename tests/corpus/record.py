"""Record the malformed-traffic corpus through ``rtinspect proxy``: one capture per case.

For each case of ``cases.py`` this starts a scripted TCP server on 127.0.0.1
and ``rtinspect proxy -q -w CASE.rtcap`` in front of it. A client connects
through the proxy, writes the case's client bytes and closes its sending
side; the server reads to that end, writes the case's server bytes and
closes; the client reads to the end. Then a normal request (the follow-up)
goes through the same proxy and must get its whole response. For both
connections, what the server received must be what the client sent and the
other way round; once the proxy has stopped, the capture must hold exactly
those bytes. ``cases.json`` describes every case.

Usage: ``.venv/bin/python tests/corpus/record.py [CASE ...]`` (all cases by
default; recording them all also removes recordings of cases that are gone).
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from corpus.cases import CASES, FOLLOW_UP, Case, describe
from servers import (
    DEADLINE,
    LOOPBACK,
    ScriptedConnection,
    ScriptedServer,
    running_proxy,
)
from test_proxy import captured, carried


class Replies:
    """The server's side of every case: read to the end of the client's stream,
    then write the current case's server bytes, one write per piece.

    Connections that receive nothing (the proxy's reachability check) get no reply.
    """

    def __init__(self) -> None:
        self.pieces: tuple[bytes, ...] = ()

    def __call__(self, connection: ScriptedConnection) -> None:
        while data := connection.sock.recv(65536):
            connection.received += data
        if connection.received:
            for piece in self.pieces:
                connection.send(piece)


def play(port: int, server: ScriptedServer, replies: Replies, case: Case) -> None:
    """Run ``case`` on a new connection through the proxy at ``port``; fail unless
    each side received exactly what the other sent."""
    replies.pieces = case.server
    before = len(server.connections)
    with socket.create_connection((LOOPBACK, port), timeout=DEADLINE) as sock:
        for piece in case.client:
            sock.sendall(piece)
        sock.shutdown(socket.SHUT_WR)
        received = bytearray()
        while data := sock.recv(65536):
            received += data
    at_server = carried(server.wait_finished(before + 1)[before:])
    client_to_server, server_to_client = case.sent
    assert at_server == [(client_to_server, server_to_client)], f"{case.name}: the server saw {at_server!r}"
    assert bytes(received) == server_to_client, f"{case.name}: the client received {bytes(received)!r}"


def record(case: Case, folder: Path, confdir: Path) -> Path:
    """Record ``case`` and the follow-up through a proxy of their own; returns the capture."""
    path = folder / f"{case.name}.rtcap"
    path.unlink(missing_ok=True)
    replies = Replies()
    with ScriptedServer(replies) as server, running_proxy(server.url, confdir=confdir, capture=path) as proxy:
        play(proxy.port, server, replies, case)
        play(proxy.port, server, replies, FOLLOW_UP)
        assert proxy.stop() == 0, proxy.stderr
    recorded = [connection.streams for connection in captured(path)]
    assert recorded == [case.sent, FOLLOW_UP.sent], f"{case.name}: the capture holds {recorded!r}"
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="*", metavar="CASE", help="record only these cases")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for the recordings and cases.json")
    args = parser.parse_args()
    by_name = {case.name: case for case in CASES}
    unknown = [name for name in args.cases if name not in by_name]
    if unknown:
        parser.error(f"no such case: {', '.join(unknown)}")
    chosen = [by_name[name] for name in args.cases] if args.cases else list(CASES)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.cases:
        for stale in set(args.out.glob("*.rtcap")) - {args.out / f"{case.name}.rtcap" for case in CASES}:
            stale.unlink()
    confdir = Path(tempfile.mkdtemp(prefix="rtinspect-corpus-"))
    try:
        for case in chosen:
            path = record(case, args.out, confdir)
            print(f"{case.name}: {path.stat().st_size} bytes", flush=True)
    finally:
        shutil.rmtree(confdir, ignore_errors=True)
    (args.out / "cases.json").write_text(json.dumps(describe(), indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
