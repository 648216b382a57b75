# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The compiled capture reader: the loop of :meth:`inspector.capture.Capture.select` in C.

It reads record headers and copies data records out of the buffer in batches,
and builds the same record values as the pure-Python loop, which is the
reference. Records that carry JSON or QUIC framing are built by the capture's
own methods. A batch never outlives the call that made it holds the buffer,
so a capture can be closed whenever the pure-Python loop would let it be.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.object cimport PyObject_GenericSetAttr
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from .wire import Direction

cdef enum:
    _HEADER_SIZE = 17  # "<BIdI": kind, connection id, timestamp, body length
    _OPENED = 1
    _CLIENT_DATA = 2
    _SERVER_DATA = 3
    _CLOSED = 4
    _EVENT = 5
    _FIRST_QUIC = 6
    _LAST_QUIC = 10

cdef object _C2S = Direction.CLIENT_TO_SERVER
cdef object _S2C = Direction.SERVER_TO_CLIENT
cdef object _new = object.__new__

#: Most records, and about the most bytes, one batch holds.
cdef Py_ssize_t _BATCH_RECORDS = 1024
cdef Py_ssize_t _BATCH_BYTES = 1 << 20


cdef inline uint32_t _u32(const unsigned char *p) noexcept:
    return p[0] | (<uint32_t>p[1]) << 8 | (<uint32_t>p[2]) << 16 | (<uint32_t>p[3]) << 24


cdef inline double _f64(const unsigned char *p) noexcept:
    cdef uint64_t bits = 0
    cdef int i
    cdef double value
    for i in range(7, -1, -1):
        bits = bits << 8 | p[i]
    memcpy(&value, &bits, 8)
    return value


cdef object _data_chunk(object cls, uint32_t connection_id, double timestamp, object direction, bytes data):
    """A ``DataChunk``, its fields set as its frozen dataclass ``__init__`` sets them."""
    chunk = _new(cls)
    PyObject_GenericSetAttr(chunk, "connection_id", connection_id)
    PyObject_GenericSetAttr(chunk, "timestamp", timestamp)
    PyObject_GenericSetAttr(chunk, "direction", direction)
    PyObject_GenericSetAttr(chunk, "data", data)
    return chunk


def read_batch(capture, object data_chunk, Py_ssize_t offset, Py_ssize_t stop, Py_ssize_t part, Py_ssize_t parts, owners, double latest):
    """The next records of ``capture`` from ``offset``, as ``Capture.select`` yields them.

    Reads whole records up to ``stop`` (the end of the whole records, or
    where the caller gives pages back), at most a batch. Returns ``(records,
    offset, latest, error)``: ``records`` a list of ``(offset, record)``, the
    offset where reading stopped, the latest timestamp seen, and the
    :class:`~inspector.capture.CaptureError` that a damaged record raised, if
    one did (the records before it come first, as they would one by one).
    """
    cdef const unsigned char[::1] view = capture._buffer
    cdef const unsigned char *base
    cdef const unsigned char *header
    cdef list records = []
    cdef Py_ssize_t start, record_at, batch_end
    cdef uint32_t length, connection_id
    cdef unsigned int kind
    cdef double timestamp
    cdef dict owned = owners
    if stop <= offset:
        return records, offset, latest, None
    base = &view[0]
    batch_end = offset + _BATCH_BYTES
    while offset < stop and len(records) < _BATCH_RECORDS and offset < batch_end:
        header = base + offset
        kind = header[0]
        connection_id = _u32(header + 1)
        timestamp = _f64(header + 5)
        length = _u32(header + 13)
        if timestamp > latest:
            latest = timestamp
        record_at = offset
        start = offset + _HEADER_SIZE
        offset = start + length
        if owned is not None:
            if owned.get(connection_id, 0) != part:
                continue
        elif connection_id % parts != part:
            continue
        if kind == _SERVER_DATA or kind == _CLIENT_DATA:
            records.append(
                (
                    record_at,
                    _data_chunk(
                        data_chunk,
                        connection_id,
                        timestamp,
                        _S2C if kind == _SERVER_DATA else _C2S,
                        PyBytes_FromStringAndSize(<const char *>(base + start), length),
                    ),
                )
            )
            continue
        if not (kind == _OPENED or kind == _CLOSED or kind == _EVENT or _FIRST_QUIC <= kind <= _LAST_QUIC):
            continue
        body = PyBytes_FromStringAndSize(<const char *>(base + start), length)
        try:
            if kind <= _EVENT:
                record = capture._json_record(kind, connection_id, timestamp, body, record_at)
            else:
                record = capture._quic_record(kind, connection_id, timestamp, body, record_at)
        except Exception as error:
            return records, offset, latest, error
        records.append((record_at, record))
    return records, offset, latest, None
