"""Recorded captures fed through the core, as if the traffic were live."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .capture import ConnectionClosed, ConnectionOpened, DataChunk
from .classify import DEFAULT_LONG_POLL_THRESHOLD, TransportRule
from .connection import ConnectionAnalyzer, ConnectionRecord
from .formats import ImportedTraffic, open_traffic
from .report import Report
from .summary import build_report

#: The close reason of a connection the capture never saw end.
STILL_OPEN = "still open when the capture ended"


@dataclass(frozen=True, slots=True)
class Analysis:
    """The connections of one or more captures, and what a reader must know about them."""

    records: tuple[ConnectionRecord, ...]
    notes: tuple[str, ...]


def analyze_captures(paths: Sequence[str | os.PathLike[str]]) -> Analysis:
    """Replay captures through :class:`ConnectionAnalyzer`. With several
    captures, connection ids are prefixed with the capture's number (``2:17``).
    HAR and mitmproxy flow files are read too (:func:`~inspector.formats.open_traffic`),
    and what the report must say about them joins the notes.

    Raises :class:`~inspector.capture.CaptureError` for a file that is not a
    readable capture.
    """
    records: list[ConnectionRecord] = []
    notes: list[str] = []
    for number, path in enumerate(paths, start=1):
        prefix = f"{number}:" if len(paths) > 1 else ""
        with open_traffic(path) as capture:
            if isinstance(capture, ImportedTraffic):
                notes.extend(capture.notes)
            live: dict[int, ConnectionAnalyzer] = {}
            last_seen = 0.0
            unknown = 0
            for record in capture:
                last_seen = max(last_seen, record.timestamp)
                if isinstance(record, DataChunk):
                    analyzer = live.get(record.connection_id)
                    if analyzer is None:
                        unknown += len(record.data)
                    else:
                        analyzer.feed(record.direction, record.data, record.timestamp)
                elif isinstance(record, ConnectionOpened):
                    live[record.connection_id] = ConnectionAnalyzer(record, id=f"{prefix}{record.connection_id}")
                elif isinstance(record, ConnectionClosed):
                    analyzer = live.pop(record.connection_id, None)
                    if analyzer is not None:
                        records.append(analyzer.close(record.timestamp, record.reason))
            for analyzer in live.values():
                records.append(analyzer.close(last_seen, STILL_OPEN))
            if capture.truncated_tail:
                notes.append(
                    f"{capture.path}: the last {capture.truncated_tail} bytes are an incomplete record "
                    "(the writer stopped mid-record) and were skipped."
                )
            if live:
                notes.append(f"{capture.path}: {len(live)} connection(s) were still open when the capture ended.")
            if unknown:
                notes.append(f"{capture.path}: {unknown} bytes belonged to no recorded connection and were skipped.")
    records.sort(key=lambda r: r.opened.timestamp)
    return Analysis(tuple(records), tuple(notes))


def report_from_captures(
    paths: Sequence[str | os.PathLike[str]],
    *,
    long_poll_threshold: float = DEFAULT_LONG_POLL_THRESHOLD,
    rules: Sequence[TransportRule] = (),
    redact: bool = True,
) -> Report:
    """The report of one or more captures (merged), with what a reader must know
    about them among its notes: what ``rtinspect report`` shows, as typed results.
    ``redact`` as for :func:`~inspector.summary.build_report`.

    Raises :class:`~inspector.capture.CaptureError` for a file that is not a
    readable capture. A report of captures that recorded no connection has no
    connections and no transports.
    """
    analysis = analyze_captures(paths)
    return build_report(
        analysis.records,
        long_poll_threshold=long_poll_threshold,
        rules=rules,
        sources=tuple(os.fspath(path) for path in paths),
        notes=analysis.notes,
        redact=redact,
    )
