"""The analyser process and the relay's handle on it.

``rtinspect proxy --analysis process`` starts ``python -m
inspector.analyser_process`` with one end of a Unix socket pair. Towards the
analyser, the socket carries a capture stream: :data:`~inspector.capture.CAPTURE_HEADER`
and then records exactly as a capture file holds them (plus the events of
:mod:`inspector.analyser`). Back towards the relay it carries pickled
:mod:`inspector.analyser` messages, each preceded by its length (u32,
little-endian).

The relay side (:class:`AnalyserProcess`) never blocks its event loop: records
are appended to an in-memory backlog and written with non-blocking sends,
when the backlog passes :data:`FLUSH_SIZE` and every :data:`FLUSH_INTERVAL`
seconds, the rest when the socket is writable again. The backlog is bounded
by :data:`BACKLOG_LIMIT`: a connection whose record would find it fuller than
that is no longer fed (the analyser is told to leave it out, and the report
says so); the capture file, written by the relay, still has every byte. If
the analyser dies, the relay logs one warning and goes on relaying and
recording.

The analyser runs under the SCHED_IDLE policy (nice +19 where there is
none): it gets only CPU time that nothing else on the machine wants, so it
never takes a core from the relay, or from the clients and servers on the
same machine. On a machine whose cores are all busy it falls behind, and
past the backlog bound connections are left out (with a warning and a report
note) rather than relaying slowed down; measured in bench/README.md.
It ignores SIGINT (Ctrl-C reaches the whole process group; the relay decides
when analysis ends) and exits when the relay's end of the socket closes.
"""

from __future__ import annotations

import asyncio
import logging
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import IO

from .analyser import ABANDONED, FINISH, SYNC, Analyser, AnalyserMessage, AnalyserSettings, Finished, LiveView, Synced
from .capture import CAPTURE_HEADER, CAPTURE_VERSION, Capture, ConnectionClosed, Event, Record, encode_record
from .connection import ConnectionRecord

logger = logging.getLogger(__name__)

#: Bytes of records the relay may hold for a slow analyser before it stops feeding connections.
BACKLOG_LIMIT = 64 * 1024 * 1024
#: The relay sends what it holds once it holds this many bytes ...
FLUSH_SIZE = 256 * 1024
#: ... and at least this often (seconds).
FLUSH_INTERVAL = 0.05
#: Seconds between live views sent by the analyser (when the live view is on).
VIEW_INTERVAL = 1.0
#: Kernel socket buffer asked for on each side.
SOCKET_BUFFER = 4 * 1024 * 1024
#: Nice increment of the analyser process where SCHED_IDLE is not available.
ANALYSER_NICENESS = 19

_LENGTH = struct.Struct("<I")
_READ_SIZE = 1024 * 1024


# -- the analyser process


def serve(sock: socket.socket, settings: AnalyserSettings) -> None:
    """Analyse the capture stream arriving on ``sock`` until :data:`FINISH` or the end of the stream."""
    analyser = Analyser(settings)
    inbox = bytearray()
    next_view = time.monotonic() + VIEW_INTERVAL
    while not analyser.finished:
        timeout = max(0.0, next_view - time.monotonic()) if settings.live_view else None
        readable, _, _ = select.select([sock], [], [], timeout)
        if readable:
            data = sock.recv(_READ_SIZE)
            if not data:
                return
            inbox += data
            if len(inbox) < len(CAPTURE_HEADER):
                continue
            if not inbox.startswith(CAPTURE_HEADER):
                raise ValueError("the relay did not send a capture stream")
            capture = Capture("analyser feed", CAPTURE_VERSION, bytes(inbox))
            end = len(inbox) - capture.truncated_tail
            for answer in analyser.feed(capture):
                _send(sock, answer)
            del inbox[len(CAPTURE_HEADER) : end]
        if settings.live_view and time.monotonic() >= next_view:
            if analyser.changed:
                _send(sock, analyser.live_view())
            next_view = time.monotonic() + VIEW_INTERVAL


def _send(sock: socket.socket, message: AnalyserMessage) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    sock.sendall(_LENGTH.pack(len(body)) + body)


def _yield_to_everything_else() -> None:
    """Run only on CPU time nothing else wants (SCHED_IDLE where there is one, else nice +19)."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        try:
            os.nice(ANALYSER_NICENESS)
        except OSError:
            pass


def main(argv: list[str] | None = None) -> int:
    """``python -m inspector.analyser_process FD SETTINGS_JSON``."""
    fd_text, settings_text = (argv if argv is not None else sys.argv[1:])[:2]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _yield_to_everything_else()
    sock = socket.socket(fileno=int(fd_text))
    sock.setblocking(True)
    try:
        serve(sock, AnalyserSettings.from_json(settings_text))
    except (BrokenPipeError, ConnectionResetError):
        return 0
    except Exception as e:
        traceback.print_exc()
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    finally:
        sock.close()
    return 0


# -- the relay's side


class AnalyserProcess:
    """The relay's handle on its analyser process: feeds it records and
    collects its answers, on the running event loop, without ever blocking it.

    ``view`` is the latest :class:`~inspector.analyser.LiveView` (None until the
    first); ``alive`` turns False, with one warning logged, if the analyser dies.
    """

    def __init__(self, settings: AnalyserSettings) -> None:
        self.settings = settings
        self.limit = settings.backlog_limit
        self.view: LiveView | None = None
        self.alive = True
        self.abandoned = 0
        self._outbox = bytearray(CAPTURE_HEADER)
        self._abandoned: set[int] = set()
        self._inbox = bytearray()
        self._unsettled: list[ConnectionRecord] = []
        self._open_now: tuple[ConnectionRecord, ...] = ()
        self._waiting: dict[int, asyncio.Future[None]] = {}
        self._finished: asyncio.Future[Finished | None] | None = None
        self._next_sync = 1
        self._writing = False
        self._loop = asyncio.get_running_loop()
        relay_end, analyser_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        for end in (relay_end, analyser_end):
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SOCKET_BUFFER)
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        # The analyser must run this very package: -P keeps the working directory (which may hold
        # another checkout's inspector/) off its path, and PYTHONPATH puts this package's first.
        package_root = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    "-m",
                    "inspector.analyser_process",
                    str(analyser_end.fileno()),
                    settings.to_json(),
                ],
                env={**os.environ, "PYTHONPATH": path},
                pass_fds=(analyser_end.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=self._stderr,
            )
        finally:
            analyser_end.close()
        self._sock = relay_end
        self._sock.setblocking(False)
        self._loop.add_reader(self._sock, self._readable)
        self._timer = self._loop.call_later(FLUSH_INTERVAL, self._tick)

    # -- feeding

    def add(self, connection_id: int, record: bytes, *, last: bool = False) -> None:
        """Queue one encoded record of a connection (``last``: its closing record).

        A connection whose record finds the backlog over the limit is abandoned:
        none of its records are sent from then on, and the analyser leaves it out.
        """
        if not self.alive:
            return
        if connection_id in self._abandoned:
            if last:
                self._abandoned.discard(connection_id)
            return
        if len(self._outbox) >= self.limit:
            if not last:
                self._abandoned.add(connection_id)
            if not self.abandoned:
                logger.warning(
                    f"analysis fell more than {self.limit / 2**20:,.0f} MiB behind the relay: connection "
                    f"{connection_id}, and any other while it stays behind, is left out of the figures"
                    + (f" (the capture {self.settings.capture} has every byte)" if self.settings.capture else "")
                )
            self.abandoned += 1
            self._outbox += encode_record(Event(connection_id, time.time(), ABANDONED))
            return
        self._outbox += record
        if len(self._outbox) >= FLUSH_SIZE and not self._writing:
            self._flush()

    def add_record(self, record: Record, encoded: bytes) -> None:
        """One record as the relay wrote it (``encoded``), queued as :meth:`add` does."""
        self.add(record.connection_id, encoded, last=isinstance(record, ConnectionClosed))

    def _request(self, name: str, **data: object) -> None:
        """Queue a request (always, whatever the backlog) and send it now."""
        self._outbox += encode_record(Event(0, time.time(), name, data))
        if not self._writing:
            self._flush()

    def _tick(self) -> None:
        if not self.alive:
            return
        if self._outbox and not self._writing:
            self._flush()
        self._timer = self._loop.call_later(FLUSH_INTERVAL, self._tick)

    def _flush(self) -> None:
        """Send what the socket takes now; wait for it to be writable for the rest."""
        try:
            sent = self._sock.send(self._outbox)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._died()
            return
        del self._outbox[:sent]
        if self._outbox and not self._writing:
            self._writing = True
            self._loop.add_writer(self._sock, self._writable)

    def _writable(self) -> None:
        self._flush()
        if not self._outbox and self._writing and self.alive:
            self._writing = False
            self._loop.remove_writer(self._sock)

    # -- answers

    def _readable(self) -> None:
        try:
            data = self._sock.recv(_READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._died()
            return
        inbox = self._inbox
        inbox += data
        offset = 0
        while len(inbox) - offset >= _LENGTH.size:
            (length,) = _LENGTH.unpack_from(inbox, offset)
            end = offset + _LENGTH.size + length
            if end > len(inbox):
                break
            self._received(pickle.loads(inbox[offset + _LENGTH.size : end]))
            offset = end
        del inbox[:offset]

    def _received(self, message: AnalyserMessage) -> None:
        if isinstance(message, LiveView):
            self.view = message
        elif isinstance(message, Synced):
            self._unsettled += message.closed
            self._open_now = message.open_now
            waiter = self._waiting.pop(message.sync_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif isinstance(message, Finished):
            # The analyser exits next: its end of the stream is no death.
            self.alive = False
            self._stop_io()
            if self._finished is not None and not self._finished.done():
                self._finished.set_result(message)

    async def records(self, timeout: float) -> tuple[list[ConnectionRecord], tuple[ConnectionRecord, ...]]:
        """What the metrics need (see :meth:`MetricsLedger.update`): connections
        closed since the last call and a snapshot of each open one, as of every
        record relayed so far, or as of the last answer if the analyser takes
        longer than ``timeout`` seconds (what it closed meanwhile comes next time)."""
        if self.alive:
            sync_id, self._next_sync = self._next_sync, self._next_sync + 1
            waiter = self._waiting[sync_id] = self._loop.create_future()
            self._request(SYNC, id=sync_id)
            try:
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
            except TimeoutError:
                pass
        closed, self._unsettled = self._unsettled, []
        return closed, self._open_now

    async def finish(self) -> Finished | None:
        """Send the end of the stream and wait for the final report; None if the analyser died."""
        if not self.alive:
            return None
        self._finished = self._loop.create_future()
        self._request(FINISH)
        return await self._finished

    # -- the end

    def _died(self) -> None:
        if not self.alive:
            return
        self.alive = False
        self._stop_io()
        try:
            status: int | None = self.process.wait(0.5)
        except subprocess.TimeoutExpired:
            status = None
        why = self._last_error_line()
        logger.warning(
            f"analysis stopped: the analyser process exited"
            f"{f' with status {status}' if status is not None else ''}{f' ({why})' if why else ''}; "
            "relaying and recording go on"
            + (f"; rtinspect report {self.settings.capture} gives the figures" if self.settings.capture else "")
        )
        for waiter in self._waiting.values():
            if not waiter.done():
                waiter.set_result(None)
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    def _last_error_line(self) -> str:
        self._stderr.seek(0)
        lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1] if lines else ""

    def _stop_io(self) -> None:
        self._timer.cancel()
        self._loop.remove_reader(self._sock)
        if self._writing:
            self._loop.remove_writer(self._sock)
            self._writing = False
        self._outbox.clear()

    def close(self) -> None:
        """Stop feeding, close the socket (the analyser exits) and wait for the process."""
        if self.alive:
            self.alive = False
            self._stop_io()
        self._sock.close()
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._stderr.close()


if __name__ == "__main__":
    raise SystemExit(main())
