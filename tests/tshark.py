"""tshark's dissection of a pcapng file, as figures to set beside rtinspect's.

Wireshark's dissectors do not share code with rtinspect, so where both count
the same traffic their figures must agree: TCP payload bytes per stream and
direction, HTTP head sizes and body bytes, WebSocket frames, and HTTP/2
frames (:func:`http2_figures`), QUIC streams and DATAGRAM frames
(:func:`quic_follow`, :func:`quic_datagram_sizes`). :class:`PacketCapture`
records a pcapng on the loopback interface with dumpcap.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
from collections import Counter
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
DUMPCAP = shutil.which("dumpcap")
needs_tshark = pytest.mark.skipif(TSHARK is None, reason="tshark is not installed (apt-get install tshark)")
needs_dumpcap = pytest.mark.skipif(DUMPCAP is None, reason="dumpcap is not installed (apt-get install tshark)")


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


# -- HTTP/2


#: The byte figures of :func:`http2_figures`, each per direction. With the frame
#: counts they account for every byte of an HTTP/2 connection: see :func:`http2_bytes`.
HTTP2_BYTE_FIGURES = (
    "frame_header_bytes",
    "header_block_bytes",
    "decoded_header_bytes",
    "data_bytes",
    "padding_bytes",
    "control_bytes",
    "preface_bytes",
)
#: Bytes outside every stream: the preface and the frames of stream 0. They overlap the figures
#: above (a SETTINGS frame's bytes are frame header and control bytes too), so they are apart.
CONNECTION_BYTES = "connection_bytes"
DIRECTION_NAMES = {C2S: "client_to_server", S2C: "server_to_client"}
_FRAME_TYPE = re.compile(r"Type: (.+) \((?:0x)?[0-9a-fA-F]+\)$")


@dataclass
class Http2Direction:
    """What one side of an HTTP/2 connection sent, as tshark's ``http2`` dissector sees it."""

    frames: Counter[str] = field(default_factory=Counter)
    #: Every figure of :data:`HTTP2_BYTE_FIGURES`.
    figures: Counter[str] = field(default_factory=Counter)
    #: Sum of ``tcp.len`` (ciphertext under TLS).
    tcp_len: int = 0

    @property
    def wire_bytes(self) -> int:
        """Every byte the figures account for: each byte is in exactly one of them
        (decoded header bytes aside, which are not on the wire)."""
        f = self.figures
        return sum(f[name] for name in HTTP2_BYTE_FIGURES if name != "decoded_header_bytes")


@dataclass
class Http2Stream:
    """One TCP connection that carried HTTP/2, by tshark's stream index."""

    index: int
    directions: dict[Direction, Http2Direction] = field(
        default_factory=lambda: {C2S: Http2Direction(), S2C: Http2Direction()}
    )


def _children(element: ElementTree.Element, name: str) -> list[ElementTree.Element]:
    return [child for child in element if child.get("name") == name]


def _size(element: ElementTree.Element | None) -> int:
    return int(element.get("size", "0")) if element is not None else 0


def _http2_frame(frame: ElementTree.Element, into: Http2Direction, opened: set[int], from_client: bool) -> None:
    """Count one ``http2.stream`` item of the PDML (a frame, or the client preface).

    Each frame's bytes are split from tshark's own fields, and the split must
    add up to the 9-byte header plus the frame's length field. ``opened`` holds
    the streams of the connection that the client's HEADERS frames have opened
    so far: a frame on any other stream (stream 0, or a PRIORITY frame naming a
    stream before its request) is outside every stream, in ``connection_bytes``.
    """
    fields = {child.get("name", ""): child for child in reversed(list(frame))}
    figures = into.figures
    if "http2.magic" in fields:
        figures["preface_bytes"] += _size(fields["http2.magic"])
        figures[CONNECTION_BYTES] += _size(fields["http2.magic"])
        return
    if "http2.type" not in fields:
        raise AssertionError(f"an http2 item that is neither the preface nor a frame: {frame.get('showname')}")
    matched = _FRAME_TYPE.match(fields["http2.type"].get("showname", ""))
    assert matched, fields["http2.type"].get("showname")
    kind = matched.group(1)
    length = int(fields["http2.length"].get("show", "0"))
    into.frames[kind] += 1
    figures["frame_header_bytes"] += 9
    stream_id = int(fields["http2.streamid"].get("show", "0"))
    if kind == "HEADERS" and from_client and stream_id:
        opened.add(stream_id)
    if stream_id not in opened:
        figures[CONNECTION_BYTES] += 9 + length
    for header in _children(frame, "http2.header"):
        lengths = named_fields(header)
        for part in ("http2.header.name.length", "http2.header.value.length"):
            figures["decoded_header_bytes"] += int(lengths[part].get("show", "0"))
    for limit in ("http2.header_size_exceeded", "http2.header_lines_exceeded"):
        if limit in fields:
            raise AssertionError(f"tshark stopped decoding a header block ({limit})")
    # The pad length byte is http2.padding; the padding itself, <type>.padding.
    padding = _size(fields.get("http2.padding")) + sum(
        _size(fields.get(f"http2.{where}.padding")) for where in ("data", "headers")
    )
    if kind == "DATA":
        data = length - padding
        if "http2.body.fragments" not in fields:  # the last frame of a body shows the whole body as its data
            assert _size(fields.get("http2.data.data")) == data, frame.get("showname")
        figures["data_bytes"] += data
        figures["padding_bytes"] += padding
    elif kind == "HEADERS":
        priority = _size(fields.get("http2.stream_dependency")) + _size(fields.get("http2.headers.weight"))
        block = _size(fields.get("http2.headers"))
        assert padding + priority + block == length, frame.get("showname")
        figures["header_block_bytes"] += block
        figures["padding_bytes"] += padding
        figures["control_bytes"] += priority
    elif kind == "CONTINUATION":
        assert _size(fields.get("http2.continuation.header")) == length, frame.get("showname")
        figures["header_block_bytes"] += length
    else:
        figures["control_bytes"] += length


def tshark_http2_pdml(pcap: Path, port: int | None, keylog: Path | None) -> bytes:
    """The capture as PDML with TCP streams reassembled and only the tcp and http2 layers.

    With ``port``, the port is decoded as TLS (with ``keylog``) or as cleartext
    HTTP/2; under TLS, tshark goes on to HTTP/2 where ALPN said h2.
    """
    decode_as = "tls" if keylog is not None else "http2"
    command = [
        TSHARK or "tshark",
        "-n",
        "-r", str(pcap),
        "-o", "tcp.desegment_tcp_streams:TRUE",
        *(["-o", f"tls.keylog_file:{keylog}"] if keylog is not None else []),
        *(["-d", f"tcp.port=={port},{decode_as}"] if port is not None else []),
        "-J", "tcp http2",
        "-T", "pdml",
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, check=True, timeout=120).stdout


def retransmitted(pcap: Path) -> int:
    """How many segments of ``pcap`` tshark takes for retransmissions."""
    command = [TSHARK or "tshark", "-n", "-r", str(pcap), "-Y", RETRANSMISSION, "-T", "fields", "-e", "frame.number"]
    return len(subprocess.run(command, capture_output=True, check=True, text=True, timeout=120).stdout.split())


RETRANSMISSION = "tcp.analysis.retransmission or tcp.analysis.spurious_retransmission"


def dissect_http2(pcap: Path, port: int | None = None, keylog: Path | None = None) -> dict[int, Http2Stream]:
    """Every TCP stream of ``pcap`` with its HTTP/2 frames, by tshark's stream index.

    Segments from ``port`` are the server's. Without ``port``, the side that
    sent the client preface is the client (tshark must then find HTTP/2 by
    itself). ``keylog`` decrypts TLS (NSS key log, as ``SSLKEYLOGFILE`` writes it).
    """
    by_sender: dict[tuple[int, str], Http2Direction] = {}
    clients: dict[int, str] = {}
    opened: dict[int, set[int]] = {}
    root = ElementTree.fromstring(tshark_http2_pdml(pcap, port, keylog))
    for packet in root.iter("packet"):
        tcp = named_fields(packet.find("proto[@name='tcp']"))  # type: ignore[arg-type]
        index = int(tcp["tcp.stream"].get("show", "0"))
        sender = f"{tcp['tcp.srcport'].get('show')}"
        side = by_sender.setdefault((index, sender), Http2Direction())
        side.tcp_len += int(tcp["tcp.len"].get("show", "0"))
        for layer in packet.findall("proto[@name='http2']"):
            for frame in _children(layer, "http2.stream"):
                if _children(frame, "http2.magic"):
                    clients.setdefault(index, sender)
                from_client = sender != str(port) if port is not None else clients.get(index) == sender
                _http2_frame(frame, side, opened.setdefault(index, set()), from_client)
    streams: dict[int, Http2Stream] = {}
    for (index, sender), side in sorted(by_sender.items()):
        if port is not None:
            direction = S2C if sender == str(port) else C2S
        elif index in clients:
            direction = C2S if sender == clients[index] else S2C
        else:
            continue  # no preface, no port: not HTTP/2 as far as tshark could tell
        streams.setdefault(index, Http2Stream(index)).directions[direction] = side
    return streams


def http2_figures(pcap: Path, port: int | None = None, keylog: Path | None = None) -> dict[str, dict[str, Any]]:
    """The HTTP/2 figures of every connection in ``pcap``, summed, per direction, as
    tshark's ``http2`` dissector sees them; shaped like the report's ``http2`` object::

        {"frames": {"client_to_server": {"HEADERS": 3, ...}, "server_to_client": {...}},
         "frame_header_bytes": {"client_to_server": n, "server_to_client": n}, ...}

    - frames: counts by tshark's frame type name (only the types that occur)
    - frame_header_bytes: 9 per frame
    - header_block_bytes: HPACK header block fragments of HEADERS and
      CONTINUATION frames as on the wire (no pad length, padding or priority)
    - decoded_header_bytes: decoded name + value lengths, pseudo-headers included
    - data_bytes: DATA payload without pad length and padding
    - padding_bytes: pad length byte and padding of DATA and HEADERS frames
    - control_bytes: the payload of every other frame type, and the 5-byte
      priority field of HEADERS frames with the PRIORITY flag
    - preface_bytes: the client's 24-byte connection preface
    - connection_bytes: the bytes outside every stream: the preface, and each frame
      (header and payload) of stream 0 or of a stream the client had not opened
      yet; these overlap the figures above

    See :func:`dissect_http2` for ``port`` and ``keylog``.
    """
    return http2_totals(dissect_http2(pcap, port, keylog).values())


def http2_totals(streams: Any) -> dict[str, dict[str, Any]]:
    """:func:`http2_figures` of some :class:`Http2Stream`\\ s."""
    totals: dict[str, dict[str, Any]] = {"frames": {name: {} for name in DIRECTION_NAMES.values()}}
    totals |= {figure: dict.fromkeys(DIRECTION_NAMES.values(), 0) for figure in (*HTTP2_BYTE_FIGURES, CONNECTION_BYTES)}
    for stream in streams:
        for direction, name in DIRECTION_NAMES.items():
            side = stream.directions[direction]
            frames = totals["frames"][name]
            for kind, count in side.frames.items():
                frames[kind] = frames.get(kind, 0) + count
            for figure in (*HTTP2_BYTE_FIGURES, CONNECTION_BYTES):
                totals[figure][name] += side.figures[figure]
    return totals


def http2_bytes(figures: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Per direction, the bytes :func:`http2_figures` account for: every byte of the
    HTTP/2 connections (decoded header bytes are not on the wire and not counted)."""
    return {
        name: sum(figures[f][name] for f in HTTP2_BYTE_FIGURES if f != "decoded_header_bytes")
        for name in DIRECTION_NAMES.values()
    }


# -- QUIC


def _decrypted(pcap: Path, keylog: Path, *args: str) -> str:
    """tshark's output for ``args`` on a capture of QUIC, decrypted with ``keylog`` (NSS key log format)."""
    result = subprocess.run(
        [TSHARK or "tshark", "-r", str(pcap), "-o", f"tls.keylog_file:{keylog}", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )
    return result.stdout


def quic_streams(pcap: Path, keylog: Path, server_port: int) -> set[tuple[Direction, int]]:
    """Each (direction, stream id) that carried a STREAM frame (one QUIC connection)."""
    found: set[tuple[Direction, int]] = set()
    fields = _decrypted(pcap, keylog, "-Y", "quic", "-T", "fields", "-e", "udp.srcport", "-e", "quic.stream.stream_id")
    for line in fields.splitlines():
        port, _, ids = line.partition("\t")
        for stream_id in filter(None, ids.split(",")):
            found.add((S2C if int(port) == server_port else C2S, int(stream_id)))
    return found


def quic_follow(pcap: Path, keylog: Path, stream_ids: set[int], server_port: int) -> dict[tuple[Direction, int], bytes]:
    """Each stream's bytes per direction as ``tshark -z follow,quic,raw`` reassembles them
    (connection 0; one tshark run for all the streams)."""
    follows = [arg for stream_id in sorted(stream_ids) for arg in ("-z", f"follow,quic,raw,0,{stream_id}")]
    found: dict[tuple[Direction, int], bytearray] = {}
    stream_id, server_node = -1, "1"
    for line in _decrypted(pcap, keylog, "-q", *follows).splitlines():
        if filtered := re.match(r"Filter: .*stream_id eq (\d+)\s*$", line):
            stream_id = int(filtered.group(1))
        elif line.startswith("Node "):
            if line.endswith(f":{server_port}"):
                server_node = line[5]
        elif line.strip() and not line.startswith(("=", "Follow:")):
            # The second node's data is indented with a tab.
            direction = S2C if ("1" if line.startswith("\t") else "0") == server_node else C2S
            found.setdefault((direction, stream_id), bytearray()).extend(bytes.fromhex(line.strip()))
    return {key: bytes(data) for key, data in found.items()}


def quic_connection_bytes(pcap: Path, keylog: Path, server_port: int) -> dict[int, dict[Direction, int]]:
    """For each QUIC connection (by the client's UDP port), the bytes of its streams as
    ``tshark -z follow,quic,raw`` reassembles them plus its DATAGRAM payloads, per direction."""
    streams: dict[int, set[int]] = {}
    client_ports: dict[int, int] = {}
    datagrams: dict[int, dict[Direction, int]] = {}
    fields = _decrypted(
        pcap, keylog, "-Y", "quic", "-T", "fields", "-E", "separator=/t",
        "-e", "quic.connection.number", "-e", "udp.srcport", "-e", "udp.dstport",
        "-e", "quic.stream.stream_id", "-e", "quic.dg.length",
    )  # fmt: skip
    for line in fields.splitlines():
        numbers, source, destination, ids, lengths = (line.split("\t") + [""] * 5)[:5]
        if not numbers:
            continue
        connection = int(numbers.split(",")[0])
        client_ports[connection] = int(destination) if int(source) == server_port else int(source)
        streams.setdefault(connection, set()).update(int(i) for i in filter(None, ids.split(",")))
        direction = S2C if int(source) == server_port else C2S
        sent = datagrams.setdefault(connection, {C2S: 0, S2C: 0})
        sent[direction] += sum(int(length) for length in filter(None, lengths.split(",")))
    follows = [
        arg
        for connection, ids in sorted(streams.items())
        for stream_id in sorted(ids)
        for arg in ("-z", f"follow,quic,raw,{connection},{stream_id}")
    ]
    found = {connection: dict(sent) for connection, sent in datagrams.items()}
    connection, server_node = -1, "1"
    for line in _decrypted(pcap, keylog, "-q", *follows).splitlines() if follows else ():
        if filtered := re.match(r"Filter: .*connection\.number eq (\d+)", line):
            connection = int(filtered.group(1))
        elif line.startswith("Node "):
            if line.endswith(f":{server_port}"):
                server_node = line[5]
        elif line.strip() and not line.startswith(("=", "Follow:", "Filter:")):
            direction = S2C if ("1" if line.startswith("\t") else "0") == server_node else C2S
            found[connection][direction] += len(bytes.fromhex(line.strip()))
    return {client_ports[connection]: sent for connection, sent in found.items()}


def quic_datagram_sizes(pcap: Path, keylog: Path, server_port: int) -> dict[Direction, list[int]]:
    """The payload size of each DATAGRAM frame (``quic.dg.length``), per direction, in order."""
    sizes: dict[Direction, list[int]] = {C2S: [], S2C: []}
    fields = _decrypted(pcap, keylog, "-Y", "quic.dg", "-T", "fields", "-e", "udp.srcport", "-e", "quic.dg.length")
    for line in fields.splitlines():
        port, _, lengths = line.partition("\t")
        for length in lengths.split(","):
            sizes[S2C if int(port) == server_port else C2S].append(int(length))
    return sizes


# -- capturing packets


class PacketCapture:
    """``dumpcap`` on ``lo`` writing a pcapng; capturing once :meth:`start` returns."""

    def __init__(self, path: Path, capture_filter: str) -> None:
        self.path = path
        self.filter = capture_filter
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [DUMPCAP or "dumpcap", "-i", "lo", "-f", self.filter, "-w", str(self.path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stderr is not None
        # dumpcap names its output file once the interface is open and the filter is set.
        for line in self.process.stderr:
            if line.startswith("File:"):
                return
        raise RuntimeError(f"dumpcap did not start (exit status {self.process.wait()})")

    def stop(self) -> str:
        """Stop capturing; returns dumpcap's closing statistics. Fails if packets were dropped."""
        assert self.process is not None and self.process.stderr is not None
        self.process.send_signal(signal.SIGTERM)
        rest = self.process.stderr.read()
        self.process.wait(30)
        dropped = re.search(r"received/dropped on interface .*?: (\d+)/(\d+)", rest)
        if dropped is None or dropped.group(2) != "0":
            raise RuntimeError(f"dumpcap dropped packets or did not report: {rest.strip()}")
        return rest.strip()
