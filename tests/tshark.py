"""tshark's dissection of a pcapng file, as figures to set beside rtinspect's.

Wireshark's dissectors do not share code with rtinspect, so where both count
the same traffic their figures must agree: TCP payload bytes per stream and
direction, HTTP head sizes and body bytes, and WebSocket frames.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from inspector.report import PerDirection
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
TSHARK = shutil.which("tshark")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)")


@dataclass(frozen=True)
class Frame:
    """One WebSocket frame as Wireshark dissected it."""

    direction: Direction
    opcode: int
    masked: bool
    compressed: bool
    #: Bytes of the header and masking key: the size of Wireshark's ``websocket`` layer.
    header: int
    #: The 7-bit ``websocket.payload_length``: the length, or 126/127 for a 16/64-bit extension.
    length_code: int
    #: The payload length, from the 7-bit field or its extension.
    payload: int

    @property
    def control(self) -> bool:
        return self.opcode >= 8


@dataclass
class HttpPass:
    """The HTTP messages of one TCP stream in one tshark pass."""

    #: Size of every HTTP head (request or status line through the empty line), per direction.
    heads: dict[Direction, list[int]] = field(default_factory=lambda: {C2S: [], S2C: []})
    #: (body bytes, chunk framing bytes) of each response.
    bodies: list[tuple[int, int]] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        """Whether every request has its response (interim responses aside)."""
        return len(self.heads[S2C]) >= len(self.heads[C2S])


@dataclass
class TcpStream:
    """One TCP connection of the pcapng, as tshark dissected it."""

    index: int
    data: dict[Direction, bytearray] = field(default_factory=lambda: {C2S: bytearray(), S2C: bytearray()})
    #: Sum of ``tcp.len`` per direction.
    tcp_len: dict[Direction, int] = field(default_factory=lambda: {C2S: 0, S2C: 0})
    retransmissions: int = 0
    frames: list[Frame] = field(default_factory=list)
    #: HTTP as dissected with bodies reassembled (``True``) and without (``False``).
    http: dict[bool, HttpPass] = field(default_factory=lambda: {True: HttpPass(), False: HttpPass()})

    @property
    def heads(self) -> dict[Direction, list[int]]:
        """HTTP head sizes, from the pass that saw every response.

        Wireshark misses heads in either mode. Reassembling bodies, it shows a
        response only once its chunked body is complete, so a stream the client
        dropped has a request without a response. Not reassembling, a body that
        arrives in a segment of its own derails the parsing of the responses
        after it ("Continuation"). The reassembling pass is used unless a request
        in it went unanswered.
        """
        return self.http[True].heads if self.http[True].answered else self.http[False].heads


def named_fields(element: ElementTree.Element) -> dict[str, ElementTree.Element]:
    """An element's descendant fields by name (the first of each name)."""
    found: dict[str, ElementTree.Element] = {}
    for child in element.iter("field"):
        found.setdefault(child.get("name", ""), child)
    return found


def head_size(http: ElementTree.Element) -> int | None:
    """The size of the HTTP head in a ``http`` layer, or None for a continuation.

    Wireshark puts the request or status line first in the layer and ends the
    head with an unnamed ``\\r\\n`` item; both carry their position in the
    (reassembled) PDU, so the head is the span from the first line's start to
    the empty line's end. This counts the bytes exactly as they were, whatever
    the spacing or header folding, without rebuilding lines from parsed fields.
    """
    if http.find("field[@name='http.request']") is None and http.find("field[@name='http.response']") is None:
        return None
    top = list(http)
    end = next((f for f in top if f.get("name") == "" and f.get("show") == "\\r\\n"), None)
    assert end is not None, f"an HTTP head without its empty line: {top[0].get('show')}"
    return int(end.get("pos", "0")) + int(end.get("size", "0")) - int(top[0].get("pos", "0"))


def body_sizes(http: ElementTree.Element) -> tuple[int, int]:
    """(body bytes, chunk framing bytes) of a response layer, from the reassembled body."""
    for item in http:
        if item.get("name") == "" and item.get("show") == "HTTP chunked response":
            data = sum(int(f.get("size", "0")) for f in item.iter("field") if f.get("name") == "http.chunk_data")
            return data, int(item.get("size", "0")) - data
    file_data = http.find("field[@name='http.file_data']")
    return (int(file_data.get("size", "0")), 0) if file_data is not None else (0, 0)


def websocket_frame(layer: ElementTree.Element, direction: Direction) -> Frame:
    fields = named_fields(layer)
    code = length = int(fields["websocket.payload_length"].get("show", "0"))
    if code == 126:
        length = int(fields["websocket.payload_length_ext_16"].get("show", "0"))
    elif code == 127:
        length = int(fields["websocket.payload_length_ext_64"].get("show", "0"))
    return Frame(
        direction=direction,
        opcode=int(fields["websocket.opcode"].get("show", "0")),
        masked=fields["websocket.mask"].get("show") == "1",
        compressed=bool(int(fields["websocket.rsv"].get("value", "0"), 16) & 0b100),
        header=int(layer.get("size", "0")),
        length_code=code,
        payload=length,
    )


def tshark_pdml(pcapng: Path, port: int | None, *, reassemble_bodies: bool) -> bytes:
    """The capture as PDML, with TCP streams reassembled and ``port`` decoded as
    HTTP (None: no "decode as", tshark finds HTTP by itself).

    Reassembling bodies shows chunk framing, but only for bodies that completed;
    without it every head is dissected, including the head of a stream the
    client dropped.
    """
    command = [
        TSHARK or "tshark",
        "-n",
        "-r", str(pcapng),
        "-o", "tcp.desegment_tcp_streams:TRUE",
        "-o", f"http.desegment_body:{'TRUE' if reassemble_bodies else 'FALSE'}",
        *(["-d", f"tcp.port=={port},http"] if port is not None else []),
        "-J", "tcp http websocket",
        "-T", "pdml",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, check=True, timeout=60).stdout


def dissect_pcapng(pcapng: Path, server_port: int, *, decode_as: bool = True) -> dict[int, TcpStream]:
    """Every TCP stream of a pcapng file, by tshark's stream index; segments from
    ``server_port`` are the server's. ``decode_as`` tells tshark that the port is HTTP."""
    port = server_port
    streams: dict[int, TcpStream] = {}
    for reassemble_bodies in (True, False):
        pdml = tshark_pdml(pcapng, port if decode_as else None, reassemble_bodies=reassemble_bodies)
        root = ElementTree.fromstring(pdml)
        for packet in root.iter("packet"):
            tcp = named_fields(packet.find("proto[@name='tcp']"))  # type: ignore[arg-type]
            index = int(tcp["tcp.stream"].get("show", "0"))
            direction = S2C if int(tcp["tcp.srcport"].get("show", "0")) == port else C2S
            stream = streams.setdefault(index, TcpStream(index))
            http = stream.http[reassemble_bodies]
            for layer in packet.findall("proto[@name='http']"):
                head = head_size(layer)
                if head is not None:
                    http.heads[direction].append(head)
                    if direction is S2C:
                        http.bodies.append(body_sizes(layer))
            if not reassemble_bodies:
                continue
            length = int(tcp["tcp.len"].get("show", "0"))
            stream.tcp_len[direction] += length
            if length:
                stream.data[direction] += bytes.fromhex(tcp["tcp.payload"].get("value", ""))
            stream.retransmissions += "tcp.analysis.retransmission" in tcp
            stream.frames += [websocket_frame(layer, direction) for layer in packet.findall("proto[@name='websocket']")]
    return streams


def frame_figures(frames: list[Frame]) -> dict[str, PerDirection]:
    """The report's WebSocket figures, counted from Wireshark's frames."""

    def per_direction(value: Any) -> PerDirection:
        return PerDirection(*(sum(value(f) for f in frames if f.direction is d) for d in (C2S, S2C)))

    return {
        "data_frames": per_direction(lambda f: not f.control),
        "control_frames": per_direction(lambda f: f.control),
        "frame_header_bytes": per_direction(lambda f: f.header),
        "wire_payload_bytes": per_direction(lambda f: 0 if f.control else f.payload),
        "control_bytes": per_direction(lambda f: f.payload if f.control else 0),
        "compressed_messages": per_direction(lambda f: f.compressed and f.opcode in (1, 2)),
    }
