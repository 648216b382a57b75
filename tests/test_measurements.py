"""Reading what the clients measured (a demo's ``clients.json``): good files, old files, and one line for a bad one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from inspector.demo import TRANSPORTS, ClientTally, DemoSettings
from inspector.demo.run import clients_document, json_text
from inspector.measurements import (
    CLIENTS_FORMAT,
    ClientMeasurements,
    ClientMeasurementsError,
    load_client_measurements,
)


def client(latencies: list[float], *, lost: int = 0, error: str | None = None, **extra: Any) -> dict[str, Any]:
    """One client's entry as the demo writes it."""
    ordered = sorted(latencies)
    return {
        "path": "/x",
        **extra,
        "received": len(latencies),
        "lost": lost,
        "duplicates": 0,
        "deliveries": len(latencies),
        "requests": 1,
        "latency_ms": {
            "mean": sum(latencies) / len(latencies),
            "p50": ordered[len(ordered) // 2],
            "p95": ordered[-1],
            "max": ordered[-1],
            "count": len(latencies),
            "exact": True,
            "values": latencies,
        },
        "error": error,
    }


def clients_file(tmp_path: Path, document: Any, name: str = "clients.json") -> Path:
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


def document(transports: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "format": CLIENTS_FORMAT,
        "version": 1,
        "clients": "python",
        "feed": {"count": 100, "rate": 20.0, "size": 256},
        **extra,
        "transports": transports,
    }


def test_a_demo_file_gives_each_transport_in_report_order(tmp_path: Path) -> None:
    latencies = [float(i) for i in range(1, 101)]  # 1 .. 100 ms
    path = clients_file(
        tmp_path,
        document({"short_poll": client([500.0, 900.0], lost=98), "websocket": client(latencies)}),
    )
    measured = load_client_measurements(path)
    assert measured.source == str(path)
    assert measured.clients == "python"
    assert measured.feed is not None and (measured.feed.count, measured.feed.rate) == (100, 20.0)
    assert not measured.by_protocol
    websocket, short_poll = measured.transports
    assert (websocket.label, short_poll.label) == ("websocket", "short_poll")
    assert (websocket.count, websocket.received, websocket.lost, websocket.duplicates) == (100, 100, 0, 0)
    # p90 and p99 come from the values, interpolated as the report's own percentiles are.
    assert websocket.p90 == pytest.approx(90.1) and websocket.p99 == pytest.approx(99.01)
    assert websocket.values == tuple(latencies) and websocket.max == 100.0
    assert short_poll.lost == 98


def test_an_http2_file_names_each_client_by_protocol(tmp_path: Path) -> None:
    by_protocol = {"h2": client([2.0], protocol="h2"), "http/1.1": client([1.0], protocol="http/1.1")}
    path = clients_file(
        tmp_path, document({"sse": {"path": "/sse", "by_protocol": by_protocol}}, protocols=["http/1.1", "h2"])
    )
    measured = load_client_measurements(path)
    assert measured.by_protocol
    assert [t.label for t in measured.transports] == ["sse (http/1.1)", "sse (h2)"]


def test_a_file_without_values_still_reads(tmp_path: Path) -> None:
    entry = client([1.0, 2.0, 3.0])
    del entry["latency_ms"]["values"]
    silent = client([1.0]) | {"received": 0, "latency_ms": None, "error": "HTTP 502"}
    measured = load_client_measurements(clients_file(tmp_path, document({"sse": entry, "websocket": silent})))
    websocket, sse = measured.transports
    assert (sse.p50, sse.p95, sse.max, sse.p90, sse.p99, sse.values) == (2.0, 3.0, 3.0, None, None, ())
    assert (websocket.count, websocket.p50, websocket.error) == (0, None, "HTTP 502")


def test_what_the_demo_writes_is_what_the_loader_reads(tmp_path: Path) -> None:
    settings = DemoSettings(output=tmp_path, count=3, transports=("ws", "poll"))
    tallies = {}
    for demo in TRANSPORTS[:1] + TRANSPORTS[4:5]:
        tally = ClientTally(demo, expected=3)
        tally.delivered([{"seq": 1, "sent_at": 10.0}, {"seq": 2, "sent_at": 10.25}], at=10.5)
        tallies[tally.label] = tally
    text = json_text(clients_document(settings, tallies))
    websocket, short_poll = load_client_measurements(clients_file(tmp_path, text)).transports
    assert websocket.values == (250.0, 500.0) and websocket.p50 == 375.0
    assert (short_poll.transport, short_poll.lost) == ("short_poll", 1)
    assert '"values": [500.0,250.0]' in text  # one line per list, in the order they came


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "{not json",
            "bad.json: not a clients file (not JSON: Expecting property name enclosed in double quotes at line 1)",
        ),
        (b"\xff\xfe", "bad.json: not a clients file (not UTF-8 text)"),
        (
            {"format": "rtinspect-report", "version": 1},
            'bad.json: not a clients file (no "format": "rtinspect-demo-clients"',
        ),
        ([1, 2], 'bad.json: not a clients file (no "format"'),
        (document({}) | {"version": 2}, "bad.json: version 2 is newer than this rtinspect reads (1)"),
        (document({}) | {"version": "1"}, 'bad.json: "version" must be a whole number from 1, not "1"'),
        (document({}) | {"transports": []}, 'bad.json: "transports" must be an object keyed by transport'),
        (
            document({"sse": client([1.0]) | {"received": -1}}),
            'bad.json: sse "received" must be a whole number, not -1',
        ),
        (document({"a\nb": []}), "bad.json: transport 'a\\nb' must be an object"),
        (
            document({"sse": {"by_protocol": {"h2": client([1.0]) | {"latency_ms": {"values": [1, "x"]}}}}}),
            'bad.json: sse over h2 "latency_ms" values must be a number, not "x"',
        ),
    ],
)
def test_a_bad_file_is_one_clear_line(tmp_path: Path, content: Any, message: str) -> None:
    path = tmp_path / "bad.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ClientMeasurementsError) as raised:
        load_client_measurements(path)
    text = str(raised.value)
    assert "\n" not in text
    assert text.startswith(f"{tmp_path}/{message}"), text


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ClientMeasurementsError, match=r"^cannot read .*nope.json: No such file or directory$"):
        load_client_measurements(tmp_path / "nope.json")


def test_measurements_from_a_document_in_memory() -> None:
    measured = ClientMeasurements.from_document(document({"websocket": client([1.0, 3.0])}), "run/clients.json")
    assert measured.source == "run/clients.json" and measured.transports[0].p90 == pytest.approx(2.8)
