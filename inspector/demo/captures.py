"""The captures of a run's transports, one per proxy process, joined into the run's one capture.

Each proxy numbers its connections from 1, so the joined capture renumbers
them: the connections of each capture follow those of the one before, and
capture-wide events (connection 0) stay capture-wide. The transports ran one
after another, so the records stay in time order. While joining, each part's
connections are counted, with how many were open at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..capture import CaptureWriter, ConnectionClosed, ConnectionOpened, encode_record, read_capture


@dataclass(frozen=True, slots=True)
class PartFacts:
    """One part's connections, and the most that were open at once (in record order)."""

    connections: int
    peak_open: int


def join_captures(parts: Sequence[Path], into: Path) -> list[PartFacts]:
    """Write every record of ``parts``, in order, to ``into``, connections renumbered."""
    facts = []
    offset = 0
    with CaptureWriter(into) as writer:
        for part in parts:
            highest = opened = peak = 0
            open_now: set[int] = set()
            with read_capture(part) as records:
                for record in records:
                    ident = record.connection_id
                    if ident:
                        highest = max(highest, ident)
                        record = dataclasses.replace(record, connection_id=ident + offset)
                    if isinstance(record, ConnectionOpened):
                        opened += 1
                        open_now.add(ident)
                        peak = max(peak, len(open_now))
                    elif isinstance(record, ConnectionClosed):
                        open_now.discard(ident)
                    writer.write_encoded(encode_record(record))
            offset += highest
            facts.append(PartFacts(connections=opened, peak_open=peak))
    return facts
