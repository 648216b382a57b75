"""The one message feed every transport of the demo server delivers.

A single async timeline: the feed produces message 1, 2, ... ``count`` at
``rate`` messages per second, and every transport serves the very same
serialized bytes, so their wire costs can be compared message for message.
The whole history stays in memory so late subscribers and pollers that ask
for everything after a sequence number miss nothing.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

PAYLOAD_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class FeedParams:
    """How the feed runs: messages per second, how many, about how big each is
    serialized (bytes), and the SSE heartbeat interval in seconds (0 = none)."""

    rate: float = 20.0
    count: int = 100
    size: int = 256
    heartbeat: float = 0.0

    def __post_init__(self) -> None:
        if self.rate <= 0:
            raise ValueError("rate must be positive")
        if self.count < 0:
            raise ValueError("count must not be negative")
        if self.size < 0:
            raise ValueError("size must not be negative")
        if self.heartbeat < 0:
            raise ValueError("heartbeat must not be negative")


@dataclass(frozen=True)
class Message:
    """One feed message and its JSON text, shared verbatim by all transports."""

    seq: int
    sent_at: float
    json: str


def make_message(seq: int, sent_at: float, size: int) -> Message:
    """A message whose JSON text is ``size`` bytes long, or as short as it can be.

    The padding is pseudo-random (seeded by ``seq``, so reproducible) rather
    than one repeated character, so permessage-deflate and other compression
    are not flattered by a payload no real feed would carry.
    """
    bare = json.dumps({"seq": seq, "sent_at": sent_at, "payload": ""}, separators=(",", ":"))
    filler = random.Random(seq).choices(PAYLOAD_ALPHABET, k=max(0, size - len(bare)))
    text = json.dumps({"seq": seq, "sent_at": sent_at, "payload": "".join(filler)}, separators=(",", ":"))
    return Message(seq=seq, sent_at=sent_at, json=text)


class Feed:
    """The shared timeline: started once, produces ``count`` messages, then ends."""

    def __init__(self, params: FeedParams) -> None:
        self.params = params
        self.messages: list[Message] = []
        self.ended = False
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Condition()

    @property
    def started(self) -> bool:
        return self._task is not None

    @property
    def last_seq(self) -> int:
        return len(self.messages)

    def start(self) -> bool:
        """Begin producing messages on the running loop; False if already started or ended."""
        if self._task is not None or self.ended:
            return False
        self._task = asyncio.get_running_loop().create_task(self._produce())
        return True

    async def close(self) -> None:
        """End the feed now, for server shutdown: no more messages, and every
        waiting client is answered as if the feed had run to its end."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self._end()

    def after(self, seq: int) -> list[Message]:
        """Every message produced so far with a sequence number above ``seq``."""
        return self.messages[max(0, seq) :]

    async def wait_newer(self, seq: int, timeout: float | None = None) -> bool:
        """Wait until a message above ``seq`` exists or the feed has ended.

        Returns whether there is a newer message; False also on timeout.
        """
        async with self._changed:
            try:
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: self.last_seq > seq or self.ended)
            except TimeoutError:
                pass
        return self.last_seq > seq

    async def subscribe(self, after: int = 0) -> AsyncIterator[Message]:
        """Each message above ``after``, as it is produced, until the feed ends."""
        seq = after
        while True:
            for message in self.after(seq):
                seq = message.seq
                yield message
            if not await self.wait_newer(seq):
                return

    def status(self) -> dict[str, object]:
        """The parameters and progress, as served by ``GET /feed/status``."""
        return {
            **asdict(self.params),
            "last_seq": self.last_seq,
            "started": self.started,
            "ended": self.ended,
        }

    async def _produce(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        for seq in range(1, self.params.count + 1):
            await asyncio.sleep(max(0.0, began + (seq - 1) / self.params.rate - loop.time()))
            async with self._changed:
                self.messages.append(make_message(seq, time.time(), self.params.size))
                self._changed.notify_all()
        await self._end()

    async def _end(self) -> None:
        async with self._changed:
            self.ended = True
            self._changed.notify_all()
