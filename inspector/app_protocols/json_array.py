"""Where the items of a JSON array lie in its bytes, to give each item its share of them.

Protocols that batch messages in one JSON array (SockJS frames, Phoenix long
polls) deliver one application message per item. Each item takes the bytes
from the end of the previous item's share: the first takes the opening bracket
and whatever precedes it, each later one its comma, and the last the closing
bracket and whatever follows.

The text is read as Latin-1 so that character offsets are byte offsets: every
byte of a multi-byte UTF-8 sequence is above 0x7F, so none of them is taken
for a bracket, comma or quote, and the structure found is the structure of the
UTF-8 text.
"""

from __future__ import annotations

import itertools
import json

_decoder = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


def _skip_whitespace(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WHITESPACE:
        i += 1
    return i


def item_sizes(data: bytes) -> list[int] | None:
    """The bytes of ``data`` each item of the JSON array it holds takes, or None when it holds none.

    The sizes add up to ``len(data)``. An empty array gives an empty list.
    """
    text = data.decode("latin-1")
    i = _skip_whitespace(text, 0)
    if not text.startswith("[", i):
        return None
    i = _skip_whitespace(text, i + 1)
    empty = text.startswith("]", i)
    cuts: list[int] = []
    while not empty:
        try:
            _, i = _decoder.raw_decode(text, i)
        except (ValueError, RecursionError):
            return None
        i = _skip_whitespace(text, i)
        if text.startswith("]", i):
            break
        if not text.startswith(",", i):
            return None
        cuts.append(i)
        i = _skip_whitespace(text, i + 1)
    if _skip_whitespace(text, i + 1) != len(text):
        return None
    if empty:
        return []
    bounds = [0, *cuts, len(text)]
    return [b - a for a, b in itertools.pairwise(bounds)]
