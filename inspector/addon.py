"""The mitmproxy addon: raw bytes after TLS in, capture records and connection records out.

mitmproxy's HTTP and WebSocket layers rewrite what they relay, so this addon
lets mitmproxy set up each connection (proxy mode, TLS on either side) and
then puts a plain TCP relay where the HTTP layer would be. Every socket read
is recorded and, before it is forwarded unchanged, handed as a capture
record to the analysis: in this process (inline) or in an analyser process
(see :mod:`inspector.analyser_process`), which keeps analysis off the
relay's path. A reverse proxy to an HTTPS upstream also takes QUIC on its
UDP port: QUIC on both legs, each stream and each DATAGRAM frame relayed raw
and recorded (see :mod:`inspector.quic_relay`).
Where the proxy terminates the client's TLS, the records the
client sent and received are counted too (:class:`TappedClientTLSLayer`) and recorded
as "transport layer" events, at most once a second and as the connection closes.
Under network conditions (options ``rtinspect_network``, ``rtinspect_rtt``,
``rtinspect_jitter``, ``rtinspect_down``, ``rtinspect_up``; see
:mod:`inspector.network`) the relay holds each read after recording it and
forwards it later (:class:`ShapedTCPLayer`); without them it adds nothing.

Load it with ``mitmdump -s "$(rtinspect addon-path)"`` or add it to a master
after mitmproxy's default addons.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import ctx, exceptions, http, tcp
from mitmproxy.addonmanager import Loader
from mitmproxy.connection import Client, ConnectionState, Server
from mitmproxy.proxy import commands, events, layer, layers
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http import HTTPMode
from mitmproxy.proxy.layers.modes import ReverseProxy
from mitmproxy.proxy.layers.tcp import TcpEndHook, TcpMessageInjected
from mitmproxy.proxy.mode_specs import ReverseMode
from mitmproxy.proxy.server_hooks import ServerConnectionHookData
from mitmproxy.proxy.utils import expect
from mitmproxy.tls import ClientHelloData, TlsData

from inspector.analyser import AnalyserSettings, InProcessAnalysis
from inspector.analyser_process import AnalyserProcess
from inspector.capture import (
    QUIC,
    TCP,
    CaptureWriter,
    ConnectionClosed,
    ConnectionOpened,
    DataChunk,
    Event,
    Record,
    encode_record,
    transport_layer_event,
)
from inspector.mitmproxy_connections import CLOSE_REASON_KEY, address_text, connection_opened
from inspector.network import NETWORK_EVENT, Link, NetworkConditions, NetworkError, links, network_conditions
from inspector.quic_packets import QuicPacketTracer
from inspector.quic_relay import QuicRecorder, is_quic_client, quic_relay_stack, relay_for
from inspector.tls_records import TlsLeg
from inspector.transport_layer import LegCounter, TransportLayer, travels_over_ipv6
from inspector.wire import Direction

#: Where the records go to be analysed: this process, or an analyser process.
Analysis = InProcessAnalysis | AnalyserProcess

logger = logging.getLogger(__name__)

#: Seconds between flushes of the capture file.
FLUSH_INTERVAL = 1.0
#: The options that set network conditions.
_NETWORK_OPTION_NAMES = {setting: f"rtinspect_{setting}" for setting in ("rtt", "jitter", "down", "up")}
_NETWORK_OPTION_NAMES["preset"] = "rtinspect_network"
_NETWORK_OPTIONS = frozenset(_NETWORK_OPTION_NAMES.values())

#: An option that may be unset: mitmproxy takes a union here, though its loader's signature says ``type``.
OPTIONAL_STR: Any = str | None


class InspectedTCPLayer(layers.TCPLayer):
    """mitmproxy's TCP relay, handing each read to ``relayed`` before it is
    forwarded and noting in the flow's metadata how the connection ended.

    Reads go to ``relayed`` directly rather than through mitmproxy's
    ``tcp_message`` hook: a hook costs an asyncio task and two passes over
    every loaded addon per read, which was most of the proxy's time under
    load. Other addons therefore neither see nor change the relayed bytes.

    The reason is taken from the first side to stop reading: "client closed"
    or "server closed" for an end of stream, "client reset" or "server reset"
    when that side reset the connection (reading it failed with a reset, or
    mitmproxy stopped it because sending to it failed), and "timed out" when
    mitmproxy's idle timeout cut the client off.
    """

    def __init__(self, context: Context, relayed: Callable[[tcp.TCPFlow, tcp.TCPMessage], None]) -> None:
        super().__init__(context)
        self._relayed = relayed
        self._last_activity = time.time()

    def handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if self.flow is not None:
            if isinstance(event, events.DataReceived):
                self._last_activity = time.time()
            elif isinstance(event, events.ConnectionClosed) and CLOSE_REASON_KEY not in self.flow.metadata:
                self.flow.metadata[CLOSE_REASON_KEY] = self._close_reason(event.connection)  # type: ignore[arg-type]
        yield from super().handle_event(event)

    @expect(events.DataReceived, events.ConnectionClosed, TcpMessageInjected)
    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.DataReceived) and self.flow is not None:
            from_client = event.connection is self.context.client
            self._relayed(self.flow, tcp.TCPMessage(from_client, event.data))
            yield commands.SendData(self.context.server if from_client else self.context.client, event.data)
        else:
            yield from super().relay_messages(event)

    def _close_reason(self, connection: Client | Server) -> str:
        side = "client" if connection is self.context.client else "server"
        if connection.state is not ConnectionState.CLOSED:
            return f"{side} reset" if _reading_was_reset(self.context.client, connection) else f"{side} closed"
        idle = time.time() - self._last_activity
        if side == "client" and idle >= self.context.options.tcp_timeout - 1:
            return "timed out"
        return f"{side} reset"


class ForwardedHttpTap(layer.Layer):
    """A forward proxy's plain-HTTP connection, counted on the client's leg.

    mitmproxy's HTTP layer serves absolute-form requests (``GET http://host/path``):
    it connects to each request's server and sends it the request in origin form,
    its head written again. This layer wraps that HTTP layer and hands on, before
    they are relayed, the bytes the client sent and the bytes the proxy sent the
    client: the client's leg, as the client saw it. A CONNECT request ends the
    tap, since the tunnel after it is relayed (and recorded) as raw TCP.
    """

    def __init__(self, context: Context, child: layer.Layer, tapped: Callable[[Context, bool, bytes], None]) -> None:
        super().__init__(context)
        context.layers.remove(self)  # not a protocol layer: mitmproxy's choices must not see it
        self.child_layer = child
        self._tapped = tapped
        self.stopped = False

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        client = self.context.client
        if isinstance(event, events.DataReceived) and event.connection is client and not self.stopped:
            if event.data.startswith(b"CONNECT "):
                self.stopped = True
            else:
                self._tapped(self.context, True, event.data)
        for command in self.child_layer.handle_event(event):
            if isinstance(command, commands.SendData) and command.connection is client and not self.stopped:
                self._tapped(self.context, False, command.data)
            yield command


class TappedClientTLSLayer(layers.ClientTLSLayer):
    """mitmproxy's client TLS layer, counting what travelled on the client's leg
    below the byte stream: the raw bytes the client sent before this layer
    decrypts them, and the raw bytes it sends the client (its handshake records
    included), both fed to a :class:`~inspector.tls_records.TlsLeg`.

    The layer mitmproxy chose is made one with :meth:`tap` rather than wrapped:
    mitmproxy's server TLS layer waits for the client's ALPN offer only when
    its child is a client TLS layer.
    """

    leg: TlsLeg

    @classmethod
    def tap(cls, chosen: layers.ClientTLSLayer, leg: TlsLeg) -> None:
        chosen.__class__ = cls
        assert isinstance(chosen, cls)
        chosen.leg = leg

    def handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        # Every event passes here once (events held while the layer waits are replayed past it).
        client = self.context.client
        if isinstance(event, events.DataReceived) and event.connection is client:
            self.leg.feed(Direction.CLIENT_TO_SERVER, event.data, time.monotonic())
        for command in super().handle_event(event):
            if isinstance(command, commands.SendData) and command.connection is client:
                self.leg.feed(Direction.SERVER_TO_CLIENT, command.data, time.monotonic())
            yield command


#: Bytes one direction of a shaped connection may hold before the proxy stops reading from
#: that direction's sender; it reads again once they are down to half. Like a TCP window, it
#: bounds memory, and a direction's throughput to this many bytes per one-way delay.
HELD_LIMIT = 1024 * 1024
#: Seconds early a held piece may be forwarded, so that a timer firing a little early needs no other.
_EARLY = 0.001


@dataclass(slots=True)
class _Held:
    """One direction of a shaped connection: its link and what it holds, in order."""

    source: Client | Server
    target: Client | Server
    link: Link
    #: (when to forward, bytes), or (when, None) for the end of the stream.
    queue: deque[tuple[float, memoryview | None]]
    size: int = 0
    reading_paused: bool = False
    ended: bool = False


class ShapedTCPLayer(InspectedTCPLayer):
    """The relay under network conditions (see :mod:`inspector.network`).

    Each read is handed to ``relayed`` when it arrives, as without conditions,
    and then held: each direction's :class:`~inspector.network.Link` says when
    each piece of it may go, and mitmproxy's timers (``RequestWakeup``, one
    outstanding per due time) wake the layer to forward what is due. The end
    of a stream (a half-close) is held the same way, behind the bytes before
    it. Nothing blocks the event loop and no byte changes or moves.

    A direction holding more than :data:`HELD_LIMIT` bytes asks ``pause`` to
    stop reading from its sender until it is down to half. When a side is
    gone altogether (a reset, a timeout, an error), holding bytes has no point:
    what is held is forwarded at once.
    """

    def __init__(
        self,
        context: Context,
        relayed: Callable[[tcp.TCPFlow, tcp.TCPMessage], None],
        conditions: NetworkConditions,
        pause: Callable[[Client | Server, bool], None],
        rng: random.Random | None = None,
    ) -> None:
        super().__init__(context, relayed)
        up, down = links(conditions, rng)
        self._up = _Held(context.client, context.server, up, deque())
        self._down = _Held(context.server, context.client, down, deque())
        self._pause_reading = pause
        #: Timers asked for and not yet fired, with when each is due.
        self._timers: dict[commands.RequestWakeup, float] = {}
        self._hurry = False

    @expect(events.DataReceived, events.ConnectionClosed, TcpMessageInjected, events.Wakeup)
    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        now = time.monotonic()
        if isinstance(event, events.Wakeup):
            self._timers.pop(event.command, None)
        elif isinstance(event, events.DataReceived):
            from_client = event.connection is self.context.client
            if self.flow is not None:
                self._relayed(self.flow, tcp.TCPMessage(from_client, event.data))
            self._hold(self._up if from_client else self._down, now, event.data)
        elif isinstance(event, TcpMessageInjected):
            self._hold(self._up if event.message.from_client else self._down, now, event.message.content)
        elif isinstance(event, events.ConnectionClosed):
            held = self._up if event.connection is self.context.client else self._down
            if event.connection.state is ConnectionState.CLOSED:
                self._hurry = True
            held.queue.append((held.link.end(now), None))
        yield from self._forward(now)

    @expect(events.DataReceived, events.ConnectionClosed, TcpMessageInjected, events.Wakeup)
    def done(self, _: events.Event) -> layer.CommandGenerator[None]:
        yield from ()

    def _hold(self, held: _Held, now: float, data: bytes) -> None:
        view = memoryview(data)
        offset = 0
        for when, length in held.link.send(now, len(data)):
            held.queue.append((when, view[offset : offset + length]))
            offset += length
        held.size += len(data)
        if held.size > HELD_LIMIT:
            # Asked again on every read over the limit: asyncio's StreamReader, which mitmproxy
            # reads with, resumes reading on its own once its buffer drains.
            held.reading_paused = True
            self._pause_reading(held.source, True)

    def _forward(self, now: float) -> layer.CommandGenerator[None]:
        """Forward what is due, then ask for a timer for the next piece if none is due by then."""
        due = float("inf") if self._hurry else now + _EARLY
        for held in (self._up, self._down):
            queue = held.queue
            ready: list[memoryview] = []
            while queue and queue[0][0] <= due:
                data = queue.popleft()[1]
                if data is not None:
                    ready.append(data)
                    continue
                if ready:
                    yield from self._send(held, ready)
                    ready = []
                yield from self._end(held)
            if ready:
                yield from self._send(held, ready)
            if held.reading_paused and held.size <= HELD_LIMIT // 2:
                held.reading_paused = False
                self._pause_reading(held.source, False)
        pending = [held.queue[0][0] for held in (self._up, self._down) if held.queue]
        if pending:
            next_due = min(pending)
            if not any(at <= next_due + _EARLY for at in self._timers.values()):
                timer = commands.RequestWakeup(max(0.0, next_due - now))
                self._timers[timer] = next_due
                yield timer

    def _send(self, held: _Held, pieces: list[memoryview]) -> layer.CommandGenerator[None]:
        data = b"".join(pieces)
        held.size -= len(data)
        yield commands.SendData(held.target, data)

    def _end(self, held: _Held) -> layer.CommandGenerator[None]:
        """Forward the end of ``held``'s stream, as mitmproxy's relay does when a side
        closes: a half-close, or, once both streams have ended, the end of the relay."""
        held.ended = True
        if not (self._up.ended and self._down.ended):
            yield commands.CloseTcpConnection(held.target, half_close=True)
            return
        self._handle_event = self.done
        for connection in (self.context.server, self.context.client):
            if connection.state is not ConnectionState.CLOSED:
                yield commands.CloseConnection(connection)
        if self.flow is not None:
            yield TcpEndHook(self.flow)
            self.flow.live = False


def _reading_was_reset(client: Client, connection: Client | Server) -> bool:
    """Whether reading from ``connection`` ended with a TCP reset rather than an end of stream.

    mitmproxy ends its read loop the same way for both and keeps the difference
    only as the exception on the connection's stream reader, which it still
    holds while it reports the close.
    """
    proxyserver = ctx.master.addons.get("proxyserver")
    handler = proxyserver.connections.get(client.id) if proxyserver is not None else None
    transport = handler.transports.get(connection) if handler is not None else None
    reader = transport.reader if transport is not None else None
    return isinstance(reader, asyncio.StreamReader) and isinstance(reader.exception(), ConnectionResetError)


def _pause_reading(client: Client, connection: Client | Server, paused: bool) -> None:
    """Stop (or resume) reading from one of a client's connections; a connection
    that is gone, or not a socket mitmproxy reads with asyncio, is left alone."""
    proxyserver = ctx.master.addons.get("proxyserver")
    handler = proxyserver.connections.get(client.id) if proxyserver is not None else None
    transport = handler.transports.get(connection) if handler is not None else None
    socket_transport = getattr(transport.writer, "transport", None) if transport is not None else None
    if isinstance(socket_transport, asyncio.ReadTransport):
        if paused:
            socket_transport.pause_reading()
        else:
            socket_transport.resume_reading()


class PlaintextRefused(layer.Layer):
    """Closes a client connection that did not start with TLS."""

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self._closed = False

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if not self._closed:
            self._closed = True
            yield commands.CloseConnection(self.context.client)


class ClientSpeaksFirst(layer.Layer):
    """Holds what a reverse proxy's upstream sends until the client has sent its
    first bytes, then lets mitmproxy choose the layers as if the client had spoken first.

    mitmproxy connects to the upstream as soon as a client connects and chooses
    the layers on the first bytes from either side. An upstream that speaks first
    (an h2c server sends its SETTINGS at once) would have them chosen before the
    client's first bytes say whether it speaks TLS: a TLS client would be relayed
    raw, or refused by ``--listen-tls``; and a client that connects and leaves
    without a word (a readiness probe, a health check) would be relayed the
    greeting and recorded. An HTTP client always speaks first; a client that
    waited for the upstream's greeting would wait for ever.
    """

    def __init__(self, context: Context) -> None:
        super().__init__(context)
        self.context.layers.remove(self)  # invisible, like NextLayer: the choice is made as if it were not there
        self._held: list[events.Event] = []
        self._next: layer.NextLayer | None = None

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if self._next is not None:
            yield from self._next.handle_event(event)
            return
        client = self.context.client
        if isinstance(event, events.ConnectionClosed) and event.connection is client:
            yield commands.CloseConnection(client)  # as NextLayer does when the client leaves before a choice
            return
        if not (isinstance(event, events.DataReceived) and event.connection is client):
            self._held.append(event)
            return
        # The choice is made on the client's bytes: they go first, then what the upstream sent meanwhile
        # (NextLayer would choose again on each of the upstream's reads with no client bytes in sight).
        self._next = layer.NextLayer(self.context)
        start = [e for e in self._held if isinstance(e, events.Start)]
        rest = [e for e in self._held if not isinstance(e, events.Start)]
        self._held = []
        for past in (*start, event, *rest):
            yield from self._next.handle_event(past)


@dataclass(slots=True)
class _LiveConnection:
    connection_id: int
    client_id: str
    opened: ConnectionOpened | None = None
    transport: str = TCP
    #: What counts the client's leg below the byte streams (its TLS records, when the
    #: proxy terminated the client's TLS), and its figures last recorded.
    leg: LegCounter | None = None
    layer_recorded: TransportLayer | None = None


class RtInspect:
    """Relays raw TCP after TLS, records it to a capture and hands every record to the analysis.

    ``analysis`` runs in this process (:class:`~inspector.analyser.InProcessAnalysis`,
    the default) or in an analyser process (:class:`~inspector.analyser_process.AnalyserProcess`,
    set before traffic starts); either way it gets the same records the capture
    gets, and what the addon holds is its open connections' facts.
    """

    def __init__(self, analysis: Analysis | None = None) -> None:
        self.analysis: Analysis = analysis if analysis is not None else InProcessAnalysis(AnalyserSettings())
        self._writer: CaptureWriter | None = None
        self._live: dict[str, _LiveConnection] = {}
        #: Clients whose connection was handed over to the relay (or failed to reach the upstream), until they go.
        self._handed_over: set[str] = set()
        #: What clients refused for not starting with TLS sent first, until they go.
        self._refused: dict[str, bytes] = {}
        self._next_id = 1
        self._client_hello_at: dict[str, float] = {}
        #: A forward proxy's plain-HTTP connections, by client id (see ForwardedHttpTap).
        self._taps: dict[str, ForwardedHttpTap] = {}
        #: Clients' TLS legs (see TappedClientTLSLayer), by client id, until a relayed connection takes them.
        self._tls_legs: dict[str, TlsLeg] = {}
        self._flusher: asyncio.Task[None] | None = None
        self._stopped = False
        #: The network conditions each new connection is relayed under (None: relayed at once).
        self.network: NetworkConditions | None = None
        self._random = random.Random()

    # -- options

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "rtinspect_write",
            OPTIONAL_STR,
            None,
            "Write raw traffic to this capture file (.rtcap), flushed at least once a second.",
        )
        loader.add_option(
            "rtinspect_client_tls",
            bool,
            False,
            "Refuse clients of a reverse proxy that do not start with TLS.",
        )
        loader.add_option(
            "rtinspect_network",
            OPTIONAL_STR,
            None,
            "Network conditions to add, by name: slow-3g, 3g, 4g or transatlantic (rtinspect proxy --help has their figures).",
        )
        loader.add_option(
            "rtinspect_rtt",
            OPTIONAL_STR,
            None,
            "Round-trip time to add, in milliseconds, split evenly between the directions (replaces the preset's).",
        )
        loader.add_option(
            "rtinspect_jitter",
            OPTIONAL_STR,
            None,
            "Random variation of each direction's added delay, in milliseconds (bytes are never reordered).",
        )
        loader.add_option(
            "rtinspect_down",
            OPTIONAL_STR,
            None,
            "Bandwidth from server to client per connection, e.g. 1.6mbit, 500kbit, 2mbyte or unlimited.",
        )
        loader.add_option(
            "rtinspect_up",
            OPTIONAL_STR,
            None,
            "Bandwidth from client to server per connection, e.g. 750kbit.",
        )

    def configure(self, updated: set[str]) -> None:
        if updated & _NETWORK_OPTIONS:
            options = ctx.options
            try:
                self.network = network_conditions(
                    options.rtinspect_network or None,
                    rtt=options.rtinspect_rtt or None,
                    jitter=options.rtinspect_jitter or None,
                    down=options.rtinspect_down or None,
                    up=options.rtinspect_up or None,
                    names=_NETWORK_OPTION_NAMES,
                )
            except NetworkError as e:
                raise exceptions.OptionsError(str(e)) from None
            if "rtinspect_write" not in updated:
                self._record_network()
        if "rtinspect_write" in updated:
            self._open_capture(ctx.options.rtinspect_write)

    def _open_capture(self, path: str | None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if not path:
            return
        path = os.path.expanduser(path)
        try:
            self._writer = CaptureWriter(path)
        except OSError as e:
            raise exceptions.OptionsError(f"cannot write capture {path}: {e.strerror or e}") from None
        self._record_network()
        for live in self._live.values():
            if live.opened is not None:
                self._write(live.opened)

    def _record_network(self) -> None:
        """Note in the capture the network conditions new connections get."""
        if self.network is not None:
            self._write(Event(0, time.time(), NETWORK_EVENT, self.network.to_json()))

    # -- lifecycle

    def running(self) -> None:
        if any(mode == "regular" or mode.startswith("regular@") for mode in ctx.options.mode):
            logger.warning(
                "forward proxy: CONNECT tunnels are inspected byte for byte; plain-HTTP requests "
                "(GET http://...) are counted on the client's leg, and mitmproxy's HTTP layer rewrites "
                "them (origin form, heads written again) on the way to the server"
            )
        self._flusher = asyncio.get_running_loop().create_task(self._flush_periodically())

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            now = time.time()
            for live in list(self._live.values()):
                self._record_layer(live, now)
            if self._writer is not None:
                try:
                    self._writer.flush()
                except OSError as e:
                    self._capture_failed(e)

    def done(self) -> None:
        now = time.time()
        for flow_id in list(self._live):
            self._finish(flow_id, now, "proxy stopped")
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        if self._writer is not None:
            try:
                self._writer.close()
            except OSError as e:
                self._capture_failed(e)
        self._writer = None
        self._stopped = True

    # -- what the runner reads

    @property
    def open_connections(self) -> int:
        return len(self._live)

    # -- layers

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        context = nextlayer.context
        if quic := self._quic_layer(nextlayer):
            _discard(nextlayer.layer)  # mitmproxy's own choice, if its addon has made one
            nextlayer.layer = quic
            return
        builtin = ctx.master.addons.get("nextlayer")
        if builtin is not None:
            builtin.next_layer(nextlayer)
        if _upstream_spoke_first(nextlayer):
            _discard(nextlayer.layer)
            nextlayer.layer = ClientSpeaksFirst(context)
            return
        parent: layer.Layer | None = None
        child = nextlayer.layer
        refuse_plaintext = ctx.options.rtinspect_client_tls and isinstance(context.layers[0], ReverseProxy)
        while child is not None:
            if isinstance(child, layers.ClientTLSLayer):
                refuse_plaintext = False
            if isinstance(child, layers.HttpLayer) and child.mode is HTTPMode.regular:
                tap = self._taps[context.client.id] = ForwardedHttpTap(context, child, self._forwarded)
                if parent is None:
                    nextlayer.layer = tap
                else:
                    parent.child_layer = tap  # type: ignore[attr-defined]
                break
            if _is_relay_point(child):
                if context.client.id in self._taps:
                    self._taps[context.client.id].stopped = True  # a CONNECT tunnel: relayed below
                context.layers.remove(child)
                replacement = self._relay(context)
                if parent is None:
                    nextlayer.layer = replacement
                else:
                    parent.child_layer = replacement  # type: ignore[attr-defined]
                break
            parent, child = child, getattr(child, "child_layer", None)
        self._tap_client_tls(nextlayer)
        if refuse_plaintext and nextlayer.layer is not None:
            logger.warning(f"refused {address_text(context.client.peername)}: it did not start with TLS")
            nextlayer.layer = PlaintextRefused(context)
            self._refused[context.client.id] = bytes(nextlayer.data_client())

    def _quic_layer(self, nextlayer: layer.NextLayer) -> layer.Layer | None:
        """The layers for a QUIC client (None: mitmproxy's choice stands).

        A reverse proxy's HTTPS upstream gets the QUIC connection relayed raw
        (mitmproxy would put its HTTP/3 layer there, which rewrites requests and
        refuses WebSocket and WebTransport); each of its streams and its
        DATAGRAM frames then get the relay's own layers.
        """
        context = nextlayer.context
        top = context.layers[0] if context.layers else None
        if isinstance(top, ReverseProxy) and top.child_layer is nextlayer:
            mode = context.client.proxy_mode
            if is_quic_client(context.client) and isinstance(mode, ReverseMode) and mode.scheme == "https":
                if self._stopped:
                    return None
                tracer = QuicPacketTracer(ipv6=_over_ipv6(context.client))
                return quic_relay_stack(context, self._quic_recorder(context, tracer), tracer)
            return None
        chosen = _layers_of(nextlayer.layer)
        return relay_for(context, [stacked for stacked in context.layers if stacked not in chosen])

    def _quic_recorder(self, context: Context, tracer: QuicPacketTracer) -> QuicRecorder:
        """Where a new QUIC connection's records go: one connection of the capture, opened
        with its first record (both legs' QUIC handshakes are done by then), with the
        figures ``tracer`` counts of the client's packets."""
        client, server = context.client, context.server
        key = _quic_key(client)
        live = self._live[key] = _LiveConnection(self._next_id, client.id, transport=QUIC, leg=tracer)
        self._next_id += 1
        self._handed_over.add(client.id)

        def record(record: Record) -> None:
            self._start(live, client, server)
            self._record(record)

        def closed(reason: str) -> None:
            if self._live.get(key) is live:
                self._start(live, client, server)
                self._finish(key, time.time(), reason)

        return QuicRecorder(live.connection_id, record, closed)

    def _tap_client_tls(self, nextlayer: layer.NextLayer) -> None:
        """Count the client's TLS records, if a client TLS layer was chosen (see :class:`TappedClientTLSLayer`)."""
        context = nextlayer.context
        if context.client.transport_protocol != "tcp" or context.client.id in self._tls_legs:
            return
        child = nextlayer.layer
        while child is not None:
            if type(child) is layers.ClientTLSLayer:
                leg = self._tls_legs[context.client.id] = TlsLeg(ipv6=_over_ipv6(context.client))
                TappedClientTLSLayer.tap(child, leg)
                return
            child = getattr(child, "child_layer", None)

    def _relay(self, context: Context) -> InspectedTCPLayer:
        """The relay layer for a new connection: shaped only under network conditions."""
        network = self.network
        if network is None or not network.shapes:
            return InspectedTCPLayer(context, self.relayed)
        client = context.client
        return ShapedTCPLayer(
            context,
            self.relayed,
            network,
            lambda connection, paused: _pause_reading(client, connection, paused),
            self._random,
        )

    def tls_clienthello(self, data: ClientHelloData) -> None:
        self._client_hello_at[data.context.client.id] = time.time()

    def tls_start_client(self, tls_start: TlsData) -> None:
        """A client's TLS handshake with the proxy: no HTTP/2 when the upstream is cleartext.

        When the upstream speaks TLS, mitmproxy offers it the client's ALPN
        protocols first and then gives the client the upstream's choice, so both
        ends agree. A cleartext upstream chooses nothing: mitmproxy would pick
        the client's favourite, h2 for a browser, and the relayed frames would
        reach a server that may speak only HTTP/1.1. So such a client is
        offered HTTP/1.1 alone, as with mitmproxy's ``http2=false``.
        """
        if any(isinstance(stacked, layers.ServerTLSLayer) for stacked in tls_start.context.layers):
            return
        if tls_start.ssl_conn is None:
            # Loaded as a script, this hook runs before mitmproxy's own TLS addon: let it build the connection.
            tlsconfig = ctx.master.addons.get("tlsconfig")
            if tlsconfig is not None:
                tlsconfig.tls_start_client(tls_start)
        if tls_start.ssl_conn is None:
            return
        app_data = tls_start.ssl_conn.get_app_data()
        if isinstance(app_data, dict) and "http2" in app_data:
            app_data["http2"] = False

    def client_disconnected(self, client: Client) -> None:
        self._client_hello_at.pop(client.id, None)
        quic = self._live.pop(_quic_key(client), None)
        if quic is not None and isinstance(client.proxy_mode, ReverseMode):
            # A QUIC connection that ended without a close (its handshake failed).
            self._start(quic, client, Server(address=client.proxy_mode.address))
            self._end(quic, client.timestamp_end or time.time(), "client closed")
        self._tls_legs.pop(client.id, None)
        if self._taps.pop(client.id, None) is not None:
            key = _forwarded_key(client)
            if key in self._live:
                self._finish(key, time.time(), "client closed")
        refused = self._refused.pop(client.id, None)
        if client.id in self._handed_over:
            self._handed_over.discard(client.id)
        elif not self._stopped and isinstance(client.proxy_mode, ReverseMode):
            # mitmproxy hands a connection over only once its client speaks: one that closed
            # first, or that was refused, is still a TCP connection, as a packet capture shows it.
            live = _LiveConnection(self._next_id, client.id)
            self._next_id += 1
            self._start(live, client, Server(address=client.proxy_mode.address))
            ended = client.timestamp_end or time.time()
            if refused:
                self._record(DataChunk(live.connection_id, client.timestamp_start, Direction.CLIENT_TO_SERVER, refused))
            self._end(live, ended, "refused: it did not start with TLS" if refused is not None else "client closed")

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.client_conn.id in self._taps:
            flow.request.stream = True  # forwarded as it arrives, as the tap counts it

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.client_conn.id in self._taps and flow.response is not None:
            flow.response.stream = True  # an SSE stream or a held poll reaches the client as it comes

    def _forwarded(self, context: Context, from_client: bool, data: bytes) -> None:
        """Bytes of a forward proxy's plain-HTTP connection on the client's leg (see ForwardedHttpTap)."""
        if self._stopped or not data:
            return
        key = _forwarded_key(context.client)
        live = self._live.get(key)
        if live is None:
            live = self._live[key] = _LiveConnection(self._next_id, context.client.id)
            self._next_id += 1
        if live.opened is None:
            self._start(live, context.client, Server(address=_absolute_form_address(data)))
        direction = Direction.CLIENT_TO_SERVER if from_client else Direction.SERVER_TO_CLIENT
        self._record(DataChunk(live.connection_id, time.time(), direction, data))

    # -- traffic

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        if self._stopped:
            return
        self._live[flow.id] = _LiveConnection(
            self._next_id, flow.client_conn.id, leg=self._tls_legs.get(flow.client_conn.id)
        )
        self._handed_over.add(flow.client_conn.id)
        self._next_id += 1

    def relayed(self, flow: tcp.TCPFlow, message: tcp.TCPMessage) -> None:
        """One read of a relayed connection, about to be forwarded: recorded, then analysed."""
        live = self._live.get(flow.id)
        if live is None:
            return
        if live.opened is None:
            self._start(live, flow.client_conn, flow.server_conn)
        direction = Direction.CLIENT_TO_SERVER if message.from_client else Direction.SERVER_TO_CLIENT
        self._record(DataChunk(live.connection_id, message.timestamp, direction, message.content))

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        if flow.id in self._live:
            self._start(self._live[flow.id], flow.client_conn, flow.server_conn)
            self._finish(flow.id, time.time(), flow.metadata.get(CLOSE_REASON_KEY, "client closed"))

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        if flow.id in self._live:
            live = self._live.pop(flow.id)
            self._start(live, flow.client_conn, flow.server_conn)
            self._failed(live, flow.server_conn, flow.error.msg if flow.error else "unknown")

    def server_connect_error(self, data: ServerConnectionHookData) -> None:
        """A reverse proxy connects to the upstream before it relays anything; when
        that fails, the client's connection is recorded with the error."""
        client, server = data.client, data.server
        if self._stopped or not isinstance(client.proxy_mode, ReverseMode):
            return
        if any(live.client_id == client.id for live in self._live.values()):
            return  # the relay was connecting: tcp_error records it
        live = _LiveConnection(self._next_id, client.id)
        self._handed_over.add(client.id)
        self._next_id += 1
        self._start(live, client, server)
        self._failed(live, server, server.error or "unknown")

    def _start(self, live: _LiveConnection, client: Client, server: Server) -> None:
        """Record the connection's facts once they are known (upstream TLS included)."""
        if live.opened is None:
            hello_at = self._client_hello_at.get(client.id)
            live.opened = connection_opened(live.connection_id, client, server, hello_at, live.transport)
            self._record(live.opened)

    def _failed(self, live: _LiveConnection, server: Server, message: str) -> None:
        logger.warning(f"connection to {address_text(server.address)} failed: {message}")
        self._end(live, time.time(), f"error: {message}")

    def _finish(self, flow_id: str, timestamp: float, reason: str) -> None:
        self._end(self._live.pop(flow_id), timestamp, reason)

    def _end(self, live: _LiveConnection, timestamp: float, reason: str) -> None:
        if live.opened is None:
            return
        self._record_layer(live, timestamp, closed=True)
        self._record(ConnectionClosed(live.connection_id, timestamp, reason))

    def _record_layer(self, live: _LiveConnection, timestamp: float, *, closed: bool = False) -> None:
        """Record the client leg's figures below the byte stream, if they changed since last time."""
        if live.leg is None or live.opened is None:
            return
        figures = live.leg.figures(closed=closed)
        if figures is not None and figures != live.layer_recorded:
            live.layer_recorded = figures
            self._record(transport_layer_event(live.connection_id, timestamp, figures))

    # -- capture

    def _record(self, record: Record) -> None:
        """To the analysis and to the capture: encoded once for both."""
        encoded = encode_record(record)
        self.analysis.add_record(record, encoded)
        if self._writer is not None:
            try:
                self._writer.write_encoded(encoded)
            except OSError as e:
                self._capture_failed(e)

    def _write(self, record: ConnectionOpened | DataChunk | ConnectionClosed | Event) -> None:
        if self._writer is None:
            return
        try:
            self._writer.write(record)
        except OSError as e:
            self._capture_failed(e)

    def _capture_failed(self, error: OSError) -> None:
        assert self._writer is not None
        logger.error(f"stopped writing {self._writer.path}: {error.strerror or error}")
        try:
            self._writer.close()
        except OSError:
            pass
        self._writer = None


def _upstream_spoke_first(nextlayer: layer.NextLayer) -> bool:
    """Whether a reverse proxy is asked for its layers because the upstream sent
    something before the client did (see :class:`ClientSpeaksFirst`)."""
    top = nextlayer.context.layers[0]
    return isinstance(top, ReverseProxy) and top.child_layer is nextlayer and not nextlayer.data_client()


def _layers_of(chosen: layer.Layer | None) -> list[layer.Layer]:
    """A chosen layer and the layers it stacked under itself."""
    found = []
    while chosen is not None:
        found.append(chosen)
        chosen = getattr(chosen, "child_layer", None)
    return found


def _discard(chosen: layer.Layer | None) -> None:
    """Take back layers another addon chose: a layer joins its context's stack when it is made."""
    while chosen is not None:
        if chosen in chosen.context.layers:
            chosen.context.layers.remove(chosen)
        chosen = getattr(chosen, "child_layer", None)


def _is_relay_point(candidate: layer.Layer) -> bool:
    """Whether mitmproxy chose to carry application data on this layer: HTTP or a TCP relay."""
    if isinstance(candidate, layers.HttpLayer):
        return candidate.mode is HTTPMode.transparent
    return type(candidate) is layers.TCPLayer and candidate.flow is not None


def _over_ipv6(client: Client) -> bool:
    """Whether the client's packets travel over IPv6 (for the size of their IP headers)."""
    peer = client.peername
    return bool(peer) and travels_over_ipv6(peer[0])


def _quic_key(client: Client) -> str:
    """The key of a QUIC connection among the live ones."""
    return f"quic:{client.id}"


def _forwarded_key(client: Client) -> str:
    """The key of a forward proxy's plain-HTTP connection among the live ones (flow ids elsewhere)."""
    return f"forwarded:{client.id}"


def _absolute_form_address(data: bytes) -> tuple[str, int] | None:
    """The host and port an absolute-form request line names (``GET http://host:port/path``), if it does."""
    line = data.split(b"\r\n", 1)[0].split(b" ")
    if len(line) < 2:
        return None
    target = urlsplit(line[1].decode("latin-1"))
    if target.scheme not in ("http", "https") or not target.hostname:
        return None
    try:
        port = target.port
    except ValueError:
        return None
    return target.hostname, port or (443 if target.scheme == "https" else 80)
