"""The vocabulary of wire accounting: directions, byte categories and anomalies.

Every byte of a TCP stream is assigned to exactly one :class:`Category` by the
parser that consumed it. Totals are sums of those assignments and are never
recomputed elsewhere.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass
from typing import Any, Self

from .checked import choice, fields, pair, text, whole


class Direction(enum.StrEnum):
    """Which way a byte travelled."""

    CLIENT_TO_SERVER = "client_to_server"
    SERVER_TO_CLIENT = "server_to_client"

    @property
    def opposite(self) -> Direction:
        if self is Direction.CLIENT_TO_SERVER:
            return Direction.SERVER_TO_CLIENT
        return Direction.CLIENT_TO_SERVER


class Category(enum.StrEnum):
    """What a byte on the wire was for."""

    #: HTTP request, response and interim (1xx) heads, Upgrade handshakes included;
    #: over HTTP/2, the header blocks (HPACK, as on the wire).
    HEAD = "head"
    #: Message content as it travelled (compressed where permessage-deflate is on).
    PAYLOAD = "payload"
    #: Chunked transfer coding: chunk-size lines, chunk CRLFs, the last chunk, trailers;
    #: over HTTP/2, the 9-byte frame headers, padding and trailers.
    CHUNK_FRAMING = "chunk_framing"
    #: Structure inside a body that is not payload: SSE field names, colons, line
    #: ends (but one byte of each that joins two data lines of an event: that LF is
    #: in the data the application gets), comments, id/event/retry lines; NDJSON line ends.
    MESSAGE_SYNTAX = "message_syntax"
    #: WebSocket frame headers (2, 4 or 10 bytes), without the mask key.
    FRAME_HEADER = "frame_header"
    #: WebSocket masking keys (4 bytes per masked frame).
    MASK_KEY = "mask_key"
    #: Payload of WebSocket control frames (ping, pong, close); over HTTP/2, the
    #: client preface and the payload of control frames (SETTINGS, WINDOW_UPDATE,
    #: PING, PRIORITY, RST_STREAM, GOAWAY) and of HEADERS frames' priority fields.
    CONTROL = "control"
    #: Messages of an application protocol that are its own, not the application's
    #: (handshakes, heartbeats, acknowledgements, subscription control: see
    #: :mod:`inspector.app_protocols`), as they travelled inside the payload.
    APP_CONTROL = "app_control"
    #: Bytes after an anomaly, or an incomplete tail when the stream ended.
    UNPARSED = "unparsed"


class BodyKind(enum.StrEnum):
    """How a response body was split into messages."""

    NONE = "none"  #: no response body bytes
    PLAIN = "plain"  #: a body; each transfer-coding chunk counts as one stream message
    SSE = "sse"  #: text/event-stream events
    LINES = "lines"  #: NDJSON and other line-delimited streams
    WEBSOCKET = "websocket"  #: the connection switched to WebSocket
    WEBTRANSPORT = "webtransport"  #: an HTTP/3 extended CONNECT opened a WebTransport session
    OPAQUE = "opaque"  #: switched to some other protocol (CONNECT tunnel, h2c); not parsed


_ZERO: dict[Category, int] = dict.fromkeys(Category, 0)


class ByteAccount:
    """Byte counts by category for one direction of one stream (or a sum of them)."""

    __slots__ = ("_counts",)

    def __init__(self, counts: dict[Category, int] | None = None) -> None:
        self._counts: dict[Category, int] = _ZERO.copy()
        if counts:
            for category, n in counts.items():
                self._counts[Category(category)] += n

    def add(self, category: Category, n: int) -> None:
        if n:
            self._counts[category] += n

    def merge(self, other: ByteAccount) -> None:
        for category, n in other._counts.items():
            self._counts[category] += n

    def __getitem__(self, category: Category) -> int:
        return self._counts[category]

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def as_dict(self) -> dict[str, int]:
        return {category.value: n for category, n in self._counts.items()}

    def to_json(self) -> dict[str, int]:
        """The counts that are not zero, by category."""
        return {category.value: n for category, n in self._counts.items() if n}

    @classmethod
    def from_json(cls, state: object) -> ByteAccount:
        return cls(
            {
                choice(name, Category, "byte category"): whole(n, "bytes")
                for name, n in fields(state, "byte account").items()
            }
        )

    def copy(self) -> ByteAccount:
        account = ByteAccount()
        account._counts = self._counts.copy()
        return account

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ByteAccount) and self._counts == other._counts

    def __repr__(self) -> str:
        parts = ", ".join(f"{c.value}={n}" for c, n in self._counts.items() if n)
        return f"ByteAccount({parts})"


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Where and why a byte stream stopped parsing (or broke a protocol rule).

    ``offset`` counts bytes from the start of that direction of the TCP
    connection. A ``security`` anomaly is a shape used for request smuggling.
    """

    direction: Direction
    offset: int
    reason: str
    security: bool = False


C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT


def counts_to_json(counts: dict[Direction, int]) -> list[int]:
    """A figure for each direction, as ``[client to server, server to client]``."""
    return [counts[C2S], counts[S2C]]


def counts_from_json(state: object, what: str) -> dict[Direction, int]:
    """What :func:`counts_to_json` wrote; :class:`~inspector.checked.StateError` if it is not that."""
    found = pair(state, what)
    return {C2S: whole(found[0], what), S2C: whole(found[1], what)}


def accounts_to_json(accounts: dict[Direction, ByteAccount]) -> list[dict[str, int]]:
    """A byte account for each direction, as ``[client to server, server to client]``."""
    return [accounts[C2S].to_json(), accounts[S2C].to_json()]


def accounts_from_json(state: object, what: str) -> dict[Direction, ByteAccount]:
    found = pair(state, what)
    return {C2S: ByteAccount.from_json(found[0]), S2C: ByteAccount.from_json(found[1])}


class FrameCounts:
    """Frame figures of an HTTP version that frames its streams (HTTP/2, HTTP/3):
    of a stream, a connection, or a sum of them, by direction.

    ``frames`` counts frames by type name; the byte figures are the subclass's
    :attr:`BYTE_FIGURES`, which add up to every byte parsed except those named
    in :attr:`DECODED_FIGURES` (sizes after decoding, not on the wire).
    """

    BYTE_FIGURES: tuple[str, ...] = ()
    DECODED_FIGURES: tuple[str, ...] = ("decoded_header_bytes",)
    __slots__ = ("__dict__", "frames")

    def __init__(self) -> None:
        self.frames: dict[Direction, Counter[str]] = {C2S: Counter(), S2C: Counter()}
        for name in self.BYTE_FIGURES:
            setattr(self, name, {C2S: 0, S2C: 0})

    def figure(self, name: str) -> dict[Direction, int]:
        figure: dict[Direction, int] = getattr(self, name)
        return figure

    def wire_bytes(self, direction: Direction) -> int:
        """Every byte these frames took on the wire in one direction."""
        return sum(self.figure(name)[direction] for name in self.BYTE_FIGURES if name not in self.DECODED_FIGURES)

    def merge(self, other: FrameCounts) -> None:
        for direction in Direction:
            self.frames[direction].update(other.frames[direction])
            for name in self.BYTE_FIGURES:
                self.figure(name)[direction] += other.figure(name)[direction]

    def to_json(self) -> dict[str, Any]:
        """The frames by type and the byte figures, by direction."""
        return {
            d.value: {
                "frames": dict(sorted(self.frames[d].items())),
                **{n: self.figure(n)[d] for n in self.BYTE_FIGURES},
            }
            for d in Direction
        }

    @classmethod
    def from_json(cls, state: object) -> Self:
        counts = cls()
        state = fields(state, "frame counts")
        for d in Direction:
            figures = fields(state.get(d.value), "frame counts")
            frames = fields(figures.get("frames"), "frames")
            counts.frames[d].update({text(name, "frame type"): whole(n, "frames") for name, n in frames.items()})
            for name in cls.BYTE_FIGURES:
                counts.figure(name)[d] = whole(figures.get(name), name)
        return counts

    def copy(self) -> Self:
        twin = type(self)()
        twin.merge(self)
        return twin

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, FrameCounts)
        return self.frames == other.frames and all(
            self.figure(name) == other.figure(name) for name in self.BYTE_FIGURES
        )

    def __repr__(self) -> str:
        frames = {d.value: dict(c) for d, c in self.frames.items()}
        return f"{type(self).__name__}(frames={frames})"


class Http2Counts(FrameCounts):
    """HTTP/2 frame figures.

    The byte figures add up to every byte of HTTP/2 that was parsed:
    ``frame_header_bytes`` (9 per frame), ``header_block_bytes`` (HPACK, as on
    the wire), ``data_bytes`` (DATA payload), ``padding_bytes`` (pad length
    fields and padding), ``control_bytes`` (the payload of every other frame,
    and the priority fields of HEADERS frames) and ``preface_bytes``.
    ``decoded_header_bytes`` is the size of the decoded header lists, names
    plus values with pseudo-headers: what HPACK saved is its difference from
    the header blocks.
    """

    BYTE_FIGURES = (
        "frame_header_bytes",
        "header_block_bytes",
        "decoded_header_bytes",
        "data_bytes",
        "padding_bytes",
        "control_bytes",
        "preface_bytes",
    )
    frame_header_bytes: dict[Direction, int]
    header_block_bytes: dict[Direction, int]
    decoded_header_bytes: dict[Direction, int]
    data_bytes: dict[Direction, int]
    padding_bytes: dict[Direction, int]
    control_bytes: dict[Direction, int]
    preface_bytes: dict[Direction, int]


class Http3Counts(FrameCounts):
    """HTTP/3 figures, of the streams of a request, a connection, or a sum of them.

    The byte figures add up to every byte of every stream and DATAGRAM that
    was parsed: ``stream_type_bytes`` (the type, and a WebTransport stream's
    session id, that open a unidirectional or WebTransport stream),
    ``frame_header_bytes`` (each frame's type and length varints),
    ``header_block_bytes`` (QPACK field sections, as on the wire),
    ``qpack_stream_bytes`` (the QPACK encoder and decoder streams),
    ``data_bytes`` (DATA frames' payload), ``control_bytes`` (the payload of
    every other frame, unknown and reserved ones included, and the bytes of
    unknown stream types), ``webtransport_bytes`` (WebTransport streams' data
    after their header), ``datagram_bytes`` (DATAGRAM frames' payloads,
    the quarter stream id included) and ``unparsed_bytes`` (what was not
    read: a frame cut short by the end of its stream, the bytes after a
    stream broke a rule). ``decoded_header_bytes`` is the size of the decoded
    field sections, names plus values with pseudo-headers.
    """

    BYTE_FIGURES = (
        "stream_type_bytes",
        "frame_header_bytes",
        "header_block_bytes",
        "decoded_header_bytes",
        "qpack_stream_bytes",
        "data_bytes",
        "control_bytes",
        "webtransport_bytes",
        "datagram_bytes",
        "unparsed_bytes",
    )
    stream_type_bytes: dict[Direction, int]
    frame_header_bytes: dict[Direction, int]
    header_block_bytes: dict[Direction, int]
    decoded_header_bytes: dict[Direction, int]
    qpack_stream_bytes: dict[Direction, int]
    data_bytes: dict[Direction, int]
    control_bytes: dict[Direction, int]
    webtransport_bytes: dict[Direction, int]
    datagram_bytes: dict[Direction, int]
    unparsed_bytes: dict[Direction, int]
