"""Line-delimited HTTP streams: NDJSON, JSON Lines and other bodies with one message a line.

A message is the content of one non-empty line. Lines end in LF or CRLF (a lone
CR is content). Line contents are :attr:`Category.PAYLOAD`; line ends and blank
lines are :attr:`Category.MESSAGE_SYNTAX`. Line contents are not validated: a
line that is not JSON is still a message, so a line stream has no anomalies.
"""

from __future__ import annotations

from .events import StreamMessage
from .wire import ByteAccount, Category


class LineStream:
    """Reads one line-delimited body, fed in chunks as they arrived.

    Results do not depend on how the body was split into chunks. Blank lines
    (keep-alives) are not messages; their bytes count as syntax of the stream and
    belong to no message.
    """

    __slots__ = ("_buf", "account")

    def __init__(self) -> None:
        #: Body bytes by category, for every byte whose category is settled.
        self.account = ByteAccount()
        # The line being read.
        self._buf = bytearray()

    @property
    def pending_bytes(self) -> int:
        """Bytes of the line being read: fed but not yet in :attr:`account`."""
        return len(self._buf)

    def feed(self, data: bytes, timestamp: float) -> list[StreamMessage]:
        """Consume the next chunk of the body; return the messages it completed."""
        buf = self._buf
        searched_from = len(buf)
        buf += data
        cut = buf.find(b"\n", searched_from) + 1
        if not cut:
            return []
        cut = buf.rfind(b"\n") + 1
        lines = bytes(buf[:cut]).split(b"\n")
        del buf[:cut]
        lines.pop()
        messages: list[StreamMessage] = []
        payload = 0
        syntax = 0
        for line in lines:
            size = len(line)
            end = 1
            if size and line[-1] == 0x0D:
                size -= 1
                end = 2
            syntax += end
            if size:
                payload += size
                messages.append(StreamMessage(size + end, size, timestamp))
        self.account.add(Category.PAYLOAD, payload)
        self.account.add(Category.MESSAGE_SYNTAX, syntax)
        return messages

    def close(self, timestamp: float) -> list[StreamMessage]:
        """End of the body: an unterminated last line is a message, completed now."""
        size = len(self._buf)
        self._buf.clear()
        if not size:
            return []
        self.account.add(Category.PAYLOAD, size)
        return [StreamMessage(size, size, timestamp)]
