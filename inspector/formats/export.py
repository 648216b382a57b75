"""A capture written in another tool's format: pcapng, HAR or a mitmproxy flow file.

Each export takes records (of a capture, or of any file :func:`~inspector.formats.open_traffic`
reads) and a binary stream, and says what it wrote and what it left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import BinaryIO

from ..capture import QUIC, ConnectionOpened, Record

#: Export formats, with the file suffix each is usually given.
EXPORT_SUFFIXES = {"pcapng": ".pcapng", "har": ".har", "mitmproxy": ".flows"}
EXPORT_FORMATS = tuple(EXPORT_SUFFIXES)


@dataclass(frozen=True, slots=True)
class Exported:
    """What an export wrote (``summary``, e.g. "162 packets of 5 connections") and left out."""

    summary: str
    notes: tuple[str, ...] = ()


class _WithoutQuic:
    """Records without those of QUIC connections, which none of the formats holds
    (their streams have no TCP form, and a QUIC packet cannot be made without its keys)."""

    def __init__(self, records: Iterable[Record]) -> None:
        self._records = records
        self._quic: set[int] = set()

    def __iter__(self) -> Iterator[Record]:
        for record in self._records:
            if isinstance(record, ConnectionOpened) and record.transport == QUIC:
                self._quic.add(record.connection_id)
            if record.connection_id not in self._quic:
                yield record

    def notes(self) -> tuple[str, ...]:
        if not self._quic:
            return ()
        return (
            f"{len(self._quic)} QUIC connection(s) are not in the export: their streams have no TCP form "
            "(rtinspect report reads them from the capture).",
        )


def export_records(
    records: Iterable[Record], fmt: str, out: BinaryIO, *, mss: int | None = None, server_port: int | None = None
) -> Exported:
    """Write ``records`` to ``out`` in ``fmt`` (one of :data:`EXPORT_FORMATS`); QUIC
    connections are left out, and the notes say how many.

    ``mss`` and ``server_port`` shape pcapng packets (see :class:`~.pcapng.PcapngWriter`).
    Raises ValueError for an unknown format or option values out of range.
    """
    kept = _WithoutQuic(records)
    exported = _export(kept, fmt, out, mss=mss, server_port=server_port)
    return replace(exported, notes=exported.notes + kept.notes())


def _export(
    records: Iterable[Record], fmt: str, out: BinaryIO, *, mss: int | None, server_port: int | None
) -> Exported:
    if fmt == "pcapng":
        from .pcapng import DEFAULT_MSS, write_pcapng

        written = write_pcapng(records, out, mss=mss or DEFAULT_MSS, server_port=server_port)
        notes: tuple[str, ...] = ()
        if written.stand_ins:
            stand_ins = (
                f"{len(written.stand_ins)} connection(s) had a host name or no address; they are shown with "
                "stand-in addresses, and each connection's first packet carries a comment with the original."
            )
            notes = (stand_ins,)
        return Exported(f"{written.packets} packets of {written.connections} connection(s)", notes)
    if mss is not None or server_port is not None:
        raise ValueError("the segment size and server port shape pcapng packets only")
    from .capture_flows import flows_from_records

    captured = flows_from_records(records)
    if fmt == "har":
        from .har import har_from_flows, har_text

        document = har_from_flows(captured.flows)
        out.write(har_text(document).encode())
        skipped = sum(1 for flow in captured.flows if flow.type != "http")
        notes = captured.notes
        if skipped:
            notes += (f"{skipped} connection(s) carried no HTTP and have no place in HAR.",)
        return Exported(f"{len(document['log']['entries'])} entries", notes)
    if fmt == "mitmproxy":
        from .mitmflows import drop_control_messages, write_flow_file

        notes = captured.notes
        if dropped := drop_control_messages(captured.flows):
            notes += (
                f"{dropped} WebSocket ping(s) and pong(s) are not in the flow file: mitmproxy keeps a session's "
                "text and binary messages only (HAR keeps them).",
            )
        count = write_flow_file(captured.flows, out)
        return Exported(f"{count} flows", notes)
    raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(EXPORT_FORMATS)})")
