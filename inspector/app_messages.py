"""Application messages: what the application receives, wherever a body shows it.

A transport's own messages are what it frames: a poll's response, an SSE
event, a WebSocket message. The application may get more than one message out
of one of them: a poll that answers with a JSON array of five updates delivers
five. These are counted so that transports compare per message the
application received:

- an SSE event, a WebSocket message or an NDJSON line is one;
- a JSON body (a poll's or a stream's) whose document is an array counts its
  items, and so does one whose document is an object with a single member that
  is an array (``{"items": [...]}``);
- any other body that carried data is one.

An :class:`AppMessageRule` (``--app-messages 'GET /poll=$.items'``) says where
the items are for the requests it matches; a body where that path does not
lead to an array delivered none. Bodies are read for this up to
:data:`BODY_LIMIT` bytes; a longer one counts as one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .rules import PathRule, split_rule

#: The longest body whose JSON is read to count its items.
BODY_LIMIT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AppMessageRule(PathRule):
    """``[METHOD ]PATH=$[.member...]``: the items of the array at that place in
    the JSON body of matching responses are the application's messages."""

    pattern: str
    members: tuple[str, ...]
    method: str | None = None

    @classmethod
    def parse(cls, text: str) -> AppMessageRule:
        """Parse a rule as written on the command line; ValueError says what is wrong."""
        method, pattern, path = split_rule(text, "application message rule", "PATH=$.member (e.g. /poll=$.items)")
        if path != "$" and not path.startswith("$."):
            raise ValueError(f"application message rule {text!r}: the place must be $ or $.member[.member...]")
        members = tuple(path[2:].split(".")) if path != "$" else ()
        if any(not member for member in members):
            raise ValueError(f"application message rule {text!r}: an empty member name")
        return cls(pattern, members, method)

    def __str__(self) -> str:
        place = "$" + "".join(f".{member}" for member in self.members)
        return f"{self.method + ' ' if self.method else ''}{self.pattern}={place}"


def is_json(media_type: str) -> bool:
    """Whether a response's media type says its body is JSON."""
    return media_type in ("application/json", "text/json") or media_type.endswith("+json")


def json_items(body: bytes, members: tuple[str, ...] | None = None) -> int:
    """How many application messages a JSON body delivered.

    With ``members`` (a rule's place), the items of the array there, or 0 when
    there is none. Without, the items of a top-level array or of the single
    array member of a top-level object, else one. A body that is not JSON is
    one.
    """
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return 1
    if members is not None:
        for member in members:
            if not isinstance(document, dict) or member not in document:
                return 0
            document = document[member]
        return len(document) if isinstance(document, list) else 0
    if isinstance(document, dict) and len(document) == 1:
        (only,) = document.values()
        if isinstance(only, list):
            return len(only)
    return len(document) if isinstance(document, list) else 1


class JsonBody:
    """A response body kept (up to :data:`BODY_LIMIT` bytes) to count its items at its end."""

    __slots__ = ("_chunks", "_members", "_size")

    def __init__(self, members: tuple[str, ...] | None) -> None:
        self._members = members
        self._chunks: list[bytes] | None = []
        self._size = 0

    def feed(self, data: bytes) -> None:
        self._size += len(data)
        if self._chunks is None:
            return
        if self._size > BODY_LIMIT:
            self._chunks = None
        else:
            self._chunks.append(data)

    def messages(self) -> int:
        """The body's application messages (none for an empty body)."""
        if not self._size:
            return 0
        if self._chunks is None:
            return 1
        return json_items(b"".join(self._chunks), self._members)
