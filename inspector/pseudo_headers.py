"""Heads from field lists with pseudo-header fields, as HTTP/2 and HTTP/3 carry them.

Both versions send a request's method, target and a response's status as
pseudo-header fields (``:method``, ``:path``, ``:status``) in a decoded field
list; the heads built here keep every field, pseudo-headers included, as they
travelled, so their sizes are the decoded sizes.
"""

from __future__ import annotations

from .events import Headers, RequestHead, ResponseHead


def _split(headers: Headers) -> tuple[dict[str, str], Headers]:
    pseudo = {name: value for name, value in headers if name.startswith(":")}
    return pseudo, headers


def request_head(exchange: int, headers: Headers, size: int, timestamp: float, http_version: str) -> RequestHead:
    pseudo, fields = _split(headers)
    method = pseudo.get(":method", "")
    target = pseudo.get(":path") or pseudo.get(":authority", "")
    return RequestHead(exchange, method, target, http_version, fields, size, timestamp)


def response_head(exchange: int, headers: Headers, size: int, timestamp: float, http_version: str) -> ResponseHead:
    pseudo, fields = _split(headers)
    try:
        status = int(pseudo.get(":status", "0"))
    except ValueError:
        status = 0
    return ResponseHead(exchange, status, "", http_version, fields, size, timestamp)


def extended_connect_protocol(head: RequestHead) -> str | None:
    """The protocol an extended CONNECT runs on its stream (RFC 8441, RFC 9220), lower-case, or None."""
    if head.method != "CONNECT":
        return None
    protocol = head.header(":protocol")
    return protocol.lower() if protocol is not None else None


def is_websocket_connect(head: RequestHead) -> bool:
    """A request to run WebSocket on its HTTP/2 or HTTP/3 stream (an extended CONNECT, RFC 8441 and RFC 9220)."""
    return extended_connect_protocol(head) == "websocket"


def is_webtransport_connect(head: RequestHead) -> bool:
    """A request that opens a WebTransport session on its HTTP/3 stream (an extended CONNECT)."""
    return extended_connect_protocol(head) == "webtransport"
