"""Socket.IO over Engine.IO (v4, and v3 with its length-prefixed polling payloads).

Engine.IO frames packets: ``0`` open, ``1`` close, ``2`` ping, ``3`` pong,
``4`` message, ``5`` upgrade, ``6`` noop. Over WebSocket one message is one
packet; a polling body joins packets with ``\\x1e`` (v4, which the separator
goes with the packet before it) or prefixes each with its length and a colon
(v3, the length in UTF-16 code units as JavaScript counts a string; or, in a
binary payload, a type byte, length digits as bytes and 0xFF). Binary packets
travel base64 with a ``b`` prefix over polling.

Socket.IO packets ride in Engine.IO messages: ``0`` CONNECT, ``1`` DISCONNECT,
``2`` EVENT, ``3`` ACK, ``4`` CONNECT_ERROR, ``5`` BINARY_EVENT, ``6``
BINARY_ACK, then an optional attachment count and ``-``, namespace and comma,
ack id, and JSON data. The application's messages are EVENT and BINARY_EVENT,
and the ACK and BINARY_ACK that carry data (a non-empty array): what a
handler receives as its arguments or an acknowledgement callback's. The
binary attachments announced by a BINARY_EVENT or BINARY_ACK follow as binary
packets; they are pieces of that message (``counted`` False). Everything else
is control, with Engine.IO's own names (``"open"``, ``"ping"``, ``"noop"``),
and the ``ok`` that answers a polling POST is ``"ok"``.
"""

from __future__ import annotations

import json

from ..events import FrameworkEvent, FrameworkMessage, FrameworkProblem, SessionId
from ..wire import Direction
from .reader import APPLICATION, CONTROL, Body, FrameworkReader, malformed, query_value

_ENGINE_PACKETS = {
    ord("0"): "open",
    ord("1"): "close",
    ord("2"): "ping",
    ord("3"): "pong",
    ord("4"): "message",
    ord("5"): "upgrade",
    ord("6"): "noop",
}
_SOCKET_PACKETS = ("CONNECT", "DISCONNECT", "EVENT", "ACK", "CONNECT_ERROR", "BINARY_EVENT", "BINARY_ACK")
#: Engine.IO packets that may come between a binary packet's attachments.
_KEEPALIVE = {"ping", "pong", "noop"}
_RECORD_SEPARATOR = b"\x1e"


def engine_io_version(target: str) -> int | None:
    """The Engine.IO version a request target names (``EIO=4``), if it names 3 or 4."""
    version = query_value(target, "EIO")
    return int(version) if version in ("3", "4") else None


class SocketIoReader(FrameworkReader):
    """Reads Socket.IO over Engine.IO; ``target`` (a request's) tells the Engine.IO version."""

    name = "socket.io"

    def __init__(self, target: str = "") -> None:
        super().__init__()
        self._version = engine_io_version(target)
        # Per direction: the binary packet whose attachments are still to come, and how many.
        self._pending: dict[Direction, tuple[str, int]] = {}

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        if text:
            return self._packet(direction, data, len(data), "WebSocket message")
        return self._attachment(direction, len(data), "binary WebSocket message")

    def start_body(self, direction: Direction, method: str, target: str) -> None:
        super().start_body(direction, method, target)
        self._version = engine_io_version(target) or self._version

    def read_body(self, direction: Direction, body: Body, data: bytes) -> list[FrameworkEvent]:
        request = body.request
        if direction is Direction.SERVER_TO_CLIENT and (request.method == "POST" or data == b"ok"):
            if data == b"ok":
                return [FrameworkMessage(direction, CONTROL, "ok", len(data))]
            return malformed(direction, len(data), "Engine.IO answer to a polling POST is not 'ok'")
        if self._version == 3 or (self._version is None and _looks_like_v3(data)):
            if data[0] in (0, 1):
                return self._binary_v3_payload(direction, data)
            return self._text_v3_payload(direction, data)
        events: list[FrameworkEvent] = []
        packets = data.split(_RECORD_SEPARATOR)
        for number, packet in enumerate(packets, 1):
            size = len(packet) + (number < len(packets))
            events += self._packet(direction, packet, size, f"packet {number} of a poll body")
        return events

    def _text_v3_payload(self, direction: Direction, data: bytes) -> list[FrameworkEvent]:
        """``<length>:<packet>`` repeated, the length in UTF-16 code units."""
        text = data.decode("utf-8", "surrogateescape")
        events: list[FrameworkEvent] = []
        start = 0
        number = 0
        while start < len(text):
            number += 1
            where = f"packet {number} of a poll body"
            colon = text.find(":", start)
            digits = text[start:colon]
            if colon < 0 or not digits.isascii() or not digits.isdigit() or len(digits) > 9:
                rest = len(text[start:].encode("utf-8", "surrogateescape"))
                return events + malformed(direction, rest, f"Engine.IO {where}: no length prefix")
            end = _utf16_end(text, colon + 1, int(digits))
            packet = text[colon + 1 : end].encode("utf-8", "surrogateescape")
            size = len(text[start:end].encode("utf-8", "surrogateescape"))
            events += self._packet(direction, packet, size, where)
            start = end
        return events

    def _binary_v3_payload(self, direction: Direction, data: bytes) -> list[FrameworkEvent]:
        """``<0 string | 1 binary><length digits as bytes><0xFF><packet>`` repeated."""
        events: list[FrameworkEvent] = []
        start = 0
        number = 0
        while start < len(data):
            number += 1
            where = f"packet {number} of a binary poll body"
            marker = data.find(b"\xff", start + 1, start + 12)
            digits = data[start + 1 : marker]
            if data[start] not in (0, 1) or marker < 0 or not digits or any(d > 9 for d in digits):
                return events + malformed(direction, len(data) - start, f"Engine.IO {where}: no length prefix")
            end = min(len(data), marker + 1 + int("".join(map(str, digits))))
            packet = data[marker + 1 : end]
            if data[start] == 1:
                events += self._attachment(direction, end - start, where)
            else:
                events += self._packet(direction, packet, end - start, where)
            start = end
        return events

    def _packet(self, direction: Direction, packet: bytes, size: int, where: str) -> list[FrameworkEvent]:
        """One Engine.IO packet in text form that took ``size`` bytes."""
        if packet.startswith(b"b"):
            return self._attachment(direction, size, where)
        kind = _ENGINE_PACKETS.get(packet[0]) if packet else None
        if kind is None:
            return malformed(direction, size, f"Engine.IO {where}: unknown packet type {packet[:1]!r}")
        events: list[FrameworkEvent] = []
        pending = self._pending.pop(direction, None)
        if pending is not None:
            if kind in _KEEPALIVE:
                self._pending[direction] = pending
            else:
                events.append(
                    FrameworkProblem(
                        direction, f"Socket.IO {where}: {pending[1]} attachments of a {pending[0]} missing"
                    )
                )
        if kind == "message":
            return events + self._socket_io_packet(direction, packet[1:], size, where)
        if kind == "open":
            events += _session(direction, packet[1:], where)
        events.append(FrameworkMessage(direction, CONTROL, kind, size))
        return events

    def _socket_io_packet(self, direction: Direction, packet: bytes, size: int, where: str) -> list[FrameworkEvent]:
        kind = _SOCKET_PACKETS[packet[0] - 48] if packet and 48 <= packet[0] <= 54 else None
        if kind is None:
            return malformed(direction, size, f"Socket.IO {where}: unknown packet type {packet[:1]!r}")
        i = 1
        attachments = 0
        if kind.startswith("BINARY_"):
            dash = packet.find(b"-", 1)
            digits = packet[1:dash]
            if dash < 0 or not digits.isdigit() or len(digits) > 9:
                return malformed(direction, size, f"Socket.IO {where}: {kind} without its attachment count")
            attachments = int(digits)
            i = dash + 1
        if packet.startswith(b"/", i):
            comma = packet.find(b",", i)
            i = len(packet) if comma < 0 else comma + 1
        while i < len(packet) and 48 <= packet[i] <= 57:
            i += 1
        data = packet[i:]
        if kind in ("CONNECT", "DISCONNECT", "CONNECT_ERROR"):
            return [FrameworkMessage(direction, CONTROL, kind, size)]
        try:
            arguments = json.loads(data)
        except (ValueError, RecursionError):
            arguments = None
        if not isinstance(arguments, list) or (kind.endswith("EVENT") and not arguments):
            return malformed(direction, size, f"Socket.IO {where}: {kind} data is not a JSON array")
        if attachments:
            self._pending[direction] = (kind, attachments)
        return [FrameworkMessage(direction, APPLICATION if arguments else CONTROL, kind, size)]

    def _attachment(self, direction: Direction, size: int, where: str) -> list[FrameworkEvent]:
        pending = self._pending.pop(direction, None)
        if pending is None:
            return malformed(
                direction, size, f"Socket.IO {where}: a binary packet no BINARY_EVENT or BINARY_ACK announced"
            )
        kind, left = pending
        if left > 1:
            self._pending[direction] = (kind, left - 1)
        return [FrameworkMessage(direction, APPLICATION, kind, size, counted=False)]


def _session(direction: Direction, data: bytes, where: str) -> list[FrameworkEvent]:
    """The sid of an open packet's handshake data."""
    try:
        handshake = json.loads(data)
    except (ValueError, RecursionError):
        handshake = None
    sid = handshake.get("sid") if isinstance(handshake, dict) else None
    if not isinstance(sid, str):
        return [FrameworkProblem(direction, f"Engine.IO {where}: open packet without a sid")]
    return [SessionId(sid)]


def _utf16_end(text: str, start: int, units: int) -> int:
    """Where ``units`` UTF-16 code units of ``text`` from ``start`` end (at most the end of ``text``)."""
    if text.isascii():
        return min(len(text), start + units)
    i = start
    while units > 0 and i < len(text):
        units -= 2 if ord(text[i]) > 0xFFFF else 1
        i += 1
    return i


def _looks_like_v3(data: bytes) -> bool:
    """Whether a poll body of no known version has v3's framing: a length and a colon, or a binary payload."""
    if data[:1] in (b"\x00", b"\x01"):
        return True
    digits = len(data) - len(data.lstrip(b"0123456789"))
    return 0 < digits <= 9 and data[digits : digits + 1] == b":"
