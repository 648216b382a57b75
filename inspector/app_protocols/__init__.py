"""The message layer of real-time application protocols, read without I/O.

Socket.IO, GraphQL over WebSocket, SockJS, STOMP, MQTT, SignalR, Phoenix
channels and Action Cable each carry the application's messages (what its
handlers receive or send) among messages of their own: handshakes,
heartbeats, transport acknowledgements, subscription control. A reader
(:func:`reader_for`) splits what one connection carries into
:class:`~inspector.events.FrameworkMessage` values of either kind, whose
sizes add up to the bytes it was fed:

- ``websocket_message(direction, data, text)``: one whole (decompressed)
  WebSocket message; the sizes add up to its length;
- ``start_body(direction, method, target)``, then ``body_data(direction,
  data)`` for each piece and ``body_end(direction)``: an HTTP body, the
  request's or its response's, with the request it belongs to; the sizes add
  up to the body's length over all three, whatever its pieces.

Malformed input never raises: it gives a
:class:`~inspector.events.FrameworkProblem`, and its bytes are counted as a
control message (``"malformed"``).

The functions here tell which protocol a request speaks (:func:`detect`,
:func:`detect_from_first_message`), which session it belongs to
(:func:`session_key`) and which of rtinspect's transports its URL says it is
(:func:`transport_of`). They are conservative: a plain WebSocket or a plain
poll is none of these.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

from ..events import Headers, header_value
from .actioncable import ActionCableReader
from .graphql import GraphQLTransportWsReader, GraphQLWsReader
from .mqtt import MqttReader
from .phoenix import PhoenixReader, topic_and_event
from .reader import BODY_LIMIT, FrameworkReader, Request, query_value
from .signalr import SignalRReader
from .socketio import SocketIoReader, engine_io_version
from .sockjs import SockJsReader, transport_in
from .stomp import StompReader

__all__ = [
    "APP_PROTOCOLS",
    "BODY_LIMIT",
    "FrameworkReader",
    "detect",
    "detect_from_first_message",
    "reader_for",
    "session_key",
    "transport_of",
]

APP_PROTOCOLS = (
    "socket.io",
    "graphql-transport-ws",
    "graphql-ws",
    "sockjs",
    "stomp",
    "mqtt",
    "signalr",
    "phoenix",
    "actioncable",
)

#: Protocols named by the WebSocket subprotocol the server accepted.
_SUBPROTOCOLS = {
    "graphql-transport-ws": "graphql-transport-ws",
    "graphql-ws": "graphql-ws",
    "v10.stomp": "stomp",
    "v11.stomp": "stomp",
    "v12.stomp": "stomp",
    "mqtt": "mqtt",
    "mqttv3.1": "mqtt",
    "actioncable-v1-json": "actioncable",
    "actioncable-unsupported": "actioncable",
}

#: ``/prefix/{server}/{session}/{transport}``: clients number servers with up to three digits.
_SOCKJS_SESSION = re.compile(r"/(?P<server>[0-9]{1,3})/(?P<session>[^/.]+)/(?P<transport>[a-z_]+)/?$")
_TIMESTAMP = re.compile(r"[0-9]+")


def reader_for(name: str, *, target: str = "") -> FrameworkReader:
    """A reader for one connection speaking ``name`` (one of :data:`APP_PROTOCOLS`).

    ``target`` is the request target that opened the connection; Socket.IO
    reads the Engine.IO version from it.
    """
    if name == "socket.io":
        return SocketIoReader(target)
    readers: dict[str, type[FrameworkReader]] = {
        "graphql-transport-ws": GraphQLTransportWsReader,
        "graphql-ws": GraphQLWsReader,
        "sockjs": SockJsReader,
        "stomp": StompReader,
        "mqtt": MqttReader,
        "signalr": SignalRReader,
        "phoenix": PhoenixReader,
        "actioncable": ActionCableReader,
    }
    if name not in readers:
        raise ValueError(f"unknown application protocol {name!r}; known: {', '.join(APP_PROTOCOLS)}")
    return readers[name]()


def detect(method: str, target: str, request_headers: Headers, response_headers: Headers) -> str | None:
    """Which application protocol a request speaks, when its URL or accepted subprotocol says.

    The subprotocol the server accepted (``Sec-WebSocket-Protocol`` in the
    response) names GraphQL, STOMP, MQTT and Action Cable. Socket.IO's
    requests carry ``EIO=3`` or ``EIO=4``; SockJS's follow
    ``/prefix/{server}/{session}/{transport}`` (or are its ``/prefix/info?t=``);
    Phoenix's WebSocket is ``…/websocket?vsn=…``; SignalR's first request is
    ``…/negotiate?negotiateVersion=…`` (its later requests carry only ``id=``:
    tie them by :func:`session_key` to the token the negotiate answer named, or
    recognise its WebSocket by :func:`detect_from_first_message`).
    """
    subprotocol = header_value(response_headers, "sec-websocket-protocol")
    if subprotocol is not None and subprotocol.strip().lower() in _SUBPROTOCOLS:
        return _SUBPROTOCOLS[subprotocol.strip().lower()]
    path = urlsplit(target).path
    if engine_io_version(target) is not None:
        return "socket.io"
    if _SOCKJS_SESSION.search(path) and transport_in(Request(method, target)) not in (None, "info"):
        return "sockjs"
    if path.endswith("/info") and _TIMESTAMP.fullmatch(query_value(target, "t") or ""):
        return "sockjs"
    if path.endswith("/websocket") and query_value(target, "vsn") in ("1.0.0", "2.0.0"):
        return "phoenix"
    if path.endswith("/negotiate") and query_value(target, "negotiateVersion") is not None:
        return "signalr"
    return None


def detect_from_first_message(data: bytes) -> str | None:
    """Which application protocol a WebSocket speaks, from the first message its client sent.

    SignalR's handshake (``{"protocol":"json","version":1}`` and ``\\x1e``), or
    a Phoenix V2 message that joins a channel or is a heartbeat.
    """
    if data.endswith(b"\x1e") and data.count(b"\x1e") == 1:
        try:
            handshake = json.loads(data[:-1])
        except (ValueError, RecursionError):
            handshake = None
        if isinstance(handshake, dict) and isinstance(handshake.get("protocol"), str) and "version" in handshake:
            return "signalr"
        return None
    if data.startswith(b"["):
        found = topic_and_event(data)
        if found is not None and (found[0] == "phoenix" or found[1] == "phx_join"):
            return "phoenix"
    return None


def session_key(name: str, method: str, target: str) -> str | None:
    """The session a request of protocol ``name`` belongs to, when its URL names one.

    Engine.IO's ``sid=``, SockJS's ``{server}/{session}`` path segments,
    SignalR's ``id=``.
    """
    if name == "socket.io":
        return query_value(target, "sid")
    if name == "signalr":
        return query_value(target, "id")
    if name == "sockjs":
        match = _SOCKJS_SESSION.search(urlsplit(target).path)
        return f"{match['server']}/{match['session']}" if match else None
    return None


def transport_of(name: str, method: str, target: str) -> str | None:
    """Which of rtinspect's transports a request of protocol ``name`` is, when its URL says.

    Engine.IO's ``transport=polling`` is ``"long_poll"``, the POSTs that send
    as much as the GETs that wait; ``transport=websocket`` is ``"websocket"``.
    SockJS's ``xhr`` is ``"long_poll"``, ``xhr_streaming`` ``"http_stream"``,
    ``eventsource`` ``"sse"``, ``websocket`` ``"websocket"``, and ``jsonp`` and
    ``htmlfile`` (script-wrapped polling and streaming) ``"long_poll"`` and
    ``"http_stream"``. A send (``xhr_send``, ``jsonp_send``) is
    ``"long_poll"`` here, but it belongs with whatever transport its session
    receives on: the accounting should follow the session (:func:`session_key`).
    SignalR's URLs do not say (long polling, Server-Sent Events and its sends
    look alike), so it is None, as for every other protocol.
    """
    if name == "socket.io":
        return {"polling": "long_poll", "websocket": "websocket"}.get(query_value(target, "transport") or "")
    if name == "sockjs" and _SOCKJS_SESSION.search(urlsplit(target).path):
        return {
            "websocket": "websocket",
            "xhr": "long_poll",
            "xhr_send": "long_poll",
            "jsonp": "long_poll",
            "jsonp_send": "long_poll",
            "xhr_streaming": "http_stream",
            "htmlfile": "http_stream",
            "eventsource": "sse",
        }.get(transport_in(Request(method, target)) or "")
    return None
