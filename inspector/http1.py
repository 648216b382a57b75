"""HTTP/1.1 as seen from the wire: both directions of one connection, passively.

h11 parses; this module pairs requests with responses and says how many bytes
each head, body piece and chunk-framing run took. h11 is built for one
endpoint, so each direction uses a fresh h11 connection per message: a server
role for requests, and a client role (primed with the request being answered)
for responses. That keeps pipelining, interim responses and Upgrade in h11's
hands without a second state machine here.

Well-formed messages of the common shapes are read by a scanner here instead,
which gives the events h11 would give, read for read, and hands the direction
to h11 for anything else (see "the fast path" below); ``RTINSPECT_HTTP1=h11``
in the environment leaves every message to h11.

Every byte fed comes back in exactly one event: in a head's ``size``, a body
piece's ``data`` plus ``framing``, a ``MessageEnd``'s ``framing``, a
``ProtocolSwitch``'s ``data`` or an ``Unparsed``'s ``size``.

Where bytes are malformed, the anomaly's offset and kind ("invalid request",
"invalid response") never depend on how the bytes arrived; h11's detail after
the colon can, when the bytes are malformed in more than one way. A head, a
chunk-size line or a trailer section over 16 KiB is refused for its length
however it arrived, which h11 alone does only when it arrives in pieces.
"""

from __future__ import annotations

import os
import re
from collections import deque
from functools import lru_cache

import h11
from h11._readers import ContentLengthReader

from .events import (
    BodyData,
    Headers,
    HttpEvent,
    MessageEnd,
    ParseFailure,
    ProtocolSwitch,
    RequestHead,
    ResponseHead,
    Unparsed,
)
from .wire import Anomaly, Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


def _headers(raw: h11._headers.Headers) -> Headers:
    """The header fields with lower-case names, as text.

    h11 keeps them as (raw name, name, value) triples; reading those directly
    spares a Python-level ``__getitem__`` per field, which its Sequence
    interface costs.
    """
    items = getattr(raw, "_full_items", None)
    if items is None:
        return tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in raw)
    return tuple([(name.decode("latin-1"), value.decode("latin-1")) for _, name, value in items])


_SMUGGLING_SHAPE = " (request smuggling shape)"

#: h11's reasons for refusing a head whose message length is ambiguous: parsers
#: that disagree on these shapes disagree on where the message ends.
_AMBIGUOUS_LENGTH_REFUSALS = frozenset(
    {
        "conflicting Content-Length headers",
        "bad Content-Length",
        "multiple Transfer-Encoding headers",
        "Only Transfer-Encoding: chunked is supported",
    }
)

#: The longest head h11 accepts whatever the chunking: it refuses a head still
#: incomplete after more than its ``max_incomplete_event_size`` (16 KiB) bytes.
LONGEST_HEAD = 16 * 1024 + 1
#: The longest chunk-size line, and the longest trailer section, h11 accepts
#: whatever the chunking: the same bound, for the same reason, as a head's.
LONGEST_FRAMING = LONGEST_HEAD
#: The most requests kept waiting for their responses (pipelined, unanswered). A
#: request past them is not parsed, nor is anything after it in its direction:
#: its bytes are counted as unparsed behind one anomaly, so a client that sends
#: and a server that never answers cannot grow the queue without bound.
PIPELINE_LIMIT = 1_000
#: h11's words when it refuses a head, a chunk-size line or trailers for their length.
_HEAD_TOO_LONG = "Receive buffer too long"
#: h11's words for a chunk-size line that is not one.
_BAD_CHUNK_SIZE = "illegal chunk header"
#: h11's words for a field line it cannot read.
_BAD_FIELD_LINE = "illegal header line"

_FRAMING_FIELDS = {b"content-length": "Content-Length", b"transfer-encoding": "Transfer-Encoding"}
#: A framing field's name followed by whitespace before its colon, at the start of a line.
_FRAMING_NAME_THEN_SPACE = re.compile(rb"^(content-length|transfer-encoding)[ \t]+:", re.IGNORECASE | re.MULTILINE)


def _framing_ambiguity(headers: Headers, head: bytes) -> str | None:
    """A reason when the head's message length is ambiguous (a request-smuggling shape).

    ``head`` is the head as it was on the wire: h11 unfolds obsolete line
    folding, which can join a framing field to another line or hide one in a
    continuation line, where a parser that does not unfold reads it otherwise.
    """
    content_lengths = [v for k, v in headers if k == "content-length"]
    encodings = [v for k, v in headers if k == "transfer-encoding"]
    if content_lengths and encodings:
        return "both Content-Length and Transfer-Encoding are present" + _SMUGGLING_SHAPE
    if len(encodings) > 1:
        return "Transfer-Encoding appears more than once" + _SMUGGLING_SHAPE
    if len(set(content_lengths)) > 1:
        return "conflicting Content-Length values" + _SMUGGLING_SHAPE
    folded = _folded_framing_field(head)
    if folded is not None:
        return f"obsolete line folding in {folded}" + _SMUGGLING_SHAPE
    return None


def _folded_framing_field(head: bytes) -> str | None:
    """The framing field that a continuation line (obs-fold) continues or carries, if any."""
    if b"\n " not in head and b"\n\t" not in head:
        return None
    field = b""
    for line in head.split(b"\n")[1:]:
        if line[:1] in (b" ", b"\t"):
            carried = line.lstrip(b" \t").split(b":", 1)[0].strip().lower()
            for name in (field, carried):
                if name in _FRAMING_FIELDS:
                    return _FRAMING_FIELDS[name]
        else:
            field = line.split(b":", 1)[0].strip().lower()
    return None


def _space_before_colon(head: bytes) -> str | None:
    """The framing field whose name is followed by whitespace before its colon, if any.

    h11 refuses such a field line, as RFC 9112 tells a server to; a parser that
    strips the whitespace reads the message length from the field, where one
    that keeps it sees some other field and reads the length otherwise.
    """
    match = _FRAMING_NAME_THEN_SPACE.search(head)
    return None if match is None else _FRAMING_FIELDS[match.group(1).lower()]


def _reason(error: h11.RemoteProtocolError) -> str:
    """h11's reason without the bytes it quotes (which depend on how the data arrived)."""
    return str(error).split(": bytearray(", 1)[0]


def _buffered(conn: h11.Connection) -> int:
    """Bytes h11 holds but has not turned into events yet."""
    buffer = getattr(conn, "_receive_buffer", None)
    if buffer is not None:
        return len(buffer)
    return len(conn.trailing_data[0])


_END_OF_MESSAGE = h11.EndOfMessage()


@lru_cache(maxsize=256)
def _priming_request(method: str, connection: str | None, upgrade: str | None) -> h11.Request:
    """The request a client-role h11 is told it sent, so that it reads the response as an answer to it.

    Only what shapes the response's framing is mirrored: the method (HEAD,
    CONNECT) and whether an Upgrade was proposed (the ``connection`` and
    ``upgrade`` values). h11 parsed these, so it accepts them; the target and
    Host do not matter to h11's response reading. h11 events are immutable, so
    one request serves every response it fits.
    """
    headers = [(b"host", b"-")]
    for name, value in ((b"connection", connection), (b"upgrade", upgrade)):
        if value is not None:
            headers.append((name, value.encode("latin-1")))
    return h11.Request(method=method.encode("latin-1"), target=b"/", headers=headers)


def _responder(request: RequestHead) -> h11.Connection:
    """A client-role h11 primed with ``request``, to read its response."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(_priming_request(request.method, request.header("connection"), request.header("upgrade")))
    conn.send(_END_OF_MESSAGE)
    return conn


def _skip_body(conn: h11.Connection, size: int) -> None:
    """Have ``conn``, reading a Content-Length body, count ``size`` of its bytes as read.

    h11's reader counts them down (and names both figures when the body is cut
    short); feeding it ``size`` bytes would cost as many bytes of memory.
    """
    reader = conn._reader
    if isinstance(reader, ContentLengthReader) and 0 <= size < reader._remaining:
        reader._remaining -= size
        return
    conn.receive_data(bytes(size))  # pragma: no cover - another h11's reader
    while conn.next_event() is not h11.NEED_DATA:
        pass


def _scannable_answer(request: RequestHead) -> bool:
    """Whether the scanner may read the response to ``request``: not to HEAD or
    CONNECT, no Upgrade proposed, and the connection kept alive."""
    if request.method in ("HEAD", "CONNECT") or request.http_version != "1.1":
        return False
    connection = None
    for name, value in request.headers:
        if name == "upgrade":
            return False
        if name == "connection":
            if connection is not None:
                return False
            connection = value
    return connection is None or connection.lower() == "keep-alive"


# -- the fast path ------------------------------------------------------------
#
# Most HTTP/1.1 traffic is a handful of well-formed shapes: a request or a final
# response with a Content-Length or chunked body, kept alive. The scanner below
# reads those shapes directly, producing the events h11 would (event for event,
# read for read, byte for byte), and hands a direction to h11 as soon as it sees
# anything else: at the start of a message, by giving h11 the message's bytes;
# inside a body, by bringing a fresh h11 to the state it would have reached (see
# :meth:`Http1Parser._hand_over`). So h11 remains the judge of every unusual
# byte, and every check above applies as it did.

#: Set to ``h11`` to parse every message with h11 alone.
SCAN_VARIABLE = "RTINSPECT_HTTP1"


def scanning_enabled() -> bool:
    """Whether new parsers read well-formed messages with the scanner (the default)."""
    return os.environ.get(SCAN_VARIABLE, "").strip().lower() != "h11"


_TOKEN_START = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_REQUEST_LINE = re.compile(rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+) ([\x21-\x7e]+) HTTP/1\.1\r\n")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 ([0-9]{3}) ([ \t\x21-\x7e]*)\r\n")
_FIELD = rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[ \t]*((?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?)[ \t]*\r\n"
_FIELD_LINE = re.compile(_FIELD)
_FIELD_LINES = re.compile(rb"(?:" + _FIELD + rb")*\r\n")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_CHUNK_LINE_START = re.compile(rb"[0-9A-Fa-f]{0,15}\r?")
#: The longest Content-Length value the scanner reads, in digits.
_LONGEST_SCANNED_LENGTH = 15
#: Requests read ahead of their responses past which h11 reads the next one (deep
#: pipelining is unusual, and so it is h11's to judge).
_SCANNED_PIPELINE = 16
#: The longest incomplete head the scanner holds; past it, h11 reads the message.
_LONGEST_SCANNED_HEAD = 8 * 1024
#: The longest chunk-size line the scanner reads, its CRLF included.
_LONGEST_SCANNED_CHUNK_LINE = 17
#: Fields whose presence or value decides how a message is read.
_SPECIAL_FIELDS = frozenset({"content-length", "transfer-encoding", "host", "connection", "upgrade", "expect"})

# What the scanner is reading.
_HEAD = 0
_LENGTH = 1
_CHUNKED = 2


class _Scan:
    """The scanner's state for one direction: the bytes not consumed yet and,
    inside a body, what h11's body reader would hold."""

    __slots__ = ("buffer", "discard", "in_chunk", "length", "remaining", "request", "silent", "stage", "trailer")

    def __init__(self, data: bytes, request: RequestHead | None) -> None:
        self.buffer = bytearray(data)
        #: For a response: the request it answers.
        self.request = request
        self.stage = _HEAD
        #: The Content-Length, and how many of its bytes are still to come.
        self.length = self.remaining = 0
        #: A chunked body, as h11's reader holds it: bytes left in the chunk, the
        #: chunk's CRLF still to come, and whether the trailer section is next.
        self.in_chunk = 0
        self.discard = b""
        self.trailer = False
        #: Bytes at the front of ``buffer`` consumed (as h11 consumes them) that no
        #: event has reported yet: chunk framing.
        self.silent = 0


class _Direction:
    """Byte bookkeeping for one direction: where we are and what h11 holds."""

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.conn: h11.Connection | None = None
        #: Bytes fed to ``conn`` and bytes already reported in events.
        self.fed = 0
        self.reported = 0
        #: Offset in the TCP direction of the first byte fed to ``conn``.
        self.base = 0
        #: Bytes waiting for a message to belong to (responses before their request).
        self.waiting = bytearray()
        #: The exchange whose message is being parsed in this direction.
        self.exchange: int | None = None
        #: The last event was the end of a transfer-coding chunk.
        self.after_chunk = False
        #: The first bytes of the direction, to name a foreign protocol.
        self.first_bytes = b""
        #: The bytes of the head being read, as they arrived (None once a message's
        #: final head is complete): h11 does not say how a head was folded.
        self.head: bytearray | None = None
        #: The chunks fed to ``conn`` from the one holding the first unreported byte
        #: on, and where in what was fed the first of them starts: h11 reports chunk
        #: framing only as a count, and an oversized run of it is read back from them.
        self.kept: deque[bytes] = deque()
        self.kept_from = 0
        self.failed = False
        self.switched = False
        self.closed = False
        #: The scanner's state while it reads this direction (``conn`` is None then).
        self.scan: _Scan | None = None

    @property
    def offset(self) -> int:
        """Offset in the TCP direction of the next byte not yet reported."""
        return self.base + self.reported

    def start(self, conn: h11.Connection, data: bytes) -> None:
        """Parse the next message with ``conn``, beginning with ``data`` carried over."""
        self.base = self.offset
        self.conn = conn
        self.fed = self.reported = 0
        self.head = bytearray()
        self.kept.clear()
        self.kept_from = 0
        self.feed(data)
        if self.closed:
            conn.receive_data(b"")

    def feed(self, data: bytes) -> None:
        assert self.conn is not None
        if data:
            if len(self.first_bytes) < 2:
                self.first_bytes += data[:2]
            if self.head is not None:
                self.head += data
            kept = self.kept
            while kept and self.kept_from + len(kept[0]) <= self.reported:
                self.kept_from += len(kept.popleft())
            kept.append(data)
            self.conn.receive_data(data)
            self.fed += len(data)

    def take_head(self, size: int, final: bool) -> bytes:
        """The head just parsed, its ``size`` bytes as they arrived; after a
        ``final`` head no more are kept (an interim one is followed by another)."""
        assert self.head is not None
        head = bytes(self.head[:size])
        if final:
            self.head = None
        else:
            del self.head[:size]
        return head

    def fed_bytes(self, start: int, size: int) -> bytes:
        """``size`` bytes fed to ``conn``, ``start`` bytes into what was fed (not
        before the first unreported byte as of the last :meth:`feed`)."""
        start -= self.kept_from
        return b"".join(self.kept)[start : start + size]

    def unreported_consumed(self) -> int:
        """Bytes h11 consumed that no event reported yet (before it refused them)."""
        assert self.conn is not None
        return self.fed - _buffered(self.conn) - self.reported

    def consumed_since_last(self) -> int:
        """Bytes h11 consumed since the last event was reported."""
        assert self.conn is not None
        consumed = self.fed - _buffered(self.conn)
        delta = consumed - self.reported
        self.reported = consumed
        return delta

    def at_chunk_boundary(self) -> bool:
        """The last event ended a chunk and all that followed is (part of) its CRLF."""
        assert self.conn is not None
        return self.after_chunk and self.fed - self.reported <= 2 and self.carry_over() in (b"", b"\r", b"\n", b"\r\n")

    def take_rest(self) -> bytes:
        """Everything h11 holds, reported as handed on (a switch) or dropped (a failure)."""
        rest = self.carry_over()
        self.reported += len(rest)
        return rest

    def carry_over(self) -> bytes:
        """Everything h11 holds, unreported: it belongs to the next message."""
        assert self.conn is not None
        return self.conn.trailing_data[0]


class Http1Parser:
    """Both directions of one HTTP/1.1 connection, parsed passively.

    Feed bytes as they were seen, in either direction, with the time they were
    seen; events come back in the order they completed. Protocol errors never
    raise: the direction reports a :class:`ParseFailure` and then
    :class:`Unparsed` bytes.
    """

    def __init__(self, *, scan: bool | None = None) -> None:
        #: Read well-formed messages with the scanner (see :func:`scanning_enabled`).
        self._scanning = scanning_enabled() if scan is None else scan
        self._c2s = _Direction(C2S)
        self._s2c = _Direction(S2C)
        #: Requests whose responses have not started yet, oldest first.
        self._unanswered: deque[RequestHead] = deque()
        self._requests = 0
        #: The request side waits for the response to an Upgrade or CONNECT request.
        self._awaiting_switch = False
        self._begin_requests(b"")

    # -- public -----------------------------------------------------------

    def feed(self, direction: Direction, data: bytes, timestamp: float) -> list[HttpEvent]:
        events: list[HttpEvent] = []
        side = self._side(direction)
        if not data or side.closed:
            return events
        if side.failed:
            events.append(Unparsed(direction, side.exchange, len(data), timestamp))
        elif side.switched:
            events.append(ProtocolSwitch(direction, side.exchange, data, timestamp))
        elif side.scan is not None:
            side.scan.buffer += data
            side.fed += len(data)
        elif side.conn is None:
            side.waiting += data
        else:
            side.feed(data)
        if direction is C2S:
            self._pump(timestamp, events)
        else:
            # Response bytes cannot move the request parser: it reads only request
            # bytes, and an answered Upgrade resumes it from _pump_responses.
            self._pump_responses(timestamp, events)
        return events

    def stop(self, direction: Direction, reason: str, timestamp: float) -> list[HttpEvent]:
        """Parse no more of ``direction``, for ``reason`` (its stream has a hole):
        the message being read and every later byte are unparsed. Nothing happens
        to a direction that has failed, closed or switched protocols already."""
        events: list[HttpEvent] = []
        side = self._side(direction)
        if side.scan is not None:
            self._hand_over(side)  # h11 judges where the hole falls, as at a close
        if not (side.failed or side.switched or side.closed):
            if side.conn is not None and side.fed > side.reported and side.at_chunk_boundary():
                # The hole follows a whole chunk: what h11 holds is that chunk's CRLF, framing.
                events.append(
                    BodyData(direction, side.exchange, b"", side.fed - side.reported, False, False, timestamp)
                )
                side.reported = side.fed
            events.append(ParseFailure(Anomaly(direction, side.offset, reason)))
            self._stop(side, timestamp, events)
        return events

    def close(self, timestamp: float) -> list[HttpEvent]:
        """The connection ended (FIN, reset or end of capture): finish both directions.

        Bytes still held then belong to a message that never completed; they
        are reported as unparsed with an anomaly.
        """
        events: list[HttpEvent] = []
        for side in (self._c2s, self._s2c):
            if side.scan is not None:
                self._hand_over(side)
        for side in (self._c2s, self._s2c):
            side.closed = True
            if side.conn is None or side.failed or side.switched:
                continue
            if side is self._s2c and side.fed == 0:
                side.conn = None  # a request that got no response at all: nothing to parse
            elif side is self._s2c and side.at_chunk_boundary():
                # A chunked body cut between chunks (how an SSE client leaves): the
                # last chunk's CRLF is framing, and nothing is malformed.
                events.append(
                    BodyData(side.direction, side.exchange, b"", side.fed - side.reported, False, False, timestamp)
                )
                side.reported = side.fed
                side.conn = None
            else:
                side.conn.receive_data(b"")
        self._pump(timestamp, events)
        if self._awaiting_switch and not self._c2s.failed:
            self._fail(self._c2s, "connection ended before the Upgrade request was answered", timestamp, events)
        for side in (self._c2s, self._s2c):
            if side.failed or side.switched:
                continue
            held = len(side.waiting) + (_buffered(side.conn) if side.conn is not None else 0)
            if not held:
                continue
            if side.conn is None:
                self._fail(side, "response bytes with no request to answer", timestamp, events)
            else:
                where = "a request" if side.direction is C2S else "a response"
                self._fail(side, f"connection ended inside {where}", timestamp, events)
        return events

    def _pump(self, timestamp: float, events: list[HttpEvent]) -> None:
        self._pump_requests(timestamp, events)
        self._pump_responses(timestamp, events)

    # -- requests (client to server) ---------------------------------------

    def _pump_requests(self, timestamp: float, events: list[HttpEvent]) -> None:
        side = self._c2s
        while not side.failed and not side.switched and not self._awaiting_switch:
            if side.scan is not None:
                if not self._scan(side, timestamp, events):
                    return
                continue
            assert side.conn is not None
            try:
                event = side.conn.next_event()
            except h11.RemoteProtocolError as error:
                self._refused(side, _reason(error), timestamp, events)
                return
            if event is h11.NEED_DATA or type(event) is h11.ConnectionClosed:
                return
            if event is h11.PAUSED:
                if side.conn.their_state is h11.MIGHT_SWITCH_PROTOCOL:
                    self._awaiting_switch = True
                    return
                # The request is complete; the next one starts on a fresh parser.
                self._begin_requests(side.carry_over())
                continue
            if self._report(side, event, timestamp, events):
                return

    # -- responses (server to client) --------------------------------------

    def _pump_responses(self, timestamp: float, events: list[HttpEvent]) -> None:
        side = self._s2c
        while not side.failed and not side.switched:
            if side.scan is not None:
                if not self._scan(side, timestamp, events) and side.scan is not None:
                    return
                continue
            if side.conn is None:
                # A response parser starts when response bytes are there to read:
                # one started earlier would only report that it needs data.
                if side.waiting and not self._unanswered and self._c2s.failed:
                    # No request will be read any more: nothing is held for one.
                    self._fail(side, "response bytes with no request to answer", timestamp, events)
                    return
                if not self._unanswered or not side.waiting:
                    return
                self._answer(self._unanswered.popleft())
                if side.scan is not None:
                    continue
            assert side.conn is not None
            try:
                event = side.conn.next_event()
            except h11.RemoteProtocolError as error:
                self._refused(side, _reason(error), timestamp, events)
                return
            if event is h11.NEED_DATA or type(event) is h11.ConnectionClosed:
                return
            if event is h11.PAUSED:
                if side.conn.their_state is h11.SWITCHED_PROTOCOL:
                    self._switch(timestamp, events)
                    return
                self._next_response()
                continue
            if self._report(side, event, timestamp, events):
                return
            if type(event) is h11.Response and self._awaiting_switch:
                # A refused Upgrade (or CONNECT): requests continue after the refusal.
                self._resume_requests(timestamp, events)

    def _answer(self, request: RequestHead) -> None:
        """Start parsing the response to ``request``: with the scanner when it can
        read the response, else on a client-role h11 primed with the request."""
        side = self._s2c
        waiting = bytes(side.waiting)
        side.waiting.clear()
        side.exchange = request.exchange
        if self._scanning and _scannable_answer(request):
            side.base = side.offset
            side.fed, side.reported = len(waiting), 0
            side.scan = _Scan(waiting, request)
        else:
            side.start(_responder(request), waiting)

    def _next_response(self) -> None:
        """The response is complete; keep what follows for the next one."""
        side = self._s2c
        rest = side.carry_over()
        side.base = side.offset
        side.conn = None
        side.fed = side.reported = 0
        side.waiting += rest

    def _switch(self, timestamp: float, events: list[HttpEvent]) -> None:
        for side in (self._s2c, self._c2s):
            if side.scan is not None:
                self._hand_over(side)  # requests read on after a refused switch
            assert side.conn is not None
            rest = side.take_rest()
            side.switched = True
            events.append(ProtocolSwitch(side.direction, side.exchange, rest, timestamp))
        self._awaiting_switch = False

    def _resume_requests(self, timestamp: float, events: list[HttpEvent]) -> None:
        self._awaiting_switch = False
        side = self._c2s
        # h11's: the response that refused the switch may yet be followed by a switch.
        side.start(h11.Connection(h11.SERVER), side.carry_over())
        self._pump_requests(timestamp, events)

    # -- the scanner ----------------------------------------------------------

    def _begin_requests(self, data: bytes) -> None:
        """Read the next request, beginning with ``data`` carried over."""
        side = self._c2s
        if not self._scanning:
            side.start(h11.Connection(h11.SERVER), data)
            return
        side.base = side.offset
        side.fed, side.reported = len(data), 0
        side.conn = None
        side.scan = _Scan(data, None)

    def _scan(self, side: _Direction, timestamp: float, events: list[HttpEvent]) -> bool:
        """Read what the scanner can of ``side``, as h11 would read it; True when
        it handed the direction to h11 or, for responses, finished a response."""
        scan = side.scan
        assert scan is not None
        buffer = scan.buffer
        direction = side.direction
        while True:
            stage = scan.stage
            if stage == _LENGTH:
                if not buffer:
                    return False
                remaining = scan.remaining
                if len(buffer) <= remaining:
                    data = bytes(buffer)
                    buffer.clear()
                else:
                    data = bytes(buffer[:remaining])
                    del buffer[:remaining]
                side.reported += len(data)
                scan.remaining = remaining = remaining - len(data)
                events.append(BodyData(direction, side.exchange, data, 0, False, False, timestamp))
                if remaining:
                    return False
                if self._scanned_message(side, scan, timestamp, events):
                    return True
            elif stage == _CHUNKED:
                # The bytes h11 would have consumed without an event yet stay at the
                # front of the buffer: ``pos`` of them.
                pos = scan.silent
                if scan.trailer:
                    if buffer[pos : pos + 2] != b"\r\n":
                        rest = len(buffer) - pos
                        if rest > 1 or (rest == 1 and buffer[pos] != 0x0D):  # "\r"
                            return self._hand_over(side)
                        return False
                    scan.silent = pos + 2
                    if self._scanned_message(side, scan, timestamp, events):
                        return True
                    continue
                if scan.discard:
                    discard = scan.discard
                    step = min(len(discard), len(buffer) - pos)
                    if not step:
                        return False
                    if buffer[pos : pos + step] != discard[:step]:
                        return self._hand_over(side)
                    pos += step
                    scan.silent = pos
                    scan.discard = discard = discard[step:]
                    if discard:
                        return False
                in_chunk = scan.in_chunk
                chunk_start = False
                if not in_chunk:
                    end = buffer.find(b"\r\n", pos)
                    if end < 0:
                        if len(buffer) - pos >= _LONGEST_SCANNED_CHUNK_LINE or not _CHUNK_LINE_START.fullmatch(
                            buffer, pos
                        ):
                            return self._hand_over(side)
                        return False
                    if _CHUNK_SIZE.fullmatch(buffer, pos, end) is None:
                        return self._hand_over(side)
                    in_chunk = int(buffer[pos:end], 16)
                    pos = scan.silent = end + 2
                    if not in_chunk:
                        scan.trailer = True
                        continue
                    chunk_start = True
                    scan.in_chunk = in_chunk
                take = min(len(buffer) - pos, in_chunk)
                if not take:
                    return False
                data = bytes(buffer[pos : pos + take])
                del buffer[: pos + take]
                scan.in_chunk = in_chunk = in_chunk - take
                chunk_end = not in_chunk
                if chunk_end:
                    scan.discard = b"\r\n"
                scan.silent = 0
                side.reported += pos + take
                side.after_chunk = chunk_end
                events.append(BodyData(direction, side.exchange, data, pos, chunk_start, chunk_end, timestamp))
            elif not self._scan_head(side, scan, timestamp, events):
                return side.scan is None

    def _scan_head(self, side: _Direction, scan: _Scan, timestamp: float, events: list[HttpEvent]) -> bool:
        """Read a head if the buffer holds a whole one of the shapes the scanner
        reads; hand the message to h11 if it holds something else. True when the
        scanner goes on reading."""
        buffer = scan.buffer
        if not buffer:
            return False
        request = side.direction is C2S
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            # h11 refuses some heads before they are complete, and takes a bare LF
            # as a line end: such bytes go to h11 as soon as they arrive.
            if (
                (buffer[0] not in _TOKEN_START if request else buffer[0] != 0x48)  # "H"
                or len(buffer) > _LONGEST_SCANNED_HEAD
                or buffer.count(b"\n") != buffer.count(b"\r\n")
            ):
                self._hand_over(side)
            return False
        size = end + 4
        head = bytes(buffer[:size])
        line = (_REQUEST_LINE if request else _STATUS_LINE).match(head)
        if size > _LONGEST_SCANNED_HEAD or line is None or _FIELD_LINES.fullmatch(head, line.end()) is None:
            self._hand_over(side)
            return False
        headers = tuple(
            [
                (name.decode("latin-1").lower(), value.decode("latin-1"))
                for name, value in _FIELD_LINE.findall(head, line.end())
            ]
        )
        length: str | None = None
        chunked = False
        hosts = 0
        for name, value in headers:
            if name not in _SPECIAL_FIELDS:
                continue
            if name == "content-length":
                if length is not None or not value.isdigit() or len(value) > _LONGEST_SCANNED_LENGTH:
                    break
                length = value
            elif name == "transfer-encoding":
                if chunked or value != "chunked":
                    break
                chunked = True
            elif name == "host":
                hosts += 1
            elif name != "connection" or value.lower() != "keep-alive":
                break  # Upgrade, Expect, or a connection not kept alive
        else:
            if (
                not (chunked and length is not None)
                and _framing_ambiguity(headers, head) is None
                and self._scanned_head(side, scan, line, headers, size, request, hosts, timestamp, events)
            ):
                del buffer[:size]
                if chunked:
                    scan.stage = _CHUNKED
                elif length is not None and int(length):
                    scan.stage = _LENGTH
                    scan.length = scan.remaining = int(length)
                else:
                    return not self._scanned_message(side, scan, timestamp, events)
                return True
        self._hand_over(side)
        return False

    def _scanned_head(
        self,
        side: _Direction,
        scan: _Scan,
        line: re.Match[bytes],
        headers: Headers,
        size: int,
        request: bool,
        hosts: int,
        timestamp: float,
        events: list[HttpEvent],
    ) -> bool:
        """Report a head the scanner read; False when it must go to h11 instead
        (a response the scanner does not read, a request beyond the pipeline it follows)."""
        if request:
            method = line.group(1)
            if hosts != 1 or method == b"CONNECT" or len(self._unanswered) >= _SCANNED_PIPELINE:
                return False
            side.exchange = self._requests
            self._requests += 1
            head = RequestHead(
                side.exchange,
                method.decode("latin-1"),
                line.group(2).decode("latin-1"),
                "1.1",
                headers,
                size,
                timestamp,
            )
            events.append(head)
            self._unanswered.append(head)
        else:
            status = int(line.group(1))
            if not 200 <= status < 600 or status in (204, 304):
                return False
            framed = False
            for name, _ in headers:
                if name == "content-length" or name == "transfer-encoding":
                    framed = True
            if not framed:
                return False  # read to the end of the connection: h11's
            assert side.exchange is not None
            events.append(
                ResponseHead(side.exchange, status, line.group(2).decode("latin-1"), "1.1", headers, size, timestamp)
            )
        side.reported += size
        side.after_chunk = False
        if not request and self._awaiting_switch:
            # As after a final response h11 read: requests continue (see _pump_responses).
            self._resume_requests(timestamp, events)
        return True

    def _scanned_message(self, side: _Direction, scan: _Scan, timestamp: float, events: list[HttpEvent]) -> bool:
        """The message ends; read on (requests) or leave what follows for the next
        response. True when the direction stops scanning."""
        framing = scan.silent
        del scan.buffer[:framing]
        side.reported += framing
        side.after_chunk = False
        events.append(MessageEnd(side.direction, side.exchange, framing, timestamp))
        scan.stage = _HEAD
        scan.silent = scan.length = scan.remaining = scan.in_chunk = 0
        scan.discard = b""
        scan.trailer = False
        if side.direction is C2S:
            return False
        side.scan = None
        side.base = side.offset
        side.fed = side.reported = 0
        side.waiting += scan.buffer
        return True

    def _hand_over(self, side: _Direction) -> bool:
        """Let h11 read ``side`` from here on, in the state the scanner reached:
        at the start of a message, a fresh h11 with the message's bytes; inside a
        body, a fresh h11 brought to the same place in a body of the same framing."""
        scan = side.scan
        assert scan is not None
        side.scan = None
        if side.direction is C2S:
            conn = h11.Connection(h11.SERVER)
        else:
            assert scan.request is not None
            conn = _responder(scan.request)
        if scan.stage == _HEAD:
            side.start(conn, bytes(scan.buffer))
            return True
        if scan.stage == _LENGTH:
            framing, body = b"content-length: %d\r\n" % scan.length, b""
        elif scan.trailer:
            framing, body = b"transfer-encoding: chunked\r\n", b"0\r\n"
        elif scan.discard:
            framing, body = b"transfer-encoding: chunked\r\n", b"1\r\nx" + b"\r\n"[: 2 - len(scan.discard)]
        elif scan.in_chunk:
            framing, body = b"transfer-encoding: chunked\r\n", b"%x\r\nx" % (scan.in_chunk + 1)
        else:
            framing, body = b"transfer-encoding: chunked\r\n", b""
        start = b"POST / HTTP/1.1\r\nhost: -\r\n" if side.direction is C2S else b"HTTP/1.1 200 OK\r\n"
        primer = start + framing + b"\r\n" + body
        conn.receive_data(primer)
        while conn.next_event() is not h11.NEED_DATA:
            pass
        if scan.stage == _LENGTH:
            _skip_body(conn, scan.length - scan.remaining)
        offset = side.offset
        silent = scan.silent
        side.conn = conn
        side.fed = len(primer)
        side.reported = len(primer) - silent
        side.base = offset - side.reported
        side.head = None
        # The framing h11 took without an event yet is read back from ``kept`` when
        # an event reports it: the bytes as they were, not the primer's.
        side.kept.clear()
        side.kept.append(bytes(scan.buffer[:silent]))
        side.kept_from = side.reported
        side.feed(bytes(scan.buffer[silent:]))
        if side.closed:
            conn.receive_data(b"")
        return True

    # -- shared -------------------------------------------------------------

    def _side(self, direction: Direction) -> _Direction:
        return self._c2s if direction is C2S else self._s2c

    def _report(self, side: _Direction, event: object, timestamp: float, events: list[HttpEvent]) -> bool:
        """Turn one h11 event into ours; True when the direction must stop.

        Events are told apart by exact type: h11's event classes are final, and
        ``isinstance`` against them goes through the slower ABC machinery.
        """
        size = side.consumed_since_last()
        kind = type(event)
        if kind is h11.Data:
            data = bytes(event.data)  # type: ignore[attr-defined]
            framing = size - len(data)
            if framing and self._refuse_oversized_framing(side, size, framing, timestamp, events):
                return True
            side.after_chunk = event.chunk_end  # type: ignore[attr-defined]
            events.append(
                BodyData(
                    side.direction,
                    side.exchange,
                    data,
                    framing,
                    event.chunk_start,  # type: ignore[attr-defined]
                    event.chunk_end,  # type: ignore[attr-defined]
                    timestamp,
                )
            )
            return False
        if kind is h11.EndOfMessage:
            if size and self._refuse_oversized_framing(side, size, size, timestamp, events):
                return True
            side.after_chunk = False
            events.append(MessageEnd(side.direction, side.exchange, size, timestamp))
            return False
        side.after_chunk = False
        if kind is h11.Request:
            return self._report_request(side, event, size, timestamp, events)  # type: ignore[arg-type]
        if kind is h11.Response or kind is h11.InformationalResponse:
            return self._report_response(side, event, size, timestamp, events)  # type: ignore[arg-type]
        # ConnectionClosed carries no bytes.
        return False

    def _take_head(
        self, side: _Direction, size: int, final: bool, timestamp: float, events: list[HttpEvent]
    ) -> bytes | None:
        """The head just parsed, as it arrived; None when it is too long to accept."""
        head = side.take_head(size, final=final)
        if size > LONGEST_HEAD:
            side.reported -= size  # refused whole, as h11 refuses it when it arrives in pieces
            self._refuse(side, _HEAD_TOO_LONG, timestamp, events)
            return None
        return head

    def _report_request(
        self, side: _Direction, event: h11.Request, size: int, timestamp: float, events: list[HttpEvent]
    ) -> bool:
        head = self._take_head(side, size, True, timestamp, events)
        if head is None:
            return True
        if event.method == b"PRI" and event.http_version.startswith(b"2"):
            side.reported -= size  # the preface is not a request: count it as unparsed
            self._fail(side, "HTTP/2 connection preface on an HTTP/1.1 connection", timestamp, events)
            return True
        if len(self._unanswered) >= PIPELINE_LIMIT:
            side.reported -= size  # not followed: its head and every later request byte are unparsed
            reason = f"over {PIPELINE_LIMIT:,} pipelined requests waiting for responses; requests not parsed from here"
            self._fail(side, reason, timestamp, events)
            return True
        side.exchange = self._requests
        self._requests += 1
        request = RequestHead(
            side.exchange,
            event.method.decode("latin-1"),
            event.target.decode("latin-1"),
            event.http_version.decode("latin-1"),
            _headers(event.headers),
            size,
            timestamp,
        )
        events.append(request)
        self._unanswered.append(request)
        return self._check_framing(side, request.headers, head, timestamp, events)

    def _report_response(
        self,
        side: _Direction,
        event: h11.Response | h11.InformationalResponse,
        size: int,
        timestamp: float,
        events: list[HttpEvent],
    ) -> bool:
        interim = type(event) is h11.InformationalResponse and event.status_code != 101
        head = self._take_head(side, size, not interim, timestamp, events)
        if head is None:
            return True
        assert side.exchange is not None
        response = ResponseHead(
            side.exchange,
            event.status_code,
            event.reason.decode("latin-1"),
            event.http_version.decode("latin-1"),
            _headers(event.headers),
            size,
            timestamp,
        )
        events.append(response)
        return self._check_framing(side, response.headers, head, timestamp, events)

    def _check_framing(
        self, side: _Direction, headers: Headers, head: bytes, timestamp: float, events: list[HttpEvent]
    ) -> bool:
        reason = _framing_ambiguity(headers, head)
        if reason is None:
            return False
        anomaly = Anomaly(side.direction, side.offset - len(head), reason, security=True)
        events.append(ParseFailure(anomaly))
        self._stop(side, timestamp, events)
        return True

    def _oversized_framing(self, side: _Direction, start: int, size: int) -> int | None:
        """Where a chunk-size line or a trailer section longer than :data:`LONGEST_FRAMING`
        starts within ``size`` bytes of chunk framing that h11 consumed from ``start``
        (bytes into what was fed) on; None when there is none.

        Those bytes are the CRLF that ended the previous chunk (when one did), a
        chunk-size line up to its first CRLF, and after the last chunk's line, the
        trailer section. Arriving in pieces, either is refused once h11 holds more
        than 16 KiB of it; arriving whole, either is accepted. So that how the
        stream was split does not matter, one that some split refuses is refused.
        """
        crlf = len(b"\r\n") if side.after_chunk else 0
        if size - crlf <= LONGEST_FRAMING:
            return None
        framing = side.fed_bytes(start + crlf, size - crlf)
        end = framing.find(b"\r\n")
        line = len(framing) if end < 0 else end + len(b"\r\n")
        if line > LONGEST_FRAMING:
            return crlf
        if len(framing) - line > LONGEST_FRAMING:
            return crlf + line
        return None

    def _refuse_oversized_framing(
        self, side: _Direction, size: int, framing: int, timestamp: float, events: list[HttpEvent]
    ) -> bool:
        """Refuse the event just read, ``size`` bytes of which the first ``framing`` are
        chunk framing, if that framing holds an oversized line or trailer section."""
        start = side.reported - size
        at = self._oversized_framing(side, start, framing)
        if at is None:
            return False
        side.reported = start  # refused whole, as h11 refuses it when it arrives in pieces
        self._refuse(side, _HEAD_TOO_LONG, timestamp, events, framing=at)
        return True

    def _refused(self, side: _Direction, reason: str, timestamp: float, events: list[HttpEvent]) -> None:
        """h11 refused the request or response being read, for ``reason``: the same
        anomaly at the same offset whatever pieces the bytes arrived in."""
        consumed = side.unreported_consumed()
        if side.head is not None:
            # Reading a head: h11 took all of it before it refused it, or none.
            if consumed > LONGEST_HEAD:
                # Arriving in pieces, the head would have been refused for its length first.
                self._refuse(side, _HEAD_TOO_LONG, timestamp, events)
                return
            if reason == _BAD_FIELD_LINE:
                field = _space_before_colon(bytes(side.head[:consumed]))
                if field is not None:
                    reason = f"whitespace between {field} and its colon"
                    self._refuse(side, reason, timestamp, events, security=True)
                    return
            self._refuse(side, reason, timestamp, events)
            return
        # Reading a chunked body: h11 took the bytes of the framing it refused.
        at = self._oversized_framing(side, side.reported, consumed) if consumed else None
        if at is not None:
            self._refuse(side, _HEAD_TOO_LONG, timestamp, events, framing=at)
        elif reason == _HEAD_TOO_LONG:
            # The line or trailers h11 holds are too long; what it took before them
            # (the last chunk's CRLF, the last chunk's size line) is framing.
            self._refuse(side, reason, timestamp, events, framing=consumed)
        elif reason == _BAD_CHUNK_SIZE and side.after_chunk:
            # h11 took the CRLF that ended the last chunk before it read the bad size line.
            self._refuse(side, reason, timestamp, events, framing=len(b"\r\n"))
        else:
            self._refuse(side, reason, timestamp, events)

    def _refuse(
        self,
        side: _Direction,
        reason: str,
        timestamp: float,
        events: list[HttpEvent],
        *,
        framing: int = 0,
        security: bool = False,
    ) -> None:
        """Refuse the request or response being read, for ``reason``, after reporting
        ``framing`` bytes that came before the refused ones as chunk framing."""
        what = "request" if side.direction is C2S else "response"
        if framing:
            events.append(BodyData(side.direction, side.exchange, b"", framing, False, False, timestamp))
            side.reported += framing
        if security or reason in _AMBIGUOUS_LENGTH_REFUSALS:
            self._fail(side, f"invalid {what}: {reason}{_SMUGGLING_SHAPE}", timestamp, events, security=True)
        else:
            self._fail(side, f"invalid {what}: {reason}", timestamp, events)

    def _fail(
        self, side: _Direction, reason: str, timestamp: float, events: list[HttpEvent], *, security: bool = False
    ) -> None:
        if side.offset == 0 and side.first_bytes[:2] == b"\x16\x03":
            reason = "TLS handshake bytes on a plaintext HTTP connection"
        events.append(ParseFailure(Anomaly(side.direction, side.offset, reason, security)))
        self._stop(side, timestamp, events)

    def _stop(self, side: _Direction, timestamp: float, events: list[HttpEvent]) -> None:
        """Count everything held for this direction as unparsed from here on."""
        if side.scan is not None:
            self._hand_over(side)
        held = len(side.waiting)
        side.waiting.clear()
        if side.conn is not None:
            held += side.fed - side.reported
            side.reported = side.fed
        side.failed = True
        if held:
            events.append(Unparsed(side.direction, side.exchange, held, timestamp))
