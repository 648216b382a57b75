"""QUIC relayed raw: each stream's bytes and each DATAGRAM payload, unchanged, recorded.

mitmproxy terminates QUIC on both legs (its aioquic) and, in raw mode, hands
each QUIC stream to a layer of its own and the DATAGRAM frames to another; its
HTTP/3 layer would rewrite the requests and refuses extended CONNECT (RFC 9220
WebSocket, WebTransport). So a QUIC connection is relayed as
``ServerQuicLayer / ClientQuicLayer / QuicRelay``, with a
:class:`QuicStreamRelay` under each stream and a :class:`QuicDatagramRelay` for
the DATAGRAM frames: HTTP/3, its control and QPACK streams, WebTransport
streams and HTTP datagrams pass as opaque bytes, each recorded as it is read.

:class:`QuicRelay` is mitmproxy's ``RawQuicLayer`` with two faults of
mitmproxy 12.3.1 mended:

* a STOP_SENDING frame from either side is relayed to the other side (mitmproxy
  stops the whole connection with an AssertionError);
* every stream has the same id on both legs (mitmproxy numbers the other leg's
  streams in the order they first carry data, so a stream opened out of order
  gets another id, and the ids HTTP/3 names in-band, a WebTransport session's in
  its streams' headers and an HTTP datagram's quarter stream id, would name
  another stream).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aioquic.quic.connection import QuicErrorCode, stream_is_client_initiated
from aioquic.quic.packet import QuicFrameType
from mitmproxy.connection import Client, Connection, ConnectionState
from mitmproxy.proxy import events, layer, layers
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.quic import (
    CloseQuicConnection,
    QuicConnectionClosed,
    QuicStreamDataReceived,
    QuicStreamEvent,
    QuicStreamLayer,
    QuicStreamReset,
    QuicStreamStopSending,
    RawQuicLayer,
    ResetQuicStream,
    SendQuicStreamData,
    StopSendingQuicStream,
    error_code_to_str,
)
from mitmproxy.proxy.layers.quic._stream_layers import is_success_error_code

from .capture import DatagramChunk, Record, StreamChunk, StreamEnded
from .quic_packets import QuicPacketTracer
from .wire import Direction

#: aioquic's reason for a connection it closed after its idle timeout.
_IDLE_TIMEOUT = "Idle timeout"


class QuicRecorder:
    """Where one relayed QUIC connection's records go: the addon's capture and analysis.

    ``record`` takes each record of the connection (``connection_id`` numbers
    them); ``closed`` is told once how the connection ended, and nothing is
    recorded after it.
    """

    def __init__(self, connection_id: int, record: Callable[[Record], None], closed: Callable[[str], None]) -> None:
        self.connection_id = connection_id
        self._record = record
        self._closed = closed
        self.ended = False

    def stream_data(self, direction: Direction, stream_id: int, data: bytes) -> None:
        if not self.ended:
            self._record(StreamChunk(self.connection_id, time.time(), direction, stream_id, data))

    def stream_ended(self, direction: Direction, stream_id: int, error_code: int | None) -> None:
        """One direction of a stream ended: finished by its sender (``error_code`` None) or reset."""
        if not self.ended:
            reset = error_code is not None
            self._record(StreamEnded(self.connection_id, time.time(), direction, stream_id, reset, error_code))

    def datagram(self, direction: Direction, data: bytes) -> None:
        if not self.ended:
            self._record(DatagramChunk(self.connection_id, time.time(), direction, data))

    def close(self, reason: str) -> None:
        if not self.ended:
            self.ended = True
            self._closed(reason)


@dataclass(eq=False)
class QuicStreamEnd(events.ConnectionClosed):
    """One side of a relayed stream stopped sending: a FIN, or a reset with its error code.

    A :class:`~mitmproxy.proxy.events.ConnectionClosed` to the layers under a
    stream, which close the other leg's half as for any end; a plain one is an
    end the sender did not send (the QUIC connection went).
    """

    error_code: int | None = None


class QuicRelay(RawQuicLayer):
    """mitmproxy's raw QUIC layer (streams and datagrams to layers chosen by
    ``next_layer``), with stream ids kept and STOP_SENDING relayed (see the
    module's docstring), recording how the connection ends."""

    def __init__(self, context: Context, recorder: QuicRecorder) -> None:
        super().__init__(context, force_raw=False)
        self.recorder = recorder
        #: A stream the server opens, while mitmproxy asks for the client leg's id of it.
        self._server_opened: int | None = None
        #: The stream end being handed to a stream's layers: (stream id, from the client, error code).
        self._ending: tuple[int, bool, int | None] | None = None
        #: Resets to pass on, by the leg and stream they go to: the error code each came with.
        self._resets: dict[tuple[Connection, int], int] = {}

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        context = self.context
        if isinstance(event, events.Start) and context.server.error:
            yield from self._upstream_failed(context.server.error)
            return
        if isinstance(event, QuicStreamEvent) and (
            event.connection is context.client or event.connection is context.server
        ):
            from_client = event.connection is context.client
            if isinstance(event, QuicStreamStopSending):
                yield from self._stop_sending(event, from_client)
                return
            if not from_client and event.stream_id not in self.server_stream_ids:
                self._server_opened = event.stream_id
            if isinstance(event, QuicStreamReset):
                self._ending = (event.stream_id, from_client, event.error_code)
                self._resets[(context.server if from_client else context.client, event.stream_id)] = event.error_code
            elif isinstance(event, QuicStreamDataReceived) and event.end_stream:
                self._ending = (event.stream_id, from_client, None)
            try:
                yield from super()._handle_event(event)
            finally:
                self._server_opened = self._ending = None
            return
        if isinstance(event, QuicConnectionClosed) and (
            event.connection is context.client or event.connection is context.server
        ):
            self.recorder.close(_close_reason(event, "client" if event.connection is context.client else "server"))
        yield from super()._handle_event(event)

    def _upstream_failed(self, error: str) -> layer.CommandGenerator[None]:
        """The upstream's QUIC handshake failed (mitmproxy goes on with the client's all the
        same): the client's connection is closed with the reason, which is recorded."""
        reason = f"QUIC handshake with the upstream failed ({error})"
        self.recorder.close(f"error: {reason}")
        self._handle_event = self.done  # type: ignore[assignment]
        # A transport error (it names a frame type; PADDING names none in particular), not HTTP/3's.
        refused = QuicErrorCode.CONNECTION_REFUSED
        yield CloseQuicConnection(self.context.client, refused, QuicFrameType.PADDING, reason)

    def _stop_sending(self, event: QuicStreamStopSending, from_client: bool) -> layer.CommandGenerator[None]:
        """Relay a STOP_SENDING frame to the other side, whose stream has the same id.

        The proxy's own QUIC stack answers the frame at once with a reset of
        that stream toward its sender (aioquic does so), so the stream's layers
        must send nothing more that way: whatever the other side sends until it
        has stopped goes nowhere.
        """
        stream_layer = (self.client_stream_ids if from_client else self.server_stream_ids).get(event.stream_id)
        if stream_layer is not None:
            stopped = stream_layer.client if from_client else stream_layer.server
            stopped.state &= ~ConnectionState.CAN_WRITE
        other = self.context.server if from_client else self.context.client
        if other.connected:
            yield StopSendingQuicStream(other, event.stream_id, event.error_code)

    def event_to_child(self, child_layer: layer.Layer, event: events.Event) -> layer.CommandGenerator[None]:
        """As mitmproxy's, and a reset stream's end goes on as a reset with its code (mitmproxy
        does so only when the end comes at once, not when the stream's layers were still being chosen)."""
        if isinstance(child_layer, QuicStreamLayer) and isinstance(event, events.Start):
            self._open_with_the_same_id(child_layer)
        for command in super().event_to_child(child_layer, event):
            if isinstance(command, SendQuicStreamData) and command.end_stream and not command.data:
                code = self._resets.pop((command.connection, command.stream_id), None)
                if code is not None:
                    yield ResetQuicStream(command.connection, command.stream_id, code)
                    continue
            yield command

    def _open_with_the_same_id(self, stream_layer: QuicStreamLayer) -> None:
        """Before a new stream's layers start: a client's stream has its server leg
        opened with its own id (the layers then ask for no other), and the
        choice of layers is asked for at once, so that a stream that ends
        before it carries a byte reaches the other side too."""
        stream_id = stream_layer.stream_id(client=True)
        assert stream_id is not None
        if stream_layer.stream_id(client=False) is None and stream_is_client_initiated(stream_id):
            stream_layer.open_server_stream(stream_id)
            self.server_stream_ids[stream_id] = stream_layer
        next_layer = stream_layer.child_layer
        if isinstance(next_layer, layer.NextLayer) and next_layer.layer is None:
            next_layer._ask_on_start = True

    def get_next_available_stream_id(self, is_client: bool, is_unidirectional: bool = False) -> int:
        """The client leg's id of a stream the server opened: the server's own."""
        if not is_client and self._server_opened is not None:
            return self._server_opened
        return super().get_next_available_stream_id(is_client, is_unidirectional)

    def close_stream_layer(self, stream_layer: QuicStreamLayer, client: bool) -> layer.CommandGenerator[None]:
        ending = self._ending
        if ending is None or ending[:2] != (stream_layer.stream_id(client=True), client):
            yield from super().close_stream_layer(stream_layer, client)
            return
        connection = stream_layer.client if client else stream_layer.server
        connection.state &= ~ConnectionState.CAN_READ
        if connection.timestamp_end is None:
            connection.timestamp_end = time.time()
            yield from self.event_to_child(stream_layer, QuicStreamEnd(connection, ending[2]))


class QuicStreamRelay(layers.TCPLayer):
    """One QUIC stream, relayed as mitmproxy relays TCP (ends as half-closes), each
    read recorded under the stream's id, and each end as a FIN or a reset."""

    def __init__(self, context: Context, recorder: QuicRecorder, stream_id: int) -> None:
        super().__init__(context, ignore=True)
        self._recorder = recorder
        self.stream_id = stream_id

    def handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived) and event.data:
            self._recorder.stream_data(_direction(self.context, event.connection), self.stream_id, event.data)
        elif isinstance(event, QuicStreamEnd):
            self._recorder.stream_ended(_direction(self.context, event.connection), self.stream_id, event.error_code)
        yield from super().handle_event(event)


class QuicDatagramRelay(layers.UDPLayer):
    """The connection's DATAGRAM frames, relayed one by one, each payload recorded."""

    def __init__(self, context: Context, recorder: QuicRecorder) -> None:
        super().__init__(context, ignore=True)
        self._recorder = recorder

    def handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived):
            self._recorder.datagram(_direction(self.context, event.connection), event.data)
        yield from super().handle_event(event)


class CountedClientQuicLayer(layers.ClientQuicLayer):
    """mitmproxy's QUIC layer with the client, whose packets ``tracer`` counts:
    the client's leg below its streams (see :mod:`inspector.quic_packets`)."""

    def __init__(self, context: Context, tracer: QuicPacketTracer) -> None:
        super().__init__(context)
        self.tracer = tracer

    def start_tls(self, original_destination_connection_id: bytes | None) -> layer.CommandGenerator[None]:
        yield from super().start_tls(original_destination_connection_id)
        if self.quic is not None:
            # Made, and not yet given a datagram: counted from its first packet.
            self.tracer.attach(self.quic)


def quic_relay_stack(context: Context, recorder: QuicRecorder, tracer: QuicPacketTracer) -> layer.Layer:
    """The layers of a QUIC connection relayed raw: QUIC on both legs (the client's
    counted by ``tracer``) and :class:`QuicRelay`."""
    server = layers.ServerQuicLayer(context)
    client = server.child_layer = CountedClientQuicLayer(context, tracer)
    client.child_layer = QuicRelay(context, recorder)
    return server


def relay_for(context: Context, stack: list[layer.Layer]) -> layer.Layer | None:
    """The layer for a stream or for the DATAGRAM frames of a relayed QUIC connection,
    or None if ``stack`` (the layers above a ``next_layer`` decision) ends in neither."""
    parent = stack[-1] if stack else None
    if isinstance(parent, QuicStreamLayer) and len(stack) >= 2 and isinstance(stack[-2], QuicRelay):
        stream_id = parent.stream_id(client=True)
        assert stream_id is not None
        return QuicStreamRelay(context, stack[-2].recorder, stream_id)
    if isinstance(parent, QuicRelay):
        return QuicDatagramRelay(context, parent.recorder)
    return None


def _direction(context: Context, connection: object) -> Direction:
    return Direction.CLIENT_TO_SERVER if connection is context.client else Direction.SERVER_TO_CLIENT


def _close_reason(event: QuicConnectionClosed, side: str) -> str:
    """A :class:`~inspector.capture.ConnectionClosed` reason for the first side's close of a QUIC connection."""
    if event.reason_phrase == _IDLE_TIMEOUT:
        return "timed out"
    if is_success_error_code(event.error_code):
        return f"{side} closed"
    phrase = f": {event.reason_phrase}" if event.reason_phrase else ""
    return f"error: {side} closed the connection with {error_code_to_str(event.error_code)}{phrase}"


def is_quic_client(client: Client) -> bool:
    """Whether a client of the proxy speaks QUIC (the proxy's only UDP clients)."""
    return client.transport_protocol == "udp"
