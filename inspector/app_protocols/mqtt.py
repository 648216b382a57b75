"""MQTT (3.1.1 and 5) over WebSocket: control packets in a byte stream per direction.

A packet is a fixed header byte (its type in the high nibble), a Remaining
Length of one to four bytes (seven bits each, the high bit saying another
follows), and that many bytes. The WebSocket messages are only a carrier: one
may hold several packets, and a packet may span several. A packet is counted
in the message where it starts; its pieces in later messages are
``counted`` False. Only the header's bytes are ever held, never a payload.

PUBLISH carries the application's data; every other packet is control.
Packet type 0 is reserved, and a fifth length byte is not MQTT: after either,
the rest of the direction is one ``"malformed"`` message, since there is no
telling where a packet starts again.
"""

from __future__ import annotations

from ..events import FrameworkEvent, FrameworkMessage, FrameworkProblem
from ..wire import Direction
from .reader import APPLICATION, CONTROL, FrameworkReader

_PACKET_TYPES = (
    "reserved",
    "CONNECT",
    "CONNACK",
    "PUBLISH",
    "PUBACK",
    "PUBREC",
    "PUBREL",
    "PUBCOMP",
    "SUBSCRIBE",
    "SUBACK",
    "UNSUBSCRIBE",
    "UNSUBACK",
    "PINGREQ",
    "PINGRESP",
    "DISCONNECT",
    "AUTH",
)
_MALFORMED = "malformed"


class _Stream:
    """Where one direction is: inside a packet's header, or inside its remaining bytes."""

    __slots__ = ("counted", "header", "packet", "remaining")

    def __init__(self) -> None:
        #: The packet in progress (None between packets), or ``"malformed"`` for good.
        self.packet: str | None = None
        #: Its fixed header so far, while the Remaining Length is incomplete.
        self.header = bytearray()
        #: Its bytes still to come after the header.
        self.remaining = 0
        #: Whether a piece of it was counted already.
        self.counted = False


class MqttReader(FrameworkReader):
    """Reads MQTT control packets from WebSocket messages, per direction."""

    name = "mqtt"

    def __init__(self) -> None:
        super().__init__()
        self._streams = {direction: _Stream() for direction in Direction}

    def websocket_message(self, direction: Direction, data: bytes, text: bool) -> list[FrameworkEvent]:
        stream = self._streams[direction]
        events: list[FrameworkEvent] = []
        if text:
            events.append(FrameworkProblem(direction, "MQTT in a text WebSocket message"))
        i = 0
        while i < len(data):
            start = i
            if stream.packet is None:
                packet_type = data[i] >> 4
                stream.packet = _PACKET_TYPES[packet_type] if packet_type else _MALFORMED
                stream.counted = False
                if not packet_type:
                    events.append(FrameworkProblem(direction, "MQTT packet of the reserved type 0"))
            i, problem = self._advance(stream, data, i)
            events.append(_piece(direction, stream.packet, i - start, not stream.counted))
            stream.counted = True
            if problem:
                events.append(FrameworkProblem(direction, problem))
                stream.packet = _MALFORMED
                stream.counted = False
            elif stream.packet != _MALFORMED and not stream.header and not stream.remaining:
                stream.packet = None
        return events

    @staticmethod
    def _advance(stream: _Stream, data: bytes, i: int) -> tuple[int, str | None]:
        """Consume what ``data`` from ``i`` holds of the packet in progress: where it stopped, and any problem."""
        if stream.packet == _MALFORMED:
            return len(data), None
        if not stream.remaining:
            header = stream.header
            while i < len(data):
                header.append(data[i])
                i += 1
                if len(header) >= 2 and not header[-1] & 0x80:
                    stream.remaining = sum((byte & 0x7F) << (7 * n) for n, byte in enumerate(header[1:]))
                    header.clear()
                    break
                if len(header) == 5:
                    header.clear()
                    return i, "MQTT Remaining Length longer than four bytes"
            else:
                return i, None
        taken = min(stream.remaining, len(data) - i)
        stream.remaining -= taken
        return i + taken, None


def _piece(direction: Direction, packet: str, size: int, counted: bool) -> FrameworkMessage:
    kind = APPLICATION if packet == "PUBLISH" else CONTROL
    return FrameworkMessage(direction, kind, packet, size, counted)
