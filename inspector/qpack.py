"""QPACK field sections of one direction of an HTTP/3 connection, decoded passively.

pylsqpack does the decoding, as the receiving endpoint's decoder does: it is
fed the direction's encoder stream in order and is sized by the *receiver's*
SETTINGS (QPACK_MAX_TABLE_CAPACITY, QPACK_BLOCKED_STREAMS). A passive reader
sees the streams in the order they were read, not as the endpoint did, so a
field section may name dynamic table entries whose inserts have not been read
yet, or arrive before the receiver's SETTINGS said how large the table is.
Such a section waits (at most :data:`WAITING_SECTION_LIMIT` of them) until the
inserts or the SETTINGS arrive; pylsqpack is only handed sections it can
decode at once, so its own notion of blocked streams never comes into play.

A section is decoded as soon as the inserts it names have been read, as the
receiver decoded it. The inserts that evict an entry follow the receiver's
acknowledgement of the sections naming it, which follows those sections; a
proxy reads each stream as it relays it, so in its order a section always
comes before the inserts that could evict what it names. (An order that
breaks this, as a hand-shuffled capture can, makes such a section fail to
decode: an anomaly, its bytes still counted.)

Before anything is decoded, each field section's decoded size is bounded from
its representations and the largest entry the encoder stream inserted (see
:class:`EncoderStreamScanner`): a section that could decode to more than
:data:`HEADER_LIST_LIMIT` bytes (a QPACK bomb: a few bytes naming a large
entry again and again) is not decoded at all.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import pylsqpack

from .events import Headers

#: Decoded size (names plus values) of the largest field section decoded (as HTTP/2's header lists).
HEADER_LIST_LIMIT = 256 * 1024
#: The largest dynamic table followed; a receiver that allows more is not decoded for.
TABLE_CAPACITY_LIMIT = 1024 * 1024
#: Field sections of one direction that may wait for their inserts or for SETTINGS.
WAITING_SECTION_LIMIT = 100
#: Encoder stream bytes held while the receiver's SETTINGS are not known.
ENCODER_HOLD_LIMIT = 64 * 1024
#: The most a static table entry's name plus value take (RFC 9204, Appendix A: 76 at most).
_STATIC_ENTRY_BOUND = 128
#: Decoded bytes per Huffman-coded byte, at most (the shortest code is 5 bits).
_HUFFMAN_EXPANSION = 8 / 5


def _string_bound(length: int, huffman: bool) -> int:
    return int(length * _HUFFMAN_EXPANSION) + 1 if huffman else length


@dataclass(slots=True)
class DecodedSection:
    """The outcome of one field section: its fields, or () and why not."""

    stream_id: int
    headers: Headers
    #: Names plus values, as decoded.
    decoded_size: int
    problem: str | None = None
    #: The problem is a denial-of-service shape.
    security: bool = False


class _Need(Exception):
    """More bytes are needed."""


class EncoderStreamScanner:
    """Follows an encoder stream's instructions without decoding them: how many
    entries were inserted, and an upper bound of the largest one's name plus value."""

    __slots__ = ("_buffer", "_parser", "inserts", "largest_entry", "problem")

    def __init__(self) -> None:
        self.inserts = 0
        self.largest_entry = 0
        self.problem: str | None = None
        self._buffer = bytearray()
        self._parser = self._instructions()
        next(self._parser)

    def feed(self, data: bytes) -> None:
        if self.problem is not None:
            return
        self._buffer += data
        self._parser.send(None)

    def _take(self, n: int) -> Generator[None, None, bytes]:
        while len(self._buffer) < n:
            yield
        taken = bytes(self._buffer[:n])
        del self._buffer[:n]
        return taken

    def _skip(self, n: int) -> Generator[None]:
        while n:
            while not self._buffer:
                yield
            step = min(n, len(self._buffer))
            del self._buffer[:step]
            n -= step

    def _integer(self, first: int, bits: int) -> Generator[None, None, int]:
        mask = (1 << bits) - 1
        value = first & mask
        if value < mask:
            return value
        shift = 0
        while True:
            byte = (yield from self._take(1))[0]
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
            if shift > 62:
                raise ValueError("an integer over 62 bits")

    def _string(self, first: int, bits: int) -> Generator[None, None, int]:
        """Skip a string literal whose H bit sits above ``bits``; its decoded length, at most."""
        length = yield from self._integer(first, bits)
        if length > TABLE_CAPACITY_LIMIT:
            raise ValueError(f"a string literal of {length:,} bytes on the encoder stream")
        yield from self._skip(length)
        return _string_bound(length, bool(first & (1 << bits)))

    def _instructions(self) -> Generator[None]:
        yield
        try:
            while True:
                first = (yield from self._take(1))[0]
                if first & 0x80:  # Insert with Name Reference
                    yield from self._integer(first, 6)
                    name = _STATIC_ENTRY_BOUND if first & 0x40 else self.largest_entry
                    value_first = (yield from self._take(1))[0]
                    value = yield from self._string(value_first, 7)
                    self._insert(name + value)
                elif first & 0x40:  # Insert with Literal Name
                    name = yield from self._string(first, 5)
                    value_first = (yield from self._take(1))[0]
                    value = yield from self._string(value_first, 7)
                    self._insert(name + value)
                elif first & 0x20:  # Set Dynamic Table Capacity
                    yield from self._integer(first, 5)
                else:  # Duplicate
                    yield from self._integer(first, 5)
                    self.inserts += 1
        except ValueError as e:
            self.problem = str(e)
            self._buffer.clear()
            while True:
                yield

    def _insert(self, size: int) -> None:
        self.inserts += 1
        self.largest_entry = max(self.largest_entry, size)


class _Reader:
    """A field section's bytes, read front to back."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise _Need
        self.pos += 1
        return self.data[self.pos - 1]

    def integer(self, first: int, bits: int) -> int:
        mask = (1 << bits) - 1
        value = first & mask
        if value < mask:
            return value
        shift = 0
        while True:
            byte = self.byte()
            value += (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value
            if shift > 62:
                raise _Need

    def string(self, first: int, bits: int) -> int:
        length = self.integer(first, bits)
        self.pos += length
        if self.pos > len(self.data):
            raise _Need
        return _string_bound(length, bool(first & (1 << bits)))


def encoded_insert_count(section: bytes) -> int | None:
    """The Encoded Required Insert Count a field section starts with, or None if it is cut short."""
    try:
        reader = _Reader(section)
        return reader.integer(reader.byte(), 8)
    except _Need:
        return None


def decoded_size_bound(section: bytes, largest_entry: int) -> int | None:
    """The most a field section can decode to (names plus values), or None when it is malformed."""
    reader = _Reader(section)
    total = 0
    try:
        reader.integer(reader.byte(), 8)
        reader.integer(reader.byte(), 7)
        while reader.pos < len(section):
            first = reader.byte()
            if first & 0x80:  # Indexed Field Line
                reader.integer(first, 6)
                total += _STATIC_ENTRY_BOUND if first & 0x40 else largest_entry
            elif first & 0x40:  # Literal Field Line with Name Reference
                reader.integer(first, 4)
                total += _STATIC_ENTRY_BOUND if first & 0x10 else largest_entry
                total += reader.string(reader.byte(), 7)
            elif first & 0x20:  # Literal Field Line with Literal Name
                total += reader.string(first, 3)
                total += reader.string(reader.byte(), 7)
            elif first & 0x10:  # Indexed Field Line with Post-Base Index
                reader.integer(first, 4)
                total += largest_entry
            else:  # Literal Field Line with Post-Base Name Reference
                reader.integer(first, 3)
                total += largest_entry
                total += reader.string(reader.byte(), 7)
    except _Need:
        return None
    return total


def required_insert_count(encoded: int, capacity: int, inserts: int) -> int | None:
    """RFC 9204, section 4.5.1.1: the Required Insert Count, or None when ``encoded`` is invalid."""
    if encoded == 0:
        return 0
    max_entries = capacity // 32
    full_range = 2 * max_entries
    if encoded > full_range:
        return None
    max_value = inserts + max_entries
    required = (max_value // full_range) * full_range + encoded - 1
    if required > max_value:
        if required <= full_range:
            return None
        required -= full_range
    return required or None


class FieldSectionDecoder:
    """The QPACK decoder of one direction's field sections, fed passively.

    :meth:`section` decodes a field section or lets it wait; :meth:`configure`
    (the receiver's SETTINGS) and :meth:`encoder` (the encoder stream) return
    the waiting sections they made decodable. :attr:`problem` says why
    decoding stopped for this direction, when it did.
    """

    def __init__(self) -> None:
        self._decoder: pylsqpack.Decoder | None = None
        self._static: pylsqpack.Decoder | None = None
        self._capacity = 0
        self._scanner = EncoderStreamScanner()
        self._held_encoder = bytearray()
        #: Sections waiting, in arrival order: stream id to (bytes, Required Insert Count or None before SETTINGS).
        self._waiting: dict[int, tuple[bytes, int | None]] = {}
        self.problem: str | None = None
        self.configured = False

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def configure(self, capacity: int, blocked_streams: int) -> list[DecodedSection]:
        """The receiver's SETTINGS: size the decoder, then decode what waited for them."""
        if self.configured:
            return []
        self.configured = True
        if capacity > TABLE_CAPACITY_LIMIT:
            return self._stop(f"QPACK_MAX_TABLE_CAPACITY of {capacity:,} is over {TABLE_CAPACITY_LIMIT:,}")
        self._capacity = capacity
        self._decoder = pylsqpack.Decoder(capacity, min(blocked_streams, WAITING_SECTION_LIMIT))
        held = bytes(self._held_encoder)
        self._held_encoder = bytearray()
        waiting = self._waiting
        self._waiting = {}
        done = self._feed_encoder(held) if held else []
        for stream_id, (section, _) in waiting.items():
            outcome = self.section(stream_id, section)
            if outcome is not None:
                done.append(outcome)
        return done

    def encoder(self, data: bytes) -> list[DecodedSection]:
        """Bytes of the direction's encoder stream, in order."""
        if self.problem is not None:
            return []
        if not self.configured:
            self._held_encoder += data
            if len(self._held_encoder) > ENCODER_HOLD_LIMIT:
                return self._stop(
                    f"over {ENCODER_HOLD_LIMIT:,} bytes of QPACK encoder stream before the peer's SETTINGS"
                )
            return []
        return self._feed_encoder(data)

    def _feed_encoder(self, data: bytes) -> list[DecodedSection]:
        if self._decoder is None:
            return []
        self._scanner.feed(data)
        if self._scanner.problem is not None:
            return self._stop(f"QPACK encoder stream: {self._scanner.problem}")
        try:
            self._decoder.feed_encoder(data)
        except ValueError as e:
            return self._stop(f"QPACK encoder stream error ({e})")
        done = []
        for stream_id, (section, required) in list(self._waiting.items()):
            if required is not None and required <= self._scanner.inserts:
                del self._waiting[stream_id]
                done.append(self._decode(self._decoder, stream_id, section))
        return done

    def section(self, stream_id: int, section: bytes) -> DecodedSection | None:
        """A field section's fields, or None while it waits for inserts or SETTINGS."""
        encoded = encoded_insert_count(section)
        if encoded is None:
            return DecodedSection(stream_id, (), 0, "a QPACK field section cut short")
        if encoded == 0 and self._decoder is None:
            # It names no dynamic entry: the static table is enough, whatever the table's state.
            if self._static is None:
                self._static = pylsqpack.Decoder(0, 0)
            return self._decode(self._static, stream_id, section)
        if self.problem is not None:
            return DecodedSection(stream_id, (), 0)
        required: int | None = None
        if self._decoder is not None:
            required = required_insert_count(encoded, self._capacity, self._scanner.inserts)
            if required is None:
                return DecodedSection(stream_id, (), 0, "a QPACK field section with an invalid Required Insert Count")
            if required <= self._scanner.inserts:
                return self._decode(self._decoder, stream_id, section)
        elif self.configured:
            return DecodedSection(stream_id, (), 0)
        if len(self._waiting) >= WAITING_SECTION_LIMIT or stream_id in self._waiting:
            return DecodedSection(
                stream_id,
                (),
                0,
                f"over {WAITING_SECTION_LIMIT:,} QPACK field sections waiting for encoder inserts",
                security=True,
            )
        self._waiting[stream_id] = (section, required)
        return None

    def abandon(self, stream_id: int) -> DecodedSection | None:
        """Stop waiting for a section's inserts (the connection ended, or too much waits behind it)."""
        if self._waiting.pop(stream_id, None) is None:
            return None
        return DecodedSection(stream_id, (), 0, "a QPACK field section whose encoder inserts never arrived")

    def _decode(self, decoder: pylsqpack.Decoder, stream_id: int, section: bytes) -> DecodedSection:
        bound = decoded_size_bound(section, min(self._scanner.largest_entry, self._capacity))
        if bound is None:
            return DecodedSection(stream_id, (), 0, "a malformed QPACK field section")
        if bound > HEADER_LIST_LIMIT:
            return DecodedSection(
                stream_id,
                (),
                0,
                f"a QPACK field section that may decode to {bound:,} bytes, over {HEADER_LIST_LIMIT:,} (QPACK bomb)",
                security=True,
            )
        try:
            _, fields = decoder.feed_header(stream_id, section)
        except pylsqpack.StreamBlocked:
            return DecodedSection(stream_id, (), 0, "a QPACK field section naming entries not in the table")
        except ValueError as e:
            return DecodedSection(stream_id, (), 0, f"QPACK decoding failed ({e})")
        size = sum(len(name) + len(value) for name, value in fields)
        headers = tuple((name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in fields)
        return DecodedSection(stream_id, headers, size)

    def _stop(self, reason: str) -> list[DecodedSection]:
        """Decode nothing more this way; what waited comes back undecoded."""
        self.problem = f"{reason}; field sections are no longer decoded"
        self._decoder = None
        self._held_encoder = bytearray()
        done = [DecodedSection(stream_id, (), 0) for stream_id in self._waiting]
        self._waiting.clear()
        return done
