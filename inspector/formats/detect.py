"""Which kind of file a path holds, told by its content, not its name.

- an rtinspect capture starts with the capture magic (``\\x89RTCAP\\r\\n``);
- a HAR file is a JSON object (after an optional UTF-8 byte order mark and
  white space), recognised for sure once parsed by its ``log.entries``;
- a mitmproxy flow file (what ``mitmdump -w`` writes) is a run of
  tnetstrings, the first of which is a dictionary: ``<digits>:<body>}``;
- a pcap file starts with one of its four magic numbers (microseconds or
  nanoseconds, either byte order), a pcapng file with its section header
  block's type, ``0a 0d 0d 0a``.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Callable

from ..capture import MAGIC, CaptureError

#: How much of a file detection reads to decide.
_SNIFF_BYTES = 64
_UTF8_BOM = b"\xef\xbb\xbf"
_TNETSTRING_LENGTH = re.compile(rb"(\d{1,12}):")
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")

#: Reads one byte at an offset of the file (empty past its end).
ReadAt = Callable[[int], bytes]

#: What rtinspect reads, in the words error messages use.
READABLE = "rtinspect captures (.rtcap), HAR files, mitmproxy flow files and pcap or pcapng files"


class FileFormat(enum.StrEnum):
    """The kinds of file that :func:`detect_format` tells apart."""

    RTCAP = "rtcap"
    HAR = "har"
    MITMPROXY = "mitmproxy"
    PCAPNG = "pcapng"
    PCAP = "pcap"


def sniff(head: bytes, read_at: ReadAt) -> FileFormat | None:
    """The format of a file that starts with ``head`` (at least its first
    64 bytes, or all of it); ``read_at(offset)`` reads one byte further on
    (empty past the end). None when it is none of :class:`FileFormat`."""
    if head.startswith(MAGIC):
        return FileFormat.RTCAP
    if head.startswith(_PCAPNG_MAGIC):
        return FileFormat.PCAPNG
    if head[:4] in _PCAP_MAGICS:
        return FileFormat.PCAP
    text = head.removeprefix(_UTF8_BOM).lstrip()
    if text.startswith(b"{"):
        return FileFormat.HAR
    match = _TNETSTRING_LENGTH.match(head)
    if match is not None and read_at(match.end() + int(match.group(1))) == b"}":
        return FileFormat.MITMPROXY
    return None


def detect_format(path: str | os.PathLike[str]) -> FileFormat:
    """The format of the file at ``path``.

    Raises :class:`~inspector.capture.CaptureError` (one line for the user)
    when the file cannot be read, is empty, or is of no format rtinspect knows.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as file:
            head = file.read(_SNIFF_BYTES)

            def read_at(offset: int) -> bytes:
                file.seek(offset)
                return file.read(1)

            found = sniff(head, read_at)
    except OSError as e:
        raise CaptureError(f"cannot read {name}: {e.strerror or e}") from None
    if not head:
        raise CaptureError(f"{name}: the file is empty")
    if found is None:
        raise CaptureError(
            f"{name}: not an rtinspect capture (.rtcap), HAR file, mitmproxy flow file, pcap or pcapng file"
        )
    return found
