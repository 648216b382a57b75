"""Traffic read from a file of another tool, as capture records in memory.

Importers turn what a file holds into the records a capture would hold
(:class:`~inspector.capture.ConnectionOpened`, :class:`~inspector.capture.DataChunk`,
:class:`~inspector.capture.ConnectionClosed`), so that the whole core reads
them unchanged. Connections whose bytes had to be rebuilt are marked
``reconstructed`` in their "opened" record; ``notes`` say what a reader of
the report must know about the import.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from ..capture import Record
from .detect import FileFormat


@dataclass(frozen=True, slots=True)
class ImportedTraffic:
    """The records of one imported file, iterable like an open capture."""

    path: str
    format: FileFormat
    records: tuple[Record, ...]
    notes: tuple[str, ...] = ()
    #: Imports hold whole records only (the attribute an open capture has too).
    truncated_tail: int = 0

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def select(self, part: int = 0, parts: int = 1) -> Iterator[tuple[int, Record]]:
        """``(index, record)`` for the records of connections whose number is
        ``part`` modulo ``parts``, as :meth:`Capture.select <inspector.capture.Capture.select>`."""
        for index, record in enumerate(self.records):
            if record.connection_id % parts == part:
                yield index, record

    @property
    def last_timestamp(self) -> float:
        """The latest time of any record."""
        return max((record.timestamp for record in self.records), default=0.0)

    def close(self) -> None:
        """Nothing to release: the records are in memory."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
