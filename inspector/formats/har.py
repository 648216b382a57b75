"""HAR 1.2 (HTTP Archive): written from a capture, and read as browsers export it.

**Export** (:func:`har_from_flows`): the entries are mitmproxy's HAR entries
(its ``savehar`` addon builds them: heads, query, cookies, bodies as text or
base64, timings, and ``_webSocketMessages`` in Chrome's shape
``{"type": "send"|"receive", "time", "opcode", "data"}``), with what
rtinspect knows exactly put in: ``connection`` is the capture's connection
id, ``headersSize`` and ``bodySize`` are the wire bytes of each head and body
(chunk framing included) and ``response._transferSize`` their sum;
``content.size`` is the decoded body length. ``_webSocketMessages`` include
pings and pongs (opcodes 9 and 10, their payload in base64, as Chrome's
DevTools protocol gives any frame that is not text). Every entry has a
``_resourceType``, as Chrome's do: "websocket", "eventsource" for a
``text/event-stream`` response, else "other" (what made the request is not
known). The creator is rtinspect.
HTTP/2 entries say ``httpVersion`` "HTTP/2.0", as mitmproxy's own do (HAR
readers take it, and "h2" or "http/2.0" as Chrome writes it, alike); a
WebSocket over HTTP/2 (an extended CONNECT) keeps its method, CONNECT, and
its ``url`` is the stream's, path included.

**Import** (:func:`flows_from_har`): each entry becomes a mitmproxy
``HTTPFlow`` whose bytes :mod:`inspector.formats.mitmflows` rebuilds, so
every connection of a HAR file is reconstructed. Times come from
``startedDateTime`` and ``timings`` (the request is sent after blocked, dns
and connect; the response starts after send and wait and ends after
receive). Bodies are ``postData.text`` and ``content.text`` (base64 where
``encoding`` says so), encoded again as the response's Content-Encoding says,
since browsers store them decoded. ``_webSocketMessages`` (Chrome) become the
WebSocket messages of their entry: text and binary messages (opcodes 1 and
2), and pings and pongs (9 and 10), which browsers do not write but
rtinspect's export does. A file from another writer whose WebSocket sessions
list no pings or pongs gets a note that any they had are not counted. Pseudo-header fields (``:authority`` ...)
are dropped. Entries share a connection where they name the same
``connection`` and server and, for HTTP/1, follow one another in time; an
entry without a ``connection`` gets a connection of its own.
"""

from __future__ import annotations

import base64
import binascii
import importlib.metadata
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from mitmproxy import connection, flow, http
from mitmproxy.addons.savehar import SaveHar
from mitmproxy.io.har import fix_headers
from mitmproxy.net import encoding
from mitmproxy.net.http import url as mitmproxy_url
from mitmproxy.net.http.headers import infer_content_encoding
from mitmproxy.websocket import WebSocketData, WebSocketMessage
from wsproto.frame_protocol import Opcode

from ..capture import CaptureError
from ..report import REPORT_FORMAT
from .capture_flows import WIRE_SIZES

HAR_VERSION = "1.2"
#: Seconds by which an HTTP/1 entry may seem to start before the previous one on
#: its connection ended (HAR times are rounded) and still share the connection.
_OVERLAP_TOLERANCE = 0.002
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_HTTP_VERSIONS = {"h2": "HTTP/2.0", "http/2": "HTTP/2.0", "http/2.0": "HTTP/2.0", "h3": "HTTP/3", "http/3": "HTTP/3"}


# -- export


def _creator() -> dict[str, str]:
    try:
        version = importlib.metadata.version("rtinspect")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": "rtinspect", "version": version}


def har_from_flows(flows: Sequence[flow.Flow]) -> dict[str, Any]:
    """A HAR 1.2 document of the HTTP flows (other flows have no place in HAR)."""
    writer = SaveHar()
    servers_seen: set[connection.Server] = set()
    entries = []
    for item in flows:
        if isinstance(item, http.HTTPFlow):
            entry = _exact(writer.flow_entry(item, servers_seen), item)
            entry.setdefault("_resourceType", _resource_type(item))
            entries.append(entry)
    return {"log": {"version": HAR_VERSION, "creator": _creator(), "pages": [], "entries": entries}}


def _exact(entry: dict[str, Any], item: http.HTTPFlow) -> dict[str, Any]:
    """An entry with the sizes the capture knows exactly."""
    sizes = item.metadata.get(WIRE_SIZES)
    if sizes is not None:
        entry["connection"] = sizes["connection"]
        entry["request"]["headersSize"] = sizes["request_head"]
        entry["request"]["bodySize"] = sizes["request_body"]
        if item.response is not None and "response_head" in sizes:
            entry["response"]["headersSize"] = sizes["response_head"]
            entry["response"]["bodySize"] = sizes["response_body"]
            entry["response"]["_transferSize"] = sizes["response_head"] + sizes["response_body"]
    request = item.request
    if request.method.upper() == "CONNECT" and item.websocket is not None and request.path:
        # mitmproxy writes a CONNECT's authority only; an extended CONNECT has a path.
        authority = request.authority or mitmproxy_url.hostport(request.scheme, request.host, request.port)
        entry["request"]["url"] = f"{request.scheme}://{authority}{request.path}"
    if item.response is not None:
        try:
            decoded = item.response.content or b""
        except ValueError:
            decoded = item.response.raw_content or b""
        raw = item.response.raw_content or b""
        entry["response"]["content"]["size"] = len(decoded)
        entry["response"]["content"]["compression"] = max(0, len(decoded) - len(raw))
    return entry


def _resource_type(item: http.HTTPFlow) -> str:
    """The type Chrome's DevTools would give the entry, as far as the traffic tells it."""
    if item.websocket is not None:
        return "websocket"
    content_type = item.response.headers.get("content-type", "") if item.response is not None else ""
    if content_type.split(";")[0].strip().lower() == "text/event-stream":
        return "eventsource"
    return "other"


def har_text(document: dict[str, Any]) -> str:
    """A HAR document as the text of a ``.har`` file."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


# -- import


#: Why a HAR file that rtinspect did not write has no pings or pongs.
BROWSER_PINGS_MISSING = "browsers list a session's text and binary messages only (Chrome's _webSocketMessages)"
#: WebSocket opcodes a HAR file's ``_webSocketMessages`` may hold that rtinspect rebuilds.
_DATA_OPCODES = (Opcode.TEXT, Opcode.BINARY)
_CONTROL_OPCODES = (Opcode.PING, Opcode.PONG)


@dataclass(frozen=True, slots=True)
class HarFlows:
    """The flows of a HAR file and what a reader of its report must know.

    ``pings_missing`` says why its WebSocket sessions have no pings or pongs,
    or is None when its writer (rtinspect) lists them.
    """

    flows: tuple[http.HTTPFlow, ...]
    notes: tuple[str, ...]
    pings_missing: str | None = BROWSER_PINGS_MISSING


def _seconds(timings: dict[str, Any], name: str) -> float:
    value = timings.get(name)
    return value / 1000 if isinstance(value, (int, float)) and value > 0 else 0.0


def _http_version(value: Any) -> str:
    text = str(value or "").strip()
    if text.upper() in ("HTTP/1.0", "HTTP/1.1"):
        return text.upper()
    return _HTTP_VERSIONS.get(text.lower(), "HTTP/1.1")


def _headers(fields: Any) -> http.Headers:
    """Header fields as HAR lists them, without HTTP/2 pseudo-header fields."""
    headers = fix_headers(fields or [])
    return http.Headers([(name, value) for name, value in headers.fields if not name.startswith(b":")])


def _text(holder: dict[str, Any], content_type: str) -> bytes | None:
    """``text`` as bytes (base64-decoded where ``encoding`` says so), or None when absent."""
    text = holder.get("text")
    if text is None:
        return None
    if holder.get("encoding") == "base64":
        return base64.b64decode(text)
    try:
        return text.encode(infer_content_encoding(content_type), "surrogateescape")
    except (LookupError, UnicodeEncodeError):
        return text.encode("utf-8", "surrogateescape")


class _Connections:
    """Which connection each entry travelled on."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str], list[tuple[connection.Client, connection.Server, list[float]]]] = {}
        self.alone = 0

    def assign(
        self, key: str | None, server: tuple[str, int], start: float, end: float, http1: bool
    ) -> tuple[connection.Client, connection.Server]:
        if key is not None:
            for client, server_conn, busy in self._open.get((key, repr(server)), []):
                if not http1 or busy[0] <= start + _OVERLAP_TOLERANCE:
                    busy[0] = max(busy[0], end)
                    return client, server_conn
        else:
            self.alone += 1
        client = connection.Client(peername=None, sockname=("", 0), timestamp_start=start)  # type: ignore[arg-type]
        server_conn = connection.Server(address=server, peername=server, timestamp_start=start)
        if key is not None:
            self._open.setdefault((key, repr(server)), []).append((client, server_conn, [end]))
        return client, server_conn


def _websocket(
    entry: dict[str, Any], request: http.Request, response: http.Response | None
) -> tuple[WebSocketData, http.Response]:
    messages = []
    for message in entry.get("_webSocketMessages") or []:
        opcode = message.get("opcode")
        if opcode not in (*_DATA_OPCODES, *_CONTROL_OPCODES):
            continue
        data = message.get("data") or ""
        if opcode == Opcode.TEXT:
            content = data.encode("utf-8", "surrogateescape")
        elif opcode in _CONTROL_OPCODES:
            content = _control_payload(data)
        else:
            content = base64.b64decode(data)
        messages.append(
            WebSocketMessage(Opcode(opcode), message.get("type") == "send", content, float(message["time"]))
        )
    # The handshake must read as one, whatever the file kept of it.
    for name, value in (("Upgrade", "websocket"), ("Connection", "Upgrade")):
        if name not in request.headers:
            request.headers[name] = value
    if response is None or response.status_code != 101:
        response = http.Response(
            b"HTTP/1.1", 101, b"Switching Protocols", http.Headers(), b"", None, request.timestamp_end or 0.0, None
        )
    for name, value in (("Upgrade", "websocket"), ("Connection", "Upgrade")):
        if name not in response.headers:
            response.headers[name] = value
    ended = max((m.timestamp for m in messages if m.timestamp is not None), default=response.timestamp_start)
    return WebSocketData(messages=messages, timestamp_end=ended), response


def _control_payload(data: str) -> bytes:
    """A ping's or pong's payload: base64, as Chrome gives every frame that is not text; else the text itself."""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return data.encode("utf-8", "surrogateescape")


class _Reader:
    def __init__(self) -> None:
        self.connections = _Connections()
        self.no_body_text = 0
        self.encodings_dropped = 0

    def flow(self, entry: dict[str, Any]) -> http.HTTPFlow:
        started = datetime.fromisoformat(entry["startedDateTime"]).timestamp()
        timings = entry.get("timings") or {}
        sent_at = started + _seconds(timings, "blocked") + _seconds(timings, "dns") + _seconds(timings, "connect")
        request_end = sent_at + _seconds(timings, "send")
        response_start = request_end + _seconds(timings, "wait")
        response_end = response_start + _seconds(timings, "receive")

        har_request = entry["request"]
        url = urlsplit(har_request["url"])
        scheme = url.scheme.lower() or "http"
        port = url.port or _DEFAULT_PORTS.get(scheme, 80)
        host = url.hostname or ""
        version = _http_version(har_request.get("httpVersion"))
        headers = _headers(har_request.get("headers"))
        if "host" not in headers:
            headers.insert(0, "Host", url.netloc)
        post = har_request.get("postData") or {}
        request = http.Request(
            host=host,
            port=port,
            method=str(har_request["method"]).encode(),
            scheme=b"https" if scheme in ("https", "wss") else b"http",
            authority=b"",
            path=((url.path or "/") + (f"?{url.query}" if url.query else "")).encode(),
            http_version=version.encode(),
            headers=headers,
            content=_text(post, post.get("mimeType", "")) or b"",
            trailers=None,
            timestamp_start=sent_at,
            timestamp_end=request_end,
        )
        response = self._response(entry.get("response") or {}, response_start, response_end)
        ip = str(entry.get("serverIPAddress") or host).strip("[]")
        websocket = None
        if entry.get("_webSocketMessages"):
            websocket, response = _websocket(entry, request, response)
            response_end = max(response_end, websocket.timestamp_end or response_end)
        client, server = self.connections.assign(
            entry.get("connection"), (ip, port), sent_at, response_end, version.startswith("HTTP/1")
        )
        result = http.HTTPFlow(client, server)
        result.request = request
        result.response = response
        result.websocket = websocket
        if response is None:
            result.error = flow.Error(str((entry.get("response") or {}).get("_error") or "no response"))
        return result

    def _response(self, har_response: dict[str, Any], start: float, end: float) -> http.Response | None:
        status = har_response.get("status")
        if not isinstance(status, int) or status <= 0:
            return None
        headers = _headers(har_response.get("headers"))
        content = har_response.get("content") or {}
        body = _text(content, headers.get("content-type", content.get("mimeType", "")))
        if body is None:
            body = b""
            if content.get("size", 0) > 0:
                self.no_body_text += 1
        coding = headers.get("content-encoding")
        if coding:
            # Browsers keep bodies decoded; on the wire they were in this coding.
            try:
                body = encoding.encode(body, coding)
            except ValueError:
                del headers["content-encoding"]
                self.encodings_dropped += 1
        return http.Response(
            _http_version(har_response.get("httpVersion")).encode(),
            status,
            str(har_response.get("statusText") or "").encode("latin-1", "replace"),
            headers,
            body,
            None,
            start,
            end,
        )

    def notes(self) -> list[str]:
        notes = []
        if self.connections.alone:
            notes.append(
                f"{self.connections.alone} entries named no connection and got one each "
                "(their TCP connects are an upper bound)."
            )
        if self.no_body_text:
            notes.append(f"{self.no_body_text} responses had no body text in the file; their bodies count as empty.")
        if self.encodings_dropped:
            notes.append(f"{self.encodings_dropped} response bodies in an unknown Content-Encoding count as decoded.")
        return notes


def flows_from_har(document: Any, path: str) -> HarFlows:
    """The entries of a parsed HAR document as flows, in the order they started.

    Raises :class:`~inspector.capture.CaptureError` when ``document`` is not
    a HAR log; entries that cannot be read are skipped and counted in the notes.
    """
    if isinstance(document, dict) and document.get("format") == REPORT_FORMAT:
        raise CaptureError(f"{path}: an rtinspect report, not traffic; report the capture it was made from")
    log = document.get("log") if isinstance(document, dict) else None
    entries = log.get("entries") if isinstance(log, dict) else None
    if not isinstance(entries, list):
        raise CaptureError(f"{path}: JSON, but not a HAR file (it has no log.entries)")
    reader = _Reader()
    readable = []
    skipped = 0
    for entry in entries:
        try:
            readable.append((datetime.fromisoformat(entry["startedDateTime"]).timestamp(), entry))
        except (KeyError, TypeError, ValueError):
            skipped += 1
    readable.sort(key=lambda pair: pair[0])
    flows = []
    for _, entry in readable:
        try:
            flows.append(reader.flow(entry))
        except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
            skipped += 1
    notes = reader.notes()
    if skipped:
        notes.append(f"{skipped} of {len(entries)} entries could not be read and were skipped.")
    creator = log.get("creator") if isinstance(log, dict) else None
    written_by_rtinspect = isinstance(creator, dict) and creator.get("name") == _creator()["name"]
    return HarFlows(tuple(flows), tuple(notes), None if written_by_rtinspect else BROWSER_PINGS_MISSING)


def read_har(path: str) -> HarFlows:
    """The flows of the HAR file at ``path``; :class:`~inspector.capture.CaptureError` when it cannot be read."""
    try:
        with open(path, "rb") as file:
            document = json.loads(file.read().decode("utf-8-sig"))
    except OSError as e:
        raise CaptureError(f"cannot read {path}: {e.strerror or e}") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise CaptureError(f"{path}: not valid JSON: {e}") from None
    return flows_from_har(document, path)
