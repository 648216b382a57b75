"""The analysis of a running proxy, away from its relay: capture records in, messages out.

In ``--analysis process`` mode the proxy's relay only records each socket
read and hands the records, encoded as in a capture file, to an analyser in
another process (:mod:`inspector.analyser_process`). This module is that
analyser's work, with no sockets or processes: the same core as ``rtinspect
report`` (:class:`~inspector.connection.ConnectionAnalyzer` with the
:class:`~inspector.classify.Classifier`, then
:class:`~inspector.summary.ReportBuilder`), fed record by record, answering
the relay with the small dataclasses below.

Besides capture records, the relay sends events on connection 0 that ask for
something (:data:`SYNC`, :data:`FINISH`) and, per connection,
:data:`ABANDONED` when it stopped feeding that connection because the
analyser had fallen too far behind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

from .app_messages import AppMessageRule
from .capture import ConnectionOpened, Event, Record
from .classify import DEFAULT_LONG_POLL_THRESHOLD, AppProtocolRule, Classifier, TransportRule
from .connection import ConnectionAnalyzer, ConnectionRecord
from .driver import DamagedRecord, RecordDriver
from .report import Report
from .summary import ReportBuilder

#: Event (connection 0): answer with :class:`Synced` once every record before it is analysed.
SYNC = "analyser sync"
#: Event (connection 0): the relay has sent everything; answer with :class:`Finished`.
FINISH = "analyser finish"
#: Event (per connection): the relay stopped feeding this connection; leave it out.
ABANDONED = "analysis abandoned"
_REQUESTS = frozenset({SYNC, FINISH, ABANDONED})


@dataclass(frozen=True, slots=True)
class AnalyserSettings:
    """What the analysis needs to know, as ``rtinspect proxy`` was asked for it.

    ``live_view`` asks for a :class:`LiveView` about once a second;
    ``metrics`` for the records of closed connections in each :class:`Synced`.
    ``capture`` is the capture file the relay writes, named in the notes.
    """

    rules: tuple[TransportRule, ...] = ()
    long_poll_threshold: float = DEFAULT_LONG_POLL_THRESHOLD
    app_messages: tuple[AppMessageRule, ...] = ()
    app_protocols: tuple[AppProtocolRule, ...] = ()
    redact: bool = True
    sources: tuple[str, ...] = ()
    capture: str | None = None
    live_view: bool = False
    metrics: bool = False
    #: Bytes the relay may hold for the analyser before it stops feeding connections.
    backlog_limit: int = 64 * 1024 * 1024

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> AnalyserSettings:
        value = json.loads(text)
        value["rules"] = tuple(TransportRule(**rule) for rule in value["rules"])
        value["app_messages"] = tuple(
            AppMessageRule(rule["pattern"], tuple(rule["members"]), rule["method"]) for rule in value["app_messages"]
        )
        value["app_protocols"] = tuple(AppProtocolRule(**rule) for rule in value.get("app_protocols", ()))
        value["sources"] = tuple(value["sources"])
        return cls(**value)


@dataclass(frozen=True, slots=True)
class LiveView:
    """What the live view shows: the report so far, open connections included,
    and how many connections the analyser has seen."""

    report: Report
    seen: int


@dataclass(frozen=True, slots=True)
class Synced:
    """The answer to a :data:`SYNC` event: connections closed since the last
    answer, in the order they closed, and a snapshot of each open one (both
    without their whole exchanges; with ``metrics`` off, both empty)."""

    sync_id: int
    closed: tuple[ConnectionRecord, ...]
    open_now: tuple[ConnectionRecord, ...]


@dataclass(frozen=True, slots=True)
class Finished:
    """The final report, once every record the relay sent is analysed."""

    report: Report


AnalyserMessage = LiveView | Synced | Finished


def abandoned_note(count: int, limit: int, capture: str | None) -> str:
    """The report note for connections the relay stopped feeding to the analyser."""
    where = (
        f"the capture {capture} holds all of their traffic: rtinspect report {capture} gives the full figures"
        if capture
        else "record with -w CAPTURE to keep their traffic for rtinspect report"
    )
    return (
        f"{count:,} connection(s) are not in these figures: the analyser fell more than {limit / 2**20:,.0f} MiB "
        f"behind the relay, which stopped feeding it their traffic rather than slow relaying down; {where}."
    )


class Analyser:
    """Capture records in, in the order the relay wrote them; messages out.

    Each connection is analysed from its "opened" record to its "closed"
    record and then folded into the report, exactly as ``rtinspect report``
    folds a capture.
    """

    def __init__(self, settings: AnalyserSettings) -> None:
        self.settings = settings
        classifier = Classifier(
            tuple(settings.rules), settings.long_poll_threshold, settings.app_messages, settings.app_protocols
        )
        self._builder = ReportBuilder(redact=settings.redact)
        self._driver: RecordDriver[ConnectionAnalyzer, ConnectionRecord] = RecordDriver(
            lambda opened: ConnectionAnalyzer(opened, classifier=classifier)
        )
        #: Whether the records of closed connections are kept for the next :class:`Synced`.
        self.keep_closed = settings.metrics
        self._closed: list[ConnectionRecord] = []
        self._abandoned: set[int] = set()
        self.finished = False
        #: Whether anything changed since the last live view.
        self.changed = False

    def feed(self, records: Iterable[Record]) -> list[AnalyserMessage]:
        """Analyse ``records``; the answers to the requests among them, in order."""
        answers: list[AnalyserMessage] = []
        driver = self._driver
        for record in records:
            if isinstance(record, Event) and record.name in _REQUESTS:
                answer = self._request(record)
                if answer is not None:
                    answers.append(answer)
            elif isinstance(record, ConnectionOpened) and record.connection_id in self._abandoned:
                continue
            else:
                try:
                    closed = driver.feed(record)
                except DamagedRecord:
                    continue  # the relay wrote them; the capture's reader says where
                if closed is not None:
                    self._builder.add(closed)
                    if self.keep_closed:
                        self._closed.append(closed.without_detail())
        self.changed = True
        return answers

    def _request(self, event: Event) -> AnalyserMessage | None:
        if event.name == ABANDONED:
            self._driver.drop(event.connection_id)
            self._abandoned.add(event.connection_id)
        elif event.name == SYNC:
            closed, self._closed = tuple(self._closed), []
            live = self._driver.open_consumers if self.keep_closed else ()
            open_now = tuple(analyzer.snapshot().without_detail() for analyzer in live)
            return Synced(int(event.data["id"]), closed, open_now)
        elif event.name == FINISH:
            return self.finish()
        return None

    def live_view(self) -> LiveView:
        """The report so far, with the connections still open."""
        self.changed = False
        open_now = [analyzer.snapshot() for analyzer in self._driver.open_consumers]
        return LiveView(self._builder.snapshot(open_now), self._builder.connection_count + len(open_now))

    def finish(self) -> Finished:
        """The final report (connections still open are in it as they are now)."""
        settings = self.settings
        notes = []
        if self._abandoned:
            notes.append(abandoned_note(len(self._abandoned), settings.backlog_limit, settings.capture))
        open_now = [analyzer.snapshot() for analyzer in self._driver.open_consumers]
        self.finished = True
        return Finished(self._builder.snapshot(open_now, sources=settings.sources, notes=notes))


__all__ = [
    "ABANDONED",
    "FINISH",
    "SYNC",
    "Analyser",
    "AnalyserMessage",
    "AnalyserSettings",
    "Finished",
    "InProcessAnalysis",
    "LiveView",
    "Synced",
    "abandoned_note",
]


class InProcessAnalysis:
    """The analysis on the relay's own path (``--analysis inline``): the same
    :class:`Analyser`, fed each record as the relay records it, behind the
    handle :class:`~inspector.analyser_process.AnalyserProcess` offers, so the
    proxy has one path whichever way it analyses."""

    def __init__(self, settings: AnalyserSettings) -> None:
        self.settings = settings
        self.analyser = Analyser(settings)
        #: In-process analysis never dies or falls behind; kept for the proxy's one path.
        self.alive = True
        self.abandoned = 0

    def add_record(self, record: Record, encoded: bytes) -> None:
        """One record, as the relay wrote it (``encoded`` is for a process; not needed here)."""
        self.analyser.feed((record,))

    @property
    def view(self) -> LiveView:
        return self.analyser.live_view()

    async def records(self, timeout: float) -> tuple[list[ConnectionRecord], tuple[ConnectionRecord, ...]]:
        """Connections closed since the last call, and a snapshot of each open one."""
        (synced,) = self.analyser.feed((Event(0, time.time(), SYNC, {"id": 0}),))
        assert isinstance(synced, Synced)
        return list(synced.closed), synced.open_now

    async def finish(self) -> Finished | None:
        return self.analyser.finish()

    def close(self) -> None:
        pass
