"""Partial summaries: a report's state written to a file, to be merged with others.

``rtinspect report --partial FILE`` writes what a report of its captures
holds before it is made (a :class:`~inspector.summary.ReportBuilder`, what
reading the captures found, their names and the options that classified
them), and ``rtinspect merge`` combines any number of such files, from any
machines, into the report one ``rtinspect report`` over all their captures
would have given: the captures of the first file, then those of the second,
and so on.

The file is gzip-compressed JSON that names its format and version
(:data:`FORMAT`, :data:`VERSION`); it holds what the builder holds, so its
size follows the number of transports, routes and listed connections (at
most :data:`~inspector.summary.CONNECTION_LIST_LIMIT`), never the size of the
captures. It is read as data from anyone: every value is checked, and a
damaged, foreign or newer file is refused with :class:`PartialError`.

Connection ids read as in a report of several captures: ``N:ID``, ``N`` the
capture's number among all the merged captures (a file of one capture holds
ids without the number, and gets it when merged with others).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .capture import CaptureError
from .checked import StateError, fields, items, text, whole
from .classify import Classifier
from .network import NetworkConditions
from .replay import Reading, summarise_captures
from .report import Report
from .summary import ReportBuilder

FORMAT = "rtinspect-partial"
VERSION = 1
#: The most a partial summary may hold once decompressed.
MAX_BYTES = 256 * 1024 * 1024


class PartialError(CaptureError):
    """A file that cannot be read as a partial summary, or partial summaries that
    cannot be merged; the message is one line for the user."""


def classifier_options(classifier: Classifier, *, redact: bool) -> dict[str, Any]:
    """The options a partial summary was classified with, which every merged one must share."""
    return {
        "rules": [asdict(rule) for rule in classifier.rules],
        "long_poll_threshold": classifier.long_poll_threshold,
        "app_messages": [asdict(rule) for rule in classifier.app_messages],
        "app_protocols": [asdict(rule) for rule in classifier.app_protocols],
        "redact": redact,
    }


@dataclass(slots=True)
class Partial:
    """A report's state before it is made: its captures, the options they were
    classified with (as JSON), what reading them found, and the builder."""

    sources: list[str]
    options: dict[str, Any]
    reading: Reading
    builder: ReportBuilder

    def merge(self, other: Partial, *, name: str = "") -> None:
        """Add ``other``'s captures after these (``other`` is spent). ``name``
        is what a mismatch calls ``other`` (its file)."""
        if other.options != self.options:
            keys = dict.fromkeys([*self.options, *other.options])
            differing = ", ".join(_option_name(k) for k in keys if self.options.get(k) != other.options.get(k))
            raise PartialError(
                f"{name or 'partial summary'}: classified with other options than the first ({differing}); "
                "every partial summary of a merge must use the same ones"
            )
        problem = self.builder.mergeable_with(other.builder)
        if problem is not None:
            raise PartialError(f"{name or 'partial summary'}: {problem}")
        ours, theirs = len(self.sources), len(other.sources)
        if ours == 1:
            self.builder.rename_connections(lambda ident: f"1:{ident}")
        other.builder.rename_connections(lambda ident: _numbered(ident, ours, theirs))
        self.builder.merge(other.builder)
        self.reading.merge(other.reading, after=ours)
        self.sources += other.sources

    def report(self) -> Report:
        return self.reading.report(self.builder, self.sources)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "sources": self.sources,
            "options": self.options,
            "reading": {
                "notes": self.reading.notes,
                "still_open": sorted(self.reading.still_open.items()),
                "unknown": sorted(self.reading.unknown.items()),
                "network": [
                    [number, [c.to_json() for c in conditions]]
                    for number, conditions in sorted(self.reading.network.items())
                ],
            },
            "builder": self.builder.to_json(),
        }

    @classmethod
    def from_json(cls, state: object) -> Partial:
        """A partial summary as :meth:`to_json` wrote it; StateError, ValueError,
        KeyError or TypeError if it is not one."""
        state = fields(state, "partial summary")
        sources = [text(source, "source") for source in items(state.get("sources"), "sources")]
        if not sources:
            raise StateError("no captures")
        reading_state = fields(state.get("reading"), "reading")
        reading = Reading(notes=[text(note, "note") for note in items(reading_state.get("notes"), "notes")])
        for name in ("still_open", "unknown"):
            counts = getattr(reading, name)
            for number, count in map(_numbered_pair, items(reading_state.get(name), name)):
                counts[_source_number(number, sources)] = whole(count, name)
        for number, conditions in map(_numbered_pair, items(reading_state.get("network"), "network")):
            reading.network[_source_number(number, sources)] = [
                NetworkConditions.from_json(fields(c, "network conditions")) for c in items(conditions, "network")
            ]
        builder = ReportBuilder.from_json(state.get("builder"))
        for ident in builder.connection_ids():
            if len(sources) > 1:
                number, colon, _ = ident.partition(":")
                if not colon or not number.isdigit() or not 1 <= int(number) <= len(sources):
                    raise StateError(f"connection id {ident!r:.40} does not name one of its {len(sources)} captures")
        return cls(sources, fields(state.get("options"), "options"), reading, builder)


def _numbered_pair(state: object) -> list[Any]:
    found = items(state, "capture figure")
    if len(found) != 2:
        raise StateError("capture figure: expected a capture's number and a figure")
    return found


def _source_number(number: object, sources: Sequence[str]) -> int:
    found = whole(number, "capture number")
    if not 1 <= found <= len(sources):
        raise StateError(f"capture number {found} out of range")
    return found


def _numbered(ident: str, before: int, captures: int) -> str:
    """A connection id of a file of ``captures`` captures, after ``before`` others."""
    if captures == 1:
        return f"{before + 1}:{ident}"
    number, _, rest = ident.partition(":")
    return f"{before + int(number)}:{rest}"


def _option_name(key: str) -> str:
    return {
        "rules": "--transport",
        "long_poll_threshold": "--long-poll-threshold",
        "app_messages": "--app-messages",
        "app_protocols": "--app-protocol",
        "redact": "--redact",
    }.get(key, key)


def write_partial(partial: Partial, file: Any) -> None:
    """Write ``partial`` to a binary file, gzip-compressed (the same bytes for the same state)."""
    data = json.dumps(partial.to_json(), separators=(",", ":"), allow_nan=False).encode()
    file.write(gzip.compress(data, mtime=0))


def read_partial(path: str) -> Partial:
    """The partial summary in ``path``; :class:`PartialError` with one line if it is not one."""
    try:
        with open(path, "rb") as file:
            head = file.read(2)
            file.seek(0)
            if head == b"\x1f\x8b":
                with gzip.GzipFile(fileobj=file) as unzipped:
                    data = unzipped.read(MAX_BYTES + 1)
            else:
                data = file.read(MAX_BYTES + 1)
    except OSError as error:
        if isinstance(error, (gzip.BadGzipFile, EOFError)) or error.errno is None:
            raise PartialError(f"{path}: damaged partial summary (its compression does not read: {error})") from None
        raise PartialError(f"{path}: cannot read: {error.strerror or error}") from None
    except (EOFError, zlib.error) as error:
        raise PartialError(f"{path}: damaged partial summary (its compression does not read: {error})") from None
    if len(data) > MAX_BYTES:
        raise PartialError(f"{path}: larger than a partial summary can be ({MAX_BYTES:,} bytes)")
    try:
        state = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PartialError(f"{path}: not a partial summary (rtinspect report --partial writes them)") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise PartialError(f"{path}: not a partial summary (rtinspect report --partial writes them)")
    version = state.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise PartialError(f"{path}: damaged partial summary (no version)")
    if version > VERSION:
        raise PartialError(
            f"{path}: partial summary version {version} is newer than this rtinspect reads ({VERSION}); upgrade rtinspect"
        )
    if version < VERSION:
        raise PartialError(f"{path}: partial summary version {version} is older than this rtinspect reads ({VERSION})")
    try:
        return Partial.from_json(state)
    except (StateError, ValueError, KeyError, TypeError, AttributeError, IndexError, OverflowError) as error:
        raise PartialError(f"{path}: damaged partial summary ({error})") from None


def partial_from_captures(
    paths: Sequence[str],
    classifier: Classifier,
    *,
    redact: bool = True,
    jobs: int = 1,
    server_ports: Sequence[int] = (),
) -> Partial:
    """The partial summary of the captures at ``paths`` (raises as
    :func:`~inspector.replay.report_from_captures`)."""
    builder, reading = summarise_captures(list(paths), classifier, redact=redact, jobs=jobs, server_ports=server_ports)
    return Partial(list(paths), classifier_options(classifier, redact=redact), reading, builder)


def merge_partials(paths: Sequence[str]) -> Partial:
    """The partial summaries at ``paths`` merged, in that order; :class:`PartialError` with one line
    for a file that cannot be read, or for files classified with different options."""
    merged = read_partial(paths[0])
    for path in paths[1:]:
        merged.merge(read_partial(path), name=path)
    return merged
