"""Recorded captures fed through the core, as if the traffic were live."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .capture import ConnectionClosed, ConnectionOpened, DataChunk, read_capture
from .connection import ConnectionAnalyzer, ConnectionRecord

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

    Raises :class:`~inspector.capture.CaptureError` for a file that is not a
    readable capture.
    """
    records: list[ConnectionRecord] = []
    notes: list[str] = []
    for number, path in enumerate(paths, start=1):
        prefix = f"{number}:" if len(paths) > 1 else ""
        with read_capture(path) as capture:
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
