"""A record stream in, one consumer per connection driven: the loop every shell shares.

Whatever the source (a capture file, the relay's live records, a packet
capture put back together), traffic reaches the core as a stream of
:data:`~inspector.capture.Record` values: a connection opened, a chunk of one
of its directions, bytes the recording lacks (a "missing bytes" event), the
network conditions it ran under, what it cost below its byte streams (a
"transport layer" event), a connection closed. :class:`RecordDriver`
consumes that stream and drives one consumer per open connection (a
:class:`~inspector.connection.ConnectionAnalyzer` for reports, a flow
builder for exports, a head reader for the demo's checks), so each record
kind is handled once, here, for every shell: ``rtinspect report`` and each of
its ``-j`` parts, the analyser process, the proxy's in-process analysis, flow
and HAR export, and the demo.

Like the parsers it drives, it owns no I/O: records in, each closed
connection's result out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from .capture import (
    ConnectionClosed,
    ConnectionOpened,
    DataChunk,
    DatagramChunk,
    Event,
    Record,
    StreamChunk,
    StreamEnded,
    missing_from,
    transport_layer_from,
)
from .network import NETWORK_EVENT, NetworkConditions
from .transport_layer import TransportLayer
from .wire import Direction


class ConnectionConsumer[R](Protocol):
    """What the driver drives for each connection.

    A consumer that does not read QUIC connections subclasses this to inherit
    the QUIC methods, which ignore what they are given.
    """

    def feed(self, direction: Direction, data: bytes, timestamp: float) -> None: ...

    def gap(self, direction: Direction, missing: int, timestamp: float) -> None: ...

    def feed_stream(self, direction: Direction, stream_id: int, data: bytes, timestamp: float) -> None:
        """Bytes of one QUIC stream (a QUIC connection's records)."""
        return None

    def end_stream(
        self, direction: Direction, stream_id: int, reset: bool, error_code: int | None, timestamp: float
    ) -> None:
        """One direction of a QUIC stream ended."""
        return None

    def datagram(self, direction: Direction, data: bytes, timestamp: float) -> None:
        """One QUIC DATAGRAM frame's payload."""
        return None

    def transport_layer(self, figures: TransportLayer, timestamp: float) -> None:
        """The connection's figures below its byte streams so far (the latest stand for all)."""
        return None

    def close(self, timestamp: float, reason: str | None) -> R: ...


class DamagedRecord(ValueError):
    """A record the driver needs to read is damaged (its network conditions do not parse)."""


class RecordDriver[C: ConnectionConsumer[Any], R]:
    """Consumes a record stream; :meth:`feed` returns what a connection's consumer
    gave when the record closed it.

    ``start`` makes the consumer of a connection from its "opened" record; ``R`` is
    what its ``close`` returns. A
    chunk of a connection the stream never opened is counted in
    :attr:`unknown_bytes` and skipped. ``tag``, given with a connection's
    "opened" record, comes back with its result from :meth:`finish` (replay
    uses it to keep a one-process order).
    """

    def __init__(self, start: Callable[[ConnectionOpened], C]) -> None:
        self._start = start
        self._live: dict[int, tuple[C, object]] = {}
        #: Bytes of connections the stream never opened (or that were dropped).
        self.unknown_bytes = 0
        #: The network conditions the stream recorded, in order.
        self.network: list[NetworkConditions] = []
        #: The latest timestamp of any record.
        self.last_timestamp = 0.0

    def feed(self, record: Record, tag: object = None) -> R | None:
        """Hand one record on; the result of the connection it closed, if it closed one.

        Raises :class:`DamagedRecord` for network conditions that do not parse.
        """
        if record.timestamp > self.last_timestamp:
            self.last_timestamp = record.timestamp
        if isinstance(record, DataChunk):
            entry = self._live.get(record.connection_id)
            if entry is None:
                self.unknown_bytes += len(record.data)
            else:
                entry[0].feed(record.direction, record.data, record.timestamp)
        elif isinstance(record, StreamChunk):
            entry = self._live.get(record.connection_id)
            if entry is None:
                self.unknown_bytes += len(record.data)
            else:
                entry[0].feed_stream(record.direction, record.stream_id, record.data, record.timestamp)
        elif isinstance(record, DatagramChunk):
            entry = self._live.get(record.connection_id)
            if entry is None:
                self.unknown_bytes += len(record.data)
            else:
                entry[0].datagram(record.direction, record.data, record.timestamp)
        elif isinstance(record, StreamEnded):
            entry = self._live.get(record.connection_id)
            if entry is not None:
                entry[0].end_stream(
                    record.direction, record.stream_id, record.reset, record.error_code, record.timestamp
                )
        elif isinstance(record, ConnectionOpened):
            self._live[record.connection_id] = (self._start(record), tag)
        elif isinstance(record, ConnectionClosed):
            entry = self._live.pop(record.connection_id, None)
            if entry is not None:
                result: R = entry[0].close(record.timestamp, record.reason)
                return result
        elif isinstance(record, Event):
            self._event(record)
        return None

    def _event(self, event: Event) -> None:
        if event.connection_id == 0:
            if event.name == NETWORK_EVENT:
                try:
                    self.network.append(NetworkConditions.from_json(event.data))
                except (ValueError, KeyError, TypeError):
                    raise DamagedRecord("damaged network conditions") from None
            return
        entry = self._live.get(event.connection_id)
        if entry is None:
            return
        missing = missing_from(event)
        if missing is not None:
            entry[0].gap(*missing, event.timestamp)
            return
        figures = transport_layer_from(event)
        if figures is not None:
            entry[0].transport_layer(figures, event.timestamp)

    def drop(self, connection_id: int) -> None:
        """Stop driving a connection: its later records count as unknown bytes."""
        self._live.pop(connection_id, None)

    @property
    def open_consumers(self) -> list[C]:
        """The consumer of each connection still open, in the order they opened."""
        return [consumer for consumer, _ in self._live.values()]

    def finish(self, timestamp: float, reason: str) -> list[tuple[object, R]]:
        """Close every connection still open (the stream ended first), with its tag."""
        live, self._live = self._live, {}
        results: list[tuple[object, R]] = [(tag, consumer.close(timestamp, reason)) for consumer, tag in live.values()]
        return results
