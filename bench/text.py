"""Message payloads: JSON-like text that compresses about as well as real chat or feed traffic."""

from __future__ import annotations

import random

_WORDS = (
    "the quick brown fox jumps over lazy dog price update order filled bid ask spread user joined left "
    "typing message sent delivered read channel general random alpha beta gamma delta status ok error "
    "retry latency p50 p99 cursor offset stream event heartbeat tick quote trade volume symbol"
).split()


def _pool(size: int = 1 << 20, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    parts: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(_WORDS)
        if rng.random() < 0.1:
            word = f"{rng.randrange(1_000_000)}"
        parts.append(word)
        length += len(word) + 1
    return " ".join(parts).encode("ascii")[:size]


POOL = _pool()


def payload(size: int, seq: int) -> bytes:
    """``size`` bytes of text for message ``seq``: a sequence number, then words from the pool."""
    head = b'{"seq":%d,"text":"' % seq
    if size <= len(head) + 2:
        return (head + b'"}')[:size].ljust(size, b" ")
    body = size - len(head) - 2
    start = (seq * 7919) % (len(POOL) - body) if body < len(POOL) else 0
    return head + POOL[start : start + body] + b'"}'
