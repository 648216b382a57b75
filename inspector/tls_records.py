"""TLS records counted in one direction of a TLS byte stream, before decryption.

Every TLS record starts with a 5-byte header: content type (20 change cipher
spec, 21 alert, 22 handshake, 23 application data, 24 heartbeat), the legacy
version (3.x) and the length of the body that follows (RFC 8446 section 5.1).
:class:`TlsRecordCounter` reads those headers and skips the bodies, so it
counts records and their bytes (header and body) without keys, for handshake
records and encrypted ones alike. It holds at most four bytes between chunks,
and its counts do not depend on how the stream was split.

A header that is not TLS's (a content type or version TLS does not use, or a
body longer than TLS allows) is an anomaly: counting stops there, and what
follows is counted as ``unparsed_bytes``.

:class:`TlsLeg` puts both directions of a client's leg together, with the IP
and TCP headers the proxy's reads and writes suggest.
"""

from __future__ import annotations

from .transport_layer import LayerFigures, TcpSegmentEstimate, TransportLayer
from .wire import Direction

#: Content types of TLS 1.0-1.3 (and heartbeat, RFC 6520).
CONTENT_TYPES = frozenset({20, 21, 22, 23, 24})
#: The longest body a record may have: 2^14 bytes plus 2,048 of expansion (RFC 5246 section 6.2.3).
MAX_BODY = 2**14 + 2048
HEADER_SIZE = 5


class TlsRecordCounter:
    """Counts the TLS records of one direction as its bytes are fed.

    ``records`` counts a record once its header is complete; ``record_bytes``
    counts every byte of a record as it arrives, so a record cut off by the end
    of the stream counts the bytes it had.
    """

    __slots__ = ("_header", "_remaining", "anomaly", "record_bytes", "records", "unparsed_bytes")

    def __init__(self) -> None:
        self.records = 0
        self.record_bytes = 0
        self.unparsed_bytes = 0
        #: Why counting stopped (None while the stream reads as TLS).
        self.anomaly: str | None = None
        self._header = b""
        #: Body bytes of the current record still to come.
        self._remaining = 0

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self.anomaly is not None:
                self.unparsed_bytes += len(view)
                return
            if self._remaining:
                taken = min(self._remaining, len(view))
                self._remaining -= taken
                self.record_bytes += taken
                view = view[taken:]
                continue
            needed = HEADER_SIZE - len(self._header)
            self._header += bytes(view[:needed])
            taken = min(needed, len(view))
            view = view[taken:]
            if len(self._header) < HEADER_SIZE:
                self.record_bytes += taken  # provisionally; taken back if the header turns out not to be TLS
                continue
            header, self._header = self._header, b""
            content_type, major, length = header[0], header[1], int.from_bytes(header[3:5])
            if content_type not in CONTENT_TYPES or major != 3 or length > MAX_BODY:
                self.anomaly = f"not a TLS record header: {header.hex()}"
                already = HEADER_SIZE - taken
                self.record_bytes -= already
                self.unparsed_bytes += HEADER_SIZE
                continue
            self.records += 1
            self.record_bytes += taken
            self._remaining = length


class TlsLeg:
    """One client's TLS-over-TCP leg as the proxy read it and wrote it: its records
    each way (exact) and its IP and TCP headers (estimated from the reads and writes,
    by :class:`~inspector.transport_layer.TcpSegmentEstimate`'s rule)."""

    __slots__ = ("_records", "_segments")

    def __init__(self, *, ipv6: bool) -> None:
        self._records = {direction: TlsRecordCounter() for direction in Direction}
        self._segments = TcpSegmentEstimate(ipv6=ipv6)

    def feed(self, direction: Direction, data: bytes, timestamp: float) -> None:
        """One read from the client (client to server) or one write to it (server to
        client), at ``timestamp`` (seconds, any origin)."""
        if data:
            self._records[direction].feed(data)
            self._segments.sent(direction, len(data), timestamp)

    def figures(self, *, closed: bool = False) -> TransportLayer:
        """The figures so far; ``closed`` adds the segments of closing the connection."""
        return TransportLayer(
            *(
                LayerFigures(
                    tls_records=self._records[direction].records,
                    tls_record_bytes=self._records[direction].record_bytes,
                    ip_header_bytes=self._segments.header_bytes(direction, closed=closed),
                    ip_header_bytes_estimated=True,
                )
                for direction in Direction
            )
        )
