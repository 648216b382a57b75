"""Traffic in the formats other tools use: read into rtinspect, written out of it.

- :func:`open_traffic` opens any file rtinspect reads, told by its content
  (:mod:`.detect`): an rtinspect capture, a HAR file (:mod:`.har`), a
  mitmproxy flow file (:mod:`.mitmflows`) or a pcap or pcapng file of
  packets (:mod:`.packets`, its TCP connections put back together by
  :mod:`.tcp`). Imports become the records a capture holds, so the core reads
  them unchanged; connections whose bytes were rebuilt, or that lack bytes
  a packet capture lost, are marked reconstructed.
- :mod:`.export` writes a capture as pcapng (:mod:`.pcapng`), HAR or a
  mitmproxy flow file (from :mod:`.capture_flows`).

Importers load mitmproxy, so they are imported only when a file needs them.
"""

from __future__ import annotations

import os
from collections.abc import Collection

from ..capture import Capture, CaptureError, read_capture
from .detect import READABLE, FileFormat, detect_format
from .imported import ImportedTraffic

#: What a report of imported traffic says about the connections rebuilt from it.
RECONSTRUCTED_NOTE = (
    "Their bytes are rebuilt from what the file keeps (heads, bodies, WebSocket messages): heads, body "
    "framing and WebSocket frame headers are as rtinspect re-encoded them, not as they travelled; "
    "messages, pings and pongs (where the file has them) and payload are the file's. They are marked rebuilt "
    '("reconstructed" in JSON).'
)


def open_traffic(path: str | os.PathLike[str], *, server_ports: Collection[int] = ()) -> Capture | ImportedTraffic:
    """Open a capture, HAR file, mitmproxy flow file, or pcap or pcapng file for reading its records.

    ``server_ports`` are the TCP ports the servers of a pcap or pcapng file
    listened on (other files have no use for them): a packet file cannot be
    read without them.

    Raises :class:`~inspector.capture.CaptureError` (one line for the user) for
    a file that cannot be read, is of no format rtinspect reads, or is damaged,
    and for a packet file without server ports.
    """
    name = os.fspath(path)
    found = detect_format(name)
    if found is FileFormat.RTCAP:
        return read_capture(name)
    if found in (FileFormat.PCAP, FileFormat.PCAPNG):
        from .packets import packet_file

        packets = packet_file(name, found, server_ports)
        return ImportedTraffic(name, found, packets, packets.notes)
    if found is FileFormat.HAR:
        from .har import read_har
        from .mitmflows import RebuiltTraffic

        har = read_har(name)
        rebuilt = RebuiltTraffic(lambda: har.flows, mode="har", pings_missing=har.pings_missing)
        return ImportedTraffic(
            name,
            found,
            rebuilt,
            lambda: _about(
                name,
                [
                    f"{name}: a HAR file of {rebuilt.rebuilt} connection(s). {RECONSTRUCTED_NOTE}",
                    *har.notes,
                    *rebuilt.notes,
                ],
            ),
        )
    if found is FileFormat.MITMPROXY:
        from .mitmflows import FlowFile, RebuiltTraffic

        flows = FlowFile(name)
        rebuilt = RebuiltTraffic(flows)
        if rebuilt.trimmed and not rebuilt.connections:
            raise CaptureError(
                f"{name}: its flows were recorded through rtinspect's addon, which keeps only their last "
                "message; report the capture the addon wrote (--set rtinspect_write=FILE.rtcap) instead"
            )

        def notes() -> list[str]:
            found = [*([flows.truncated] if flows.truncated else []), *rebuilt.notes]
            if rebuilt.rebuilt:
                exact = f" and {rebuilt.exact} of raw TCP flows (exact)" if rebuilt.exact else ""
                found.insert(
                    0,
                    f"{name}: a mitmproxy flow file: {rebuilt.rebuilt} connection(s) of HTTP flows{exact}. {RECONSTRUCTED_NOTE}",
                )
            return _about(name, found)

        return ImportedTraffic(name, found, rebuilt, notes)
    raise CaptureError(f"{name}: a {found} file; rtinspect reads {READABLE}")


def _about(name: str, notes: list[str]) -> list[str]:
    """Each note names the file it is about."""
    return [note if note.startswith(name) else f"{name}: {note}" for note in notes]


__all__ = ["FileFormat", "ImportedTraffic", "detect_format", "open_traffic"]
