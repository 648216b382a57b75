"""The feed as a Server-Sent Events body.

Each message is an event with ``id: <seq>`` and ``data: <json>``, so an
``EventSource`` that reconnects sends ``Last-Event-ID`` and resumes where it
left off. With a heartbeat interval, a ``: heartbeat`` comment goes out every
that many seconds for as long as the stream is open, whether or not messages
flow, so its cost on the wire is easy to account for.

After the last message comes one ``event: end`` event and the stream closes.
An ``EventSource`` treats any close as a reason to reconnect, so clients must
listen for ``end`` and call ``close()`` themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi.sse import format_sse_event

from demo_server.feed import Feed

END_EVENT = "end"
HEARTBEAT = format_sse_event(comment="heartbeat")


async def sse_events(feed: Feed, after: int) -> AsyncIterator[bytes]:
    """Events for every message above ``after``, heartbeats, then ``end``."""
    loop = asyncio.get_running_loop()
    interval = feed.params.heartbeat
    next_heartbeat = loop.time() + interval
    seq = after
    while True:
        for message in feed.after(seq):
            seq = message.seq
            yield format_sse_event(data_str=message.json, id=str(seq))
        if feed.ended and seq >= feed.last_seq:
            yield format_sse_event(event=END_EVENT, data_str=f'{{"last_seq":{feed.last_seq}}}')
            return
        if interval > 0 and loop.time() >= next_heartbeat:
            yield HEARTBEAT
            next_heartbeat += interval
        await feed.wait_newer(seq, next_heartbeat - loop.time() if interval > 0 else None)
