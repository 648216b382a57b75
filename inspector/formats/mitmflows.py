"""mitmproxy flow files (``mitmdump -w``) as capture records, and flows written back.

mitmproxy keeps raw TCP flows as the byte stream itself: each message is one
socket read, so those connections are exact. HTTP and WebSocket flows are
kept parsed (heads, bodies without their transfer coding, whole WebSocket
messages), so their bytes are rebuilt, and marked reconstructed:

- heads are assembled by mitmproxy's own HTTP/1 assembler, in the order and
  spelling of the fields the flow holds;
- bodies are framed as the head says: chunked (one chunk for the whole body,
  then the last chunk), by Content-Length (set to the body's length where the
  body disagrees), or, for a response without either that ends the
  connection, by the connection's end; elsewhere a Content-Length is added;
- HTTP/2 and HTTP/3 exchanges are written as HTTP/1.1 (Host from the
  authority, the same framing rules), one after the other on their connection;
  a WebSocket over HTTP/2 (an extended CONNECT, RFC 8441: a CONNECT flow with
  WebSocket messages) becomes the HTTP/1.1 handshake, a GET with Upgrade
  answered 101 Switching Protocols. Since HTTP/1.1 carries nothing after a
  WebSocket session or an unanswered request, a WebSocket session goes after
  the other exchanges of its connection, and an HTTP/2 connection's WebSocket
  sessions after the first, and its requests never answered, go on
  connections of their own;
- WebSocket messages are re-encoded by wsproto's frame encoder, compressed
  with permessage-deflate where the handshake negotiated it, client frames
  masked; a close frame each way where the flow says how the session closed.
  Messages of type ``Opcode.PING`` and ``Opcode.PONG`` (a HAR file's opcodes 9
  and 10) become ping and pong frames with their payload. mitmproxy itself
  records text and binary messages only, so its flow files (and most HAR
  files) have no pings or pongs: the notes say so, unless the source keeps
  them (``pings_missing`` is None) or some session has them.

Otherwise the exchanges of one client connection stay on one connection, in
the order their requests started. Chunk timestamps are the flow's: a head when its
message started, a body when it ended, a WebSocket message when it was sent.
Other CONNECT requests, UDP and DNS flows are left out (the notes say how many),
and so are raw TCP flows recorded through rtinspect's own addon: it keeps
only the last message of each flow (its capture holds every byte).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO

from mitmproxy import exceptions, http, tcp
from mitmproxy.flow import Flow
from mitmproxy.io import FlowReader, FlowWriter
from mitmproxy.net.http.http1.assemble import (
    assemble_body,
    assemble_request_head,
    assemble_response_head,
)
from mitmproxy.websocket import WebSocketData
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode

from ..capture import CaptureError, ConnectionClosed, DataChunk, Record
from ..mitmproxy_connections import CLOSE_REASON_KEY, connection_opened
from ..websocket import DeflateParams
from ..wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT

#: How a connection ended when the file does not say which side closed it.
UNKNOWN_CLOSE = "closed"
#: The most payload a WebSocket control frame carries (RFC 6455, 5.5).
MAX_CONTROL_PAYLOAD = 125
#: Why a mitmproxy flow file has no pings or pongs.
MITMPROXY_PINGS_MISSING = "mitmproxy records a session's text and binary messages only"


@dataclass(frozen=True, slots=True)
class _Planned:
    """A connection of the flows: its number, how many flows it has, whether any is HTTP."""

    number: int
    flows: int
    rebuilt: bool


class RebuiltTraffic:
    """Capture records made from flows, and what a reader must know about them.

    ``flows`` gives the flows afresh each time it is called. It is read twice:
    once to plan the connections (which flows belong together, in what
    order, how many), then, each time the records are iterated, to rebuild
    each connection as soon as its last flow has been read. So only the flows
    of connections still being read are held, not the file.
    """

    def __init__(
        self,
        flows: Callable[[], Iterable[Flow]],
        *,
        mode: str | None = None,
        pings_missing: str | None = MITMPROXY_PINGS_MISSING,
    ) -> None:
        self._flows = flows
        self._mode = mode
        #: Why the source has no pings or pongs (for the notes), or None when it keeps them.
        self._pings_missing = pings_missing
        self._left_out: Counter[str] = Counter()
        #: Raw TCP flows left out because rtinspect's addon kept only their last message.
        self.trimmed = 0
        starts: dict[str, list[float | int | bool]] = {}
        apart: Counter[str] = Counter()
        for flow in flows():
            group = self._group(flow, apart)
            if group is None:
                continue
            entry = starts.setdefault(group, [_started(flow), 0, False])
            entry[0] = min(entry[0], _started(flow))
            entry[1] += 1
            entry[2] = entry[2] or isinstance(flow, http.HTTPFlow)
        ordered = sorted(starts, key=lambda group: starts[group][0])
        self._plan = {
            group: _Planned(number, int(starts[group][1]), bool(starts[group][2]))
            for number, group in enumerate(ordered, start=1)
        }
        #: Connections rebuilt from HTTP flows (marked reconstructed), and of raw TCP flows (exact).
        self.rebuilt = sum(planned.rebuilt for planned in self._plan.values())
        self.exact = len(self._plan) - self.rebuilt
        self._rebuilder = _Rebuilder()

    @property
    def connections(self) -> int:
        return len(self._plan)

    def _group(self, flow: Flow, apart: Counter[str]) -> str | None:
        """The connection a flow is rebuilt on (see :func:`_connection_key`), or None (counted) when it is left out."""
        key = _connection_key(flow, apart)
        if key is None:
            if isinstance(flow, http.HTTPFlow):
                self._left_out["CONNECT request"] += 1
            elif isinstance(flow, tcp.TCPFlow):
                self.trimmed += 1
            else:
                self._left_out[f"{flow.type.upper()} flow"] += 1
        return key

    def __iter__(self) -> Iterator[Record]:
        rebuilder = self._rebuilder = _Rebuilder()
        pending: dict[str, list[Flow]] = {}
        apart: Counter[str] = Counter()
        for flow in self._flows():
            group = _connection_key(flow, apart)
            planned = self._plan.get(group) if group is not None else None
            if planned is None:
                continue
            flows = pending.setdefault(group, [])  # type: ignore[arg-type]
            flows.append(flow)
            if len(flows) == planned.flows:
                del pending[group]  # type: ignore[arg-type]
                # HTTP/1.1 carries nothing after a WebSocket session.
                flows.sort(key=lambda flow: (_carries_websocket(flow), _started(flow)))
                yield from rebuilder.connection(planned.number, flows, self._mode)

    @property
    def notes(self) -> list[str]:
        """What the plan found and, once the records have been read, what rebuilding them found."""
        notes = self._rebuilder.notes(self._pings_missing)
        left_out = self._left_out
        if left_out:
            notes.append("Left out: " + ", ".join(f"{n} {kind}(s)" for kind, n in sorted(left_out.items())) + ".")
        if self.trimmed:
            notes.append(
                f"Left out: {self.trimmed} raw TCP flow(s) recorded through rtinspect's addon, which keeps only the last "
                "message of a flow; the addon's capture (rtinspect_write) holds their bytes."
            )
        return notes


class FlowFile:
    """The flows of a mitmproxy flow file, read one at a time each time it is called.

    A file that ends inside a flow (a killed mitmdump) gives the flows before
    it, and :attr:`truncated` then says so. Raises
    :class:`~inspector.capture.CaptureError` when no flow can be read.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.truncated: str | None = None

    def __call__(self) -> Iterator[Flow]:
        read = 0
        try:
            with open(self.path, "rb") as file:
                try:
                    for flow in FlowReader(file).stream():
                        read += 1
                        yield flow
                except (exceptions.FlowReadException, ValueError, KeyError, TypeError, IndexError) as e:
                    if not read:
                        raise CaptureError(f"{self.path}: not a readable mitmproxy flow file: {e}") from None
                    self.truncated = f"{self.path}: the file ends inside a flow; the {read} flows before it were read."
        except OSError as e:
            raise CaptureError(f"cannot read {self.path}: {e.strerror or e}") from None


def write_flow_file(flows: Iterable[Flow], out: BinaryIO) -> int:
    """Write flows in mitmproxy's format (what ``mitmdump -w`` writes); returns how many."""
    writer = FlowWriter(out)
    count = 0
    for flow in flows:
        writer.add(flow)
        count += 1
    return count


def drop_control_messages(flows: Iterable[Flow]) -> int:
    """Take pings and pongs out of the flows' WebSocket messages (mitmproxy
    records text and binary messages only); returns how many were taken out."""
    dropped = 0
    for flow in flows:
        if isinstance(flow, http.HTTPFlow) and flow.websocket is not None:
            kept = [message for message in flow.websocket.messages if not message.type.iscontrol()]
            dropped += len(flow.websocket.messages) - len(kept)
            flow.websocket.messages = kept
    return dropped


def _carries_websocket(flow: Flow) -> bool:
    return isinstance(flow, http.HTTPFlow) and flow.websocket is not None


def _connection_key(flow: Flow, apart: Counter[str]) -> str | None:
    """The connection a flow is rebuilt on: its client connection's, or None when it is left out.

    Left out are CONNECT requests (but an extended CONNECT that carried
    WebSocket), raw TCP flows recorded through rtinspect's addon, and flows
    other than HTTP and TCP. HTTP/1.1 carries one WebSocket session per
    connection, after every other exchange, and nothing after a request left
    unanswered; so of the streams of an HTTP/2 (or HTTP/3) connection, a
    WebSocket session after the first and a request without a response go on
    a connection of their own (``apart`` counts them, in file order).
    """
    if isinstance(flow, http.HTTPFlow):
        if flow.request.method.upper() == "CONNECT" and flow.websocket is None:
            return None
    elif not isinstance(flow, tcp.TCPFlow) or CLOSE_REASON_KEY in flow.metadata:  # relayed by rtinspect's addon
        return None
    key: str = flow.client_conn.id
    if isinstance(flow, http.HTTPFlow) and not flow.request.http_version.startswith("HTTP/1"):
        if flow.response is None:
            apart[key] += 1
            return f"{key} apart {apart[key]}"
        if flow.websocket is not None:
            apart[f"{key} websocket"] += 1
            if apart[f"{key} websocket"] > 1:
                apart[key] += 1
                return f"{key} apart {apart[key]}"
    return key


def _started(flow: Flow) -> float:
    if isinstance(flow, http.HTTPFlow):
        return flow.request.timestamp_start
    start = flow.client_conn.timestamp_start
    return start if start is not None else min((m.timestamp for m in flow.messages), default=0.0)


class _Rebuilder:
    """Rebuilds connections and counts what the notes must say."""

    def __init__(self) -> None:
        self.exact = 0
        self.rebuilt = 0
        self.upgraded_versions: Counter[str] = Counter()
        self.missing_bodies = 0
        self.websocket_sessions = 0
        #: Pings and pongs rebuilt as control frames, and those too long to be one (left out).
        self.pings = 0
        self.oversized_pings = 0

    def notes(self, pings_missing: str | None = None) -> list[str]:
        notes = []
        if self.websocket_sessions and not self.pings and pings_missing:
            notes.append(
                f"{self.websocket_sessions} WebSocket session(s) have no pings or pongs in the file: {pings_missing}, "
                "so any they had are not counted (no control frames or control bytes for them)."
            )
        if self.oversized_pings:
            notes.append(
                f"{self.oversized_pings} WebSocket ping(s) or pong(s) had more than 125 bytes of payload, which no "
                "control frame can carry; they were left out."
            )
        if self.upgraded_versions:
            versions = ", ".join(sorted(self.upgraded_versions))
            notes.append(f"{self.upgraded_versions.total()} {versions} exchange(s) were rebuilt as HTTP/1.1.")
        if self.missing_bodies:
            notes.append(f"{self.missing_bodies} message bodies were not in the file (streamed); they count as empty.")
        return notes

    def connection(self, number: int, flows: Sequence[Flow], mode: str | None) -> list[Record]:
        first = flows[0]
        opened = connection_opened(number, first.client_conn, first.server_conn, None)
        reconstructed = any(isinstance(flow, http.HTTPFlow) for flow in flows)
        if reconstructed:
            self.rebuilt += 1
        else:
            self.exact += 1
        chunks = _Chunks(number)
        for index, flow in enumerate(flows):
            if isinstance(flow, tcp.TCPFlow):
                for message in flow.messages:
                    chunks.add(C2S if message.from_client else S2C, message.content, message.timestamp)
            elif isinstance(flow, http.HTTPFlow):
                self._exchange(chunks, flow, last=index == len(flows) - 1)
        start = first.client_conn.timestamp_start or _started(first)
        opened = replace(
            opened,
            timestamp=min(start, chunks.first_timestamp),
            mode=mode or opened.mode,
            reconstructed=reconstructed,
        )
        ends = [chunks.last_timestamp, *(t for flow in flows for t in _ends(flow) if t is not None)]
        closed = ConnectionClosed(number, max(ends), _close_reason(flows[-1]))
        return [opened, *chunks.records, closed]

    def _exchange(self, chunks: _Chunks, flow: http.HTTPFlow, *, last: bool) -> None:
        request = self._as_http1(flow.request)
        if flow.websocket is not None and request.method.upper() == "CONNECT":
            request.method = "GET"
            _upgrade_to_websocket(request.headers)
        body = self._body(request, bodyless=False, ends_connection=False)
        chunks.add(C2S, assemble_request_head(request), request.timestamp_start)
        chunks.add(C2S, body, request.timestamp_end or request.timestamp_start)
        if flow.response is None:
            return
        response = self._as_http1(flow.response)
        if (
            flow.websocket is not None
            and flow.request.method.upper() == "CONNECT"
            and 200 <= response.status_code < 300
        ):
            # The extended CONNECT's answer, as HTTP/1.1 says it.
            response.status_code, response.reason = 101, "Switching Protocols"
            _upgrade_to_websocket(response.headers)
        status = response.status_code
        bodyless = request.method.upper() == "HEAD" or status < 200 or status in (204, 304)
        body = self._body(response, bodyless=bodyless, ends_connection=last)
        chunks.add(S2C, assemble_response_head(response), response.timestamp_start)
        chunks.add(S2C, body, response.timestamp_end or response.timestamp_start)
        if flow.websocket is not None:
            self.websocket_sessions += 1
            self._websocket(chunks, flow.websocket, response.headers.get("sec-websocket-extensions"))

    def _as_http1[M: (http.Request, http.Response)](self, message: M) -> M:
        """A copy to assemble; HTTP/2 and HTTP/3 become HTTP/1.1 (Host from the authority)."""
        message = message.copy()
        if message.http_version.startswith("HTTP/1"):
            return message
        self.upgraded_versions[message.http_version] += isinstance(message, http.Request)
        if isinstance(message, http.Request):
            authority = message.authority or message.host_header
            message.http_version = "HTTP/1.1"
            if authority and "host" not in message.headers:
                message.headers.insert(0, "Host", authority)
            message.authority = ""
        else:
            message.http_version = "HTTP/1.1"
        return message

    def _body(self, message: http.Message, *, bodyless: bool, ends_connection: bool) -> bytes:
        """The body as framed on the wire; the framing fields of ``message``'s
        head are made to agree with the body the file holds."""
        if bodyless:
            return b""
        content = message.raw_content
        if content is None:
            self.missing_bodies += 1
            content = b""
        headers = message.headers
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return b"".join(assemble_body(headers, [content], message.trailers))
        if isinstance(message, http.Request):
            framed = bool(content) or "content-length" in headers
        else:
            # Without a length, a response runs to the end of its connection.
            framed = "content-length" in headers or not ends_connection
        if framed and headers.get("content-length") != str(len(content)):
            headers["content-length"] = str(len(content))
        return content

    def _websocket(self, chunks: _Chunks, websocket: WebSocketData, extensions: str | None) -> None:
        """The frames of a WebSocket session: each message, ping and pong, then the close handshake."""
        senders = {
            C2S: FrameProtocol(True, negotiated_extensions(extensions)),
            S2C: FrameProtocol(False, negotiated_extensions(extensions)),
        }
        last = 0.0
        for message in websocket.messages:
            if message.dropped:
                continue
            direction = C2S if message.from_client else S2C
            timestamp = message.timestamp if message.timestamp is not None else last
            last = max(last, timestamp)
            if message.type in (Opcode.PING, Opcode.PONG):
                if len(message.content) > MAX_CONTROL_PAYLOAD:
                    self.oversized_pings += 1
                    continue
                sender = senders[direction]
                control = sender.ping if message.type is Opcode.PING else sender.pong
                chunks.add(direction, bytes(control(bytes(message.content))), timestamp)
                self.pings += 1
                continue
            payload: bytes | str = message.content
            if message.type is Opcode.TEXT:
                try:
                    payload = message.content.decode("utf-8")
                except UnicodeDecodeError:
                    pass
            chunks.add(direction, bytes(senders[direction].send_data(payload)), timestamp)
        if websocket.close_code is None:
            return
        closer = C2S if websocket.closed_by_client else S2C
        at = websocket.timestamp_end or last
        code: int | None = websocket.close_code
        reason = websocket.close_reason or None
        if code in (CloseReason.NO_STATUS_RCVD, CloseReason.ABNORMAL_CLOSURE):
            code, reason = None, None
        chunks.add(closer, bytes(senders[closer].close(code, reason)), at)
        chunks.add(closer.opposite, bytes(senders[closer.opposite].close(code)), at)


def _upgrade_to_websocket(headers: http.Headers) -> None:
    for name, value in (("Upgrade", "websocket"), ("Connection", "Upgrade")):
        if name not in headers:
            headers[name] = value


class _Chunks:
    """One connection's data records, with timestamps that never go back in time per direction."""

    def __init__(self, connection_id: int) -> None:
        self.connection_id = connection_id
        self.records: list[DataChunk] = []
        self._last: dict[Direction, float] = {}

    def add(self, direction: Direction, data: bytes, timestamp: float) -> None:
        if not data:
            return
        timestamp = max(timestamp, self._last.get(direction, timestamp))
        self._last[direction] = timestamp
        self.records.append(DataChunk(self.connection_id, timestamp, direction, bytes(data)))

    @property
    def first_timestamp(self) -> float:
        return min((chunk.timestamp for chunk in self.records), default=float("inf"))

    @property
    def last_timestamp(self) -> float:
        return max(self._last.values(), default=0.0)


def negotiated_extensions(extensions: str | None) -> list[Extension]:
    """wsproto's permessage-deflate, set as the handshake negotiated it (rtinspect's reading of it)."""
    params = DeflateParams.from_response_header(extensions)
    if params is None:
        return []
    deflate = PerMessageDeflate(
        client_no_context_takeover=params.client_no_context_takeover,
        client_max_window_bits=params.client_max_window_bits,
        server_no_context_takeover=params.server_no_context_takeover,
        server_max_window_bits=params.server_max_window_bits,
    )
    deflate.finalize("permessage-deflate")  # enables it; the parameters are set above
    return [deflate]


def _ends(flow: Flow) -> list[float | None]:
    ends = [flow.client_conn.timestamp_end, flow.server_conn.timestamp_end]
    if isinstance(flow, http.HTTPFlow):
        ends += [flow.request.timestamp_end, flow.request.timestamp_start]
        if flow.response is not None:
            ends += [flow.response.timestamp_end, flow.response.timestamp_start]
        if flow.websocket is not None:
            ends.append(flow.websocket.timestamp_end)
    elif isinstance(flow, tcp.TCPFlow):
        ends += [message.timestamp for message in flow.messages[-1:]]
    return ends


def _close_reason(flow: Flow) -> str:
    if flow.error is not None:
        return f"error: {flow.error.msg}"
    if isinstance(flow, http.HTTPFlow) and flow.websocket is not None and flow.websocket.closed_by_client is not None:
        return "client closed" if flow.websocket.closed_by_client else "server closed"
    client_end, server_end = flow.client_conn.timestamp_end, flow.server_conn.timestamp_end
    if client_end is None or server_end is None or client_end == server_end:
        return UNKNOWN_CLOSE
    return "client closed" if client_end < server_end else "server closed"
