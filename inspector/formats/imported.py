"""Traffic read from a file of another tool, as capture records.

Importers turn what a file holds into the records a capture would hold
(:class:`~inspector.capture.ConnectionOpened`, :class:`~inspector.capture.DataChunk`,
:class:`~inspector.capture.ConnectionClosed`), so that the whole core reads
them unchanged. Connections whose bytes had to be rebuilt are marked
``reconstructed`` in their "opened" record; ``notes`` say what a reader of
the report must know about the import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Self

from ..capture import Record
from .detect import FileFormat


class ImportedTraffic:
    """The records of one imported file, iterable like an open capture.

    ``records`` may be rebuilt as they are read, so what the report must say
    about them (``notes``) is complete once they have been read.
    """

    #: Imports hold whole records only (the attribute an open capture has too).
    truncated_tail = 0

    def __init__(
        self, path: str, format: FileFormat, records: Iterable[Record], notes: Callable[[], Sequence[str]] = tuple
    ) -> None:
        self.path = path
        self.format = format
        self.records = records
        self._notes = notes
        #: The latest time of any record, once :meth:`select` has read to the end.
        self.last_timestamp = 0.0

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self._notes())

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def select(
        self, part: int = 0, parts: int = 1, owners: dict[int, int] | None = None
    ) -> Iterator[tuple[int, Record]]:
        """``(index, record)`` for the records of connections whose number is
        ``part`` modulo ``parts`` (or whose part ``owners`` names), as
        :meth:`Capture.select <inspector.capture.Capture.select>`."""
        latest = 0.0
        for index, record in enumerate(self.records):
            latest = max(latest, record.timestamp)
            owner = owners.get(record.connection_id, 0) if owners is not None else record.connection_id % parts
            if owner == part:
                yield index, record
        self.last_timestamp = latest

    def close(self) -> None:
        """Nothing to release: each reading opens the file it needs."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
