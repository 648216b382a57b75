"""Malformed and hostile traffic: relayed unchanged, flagged where it breaks, counted exactly.

The corpus (``tests/corpus``, made by ``tests/corpus/record.py`` through the
real proxy) holds one recording per case: the case's connection, then a normal
request through the same proxy. Each recording must hold exactly the bytes
each side sent, and its report must flag the case's anomaly where
``cases.json`` says, with every byte in exactly one category. Live, a few
cases go through one proxy with normal requests between them, and hypothesis
sends random and mutated byte streams through another.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus.cases import CASES, FOLLOW_UP, Case, describe
from corpus.record import Replies, play
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mitmproxy.net.tls import starts_like_tls_record
from servers import ScriptedServer, running_proxy
from test_proxy import captured

from inspector.capture import DataChunk, read_capture
from inspector.events import BodyData
from inspector.http1 import Http1Parser
from inspector.replay import analyze_captures, report_from_captures
from inspector.report import PerDirection, Report
from inspector.sse import SseStream
from inspector.wire import Direction

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
CORPUS = Path(__file__).resolve().parent / "corpus"
DESCRIBED: dict[str, Any] = json.loads((CORPUS / "cases.json").read_text(encoding="utf-8"))
FOLLOW_UP_SENT = tuple(DESCRIBED["follow_up"][d].encode("latin-1") for d in Direction)


def sent(described: dict[str, Any]) -> tuple[bytes, bytes]:
    """What each side of a described case sent: (client to server, server to client)."""
    return described[C2S].encode("latin-1"), described[S2C].encode("latin-1")


def test_cases_json_describes_the_cases_and_every_recording_exists() -> None:
    assert DESCRIBED == describe(), "cases.py changed: rerun tests/corpus/record.py"
    missing = [c["recording"] for c in DESCRIBED["cases"] if not (CORPUS / c["recording"]).is_file()]
    assert missing == []


def assert_flagged(report: Report, expected: dict[str, Any] | None) -> None:
    """The case's connection has exactly the expected anomaly; the follow-up has none."""
    case_connection, follow_up = report.connections
    assert follow_up.anomalies == ()
    if expected is None:
        assert case_connection.anomalies == ()
        return
    (anomaly,) = case_connection.anomalies
    assert anomaly.direction.value == expected["direction"]
    assert anomaly.offset == expected["offset"]
    assert expected["reason"] in anomaly.reason
    assert anomaly.security == expected["security"]


def assert_exact(path: Path, report: Report, streams: list[tuple[bytes, bytes]]) -> None:
    """Every byte sent is in exactly one category: per connection and per transport."""
    records = {record.id: record for record in analyze_captures([path]).records}
    for connection, (c2s, s2c) in zip(report.connections, streams, strict=True):
        assert connection.wire_bytes == PerDirection(len(c2s), len(s2c))
        record = records[connection.id]
        assert sum(record.account(C2S).as_dict().values()) == len(c2s)
        assert sum(record.account(S2C).as_dict().values()) == len(s2c)
    for direction in Direction:
        categories = sum(split[direction] for t in report.transports.values() for split in t.categories.values())
        wire = sum(t.wire_bytes[direction] for t in report.transports.values())
        assert categories == wire == sum(len(pair[direction is S2C]) for pair in streams)


def sse_events(path: Path) -> list[str]:
    """The data of every event an EventSource would dispatch from the first connection's response."""
    http, stream, events = Http1Parser(), SseStream(), []
    with read_capture(path) as capture:
        for record in capture:
            if isinstance(record, DataChunk) and record.connection_id == 1:
                for event in http.feed(record.direction, record.data, record.timestamp):
                    if isinstance(event, BodyData) and event.direction is S2C:
                        events += stream.feed(event.data, event.timestamp)
    events += stream.close(0.0)
    return [event.data for event in events]


@pytest.mark.parametrize("described", DESCRIBED["cases"], ids=[c["name"] for c in DESCRIBED["cases"]])
def test_recorded_case(described: dict[str, Any]) -> None:
    path = CORPUS / described["recording"]
    streams = [sent(described), FOLLOW_UP_SENT]
    assert [connection.streams for connection in captured(path)] == streams
    report = report_from_captures([path])
    assert_flagged(report, described["anomaly"])
    assert_exact(path, report, streams)
    if "events" in described:
        assert sse_events(path) == described["events"]
        sse = report.transport("sse")
        assert sse.messages.server_to_client == len(described["events"])
        # The payload is the data strings an EventSource delivers, the LFs joining their lines included.
        assert sse.payload_bytes.server_to_client == sum(len(data.encode()) for data in described["events"])


# -- live


@pytest.fixture
def corpus_server() -> Iterator[tuple[ScriptedServer, Replies]]:
    replies = Replies()
    with ScriptedServer(replies) as server:
        yield server, replies


LIVE_CASES = (
    "oversized_head",
    "transfer_encoding_hidden_in_a_fold",
    "response_bad_chunk_size",
    "ws_masked_server_frame",
    "ws_length_2_63",
    "sse_mixed_line_ends",
)


def test_the_proxy_relays_bad_traffic_and_keeps_serving(
    corpus_server: tuple[ScriptedServer, Replies], confdir: Path, tmp_path: Path
) -> None:
    server, replies = corpus_server
    cases = [case for case in CASES if case.name in LIVE_CASES]
    capture = tmp_path / "live.rtcap"
    with running_proxy(server.url, confdir=confdir, capture=capture) as proxy:
        for case in cases:
            play(proxy.port, server, replies, case)
            play(proxy.port, server, replies, FOLLOW_UP)
        assert proxy.stop() == 0, proxy.stderr
    streams = [pair for case in cases for pair in (case.sent, FOLLOW_UP.sent)]
    assert [connection.streams for connection in captured(capture)] == streams
    report = report_from_captures([capture])
    flagged = [(a.direction.value, a.offset) for c in report.connections for a in c.anomalies]
    assert flagged == [(case.anomaly.direction, case.anomaly.offset) for case in cases if case.anomaly]
    assert_exact(capture, report, streams)


def mutated(data: bytes, edits: list[tuple[int, str, int]]) -> bytes:
    """``data`` with each edit (position, what, byte) applied in turn."""
    out = bytearray(data)
    for position, what, byte in edits:
        at = position % (len(out) + 1)
        if what == "flip" and at < len(out):
            out[at] ^= 1 << (byte % 8)
        elif what == "set" and at < len(out):
            out[at] = byte
        elif what == "insert":
            out[at:at] = bytes([byte]) * (1 + byte % 4)
        elif what == "delete":
            del out[at : at + 1 + byte % 8]
        elif what == "truncate":
            del out[at:]
        elif what == "repeat":
            out[at:at] = out[max(0, at - 1 - byte) : at]
    return bytes(out)


EDITS = st.lists(
    st.tuples(
        st.integers(0, 1 << 16),
        st.sampled_from(["flip", "set", "insert", "delete", "truncate", "repeat"]),
        st.integers(0, 255),
    ),
    max_size=6,
)


@st.composite
def conversations(draw: st.DrawFn) -> Case:
    """Random bytes, or a corpus case with both sides mutated."""
    if draw(st.booleans()):
        client, server = draw(st.binary(min_size=1, max_size=600)), draw(st.binary(max_size=600))
    else:
        seed = draw(st.sampled_from((FOLLOW_UP, *CASES)))
        client, server = (mutated(side, draw(EDITS)) for side in seed.sent)
    # The proxy terminates TLS from clients (mitmproxy's reverse mode), and relays
    # nothing for a client that sends nothing: neither is raw relaying.
    assume(client and not starts_like_tls_record(client))
    return Case("fuzzed", "", (client,), (server,))


def test_random_and_mutated_streams_are_relayed_and_counted_exactly(
    corpus_server: tuple[ScriptedServer, Replies], confdir: Path, tmp_path: Path
) -> None:
    server, replies = corpus_server
    capture = tmp_path / "fuzz.rtcap"
    played: list[tuple[bytes, bytes]] = []
    with running_proxy(server.url, confdir=confdir, capture=capture) as proxy:

        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )
        @given(conversations())
        def relayed_unchanged(case: Case) -> None:
            played.append(case.sent)
            play(proxy.port, server, replies, case)

        relayed_unchanged()
        assert proxy.stop() == 0, proxy.stderr
    assert [connection.streams for connection in captured(capture)] == played
    report = report_from_captures([capture])
    assert_exact(capture, report, played)
