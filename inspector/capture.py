"""The capture file: recorded traffic, exactly as it crossed the proxy.

A capture holds, for each TCP connection or QUIC connection, its facts
(addresses, proxy mode, TLS), every chunk of bytes in the order the proxy read
it (for QUIC, of each stream and each DATAGRAM frame), and how the connection
ended. It is written incrementally and append-only, so it can be
read while it is still being written, and a process killed mid-run leaves a
file that reads back up to the last record it flushed.

Byte layout (all integers little-endian; extension ``.rtcap``)::

    file    = header record*
    header  = magic version                        (12 bytes)
      magic   8 bytes  89 52 54 43 41 50 0D 0A      (b"\\x89RTCAP\\r\\n")
      version u32      CAPTURE_VERSION
    record  = type connection_id timestamp length body   (17 + length bytes)
      type          u8   what the record is (below)
      connection_id u32  numbers connections within one capture, from 1
      timestamp     f64  seconds since the Unix epoch
      length        u32  number of body bytes
      body          length bytes

    type  name                body
    1     connection opened   UTF-8 JSON object: {"client": "host:port",
                              "server": "host:port", "mode": str,
                              "tls": tls | null, "upstream_tls": tls | null}
                              with tls = {"version", "sni", "alpn", "cipher",
                              "handshake_started", "handshake_finished"}
                              (each a string, number or null), and
                              "reconstructed": true for rebuilt bytes,
                              "transport": "quic" for a QUIC connection
                              (absent: TCP)
    2     client data         the bytes the client sent, as read by the proxy
    3     server data         the bytes the server sent, as read by the proxy
    4     connection closed   UTF-8 JSON object: {"reason": str}
    5     event               UTF-8 JSON object: {"name": str, "data": object}
    6     client stream data  stream_id u64, then the bytes the client sent on
                              that QUIC stream, as read by the proxy
    7     server stream data  stream_id u64, then the server's bytes on it
    8     client datagram     the payload of one QUIC DATAGRAM frame the client sent
    9     server datagram     the payload of one DATAGRAM frame the server sent
    10    stream ended        stream_id u64, direction u8 (0 client, 1 server),
                              reset u8 (0 the sender finished it, 1 it reset it),
                              error_code i64 (-1: none)

QUIC stream ids are the client's leg's: what the client sent and received.

Events on connection 0 concern the whole capture. "network conditions" records
the delay and bandwidth the proxy added to the connections that follow it
(data: {"preset": str | null, "rtt_ms": number, "jitter_ms": number,
"down_bits_per_second": int | null, "up_bits_per_second": int | null}).
"missing bytes" on a connection says that the next bytes of one direction are
not in the file, only how many there were (data: {"direction":
"client_to_server" | "server_to_client", "bytes": int}): a packet capture
lost their segments. The proxy never writes it; imports of packet captures do.
"transport layer" holds what the connection's client leg cost below its byte
streams so far: TLS records, QUIC packets, IP headers (data: {"client_to_server":
figures, "server_to_client": figures}, with figures = {"tls_records",
"tls_record_bytes", "quic_packets", "quic_packet_bytes", "quic_ack_only_packets",
"quic_padding_bytes", "ip_header_bytes": int, "ip_header_bytes_estimated": bool};
see :mod:`inspector.transport_layer`). The figures are cumulative: the latest
event of a connection stands for all of it. The proxy writes one at most once a
second while a connection lives and one as it closes; imports of packet captures
write one per connection.

Records appear in the order they were written, which is not always the order
of their timestamps: a connection's "opened" record carries the time the
client connected but is written once its facts (upstream TLS included) are
known. Readers skip record types they do not know, so new types can be added
without a new version. A file that ends inside a record has a truncated tail:
the reader reports its length and reads everything before it.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Self

from . import speedups
from .transport_layer import TransportLayer
from .wire import Direction

CAPTURE_VERSION = 1
MAGIC = b"\x89RTCAP\r\n"

_FILE_HEADER = struct.Struct("<8sI")
_RECORD_HEADER = struct.Struct("<BIdI")
_LENGTH = struct.Struct("<I")
_LENGTH_OFFSET = 13

_OPENED = 1
_CLIENT_DATA = 2
_SERVER_DATA = 3
_CLOSED = 4
_EVENT = 5
_CLIENT_STREAM_DATA = 6
_SERVER_STREAM_DATA = 7
_CLIENT_DATAGRAM = 8
_SERVER_DATAGRAM = 9
_STREAM_ENDED = 10

_DATA_TYPES = {Direction.CLIENT_TO_SERVER: _CLIENT_DATA, Direction.SERVER_TO_CLIENT: _SERVER_DATA}
_STREAM_DATA_TYPES = {
    Direction.CLIENT_TO_SERVER: _CLIENT_STREAM_DATA,
    Direction.SERVER_TO_CLIENT: _SERVER_STREAM_DATA,
}
_DATAGRAM_TYPES = {Direction.CLIENT_TO_SERVER: _CLIENT_DATAGRAM, Direction.SERVER_TO_CLIENT: _SERVER_DATAGRAM}
#: Every record type that carries a connection's bytes (what :meth:`Capture.connection_bytes` adds up).
_BYTE_TYPES = frozenset(
    {_CLIENT_DATA, _SERVER_DATA, _CLIENT_STREAM_DATA, _SERVER_STREAM_DATA, _CLIENT_DATAGRAM, _SERVER_DATAGRAM}
)
_STREAM_ID = struct.Struct("<Q")
_STREAM_END = struct.Struct("<QBBq")
_DIRECTIONS = (Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT)

#: ``ConnectionOpened.transport`` of a QUIC connection.
QUIC = "quic"
#: ``ConnectionOpened.transport`` of a TCP connection.
TCP = "tcp"

#: The first bytes of every capture: magic and version.
CAPTURE_HEADER = _FILE_HEADER.pack(MAGIC, CAPTURE_VERSION)


class CaptureError(Exception):
    """A file that cannot be read as a capture; the message is one line for the user."""


@dataclass(frozen=True, slots=True)
class TlsInfo:
    """One side's TLS session as the proxy negotiated it."""

    version: str | None = None
    sni: str | None = None
    alpn: str | None = None
    cipher: str | None = None
    handshake_started: float | None = None
    handshake_finished: float | None = None


@dataclass(frozen=True, slots=True)
class ConnectionOpened:
    """A connection's facts. ``timestamp`` is when the client connected.

    ``tls`` is the TLS session between client and proxy, ``upstream_tls`` the
    one between proxy and server; either is None where that side is plaintext.
    ``reconstructed`` marks a connection whose bytes were rebuilt from a file
    that does not keep them (HAR, mitmproxy's HTTP and WebSocket flows), not
    recorded as they travelled. ``transport`` is :data:`TCP` or :data:`QUIC`;
    a QUIC connection's bytes come as :class:`StreamChunk` and
    :class:`DatagramChunk` records, a TCP connection's as :class:`DataChunk`.
    """

    connection_id: int
    timestamp: float
    client: str
    server: str
    mode: str
    tls: TlsInfo | None = None
    upstream_tls: TlsInfo | None = None
    reconstructed: bool = False
    transport: str = TCP


@dataclass(frozen=True, slots=True)
class DataChunk:
    """Bytes from one socket read, in one direction, after TLS."""

    connection_id: int
    timestamp: float
    direction: Direction
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamChunk:
    """Bytes from one read of one QUIC stream, in one direction, after QUIC's decryption."""

    connection_id: int
    timestamp: float
    direction: Direction
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class DatagramChunk:
    """The payload of one QUIC DATAGRAM frame."""

    connection_id: int
    timestamp: float
    direction: Direction
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """One direction of a QUIC stream ended: finished by its sender, or reset
    (``reset``, with the sender's ``error_code``)."""

    connection_id: int
    timestamp: float
    direction: Direction
    stream_id: int
    reset: bool = False
    error_code: int | None = None


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """How a connection ended: "client closed", "server closed", "client reset",
    "server reset", "timed out", "proxy stopped" or "error: <what happened>"."""

    connection_id: int
    timestamp: float
    reason: str


@dataclass(frozen=True, slots=True)
class Event:
    """Something else worth recording; ``connection_id`` 0 means the capture as a whole."""

    connection_id: int
    timestamp: float
    name: str
    data: Mapping[str, Any] = field(default_factory=dict)


Record = ConnectionOpened | DataChunk | StreamChunk | DatagramChunk | StreamEnded | ConnectionClosed | Event

#: The event that stands for bytes of a direction that a packet capture lost (see the module's docstring).
MISSING_BYTES = "missing bytes"


def missing_bytes(connection_id: int, timestamp: float, direction: Direction, size: int) -> Event:
    """The event that ``size`` bytes of ``direction`` come next that the file does not hold."""
    return Event(connection_id, timestamp, MISSING_BYTES, {"direction": direction.value, "bytes": size})


def missing_from(event: Event) -> tuple[Direction, int] | None:
    """The direction and byte count of a "missing bytes" event (None for any other event, or a damaged one)."""
    if event.name != MISSING_BYTES or event.connection_id == 0:
        return None
    try:
        direction, size = Direction(event.data["direction"]), event.data["bytes"]
    except (KeyError, ValueError, TypeError):
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return None
    return direction, size


#: The event that holds a connection's figures below its byte streams (see the module's docstring).
TRANSPORT_LAYER = "transport layer"


def transport_layer_event(connection_id: int, timestamp: float, figures: TransportLayer) -> Event:
    """The "transport layer" event of a connection's figures so far."""
    return Event(connection_id, timestamp, TRANSPORT_LAYER, figures.as_dict())


def transport_layer_from(event: Event) -> TransportLayer | None:
    """The figures of a "transport layer" event (None for any other event, or a damaged one)."""
    if event.name != TRANSPORT_LAYER or event.connection_id == 0:
        return None
    return TransportLayer.from_dict(event.data)


def _tls_to_json(tls: TlsInfo | None) -> dict[str, Any] | None:
    return None if tls is None else asdict(tls)


def _tls_from_json(value: Any) -> TlsInfo | None:
    if value is None:
        return None
    return TlsInfo(**{name: value.get(name) for name in TlsInfo.__slots__})


def _encode_json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def encode_record(record: Record) -> bytes:
    """One record as a capture file holds it (type, connection, timestamp, length, body).

    A capture file is :data:`CAPTURE_HEADER` followed by records encoded so;
    so is the stream the proxy hands its analyser process.
    """
    match record:
        case DataChunk(connection_id, timestamp, direction, data):
            return _RECORD_HEADER.pack(_DATA_TYPES[direction], connection_id, timestamp, len(data)) + data
        case StreamChunk(connection_id, timestamp, direction, stream_id, data):
            body_size = _STREAM_ID.size + len(data)
            return (
                _RECORD_HEADER.pack(_STREAM_DATA_TYPES[direction], connection_id, timestamp, body_size)
                + _STREAM_ID.pack(stream_id)
                + data
            )
        case DatagramChunk(connection_id, timestamp, direction, data):
            return _RECORD_HEADER.pack(_DATAGRAM_TYPES[direction], connection_id, timestamp, len(data)) + data
        case StreamEnded(connection_id, timestamp, direction, stream_id, reset, error_code):
            body = _STREAM_END.pack(
                stream_id, _DIRECTIONS.index(direction), int(reset), -1 if error_code is None else error_code
            )
            return _encoded(_STREAM_ENDED, connection_id, timestamp, body)
        case ConnectionOpened(
            connection_id, timestamp, client, server, mode, tls, upstream_tls, reconstructed, transport
        ):
            facts: dict[str, Any] = {
                "client": client,
                "server": server,
                "mode": mode,
                "tls": _tls_to_json(tls),
                "upstream_tls": _tls_to_json(upstream_tls),
            }
            if reconstructed:
                facts["reconstructed"] = True
            if transport != TCP:
                facts["transport"] = transport
            return _encoded(_OPENED, connection_id, timestamp, _encode_json(facts))
        case ConnectionClosed(connection_id, timestamp, reason):
            return _encoded(_CLOSED, connection_id, timestamp, _encode_json({"reason": reason}))
        case Event(connection_id, timestamp, name, data):
            return _encoded(_EVENT, connection_id, timestamp, _encode_json({"name": name, "data": dict(data)}))
        case _:
            raise TypeError(f"not a capture record: {record!r}")


def _encoded(kind: int, connection_id: int, timestamp: float, body: bytes) -> bytes:
    return _RECORD_HEADER.pack(kind, connection_id, timestamp, len(body)) + body


class CaptureWriter:
    """Appends records to a new capture file, created readable by its owner only.

    Records are buffered and written out when the buffer passes
    ``buffer_limit`` bytes and whenever :meth:`flush` is called; the owner
    calls it on a timer so that a killed process loses at most that long.
    An existing file at ``path`` is replaced.
    """

    def __init__(self, path: str | os.PathLike[str], *, buffer_limit: int = 256 * 1024) -> None:
        self.path = os.fspath(path)
        self._buffer = bytearray()
        self._buffer_limit = buffer_limit
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(self._fd, 0o600)
            self._write_all(CAPTURE_HEADER)
        except BaseException:
            os.close(self._fd)
            raise

    def write(self, record: Record) -> None:
        """Append one record."""
        self.write_encoded(encode_record(record))

    def write_encoded(self, records: bytes) -> None:
        """Append records already encoded with :func:`encode_record`."""
        if self._fd is None:
            raise ValueError("capture is closed")
        self._buffer += records
        if len(self._buffer) >= self._buffer_limit:
            self.flush()

    def flush(self) -> None:
        """Hand every buffered record to the operating system."""
        if self._buffer and self._fd is not None:
            self._write_all(self._buffer)
            self._buffer.clear()

    def _write_all(self, data: bytes | bytearray) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        """Flush and close; closing twice is harmless."""
        if self._fd is None:
            return
        try:
            self.flush()
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Capture:
    """A capture file as it was when it was opened, iterated record by record.

    ``truncated_tail`` is the number of bytes at the end that do not form a
    whole record (0 for a cleanly closed capture); they are skipped.
    """

    def __init__(self, path: str, version: int, buffer: mmap.mmap | bytes) -> None:
        self.path = path
        self.version = version
        self._buffer = buffer
        self._end = _end_of_whole_records(buffer, _FILE_HEADER.size)
        self.truncated_tail = len(buffer) - self._end
        #: The latest time of any record, once :meth:`select` has read to the end.
        self.last_timestamp = 0.0

    def __iter__(self) -> Iterator[Record]:
        return (record for _, record in self.select())

    def connection_bytes(self) -> dict[int, int]:
        """The bytes of each connection's data records, read from the record headers alone:
        what planning how processes share the capture needs."""
        buffer, end = self._buffer, self._end
        unpack = _RECORD_HEADER.unpack_from
        header_size = _RECORD_HEADER.size
        sizes: dict[int, int] = {}
        offset = _FILE_HEADER.size
        released = 0
        while offset < end:
            if offset - released >= _RELEASE_STEP:
                released = _release(buffer, released, offset)
            kind, connection_id, _, length = unpack(buffer, offset)
            offset += header_size + length
            if kind in _BYTE_TYPES:
                sizes[connection_id] = sizes.get(connection_id, 0) + length
        _release(buffer, released, offset)
        return sizes

    def select(
        self, part: int = 0, parts: int = 1, owners: dict[int, int] | None = None
    ) -> Iterator[tuple[int, Record]]:
        """``(offset, record)`` for the records of connections whose number is
        ``part`` modulo ``parts`` (every record by default), or whose part
        ``owners`` says is ``part`` (connections it does not name are part 0's),
        skipping the others without reading their bodies: how processes share a
        capture. Reading to the end sets :attr:`last_timestamp`, the latest time
        of any record."""
        buffer, end = self._buffer, self._end
        unpack = _RECORD_HEADER.unpack_from
        header_size = _RECORD_HEADER.size
        client_to_server, server_to_client = Direction.CLIENT_TO_SERVER, Direction.SERVER_TO_CLIENT
        offset = _FILE_HEADER.size
        latest = 0.0
        released = 0
        if _compiled is not None:
            # The same loop compiled (inspector/_capture.pyx), a batch of records at a time.
            read_batch = _compiled.read_batch
            while offset < end:
                if offset - released >= _RELEASE_STEP:
                    released = _release(buffer, released, offset)
                records, offset, latest, error = read_batch(self, DataChunk, offset, end, part, parts, owners, latest)
                yield from records
                if error is not None:
                    raise error
            self.last_timestamp = latest
            return
        while offset < end:
            if offset - released >= _RELEASE_STEP:
                released = _release(buffer, released, offset)
            kind, connection_id, timestamp, length = unpack(buffer, offset)
            if timestamp > latest:
                latest = timestamp
            record_at, start = offset, offset + header_size
            offset = start + length
            if (owners.get(connection_id, 0) if owners is not None else connection_id % parts) != part:
                continue
            if kind == _SERVER_DATA:
                yield record_at, DataChunk(connection_id, timestamp, server_to_client, buffer[start:offset])
            elif kind == _CLIENT_DATA:
                yield record_at, DataChunk(connection_id, timestamp, client_to_server, buffer[start:offset])
            elif kind in (_OPENED, _CLOSED, _EVENT):
                yield record_at, self._json_record(kind, connection_id, timestamp, buffer[start:offset], record_at)
            elif kind in _QUIC_TYPES:
                yield record_at, self._quic_record(kind, connection_id, timestamp, buffer[start:offset], record_at)
        self.last_timestamp = latest

    def _json_record(self, kind: int, connection_id: int, timestamp: float, body: bytes, offset: int) -> Record:
        try:
            value = json.loads(body)
            if kind == _OPENED:
                return ConnectionOpened(
                    connection_id,
                    timestamp,
                    client=value["client"],
                    server=value["server"],
                    mode=value["mode"],
                    tls=_tls_from_json(value.get("tls")),
                    upstream_tls=_tls_from_json(value.get("upstream_tls")),
                    reconstructed=value.get("reconstructed") is True,
                    transport=QUIC if value.get("transport") == QUIC else TCP,
                )
            if kind == _CLOSED:
                return ConnectionClosed(connection_id, timestamp, value["reason"])
            return Event(connection_id, timestamp, value["name"], value.get("data") or {})
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise CaptureError(f"{self.path}: damaged record at byte {offset}: {e}") from None

    def _quic_record(self, kind: int, connection_id: int, timestamp: float, body: bytes, offset: int) -> Record:
        if kind == _CLIENT_DATAGRAM or kind == _SERVER_DATAGRAM:
            direction = _DIRECTIONS[kind - _CLIENT_DATAGRAM]
            return DatagramChunk(connection_id, timestamp, direction, body)
        if kind == _STREAM_ENDED:
            if len(body) != _STREAM_END.size:
                raise CaptureError(f"{self.path}: damaged record at byte {offset}: a stream's end of {len(body)} bytes")
            stream_id, side, reset, error_code = _STREAM_END.unpack(body)
            if side > 1:
                raise CaptureError(f"{self.path}: damaged record at byte {offset}: no direction {side}")
            return StreamEnded(
                connection_id,
                timestamp,
                _DIRECTIONS[side],
                stream_id,
                bool(reset),
                None if error_code < 0 else error_code,
            )
        if len(body) < _STREAM_ID.size:
            raise CaptureError(f"{self.path}: damaged record at byte {offset}: stream data without a stream id")
        (stream_id,) = _STREAM_ID.unpack_from(body)
        direction = _DIRECTIONS[kind - _CLIENT_STREAM_DATA]
        return StreamChunk(connection_id, timestamp, direction, stream_id, body[_STREAM_ID.size :])

    def close(self) -> None:
        if isinstance(self._buffer, mmap.mmap):
            self._buffer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _end_of_whole_records(buffer: mmap.mmap | bytes, offset: int) -> int:
    """The offset just past the last record that is entirely in ``buffer``."""
    size = len(buffer)
    unpack_length = _LENGTH.unpack_from
    header_size = _RECORD_HEADER.size
    released = 0
    while offset + header_size <= size:
        if offset - released >= _RELEASE_STEP:
            released = _release(buffer, released, offset)
        end = offset + header_size + unpack_length(buffer, offset + _LENGTH_OFFSET)[0]
        if end > size:
            break
        offset = end
    _release(buffer, released, offset)
    return offset


#: The compiled loop of Capture.select, where it is in use.
_compiled = speedups.compiled("capture")

_QUIC_TYPES = frozenset({_CLIENT_STREAM_DATA, _SERVER_STREAM_DATA, _CLIENT_DATAGRAM, _SERVER_DATAGRAM, _STREAM_ENDED})

#: Bytes read between hand-backs of a mapped capture's pages.
_RELEASE_STEP = 16 * 1024 * 1024


def _release(buffer: mmap.mmap | bytes, start: int, end: int) -> int:
    """Give back the pages of ``buffer`` from ``start`` to ``end`` (rounded down to
    a page) that have been read, so that reading a capture holds a window of it
    in memory, not all of it (records are copied out of the map). Returns where
    the pages given back end."""
    end -= end % mmap.PAGESIZE
    if end <= start:
        return start
    if isinstance(buffer, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED"):
        buffer.madvise(mmap.MADV_DONTNEED, start, end - start)
    return end


def read_capture(path: str | os.PathLike[str]) -> Capture:
    """Open a capture for reading.

    Raises :class:`CaptureError` if the file cannot be read, is not a capture,
    or has a version this code does not read.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            header = file.read(_FILE_HEADER.size)
            if len(header) < _FILE_HEADER.size or not header.startswith(MAGIC):
                raise CaptureError(f"{name}: not an rtinspect capture")
            _, version = _FILE_HEADER.unpack(header)
            if version != CAPTURE_VERSION:
                raise CaptureError(
                    f"{name}: capture version {version} is not supported (this rtinspect reads version {CAPTURE_VERSION})"
                )
            buffer = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise CaptureError(f"cannot read {name}: {e.strerror or e}") from None
    return Capture(name, version, buffer)
