"""Expectations about a report, checked with failures that say what differed.

``assert_transport(report, "websocket", messages_server_to_client=200,
max_overhead_ratio=0.1)`` checks figures of one transport's
:class:`~inspector.report.TransportSummary` and raises :class:`AssertionError`
naming the transport, each figure that missed, what was expected, what was
measured, and the connections that carried the transport.

A keyword names a figure by its path through the summary joined with ``_``:
``connections``, ``messages_server_to_client``, ``wire_bytes_total``,
``bytes_per_message_p95``, ``categories_frame_header_client_to_server``,
``websocket_data_frames_server_to_client``, ``http2_header_block_bytes_total``,
``http2_frames_client_to_server_HEADERS``. As is, the figure must equal the
value (floats to a relative 1e-9; ``pytest.approx`` works too); with ``min_``
or ``max_`` in front, it must be at least or at most the value. With
``protocol="h2"`` (or ``"http/1.1"``), the figures are those of the transport's
connections of that protocol (its ``by_protocol`` entry).

The checks raise their own messages rather than rely on ``assert``
statements, so they read the same with or without pytest's assertion
rewriting, and under ``python -O``.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .http2 import FRAME_TYPE_NAMES
from .report import ConnectionSummary, PerDirection, Report, TransportSummary
from .wire import Category, Direction

#: Connections listed under a failure; the rest are counted.
CONNECTIONS_SHOWN = 10
#: Anomalies listed under each connection shown.
ANOMALIES_SHOWN = 3

_BOUNDS = {"": "==", "min_": ">=", "max_": "<="}


def _figure_paths(cls: type, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every figure of a report dataclass, as attribute paths (dict keys for ``categories``)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name == "by_protocol":
            continue  # checked with ``protocol=``
        path = (*prefix, field.name)
        yield path
        kind = _without_none(hints[field.name])
        if field.name == "frames" and prefix == ("http2",):
            for direction in Direction:
                yield from ((*path, direction.value, name) for name in FRAME_TYPE_NAMES.values())
        elif typing.get_origin(kind) is dict:
            for category in Category:
                yield (*path, category.value)
                yield from _figure_paths(PerDirection, (*path, category.value))
        elif dataclasses.is_dataclass(kind):
            yield from _figure_paths(kind, path)  # type: ignore[arg-type]
    if cls is PerDirection:
        yield (*prefix, "total")


def _without_none(kind: Any) -> Any:
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        options = [option for option in typing.get_args(kind) if option is not type(None)]
        return options[0] if len(options) == 1 else kind
    return kind


#: Keyword name -> attribute path, for every figure of a transport summary.
FIGURES: dict[str, tuple[str, ...]] = {"_".join(path): path for path in _figure_paths(TransportSummary)}


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One figure that missed: ``actual`` where ``expected`` was wanted (``bound``: ==, >= or <=)."""

    figure: str
    bound: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        wanted = {"==": "", ">=": "at least ", "<=": "at most "}[self.bound]
        return f"{self.figure} is {_show(self.actual)}, expected {wanted}{_show(self.expected)}"


@dataclass(frozen=True, slots=True)
class Expectation:
    """A bound on one figure of a transport summary."""

    path: tuple[str, ...]
    bound: str
    expected: Any

    @classmethod
    def parse(cls, keyword: str, expected: Any) -> Expectation:
        """The expectation a keyword states; TypeError for a name that is no figure."""
        for prefix, bound in sorted(_BOUNDS.items(), key=lambda item: -len(item[0])):
            name = keyword.removeprefix(prefix)
            if keyword.startswith(prefix) and name in FIGURES:
                return cls(FIGURES[name], bound, expected)
        close = difflib.get_close_matches(keyword.removeprefix("min_").removeprefix("max_"), FIGURES, n=3)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise TypeError(f"{keyword!r} is not a figure of a transport summary{hint}")

    @property
    def figure(self) -> str:
        return ".".join(self.path)

    def check(self, summary: TransportSummary) -> Mismatch | None:
        actual = figure_of(summary, self.path)
        if _holds(actual, self.bound, self.expected):
            return None
        return Mismatch(self.figure, self.bound, self.expected, actual)


def figure_of(summary: TransportSummary, path: tuple[str, ...]) -> Any:
    """The figure at ``path`` (None where a part of the way is missing, e.g. no WebSocket figures)."""
    value: Any = summary
    for part in path:
        if value is None:
            return None
        value = value.get(part) if isinstance(value, dict) else getattr(value, part)
    return value


def _holds(actual: Any, bound: str, expected: Any) -> bool:
    if bound == "==":
        if _is_number(actual) and _is_number(expected) and (isinstance(actual, float) or isinstance(expected, float)):
            return math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)
        return bool(actual == expected)
    if not _is_number(actual):
        return False
    return actual >= expected if bound == ">=" else actual <= expected


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return repr(value) if not isinstance(value, int) else str(value)


def _over(summary: TransportSummary, protocol: str | None) -> TransportSummary | None:
    return summary if protocol is None else summary.by_protocol.get(protocol)


def check_transport(
    report: Report, transport: str, /, *, protocol: str | None = None, **expected: Any
) -> tuple[Mismatch, ...]:
    """The figures of ``transport`` (over ``protocol``) that miss the expectations (none: all held).

    Raises KeyError naming the transports present when ``transport`` is not in
    the report (or not over that protocol), and TypeError for a keyword that
    names no figure.
    """
    expectations = [Expectation.parse(keyword, value) for keyword, value in expected.items()]
    summary = _over(report.transport(transport), protocol)
    if summary is None:
        raise KeyError(missing_transport_message(report, transport, protocol))
    return tuple(mismatch for e in expectations if (mismatch := e.check(summary)) is not None)


def assert_transport(
    report: Report, transport: str, /, *, protocol: str | None = None, **expected: Any
) -> TransportSummary:
    """Check figures of one transport (over ``protocol``, when given; see the
    module's docstring for the keywords) and return its summary;
    AssertionError says what missed and where.

    ``assert_transport(report, "sse")`` alone checks that the report has SSE
    traffic, and ``assert_transport(report, "sse", protocol="h2")`` SSE over HTTP/2.
    """
    __tracebackhide__ = True
    expectations = [Expectation.parse(keyword, value) for keyword, value in expected.items()]
    whole = report.transports.get(transport)
    summary = _over(whole, protocol) if whole is not None else None
    if summary is None:
        raise AssertionError(missing_transport_message(report, transport, protocol))
    mismatches = [mismatch for e in expectations if (mismatch := e.check(summary)) is not None]
    if mismatches:
        raise AssertionError(mismatch_message(report, transport, mismatches))
    return summary


def missing_transport_message(report: Report, transport: str, protocol: str | None = None) -> str:
    present = ", ".join(
        f"{name} ({s.connections} connection{'s' * (s.connections != 1)}"
        f"{'; ' + ', '.join(s.by_protocol) if protocol else ''})"
        for name, s in report.transports.items()
    )
    sources = f" in {', '.join(report.sources)}" if report.sources else ""
    over = f" over {protocol}" if protocol else ""
    return f"no {transport!r} traffic{over}{sources}; present: {present or 'none'}"


def mismatch_message(report: Report, transport: str, mismatches: list[Mismatch]) -> str:
    """What missed, then the connections whose transport this is."""
    lines = [f"{transport}: {len(mismatches)} figure{'s' * (len(mismatches) != 1)} not as expected"]
    lines += [f"  {mismatch}" for mismatch in mismatches]
    involved = [c for c in report.connections if c.transport == transport]
    if involved:
        lines.append(f"{transport} connections ({len(involved)}):")
        for connection in involved[:CONNECTIONS_SHOWN]:
            lines += _connection_lines(connection)
        if len(involved) > CONNECTIONS_SHOWN:
            lines.append(f"  ... and {len(involved) - CONNECTIONS_SHOWN} more")
    else:
        lines.append(f"no connection is {transport} as a whole; its exchanges ran on connections of other transports")
    return "\n".join(lines)


def _connection_lines(c: ConnectionSummary) -> list[str]:
    targets = f" {' '.join(c.targets)}" if c.targets else ""
    lines = [
        f"  connection {c.id}: {c.client} -> {c.server}{targets}; "
        f"messages {_pair(c.messages)}, wire bytes {_pair(c.wire_bytes)}, "
        f"payload bytes {_pair(c.payload_bytes)}; {c.close_reason or 'open'}"
    ]
    for anomaly in c.anomalies[:ANOMALIES_SHOWN]:
        lines.append(f"    anomaly {anomaly.direction.value} at byte {anomaly.offset}: {anomaly.reason}")
    if len(c.anomalies) > ANOMALIES_SHOWN:
        lines.append(f"    ... and {len(c.anomalies) - ANOMALIES_SHOWN} more anomalies")
    return lines


def _pair(figures: PerDirection) -> str:
    return f"client_to_server {figures.client_to_server}, server_to_client {figures.server_to_client}"


__all__ = ["FIGURES", "Expectation", "Mismatch", "assert_transport", "check_transport", "figure_of"]
