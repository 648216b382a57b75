"""Recorded captures fed through the core, as if the traffic were live.

Captures are read in one pass. Each connection is handed on as it closes, so
what is held at any time is the connections open at that point of the
capture, never the capture. Connections are independent, so the work can be
split across processes by connection (:func:`report_from_captures` with
``jobs``); the parts are merged in the order one process would have produced
them, which makes the report the same whatever the number of processes.
"""

from __future__ import annotations

import heapq
import os
import pickle
import tempfile
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import IO, cast

from .app_messages import AppMessageRule
from .capture import CaptureError, ConnectionOpened, read_capture
from .classify import DEFAULT_LONG_POLL_THRESHOLD, AppProtocolRule, Classifier, TransportRule
from .connection import ConnectionAnalyzer, ConnectionRecord
from .driver import DamagedRecord, RecordDriver
from .formats import ImportedTraffic, open_traffic
from .formats.detect import FileFormat, detect_format
from .network import NetworkConditions
from .report import ConnectionSummary, Report, with_network
from .summary import ReportBuilder

#: The close reason of a connection the capture never saw end.
STILL_OPEN = "still open when the capture ended"
#: Below this many bytes of capture, more processes cost more than they save.
PARALLEL_MIN_BYTES = 16 * 1024 * 1024
#: The least speed-up (the capture's bytes over its largest part's) worth a process each part
#: costs to start and the parent's merge: one connection that holds most of the bytes is read alone.
PARALLEL_MIN_GAIN = 1.5

#: Which part reads each connection, for each capture (connection id to part).
Owners = list[dict[int, int]]

#: Where a connection ends in a one-process read: (capture, 0 = closed / 1 = still open at
#: the end, where in the file its closing record or its opening record is).
Ordinal = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class Analysis:
    """The connections of one or more captures, and what a reader must know about them."""

    records: tuple[ConnectionRecord, ...]
    notes: tuple[str, ...]


@dataclass(slots=True)
class Reading:
    """What reading captures found besides connections: the notes a report must carry.
    Captures are named by their number among those read, from 1."""

    notes: list[str] = field(default_factory=list)
    #: Connections the captures never saw end, and bytes of connections they never opened.
    still_open: dict[int, int] = field(default_factory=dict)
    unknown: dict[int, int] = field(default_factory=dict)
    #: The network conditions each capture recorded, in the order they were recorded.
    network: dict[int, list[NetworkConditions]] = field(default_factory=dict)

    def merge(self, other: Reading, *, after: int = 0) -> None:
        """Add what another reading found; ``after`` is how many captures came before its first."""
        self.notes += other.notes
        for number, conditions in other.network.items():
            self.network.setdefault(after + number, []).extend(conditions)
        for number, count in other.still_open.items():
            self.still_open[after + number] = self.still_open.get(after + number, 0) + count
        for number, count in other.unknown.items():
            self.unknown[after + number] = self.unknown.get(after + number, 0) + count

    def all_notes(self, paths: Sequence[str]) -> list[str]:
        """The notes in the order a one-process read gives them."""
        notes = list(self.notes)
        for number, path in enumerate(paths, start=1):
            if self.still_open.get(number):
                notes.append(f"{path}: {self.still_open[number]} connection(s) were still open when the capture ended.")
            if self.unknown.get(number):
                notes.append(
                    f"{path}: {self.unknown[number]} bytes belonged to no recorded connection and were skipped."
                )
        return notes

    def network_conditions(self, paths: Sequence[str]) -> tuple[NetworkConditions | None, list[str]]:
        """The network conditions the captures were recorded under, and a note if they were not all the same."""
        recorded = [(path, self.network.get(number, [])) for number, path in enumerate(paths, start=1)]
        distinct = list(dict.fromkeys(c for _, conditions in recorded for c in conditions))
        if not distinct:
            return None, []
        if len(distinct) == 1 and all(conditions for _, conditions in recorded):
            return distinct[0], []
        under = "; ".join(
            f"{path}: {', then '.join(c.describe() for c in conditions) if conditions else 'none'}"
            for path, conditions in recorded
        )
        return distinct[0], [f"The traffic was not all recorded under the same network conditions ({under})."]

    def report(self, builder: ReportBuilder, paths: Sequence[str]) -> Report:
        """The report of what ``builder`` was given from the captures at ``paths``, with what they found."""
        network, network_notes = self.network_conditions(paths)
        report = builder.report(sources=paths, notes=[*network_notes, *self.all_notes(paths)])
        return with_network(report, network)


def _analyzers(prefix: str, classifier: Classifier) -> Callable[[ConnectionOpened], ConnectionAnalyzer]:
    """How replay starts each connection's analyzer: ids prefixed with the capture's number."""

    def start(opened: ConnectionOpened) -> ConnectionAnalyzer:
        return ConnectionAnalyzer(opened, id=f"{prefix}{opened.connection_id}", classifier=classifier)

    return start


def _read(
    paths: Sequence[str],
    classifier: Classifier,
    reading: Reading,
    *,
    part: int = 0,
    parts: int = 1,
    owners: Owners | None = None,
    detail: bool = True,
    server_ports: Collection[int] = (),
) -> Iterator[tuple[Ordinal, ConnectionRecord]]:
    """Each connection of the captures as it closes, with its place in a
    one-process read. With ``parts``, only connections whose number modulo
    ``parts`` is ``part`` (or, with ``owners``, the connections it gives
    ``part``); notes about whole files come from part 0 alone.
    ``server_ports`` are for packet files (:func:`~inspector.formats.open_traffic`)."""
    several = len(paths) > 1
    for number, path in enumerate(paths, start=1):
        prefix = f"{number}:" if several else ""
        with open_traffic(path, server_ports=server_ports) as capture:
            driver: RecordDriver[ConnectionAnalyzer, ConnectionRecord] = RecordDriver(_analyzers(prefix, classifier))
            for position, record in capture.select(part, parts, owners[number - 1] if owners else None):
                try:
                    closed = driver.feed(record, tag=position)
                except DamagedRecord as e:
                    raise CaptureError(f"{path}: {e} at byte {position}") from None
                if closed is not None:
                    yield (number, 0, position), closed if detail else closed.without_detail()
            if driver.network:
                reading.network.setdefault(number, []).extend(driver.network)
            still_open = driver.finish(capture.last_timestamp, STILL_OPEN)
            for opened_at, closed in still_open:
                yield (number, 1, cast(int, opened_at)), closed if detail else closed.without_detail()
            if isinstance(capture, ImportedTraffic) and part == 0:
                reading.notes.extend(capture.notes)  # complete now that its records have been read
            if capture.truncated_tail and part == 0:
                reading.notes.append(
                    f"{capture.path}: the last {capture.truncated_tail} bytes are an incomplete record "
                    "(the writer stopped mid-record) and were skipped."
                )
            if still_open:
                reading.still_open[number] = len(still_open)
            if driver.unknown_bytes:
                reading.unknown[number] = driver.unknown_bytes


def analyze_captures(
    paths: Sequence[str | os.PathLike[str]], *, classifier: Classifier | None = None, server_ports: Collection[int] = ()
) -> Analysis:
    """Every connection of one or more captures, held in memory (for looking at
    them one by one; reports use :func:`report_from_captures`, which holds none).

    With several captures, connection ids are prefixed with the capture's
    number (``2:17``). HAR, mitmproxy flow files and pcap or pcapng files
    (with ``server_ports``) are read too (:func:`~inspector.formats.open_traffic`),
    and what the report must say about them joins the notes.

    Raises :class:`~inspector.capture.CaptureError` for a file that is not a
    readable capture.
    """
    names = [os.fspath(path) for path in paths]
    reading = Reading()
    records = [record for _, record in _read(names, classifier or Classifier(), reading, server_ports=server_ports)]
    records.sort(key=lambda r: r.opened.timestamp)
    return Analysis(tuple(records), tuple(reading.all_notes(names)))


def default_jobs(paths: Sequence[str | os.PathLike[str]]) -> int:
    """Processes worth using: every CPU for large captures whose bytes can be shared out
    (:data:`PARALLEL_MIN_GAIN`), one for small ones, imports, and captures that one
    connection dominates."""
    names = [os.fspath(path) for path in paths]
    try:
        size = sum(os.path.getsize(name) for name in names)
    except OSError:
        return 1
    if size < PARALLEL_MIN_BYTES or any(detect_format(name) is not FileFormat.RTCAP for name in names):
        return 1
    cpus = max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    if cpus == 1:
        return 1
    try:
        _, gain = plan_parts(names, cpus)
    except (OSError, CaptureError):
        return 1
    return cpus if gain >= PARALLEL_MIN_GAIN else 1


def plan_parts(paths: Sequence[str], jobs: int) -> tuple[Owners, float]:
    """Which of ``jobs`` parts reads each connection of these captures (``.rtcap``): the
    largest first, each to the part with the fewest bytes so far; and the speed-up that
    promises (all the bytes over the largest part's). Raises as :func:`read_capture`."""
    sizes: list[tuple[int, int, int]] = []
    for number, path in enumerate(paths):
        with read_capture(path) as capture:
            sizes += [(size, number, ident) for ident, size in capture.connection_bytes().items()]
    owners: Owners = [{} for _ in paths]
    loads = [(0, part) for part in range(jobs)]
    for size, number, ident in sorted(sizes, key=lambda item: (-item[0], item[1], item[2])):
        load, part = heapq.heappop(loads)
        owners[number][ident] = part
        heapq.heappush(loads, (load + size, part))
    total = sum(size for size, _, _ in sizes)
    largest = max(load for load, _ in loads)
    return owners, total / largest if largest else 1.0


def report_from_captures(
    paths: Sequence[str | os.PathLike[str]],
    *,
    long_poll_threshold: float = DEFAULT_LONG_POLL_THRESHOLD,
    rules: Sequence[TransportRule] = (),
    app_messages: Sequence[AppMessageRule] = (),
    app_protocols: Sequence[AppProtocolRule] = (),
    redact: bool = True,
    jobs: int = 1,
    on_connection: Callable[[ConnectionSummary], None] | None = None,
    server_ports: Collection[int] = (),
) -> Report:
    """The report of one or more captures (merged), with what a reader must know
    about them among its notes: what ``rtinspect report`` shows, as typed results.
    ``redact`` and ``on_connection`` as for :class:`~inspector.summary.ReportBuilder`;
    ``server_ports`` say which side of each TCP connection in a pcap or pcapng file is the server.

    ``jobs`` processes share the connections; the report is the same for any
    number of them.

    Raises :class:`~inspector.capture.CaptureError` for a file that is not a
    readable capture. A report of captures that recorded no connection has no
    connections and no transports.
    """
    names = [os.fspath(path) for path in paths]
    classifier = Classifier(tuple(rules), long_poll_threshold, tuple(app_messages), tuple(app_protocols))
    builder, reading = summarise_captures(
        names, classifier, redact=redact, jobs=jobs, on_connection=on_connection, server_ports=server_ports
    )
    return reading.report(builder, names)


def summarise_captures(
    paths: Sequence[str],
    classifier: Classifier,
    *,
    redact: bool = True,
    jobs: int = 1,
    on_connection: Callable[[ConnectionSummary], None] | None = None,
    server_ports: Collection[int] = (),
) -> tuple[ReportBuilder, Reading]:
    """Every connection of the captures folded into a builder, and what reading them found
    (:meth:`Reading.report` makes the report of both), as :func:`report_from_captures` says."""
    builder = ReportBuilder(redact=redact, on_connection=on_connection)
    reading = Reading()
    ports = tuple(server_ports)
    if jobs <= 1:
        for _, record in _read(paths, classifier, reading, detail=False, server_ports=ports):
            builder.add(record)
    else:
        for record in _read_in_parallel(paths, classifier, reading, jobs, ports):
            builder.add(record)
    return builder, reading


def _read_part(
    paths: Sequence[str],
    classifier: Classifier,
    part: int,
    parts: int,
    spool: str,
    server_ports: tuple[int, ...] = (),
    owners: Owners | None = None,
) -> Reading:
    """One process's share: its connections, pickled in order to ``spool``."""
    reading = Reading()
    with open(spool, "wb") as out:
        shares = _read(
            paths, classifier, reading, part=part, parts=parts, owners=owners, detail=False, server_ports=server_ports
        )
        for item in shares:
            pickle.dump(item, out, protocol=pickle.HIGHEST_PROTOCOL)
    return reading


def _unpickled(file: IO[bytes]) -> Iterator[tuple[Ordinal, ConnectionRecord]]:
    while True:
        try:
            yield pickle.load(file)
        except EOFError:
            return


def _read_in_parallel(
    paths: Sequence[str], classifier: Classifier, reading: Reading, jobs: int, server_ports: tuple[int, ...] = ()
) -> Iterator[ConnectionRecord]:
    """Every connection, read by ``jobs`` processes and merged into one-process order.
    Captures share their connections out by size; other files by connection number."""
    owners = None
    if all(detect_format(path) is FileFormat.RTCAP for path in paths):
        owners, _ = plan_parts(paths, jobs)
    with tempfile.TemporaryDirectory(prefix="rtinspect-") as directory:
        spools = [os.path.join(directory, f"part-{part}") for part in range(jobs)]
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(_read_part, paths, classifier, part, jobs, spools[part], server_ports, owners)
                for part in range(jobs)
            ]
            parts = [future.result() for future in futures]
        for part in parts:
            reading.merge(part)
        files = [open(spool, "rb") for spool in spools]
        try:
            for _, record in heapq.merge(*map(_unpickled, files), key=lambda item: item[0]):
                yield record
        finally:
            for file in files:
                file.close()
