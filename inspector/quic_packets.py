"""QUIC packets tallied per direction, from what a QUIC implementation says it sent and received.

Below a QUIC connection's streams lie its packets: headers, frames that carry
no stream data (ACK, CRYPTO, PADDING), AEAD tags, and the UDP and IP headers
of the datagrams that carry them. The decrypted stream bytes do not show
them; :class:`QuicPacketTally` counts them for one connection:

* datagrams and their UDP payload bytes (``quic_packet_bytes``: every byte
  of every datagram, the packets and any bytes after the last packet of a
  datagram),
* packets, the ACK-only ones (only ACK and PADDING frames), PADDING bytes,
  CRYPTO bytes, AEAD tag bytes (16 a packet) and header bytes,
* and the IP and UDP headers of the datagrams (:func:`~inspector.transport_layer.udp_header_bytes`).

The tally reads the events of aioquic's quic logger interface (the qlog
``transport`` events ``datagrams_sent``, ``datagrams_received``,
``packet_sent``, ``packet_received``); :class:`QuicPacketTracer` is the
logger to put in a :class:`aioquic.quic.configuration.QuicConfiguration`
(``quic_logger=``) so that a connection reports to a tally. Nothing here
does I/O.

What aioquic's events say, and so what is exact: datagrams, UDP payload
bytes, packets and packet bytes, which frames each packet carried (so which
packets were ACK-only), CRYPTO bytes. aioquic logs a PADDING frame without
its length: PADDING bytes are the packet's bytes less its header, its AEAD
tag and the sizes of its other frames, each worked out from what the event
says (see :func:`frame_size`); a header's packet number length is not in the
events either, so it is taken as the two bytes aioquic sends. Both are exact
for packets aioquic built; for packets of other implementations they can be
off by a few bytes a packet.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aioquic.quic.connection import QuicConnection
from aioquic.quic.logger import QuicLogger, QuicLoggerTrace

from .transport_layer import LayerFigures, TransportLayer, udp_header_bytes
from .wire import Direction

#: AEAD tag bytes of every QUIC v1 packet (AES-GCM and ChaCha20-Poly1305 alike).
AEAD_TAG = 16
#: Packet number bytes aioquic writes in every packet it sends (``PACKET_NUMBER_SEND_SIZE``).
PACKET_NUMBER_SIZE = 2
#: Frames an ACK-only packet may carry.
ACK_ONLY_FRAMES = frozenset({"ack", "padding"})
#: aioquic's ``ack_delay_exponent``: ACK delays are sent in units of 8 microseconds.
ACK_DELAY_EXPONENT = 3


@dataclass(slots=True)
class QuicCounts:
    """One direction of one QUIC connection: what its datagrams and packets carried."""

    datagrams: int = 0
    #: UDP payload bytes: every byte of every datagram.
    datagram_bytes: int = 0
    packets: int = 0
    packet_bytes: int = 0
    ack_only_packets: int = 0
    padding_bytes: int = 0
    crypto_bytes: int = 0
    header_bytes: int = 0
    frames: dict[str, int] = field(default_factory=dict)

    @property
    def aead_tag_bytes(self) -> int:
        return AEAD_TAG * self.packets


def varint_size(value: int) -> int:
    """Bytes of a QUIC variable-length integer (RFC 9000 section 16)."""
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x4000_0000:
        return 4
    return 8


def header_size(header: Mapping[str, Any], *, token_length: int = 0) -> int:
    """Bytes of a packet's header as an event describes it (:data:`PACKET_NUMBER_SIZE` of
    packet number; ``token_length``: an Initial packet's token)."""
    dcid = len(str(header.get("dcid", ""))) // 2
    if header.get("packet_type") == "1RTT":
        return 1 + dcid + PACKET_NUMBER_SIZE
    scid = len(str(header.get("scid", ""))) // 2
    size = 1 + 4 + 1 + dcid + 1 + scid
    if header.get("packet_type") == "initial":
        size += varint_size(token_length) + token_length
    # The length field covers the packet number and the payload; aioquic writes it in two bytes.
    return size + 2 + PACKET_NUMBER_SIZE


def frame_size(frame: Mapping[str, Any]) -> int | None:
    """Bytes of one frame as aioquic writes it, from its logged description (None for a
    frame whose size the description does not give)."""
    kind = frame.get("frame_type")
    try:
        if kind == "ack":
            ranges = [(int(start), int(end)) for start, end in frame["acked_ranges"]]
            ranges.sort(reverse=True)
            largest, first = ranges[0][1], ranges[0][1] - ranges[0][0]
            size = 1 + varint_size(largest) + varint_size(_ack_delay(frame)) + varint_size(len(ranges) - 1)
            size += varint_size(first)
            previous_start = ranges[0][0]
            for start, end in ranges[1:]:
                size += varint_size(previous_start - end - 2) + varint_size(end - start)
                previous_start = start
            return size
        if kind == "crypto":
            # aioquic writes every CRYPTO and STREAM frame's length in two bytes.
            return 1 + varint_size(int(frame["offset"])) + 2 + int(frame["length"])
        if kind == "stream":
            offset, length = int(frame["offset"]), int(frame["length"])
            return 1 + varint_size(int(frame["stream_id"])) + (varint_size(offset) if offset else 0) + 2 + length
        if kind in ("ping", "handshake_done"):
            return 1
        if kind == "max_data":
            return 1 + varint_size(int(frame["maximum"]))
        if kind == "max_stream_data":
            return 1 + varint_size(int(frame["stream_id"])) + varint_size(int(frame["maximum"]))
        if kind == "max_streams":
            return 1 + varint_size(int(frame["maximum"]))
        if kind == "datagram":
            return 1 + varint_size(int(frame["length"])) + int(frame["length"])
        if kind == "new_connection_id":
            cid = len(str(frame["connection_id"])) // 2
            return (
                1
                + varint_size(int(frame["sequence_number"]))
                + varint_size(int(frame["retire_prior_to"]))
                + 1
                + cid
                + 16
            )
        if kind == "retire_connection_id":
            return 1 + varint_size(int(frame["sequence_number"]))
        if kind == "new_token":
            token = len(str(frame["token"])) // 2
            return 1 + varint_size(token) + token
        if kind == "reset_stream":
            fields = (frame["stream_id"], frame["error_code"], frame["final_size"])
            return 1 + sum(varint_size(int(value)) for value in fields)
        if kind == "stop_sending":
            return 1 + varint_size(int(frame["stream_id"])) + varint_size(int(frame["error_code"]))
        if kind in ("data_blocked", "streams_blocked"):
            return 1 + varint_size(int(frame["limit"]))
        if kind == "stream_data_blocked":
            return 1 + varint_size(int(frame["stream_id"])) + varint_size(int(frame["limit"]))
        if kind in ("path_challenge", "path_response"):
            return 9
        if kind == "connection_close":
            reason = len(str(frame.get("reason", "")).encode())
            size = 1 + varint_size(int(frame["error_code"])) + varint_size(reason) + reason
            if frame.get("error_space") == "transport":
                size += varint_size(int(frame.get("trigger_frame_type") or 0))
            return size
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return None


def _ack_delay(frame: Mapping[str, Any]) -> int:
    """The ACK Delay field as sent: the logged delay (milliseconds) in units of 2^3 microseconds."""
    return round(float(frame.get("ack_delay", 0)) * 1000) >> ACK_DELAY_EXPONENT


#: The events the tally reads; each comes once the packet before it has been read whole.
_COUNTED = frozenset({"datagrams_sent", "datagrams_received", "packet_sent", "packet_received"})


class QuicPacketTally:
    """One QUIC connection's datagrams and packets, both directions, from logger events.

    ``sent`` is the direction of what the connection sends: client to server for
    a client's connection, server to client for a server's (the proxy's
    connection with a client). Feed :meth:`log_event` every event; it keeps
    counts only, whatever the length of the connection.
    """

    def __init__(self, sent: Direction, *, ipv6: bool = False) -> None:
        self.sent = sent
        self.ipv6 = ipv6
        self.counts = {direction: QuicCounts() for direction in Direction}
        #: Frames of logged packets whose size could not be worked out, so their PADDING bytes were not counted.
        self.unsized_frames = 0
        #: A received packet whose frames are logged after its event (aioquic fills them in as it reads them).
        self._pending: tuple[Direction, Mapping[str, Any]] | None = None

    def log_event(self, *, category: str, event: str, data: Mapping[str, Any]) -> None:
        if category != "transport" or event not in _COUNTED:
            return  # events logged while a received packet's frames are read (HTTP/3's among them) settle nothing
        self._settle()
        if event in ("datagrams_sent", "datagrams_received"):
            direction = self.sent if event == "datagrams_sent" else self.sent.opposite
            counts = self.counts[direction]
            for datagram in data.get("raw", ()):
                counts.datagrams += 1
                counts.datagram_bytes += int(datagram.get("payload_length", 0))
        elif event == "packet_sent":
            self._packet(self.sent, data)
        elif event == "packet_received":
            self._pending = (self.sent.opposite, data)

    def _settle(self) -> None:
        if self._pending is not None:
            direction, data = self._pending
            self._pending = None
            self._packet(direction, data)

    def _packet(self, direction: Direction, data: Mapping[str, Any]) -> None:
        counts = self.counts[direction]
        length = int(data.get("raw", {}).get("length", 0))
        frames: Sequence[Mapping[str, Any]] = data.get("frames") or ()
        header = header_size(data.get("header", {}))
        counts.packets += 1
        counts.packet_bytes += length
        counts.header_bytes += header
        kinds = [str(frame.get("frame_type")) for frame in frames]
        for kind in kinds:
            counts.frames[kind] = counts.frames.get(kind, 0) + 1
        if kinds and set(kinds) <= ACK_ONLY_FRAMES:
            counts.ack_only_packets += 1
        counts.crypto_bytes += sum(
            int(frame.get("length", 0)) for frame in frames if frame.get("frame_type") == "crypto"
        )
        if "padding" in kinds:
            sizes = [frame_size(frame) for frame in frames if frame.get("frame_type") != "padding"]
            if None in sizes:
                self.unsized_frames += sizes.count(None)
            else:
                counts.padding_bytes += max(0, length - header - AEAD_TAG - sum(size for size in sizes if size))

    def figures(self) -> TransportLayer:
        """The connection's figures so far, as a capture records them (IP and UDP
        headers from the datagrams' count: exact in number, estimated in size)."""
        self._settle()
        return TransportLayer(
            *(
                LayerFigures(
                    quic_packets=self.counts[direction].packets,
                    quic_packet_bytes=self.counts[direction].datagram_bytes,
                    quic_ack_only_packets=self.counts[direction].ack_only_packets,
                    quic_padding_bytes=self.counts[direction].padding_bytes,
                    ip_header_bytes=udp_header_bytes(self.counts[direction].datagrams, ipv6=self.ipv6),
                    ip_header_bytes_estimated=True,
                )
                for direction in Direction
            )
        )


class QuicPacketTracer(QuicLogger):
    """The quic logger that makes a QUIC connection report to a :class:`QuicPacketTally`.

    Put it in the configuration of the connection to count, before the
    connection is made: ``QuicConfiguration(..., quic_logger=tracer)``, or
    ``configuration.quic_logger = tracer``; or :meth:`attach` it to a connection
    just made. In the proxy that is the client leg's connection (the one
    mitmproxy's client QUIC layer makes with the client, as a server), so that
    ``sent`` is server to client; the relay hands the tracer to the addon as the
    live connection's leg counter (:class:`~inspector.transport_layer.LegCounter`). aioquic
    calls :meth:`start_trace` as it makes the connection; from then on
    :attr:`tally` counts it, and :meth:`figures` gives what a "transport layer"
    event records (:func:`~inspector.capture.transport_layer_event`): at most
    once a second while the connection lives and once as it closes. One tracer
    counts one connection: a configuration that makes several needs one each.

    ``ipv6`` says whether the peer was reached over IPv6, for the size of the IP headers.
    """

    def __init__(self, *, ipv6: bool = False) -> None:
        super().__init__()
        self.ipv6 = ipv6
        self.tally: QuicPacketTally | None = None

    def start_trace(self, is_client: bool, odcid: bytes) -> QuicLoggerTrace:
        self.tally = QuicPacketTally(
            Direction.CLIENT_TO_SERVER if is_client else Direction.SERVER_TO_CLIENT, ipv6=self.ipv6
        )
        return _TallyTrace(self.tally, is_client=is_client, odcid=odcid)

    def end_trace(self, trace: QuicLoggerTrace) -> None:
        return None

    def attach(self, connection: QuicConnection) -> None:
        """Count a connection made without this tracer in its configuration, as
        mitmproxy's QUIC layers make theirs (``QuicLayer.start_tls`` builds the
        configuration and the connection together): call it right after the
        connection is made, before it reads or sends a datagram (in a subclass of
        mitmproxy's ``ClientQuicLayer``, after ``start_tls``). It becomes the
        configuration's logger too, which aioquic ends the trace through, so the
        configuration must be the connection's own (mitmproxy's are). aioquic 1.2
        keeps a connection's trace in ``_quic_logger``; the dependency's bounds
        keep that version."""
        connection.configuration.quic_logger = self
        connection._quic_logger = self.start_trace(
            is_client=connection.configuration.is_client, odcid=connection.original_destination_connection_id
        )

    def figures(self, *, closed: bool = False) -> TransportLayer | None:
        """The connection's figures so far (None before the connection was made); every
        datagram is counted as it goes, so closing adds nothing."""
        return self.tally.figures() if self.tally is not None else None


class _TallyTrace(QuicLoggerTrace):
    """aioquic's trace, describing frames as it does, with every event counted rather than kept."""

    def __init__(self, tally: QuicPacketTally, *, is_client: bool, odcid: bytes) -> None:
        super().__init__(is_client=is_client, odcid=odcid)
        self._tally = tally

    def log_event(self, *, category: str, event: str, data: dict[str, Any]) -> None:
        self._tally.log_event(category=category, event=event, data=data)
