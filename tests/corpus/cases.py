"""The malformed and hostile traffic of the corpus: each case's bytes and what the report must say.

A case is one TCP connection through the proxy. The client writes
``client`` (piece by piece) and closes its sending side; the server reads
until that end, writes ``server`` (piece by piece) and closes. ``anomaly`` is
the one anomaly the report must list for the connection: the direction, the
offset in that direction, a substring of the reason and whether it is a
request-smuggling shape. A case without one is traffic that looks odd but is
valid (obsolete line folding in an ordinary field, SSE line ends); SSE cases
also name the data of every event a browser would dispatch.

:func:`describe` turns the cases into the JSON of ``cases.json``, where byte
strings are Latin-1 text: one character per byte.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass
from typing import Any

C2S = "client_to_server"
S2C = "server_to_client"


@dataclass(frozen=True)
class Anomaly:
    direction: str
    offset: int
    #: A substring of the reason.
    reason: str
    security: bool = False


@dataclass(frozen=True)
class Case:
    name: str
    about: str
    client: tuple[bytes, ...]
    server: tuple[bytes, ...] = ()
    anomaly: Anomaly | None = None
    #: The data of each event an EventSource dispatches (SSE cases only).
    events: tuple[str, ...] | None = None

    @property
    def sent(self) -> tuple[bytes, bytes]:
        """What each side sent: (client to server, server to client)."""
        return b"".join(self.client), b"".join(self.server)


# -- HTTP/1.1 pieces

GET = b"GET /corpus HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
OK_EMPTY = b"HTTP/1.1 204 No Content\r\n\r\n"


def post(fields: bytes, body: bytes = b"0\r\n\r\n") -> tuple[bytes, bytes]:
    """A POST head with ``fields`` and the body that follows it."""
    return b"POST /corpus HTTP/1.1\r\nHost: 127.0.0.1\r\n" + fields + b"\r\n", body


def response(fields: bytes, body: bytes = b"") -> tuple[bytes, bytes]:
    """A 200 response head with ``fields`` and the body that follows it."""
    return b"HTTP/1.1 200 OK\r\n" + fields + b"\r\n", body


def smuggling(name: str, about: str, fields: bytes, reason: str) -> Case:
    head, body = post(fields)
    return Case(name, about, (head + body,), (), Anomaly(C2S, 0, reason, security=True))


# -- WebSocket pieces

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT_KEY = base64.b64encode(hashlib.sha1(KEY + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
MASK = b"\x0f\xa1\x5c\x3e"


def upgrade(extensions: bytes = b"") -> bytes:
    return (
        b"GET /socket HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Key: " + KEY + b"\r\nSec-WebSocket-Version: 13\r\n" + extensions + b"\r\n"
    )


def accepted(extensions: bytes = b"") -> bytes:
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + ACCEPT_KEY + b"\r\n" + extensions + b"\r\n"
    )


UPGRADE = upgrade()
ACCEPTED = accepted()
DEFLATE_OFFER = b"Sec-WebSocket-Extensions: permessage-deflate\r\n"


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = False,
    length_bytes: int | None = None,
    length: int | None = None,
) -> bytes:
    """A frame as sent; ``length_bytes`` (0, 2 or 8) forces the length encoding and
    ``length`` the length it claims."""
    claimed = len(payload) if length is None else length
    if length_bytes is None:
        length_bytes = 0 if claimed < 126 else 2 if claimed < 65536 else 8
    first = bytes([0x80 * fin | rsv << 4 | opcode])
    mask_bit = 0x80 * masked
    if length_bytes == 0:
        header = first + bytes([mask_bit | claimed])
    elif length_bytes == 2:
        header = first + bytes([mask_bit | 126]) + struct.pack("!H", claimed)
    else:
        header = first + bytes([mask_bit | 127]) + struct.pack("!Q", claimed)
    if not masked:
        return header + payload
    return header + MASK + bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))


def client_frame(opcode: int, payload: bytes = b"", **options: Any) -> bytes:
    return frame(opcode, payload, masked=True, **options)


TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9
HELLO = frame(TEXT, b"hello")  # a valid server message before the bad frame
HELLO_BACK = client_frame(TEXT, b"hello back")


def websocket(
    name: str,
    about: str,
    *,
    client: bytes = b"",
    server: bytes = b"",
    reason: str,
    before: bytes = b"",
    deflate: bool = False,
) -> Case:
    """An accepted Upgrade, then the bad frame (``client`` or ``server``) after one
    valid message and the valid frames ``before`` from the same side."""
    request = upgrade(DEFLATE_OFFER if deflate else b"")
    answer = accepted(b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if deflate else b"")
    if client:
        valid = request + HELLO_BACK + before
        return Case(name, about, (valid + client,), (answer,), Anomaly(C2S, len(valid), reason))
    valid = answer + HELLO + before
    return Case(name, about, (request,), (valid + server,), Anomaly(S2C, len(valid), reason))


# -- Server-Sent Events

SSE_REQUEST = b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
SSE_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def sse(name: str, about: str, end: bytes) -> Case:
    """The same three events, every line ended by ``end``."""
    lines = [b": heartbeat", b"", b"id: 1", b"data: first", b"", b"event: tick", b"data: two", b"data: lines", b""]
    lines += [b"retry: 1000", b"data:third", b""]
    body = b"".join(line + end for line in lines)
    return Case(name, about, (SSE_REQUEST,), (SSE_HEAD, body), events=("first", "two\nlines", "third"))


def chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


SSE_MIXED = (
    SSE_CHUNKED_HEAD,
    chunk(b"\xef\xbb\xbf: opened\r\ndata: crlf\r\n\r"),  # the CR of a CRLF ends this chunk...
    chunk(b"\ndata: lf\n\ndata: cr\r\rdata: a\r\ndata: b\nd"),  # ...its LF starts this one
    chunk(b"ata: c\r\r\n"),
    chunk(b"data: unfinished"),  # the stream ends inside an event: it is never dispatched
    b"0\r\n\r\n",
)


# -- the cases

OVERSIZED = b"X-Padding: " + b"p" * (17 * 1024) + b"\r\n"
TRUNCATED_HEAD, _ = post(b"Content-Length: 10\r\n")
CHUNKED_HEAD, _ = post(b"Transfer-Encoding: chunked\r\n")
TLS_SERVER_HELLO = b"\x16\x03\x03\x00\x2a\x02\x00\x00\x26\x03\x03" + bytes(range(32)) + b"\x00\xc0\x2f\x00"

CASES: tuple[Case, ...] = (
    # Requests the parser refuses.
    Case(
        "request_line_extra_word",
        "A request line with a fourth word.",
        (b"GET /corpus HTTP/1.1 please\r\nHost: 127.0.0.1\r\n\r\n",),
        anomaly=Anomaly(C2S, 0, "invalid request: illegal request line"),
    ),
    Case(
        "request_line_binary",
        "Binary bytes where a request line belongs.",
        (b"\x00\xff\x13\x37 garbage \x01\r\n\r\n",),
        anomaly=Anomaly(C2S, 0, "invalid request: illegal request line"),
    ),
    Case(
        "header_name_with_space",
        "A field name with a space in it.",
        (b"GET /corpus HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: x\r\n\r\n",),
        anomaly=Anomaly(C2S, 0, "invalid request: illegal header line"),
    ),
    Case(
        "header_without_colon",
        "A field line without a colon.",
        (b"GET /corpus HTTP/1.1\r\nHost: 127.0.0.1\r\nNoColonHere\r\n\r\n",),
        anomaly=Anomaly(C2S, 0, "invalid request: illegal header line"),
    ),
    Case(
        "header_value_with_nul",
        "A field value with a NUL byte in it.",
        (b"GET /corpus HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: a\x00b\r\n\r\n",),
        anomaly=Anomaly(C2S, 0, "invalid request: illegal header line"),
    ),
    Case(
        "continuation_line_first",
        "Obsolete line folding with no field to continue.",
        (b"GET /corpus HTTP/1.1\r\n X-Note: folded\r\nHost: 127.0.0.1\r\n\r\n",),
        anomaly=Anomaly(C2S, 0, "continuation line at start of headers"),
    ),
    Case(
        "oversized_head",
        "A 17 KiB request head: h11 refuses heads over 16 KiB however they arrive.",
        (b"GET /corpus HTTP/1.1\r\nHost: 127.0.0.1\r\n" + OVERSIZED + b"\r\n",),
        anomaly=Anomaly(C2S, 0, "invalid request: Receive buffer too long"),
    ),
    Case(
        "pipelined_then_garbage",
        "A valid request, then garbage on the same connection.",
        (GET, b"\x7fELF\x02\x01\x01\r\n\r\n"),
        (OK_EMPTY,),
        anomaly=Anomaly(C2S, len(GET), "invalid request: illegal request line"),
    ),
    Case(
        "request_bad_chunk_size",
        "A chunked request body whose chunk size is not hexadecimal.",
        post(b"Transfer-Encoding: chunked\r\n", b"zz\r\nhello\r\n0\r\n\r\n"),
        anomaly=Anomaly(C2S, len(CHUNKED_HEAD), "invalid request: illegal chunk header"),
    ),
    Case(
        "request_truncated_body",
        "A request body 3 bytes into a Content-Length of 10, then the client closes.",
        post(b"Content-Length: 10\r\n", b"abc"),
        anomaly=Anomaly(C2S, len(TRUNCATED_HEAD) + 3, "received 3 bytes, expected 10"),
    ),
    Case(
        "request_truncated_chunk",
        "A chunked request body cut inside a chunk.",
        post(b"Transfer-Encoding: chunked\r\n", b"5\r\nab"),
        anomaly=Anomaly(C2S, len(CHUNKED_HEAD) + len(b"5\r\nab"), "incomplete chunked read"),
    ),
    Case(
        "http2_preface",
        "The HTTP/2 connection preface and a SETTINGS frame on an HTTP/1.1 port: HTTP/2 with prior knowledge.",
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x03\x00\x00\x00\x64",),
    ),
    # Request smuggling shapes.
    smuggling(
        "content_length_and_transfer_encoding",
        "Content-Length and Transfer-Encoding in one request (CL.TE / TE.CL).",
        b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "both Content-Length and Transfer-Encoding",
    ),
    smuggling(
        "conflicting_content_lengths",
        "Two Content-Length fields that disagree.",
        b"Content-Length: 5\r\nContent-Length: 6\r\n",
        "conflicting Content-Length",
    ),
    smuggling(
        "conflicting_content_length_list",
        "One Content-Length field holding two lengths.",
        b"Content-Length: 5, 6\r\n",
        "conflicting Content-Length",
    ),
    smuggling(
        "content_length_with_sign",
        "A Content-Length with a plus sign, which some parsers accept.",
        b"Content-Length: +5\r\n",
        "bad Content-Length",
    ),
    smuggling(
        "transfer_encoding_twice",
        "Transfer-Encoding: chunked twice.",
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "multiple Transfer-Encoding",
    ),
    smuggling(
        "transfer_encoding_chunked_identity",
        "Transfer-Encoding: chunked, identity: chunked is not the final coding.",
        b"Transfer-Encoding: chunked, identity\r\n",
        "Only Transfer-Encoding: chunked",
    ),
    smuggling(
        "transfer_encoding_folded",
        "Transfer-Encoding whose value is on an obsolete continuation line.",
        b"Transfer-Encoding:\r\n chunked\r\n",
        "obsolete line folding in Transfer-Encoding",
    ),
    smuggling(
        "content_length_folded",
        "Content-Length whose value is on an obsolete continuation line.",
        b"Content-Length:\r\n\t5\r\n",
        "obsolete line folding in Content-Length",
    ),
    smuggling(
        "transfer_encoding_hidden_in_a_fold",
        "A Transfer-Encoding line folded into another field, beside a Content-Length.",
        b"Content-Length: 5\r\nX-Padding: x\r\n Transfer-Encoding: chunked\r\n",
        "obsolete line folding in Transfer-Encoding",
    ),
    smuggling(
        "transfer_encoding_space_before_colon",
        "Transfer-Encoding with a space before its colon, which a lenient parser strips and obeys.",
        b"Transfer-Encoding : chunked\r\n",
        "whitespace between Transfer-Encoding and its colon",
    ),
    smuggling(
        "content_length_space_before_colon",
        "Content-Length with a tab before its colon, beside a Transfer-Encoding that every parser reads.",
        b"Content-Length\t: 5\r\nTransfer-Encoding: chunked\r\n",
        "whitespace between Content-Length and its colon",
    ),
    Case(
        "response_content_length_and_transfer_encoding",
        "A response with Content-Length and Transfer-Encoding.",
        (GET,),
        response(b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
        anomaly=Anomaly(S2C, 0, "both Content-Length and Transfer-Encoding", security=True),
    ),
    Case(
        "header_folded",
        "Obsolete line folding in an ordinary field: h11 unfolds it, as RFC 9112 allows.",
        (b"GET /corpus HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: one\r\n two\r\n\r\n",),
        (OK_EMPTY,),
    ),
    # Responses the parser refuses.
    Case(
        "status_line_bad_code",
        "A four-digit status code.",
        (GET,),
        (b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",),
        anomaly=Anomaly(S2C, 0, "invalid response: illegal status line"),
    ),
    Case(
        "response_header_without_colon",
        "A response field line without a colon.",
        (GET,),
        (b"HTTP/1.1 200 OK\r\nContent-Length 0\r\n\r\n",),
        anomaly=Anomaly(S2C, 0, "invalid response: illegal header line"),
    ),
    Case(
        "response_bad_chunk_size",
        "A chunked response body whose chunk size is not hexadecimal.",
        (GET,),
        response(b"Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n"),
        anomaly=Anomaly(
            S2C, len(response(b"Transfer-Encoding: chunked\r\n")[0]) + len(b"5\r\nhello\r\n"), "illegal chunk header"
        ),
    ),
    Case(
        "response_truncated_body",
        "A response body 3 bytes into a Content-Length of 10, then the server closes.",
        (GET,),
        response(b"Content-Length: 10\r\n", b"abc"),
        anomaly=Anomaly(S2C, len(response(b"Content-Length: 10\r\n")[0]) + 3, "received 3 bytes, expected 10"),
    ),
    Case(
        "response_truncated_chunk",
        "A chunked response body cut inside a chunk.",
        (GET,),
        response(b"Transfer-Encoding: chunked\r\n", b"5\r\nhel"),
        anomaly=Anomaly(
            S2C, len(response(b"Transfer-Encoding: chunked\r\n")[0]) + len(b"5\r\nhel"), "incomplete chunked read"
        ),
    ),
    Case(
        "tls_from_the_server",
        "The server answers a plaintext request with a TLS handshake record.",
        (GET,),
        (TLS_SERVER_HELLO,),
        anomaly=Anomaly(S2C, 0, "TLS handshake bytes on a plaintext HTTP connection"),
    ),
    Case(
        "garbage_after_101",
        "After a 101, the server sends an HTTP response instead of WebSocket frames.",
        (UPGRADE,),
        (ACCEPTED, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
        anomaly=Anomaly(S2C, len(ACCEPTED), "RSV1 set on a control frame"),
    ),
    # WebSocket frames that break RFC 6455 or RFC 7692.
    websocket(
        "ws_reserved_opcode", "A server frame with opcode 0x3.", server=frame(0x3, b"x"), reason="reserved opcode 0x3"
    ),
    websocket(
        "ws_reserved_control_opcode",
        "A client frame with opcode 0xB.",
        client=client_frame(0xB),
        reason="reserved opcode 0xB",
    ),
    websocket(
        "ws_rsv1_without_extension",
        "RSV1 on a server frame when permessage-deflate was not negotiated.",
        server=frame(TEXT, b"x", rsv=0b100),
        reason="RSV1 set but permessage-deflate was not negotiated",
    ),
    websocket(
        "ws_rsv2_and_rsv3",
        "RSV2 and RSV3 on a client frame; no extension defines them.",
        client=client_frame(TEXT, b"x", rsv=0b011),
        reason="RSV2 or RSV3 set",
    ),
    websocket(
        "ws_unmasked_client_frame",
        "A client frame without a mask.",
        client=frame(TEXT, b"unmasked"),
        reason="client frame not masked",
    ),
    websocket(
        "ws_masked_server_frame",
        "A server frame with a mask.",
        server=client_frame(TEXT, b"masked"),
        reason="server frame masked",
    ),
    websocket(
        "ws_control_frame_too_long",
        "A ping with 126 bytes of payload (at most 125 allowed).",
        server=frame(PING, b"p" * 126),
        reason="control frame payload of 126 bytes",
    ),
    websocket(
        "ws_fragmented_control_frame",
        "A client ping without FIN.",
        client=client_frame(PING, b"ping", fin=False),
        reason="fragmented control frame",
    ),
    websocket(
        "ws_invalid_close_code",
        "A close frame with code 1005, which must never be sent.",
        server=frame(CLOSE, struct.pack("!H", 1005) + b"bye"),
        reason="invalid close code 1005",
    ),
    websocket(
        "ws_invalid_utf8_text",
        "A client text message that is not UTF-8.",
        client=client_frame(TEXT, b"caf\xe9 \xff\xfe"),
        reason="invalid UTF-8 in a text message",
    ),
    websocket(
        "ws_length_not_minimal_16",
        "A 5-byte payload length encoded in 16 bits.",
        server=frame(TEXT, b"short", length_bytes=2),
        reason="payload length 5 encoded in 16 bits (not minimal)",
    ),
    websocket(
        "ws_length_not_minimal_64",
        "A 200-byte payload length encoded in 64 bits.",
        client=client_frame(BINARY, bytes(200), length_bytes=8),
        reason="payload length 200 encoded in 64 bits (not minimal)",
    ),
    websocket(
        "ws_length_2_63",
        "A payload length of 2**63 (the most significant bit must be 0).",
        server=frame(BINARY, b"tail", length_bytes=8, length=2**63),
        reason="64-bit payload length with the most significant bit set",
    ),
    websocket(
        "ws_continuation_without_message",
        "A continuation frame with no message to continue.",
        client=client_frame(0x0, b"orphan"),
        reason="continuation frame with no message in progress",
    ),
    websocket(
        "ws_new_message_inside_fragmented_one",
        "A text frame while a fragmented message is still open.",
        before=frame(TEXT, b"part", fin=False),
        server=frame(TEXT, b"again"),
        reason="new data frame while a fragmented message is in progress",
    ),
    websocket(
        "ws_corrupt_deflate",
        "A compressed message whose deflate data is not deflate.",
        server=frame(TEXT, b"\xff\xff\xff\xff\xff", rsv=0b100),
        reason="corrupt permessage-deflate data",
        deflate=True,
    ),
    # Event streams: every line end is valid; the events are what matters.
    sse("sse_crlf_line_ends", "An event stream whose lines end in CRLF.", b"\r\n"),
    sse("sse_lf_line_ends", "An event stream whose lines end in LF.", b"\n"),
    sse("sse_cr_line_ends", "An event stream whose lines end in CR.", b"\r"),
    Case(
        "sse_mixed_line_ends",
        "CRLF, LF and CR mixed in one chunked stream, a CRLF split across chunks, a BOM, "
        "and an event the stream ends inside.",
        (SSE_REQUEST,),
        SSE_MIXED,
        events=("crlf", "lf", "cr", "a\nb\nc"),
    ),
)

#: The normal request that follows every case through the same proxy.
FOLLOW_UP = Case(
    "follow_up",
    "A normal request after the case, on a new connection through the same proxy.",
    (b"GET /after HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",),
)


def _text(data: bytes) -> str:
    return data.decode("latin-1")


def case_to_dict(case: Case) -> dict[str, Any]:
    c2s, s2c = case.sent
    d: dict[str, Any] = {
        "name": case.name,
        "about": case.about,
        "recording": f"{case.name}.rtcap",
        C2S: _text(c2s),
        S2C: _text(s2c),
        "anomaly": None,
    }
    if case.anomaly is not None:
        a = case.anomaly
        d["anomaly"] = {"direction": a.direction, "offset": a.offset, "reason": a.reason, "security": a.security}
    if case.events is not None:
        d["events"] = list(case.events)
    return d


def describe(cases: tuple[Case, ...] = CASES) -> dict[str, Any]:
    """``cases.json``: every case, and the follow-up request each recording ends with."""
    return {
        "about": (
            "Malformed and hostile traffic recorded through rtinspect proxy by tests/corpus/record.py. "
            "Each recording holds the case's connection, then the follow-up connection."
        ),
        "bytes": "Byte strings are Latin-1 text: each character is one byte.",
        "follow_up": {C2S: _text(FOLLOW_UP.sent[0]), S2C: _text(FOLLOW_UP.sent[1])},
        "cases": [case_to_dict(case) for case in cases],
    }
