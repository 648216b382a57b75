"""The report views: the JSON contract, CSV, Markdown, HTML and the terminal table."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.table import Table

from inspector.measurements import ClientMeasurements
from inspector.render import FORMATS, render, report_to_dict, table_renderables
from inspector.render.html import message_cost_parts
from inspector.render.ranking import Tolerance
from inspector.render.svg import log_ticks, nice_ticks
from inspector.render.table import render_table
from inspector.render.units import factor, human_bytes
from inspector.render.verdict import verdict
from inspector.report import (
    TRANSPORTS,
    ConnectionSummary,
    MessagePoint,
    PerDirection,
    Quantiles,
    Report,
    TransportSummary,
    WebSocketFigures,
)
from inspector.wire import Anomaly, Direction

START = 1_760_000_000.0
HOSTILE_TARGET = "/poll?q=<script>alert(1)</script>"
HOSTILE_REASON = 'invalid chunk size <img src="https://evil.example/x.png">'


def pd(c2s: int, s2c: int) -> PerDirection:
    return PerDirection(client_to_server=c2s, server_to_client=s2c)


def transport(
    name: str,
    *,
    connections: int = 1,
    tcp_connects: int = 1,
    handshakes: int = 0,
    handshake_bytes: int = 0,
    messages: PerDirection,
    payload: PerDirection,
    categories: dict[str, PerDirection],
    head_bytes: int = 0,
    framing_bytes: int = 0,
    control_bytes: int = 0,
    empty_polls: int = 0,
    empty_poll_bytes: int = 0,
    exact: bool = True,
    anomalies: int = 0,
    websocket: WebSocketFigures | None = None,
) -> TransportSummary:
    """A transport summary whose totals follow from its categories."""
    wire = PerDirection()
    for split in categories.values():
        wire = wire + split
    wire_payload = categories["payload"].total
    n = messages.total
    per_message = wire.total / n if n else None
    return TransportSummary(
        transport=name,
        connections=connections,
        tcp_connects=tcp_connects,
        handshakes=handshakes,
        handshake_bytes=handshake_bytes,
        messages=messages,
        payload_bytes=payload,
        wire_bytes=wire,
        overhead_bytes=wire.total - wire_payload,
        overhead_ratio=(wire.total - wire_payload) / wire.total if wire.total else math.nan,
        bytes_per_message=(
            Quantiles(n, per_message, per_message * 0.97, per_message * 1.2, per_message * 3, exact)
            if n and per_message
            else None
        ),
        anomalies=anomalies,
        categories=categories,
        head_bytes=head_bytes,
        framing_bytes=framing_bytes,
        control_bytes=control_bytes,
        empty_polls=empty_polls,
        empty_poll_bytes=empty_poll_bytes,
        wire_bytes_per_message=per_message,
        inter_arrival=Quantiles(max(n - 1, 0), 0.1, 0.1, 0.12, 0.5) if n else None,
        time_to_first_byte=Quantiles(connections, 0.004, 0.004, 0.006, 0.008),
        time_to_first_message=Quantiles(connections, 0.11, 0.11, 0.2, 0.25) if n else None,
        handshake_duration=Quantiles(handshakes, 0.003, 0.003, 0.004, 0.004) if handshakes else None,
        websocket=websocket,
    )


def sample_transports() -> dict[str, TransportSummary]:
    websocket = transport(
        "websocket",
        handshakes=1,
        handshake_bytes=420,
        messages=pd(20, 600),
        payload=pd(800, 66_000),
        categories={
            "head": pd(250, 170),
            "payload": pd(800, 66_000),
            "frame_header": pd(44, 1206),
            "mask_key": pd(88, 0),
            "control": pd(4, 6),
        },
        framing_bytes=1338,
        control_bytes=10,
        websocket=WebSocketFigures(
            data_frames=pd(20, 600),
            control_frames=pd(2, 3),
            frame_header_bytes=pd(132, 1206),
            wire_payload_bytes=pd(800, 66_000),
            control_bytes=pd(4, 6),
            compressed_messages=pd(0, 0),
        ),
    )
    sse = transport(
        "sse",
        handshakes=1,
        handshake_bytes=380,
        messages=pd(0, 600),
        payload=pd(0, 66_000),
        categories={
            "head": pd(230, 150),
            "payload": pd(0, 66_000),
            "message_syntax": pd(0, 10_200),
            "chunk_framing": pd(0, 3605),
        },
        framing_bytes=13_805,
    )
    http_stream = transport(
        "http_stream",
        handshakes=1,
        handshake_bytes=360,
        messages=pd(0, 600),
        payload=pd(0, 66_000),
        categories={
            "head": pd(220, 140),
            "payload": pd(0, 66_000),
            "message_syntax": pd(0, 600),
            "chunk_framing": pd(0, 3605),
        },
        framing_bytes=4205,
        exact=False,
    )
    long_poll = transport(
        "long_poll",
        messages=pd(0, 600),
        payload=pd(0, 66_000),
        categories={
            "head": pd(110_160, 85_680),
            "payload": pd(0, 66_000),
            "message_syntax": pd(0, 1224),
        },
        head_bytes=195_840,
        framing_bytes=1224,
        empty_polls=12,
        empty_poll_bytes=3864,
    )
    short_poll = transport(
        "short_poll",
        connections=3,
        tcp_connects=3,
        messages=pd(0, 600),
        payload=pd(0, 66_000),
        categories={
            "head": pd(432_000, 336_000),
            "payload": pd(0, 66_000),
            "message_syntax": pd(0, 4800),
            "unparsed": pd(0, 17),
        },
        head_bytes=768_000,
        framing_bytes=4800,
        empty_polls=1800,
        empty_poll_bytes=579_600,
        anomalies=1,
    )
    return {t.transport: t for t in (short_poll, websocket, sse, long_poll, http_stream)}


def connection(
    id: str,
    name: str,
    wire: PerDirection,
    messages: PerDirection,
    *,
    exchanges: int = 1,
    targets: tuple[str, ...] = (),
    anomalies: tuple[Anomaly, ...] = (),
    port: int = 50_000,
) -> ConnectionSummary:
    return ConnectionSummary(
        id=id,
        transport=name,
        client=f"127.0.0.1:{port}",
        server="127.0.0.1:8000",
        opened_at=START,
        closed_at=START + 60,
        close_reason="client closed",
        exchanges=exchanges,
        wire_bytes=wire,
        payload_bytes=pd(0, 66_000),
        messages=messages,
        anomalies=anomalies,
        targets=targets,
    )


def sample_report() -> Report:
    transports = sample_transports()
    anomaly = Anomaly(Direction.SERVER_TO_CLIENT, 412_388, HOSTILE_REASON, security=True)
    connections = (
        connection("c1", "websocket", transports["websocket"].wire_bytes, pd(20, 600), targets=("/ws",), port=50_001),
        connection("c2", "sse", transports["sse"].wire_bytes, pd(0, 600), targets=("/events",), port=50_002),
        connection("c3", "http_stream", transports["http_stream"].wire_bytes, pd(0, 600), port=50_003),
        connection("c4", "long_poll", transports["long_poll"].wire_bytes, pd(0, 600), exchanges=612, port=50_004),
        connection("c5", "short_poll", pd(144_000, 140_000), pd(0, 200), exchanges=800, port=50_005),
        connection("c6", "short_poll", pd(144_000, 130_000), pd(0, 200), exchanges=800, port=50_006),
        connection(
            "c7",
            "short_poll",
            pd(144_000, 136_817),
            pd(0, 200),
            exchanges=800,
            targets=(HOSTILE_TARGET, "[bold red]markup[/]"),
            anomalies=(anomaly,),
            port=50_007,
        ),
    )
    timeline = [MessagePoint(START + 0.5 + i * 3, "websocket", Direction.CLIENT_TO_SERVER, 46) for i in range(20)]
    for name, delay, poll in (
        ("websocket", 0.002, None),
        ("sse", 0.003, None),
        ("http_stream", 0.003, None),
        ("long_poll", 0.01, None),
        ("short_poll", 0.0, 2.0),
    ):
        for i in range(600):
            sent = 1.0 + i * 0.1
            arrived = math.ceil(sent / poll) * poll if poll else sent + delay
            if name != "short_poll" or i % 3 == 0:
                timeline.append(MessagePoint(START + arrived, name, Direction.SERVER_TO_CLIENT, 110))
    return Report(
        transports=transports,
        connections=connections,
        sources=("chat-demo.rtcap",),
        started_at=START,
        ended_at=START + 61.5,
        notes=(
            "TCP/IP and TLS record bytes are not in the wire byte counts.",
            "Percentiles of http_stream are estimated from a sample of 512 messages.",
        ),
        timeline=tuple(sorted(timeline, key=lambda p: p.time)),
    )


def single_report() -> Report:
    ws = sample_transports()["websocket"]
    return Report(transports={"websocket": ws}, connections=())


def client_entry(latencies: list[float], error: str | None = None, **extra: Any) -> dict[str, Any]:
    ordered = sorted(latencies)
    return {
        **extra,
        "received": len(latencies),
        "lost": 200 - len(latencies),
        "duplicates": 0,
        "latency_ms": {
            "mean": sum(latencies) / len(latencies),
            "p50": ordered[len(ordered) // 2],
            "p95": ordered[int(len(ordered) * 0.95)],
            "max": ordered[-1],
            "count": len(latencies),
            "exact": True,
            "values": latencies,
        },
        "error": error,
    }


def sample_clients(source: str = "run/clients.json") -> ClientMeasurements:
    """What the clients of a demo run measured: websocket and sse over both protocols, short polls."""
    fast = [0.6 + 0.01 * i for i in range(200)]
    return ClientMeasurements.from_document(
        {
            "format": "rtinspect-demo-clients",
            "version": 1,
            "clients": "python",
            "feed": {"count": 200, "rate": 20.0, "size": 256},
            "transports": {
                "short_poll": client_entry([5.0 * i + 3 for i in range(190)], error=HOSTILE_REASON),
                "websocket": {"by_protocol": {"h2": client_entry(fast[::-1]), "http/1.1": client_entry(fast)}},
                "sse": {"by_protocol": {"http/1.1": client_entry([x * 2 for x in fast])}},
            },
        },
        source,
    )


# ---------------------------------------------------------------- JSON contract

BY_DIRECTION = {"client_to_server", "server_to_client"}
TRANSPORT_KEYS = {
    "connections": int,
    "tcp_connects": int,
    "handshakes": int,
    "handshake_bytes": int,
    "messages": "by_direction",
    "payload_bytes": "by_direction",
    "wire_bytes": "by_direction",
    "overhead_bytes": int,
    "overhead_ratio": (float, type(None)),
    "bytes_per_message": "quantiles",
    "anomalies": int,
}
CONNECTION_KEYS = {
    "id": str,
    "transport": str,
    "client": str,
    "server": str,
    "wire_bytes": "by_direction",
    "messages": "by_direction",
    "anomalies": list,
}


def check_by_direction(value: Any) -> None:
    assert isinstance(value, dict) and set(value) == BY_DIRECTION, value
    assert all(type(v) is int for v in value.values()), value


def check_shape(obj: dict[str, Any], spec: dict[str, Any]) -> None:
    for key, kind in spec.items():
        assert key in obj, key
        value = obj[key]
        if kind == "by_direction":
            check_by_direction(value)
        elif kind == "quantiles":
            assert value is None or (
                {"mean", "p50", "p95", "max"} <= set(value)
                and all(isinstance(value[k], (int, float, type(None))) for k in ("mean", "p50", "p95", "max"))
            ), (key, value)
        elif kind is int:
            assert type(value) is int, (key, value)
        else:
            assert isinstance(value, kind), (key, value)


def check_contract(doc: dict[str, Any]) -> None:
    """The keys and shapes other tools rely on."""
    assert doc["format"] == "rtinspect-report"
    assert doc["version"] == 1
    assert list(doc["transports"]) == [n for n in TRANSPORTS if n in doc["transports"]]
    for name, t in doc["transports"].items():
        check_shape(t, TRANSPORT_KEYS)
        if name == "websocket":
            assert set(t["frames"]) == {"data", "control"}
            check_by_direction(t["frames"]["data"])
            check_by_direction(t["frames"]["control"])
            check_by_direction(t["frame_header_bytes"])
            check_by_direction(t["wire_payload_bytes"])
    assert isinstance(doc["connections"], list)
    for c in doc["connections"]:
        check_shape(c, CONNECTION_KEYS)
        for a in c["anomalies"]:
            assert {"offset", "direction", "reason"} <= set(a)
            assert type(a["offset"]) is int and a["direction"] in BY_DIRECTION


def test_json_follows_the_contract() -> None:
    doc = json.loads(render(sample_report(), "json"))
    check_contract(doc)
    assert list(doc["transports"]) == ["websocket", "sse", "http_stream", "long_poll", "short_poll"]
    ws = doc["transports"]["websocket"]
    assert ws["frames"] == {
        "data": {"client_to_server": 20, "server_to_client": 600},
        "control": {"client_to_server": 2, "server_to_client": 3},
    }
    assert ws["frame_header_bytes"] == {"client_to_server": 132, "server_to_client": 1206}
    assert ws["wire_bytes"] == {"client_to_server": 1186, "server_to_client": 67_382}
    assert ws["bytes_per_message"]["exact"] is True
    assert doc["transports"]["http_stream"]["bytes_per_message"]["exact"] is False
    assert "frames" not in doc["transports"]["sse"]
    c7 = doc["connections"][-1]
    assert c7["anomalies"] == [
        {"offset": 412_388, "direction": "server_to_client", "reason": HOSTILE_REASON, "security": True}
    ]


def test_json_has_no_nan_and_uses_null() -> None:
    t = transport("short_poll", messages=pd(0, 0), payload=pd(0, 0), categories={"payload": pd(0, 0)})
    report = Report(transports={"short_poll": t}, connections=())
    text = render(report, "json")
    assert "NaN" not in text and "Infinity" not in text
    doc = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in JSON"))
    check_contract(doc)
    short_poll = doc["transports"]["short_poll"]
    assert short_poll["overhead_ratio"] is None
    assert short_poll["bytes_per_message"] is None
    assert short_poll["wire_bytes_per_message"] is None


def test_report_to_dict_is_plain_data() -> None:
    doc = report_to_dict(sample_report())
    assert json.loads(json.dumps(doc, allow_nan=False)) == doc


# ---------------------------------------------------------------- CSV


def test_csv_has_one_row_per_transport_with_exact_integers() -> None:
    report = sample_report()
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert [r["transport"] for r in rows] == ["websocket", "sse", "http_stream", "long_poll", "short_poll"]
    for row in rows:
        t = report.transports[row["transport"]]
        assert int(row["wire_bytes_client_to_server"]) == t.wire_bytes.client_to_server
        assert int(row["wire_bytes_server_to_client"]) == t.wire_bytes.server_to_client
        assert int(row["messages_server_to_client"]) == t.messages.server_to_client
        assert int(row["handshake_bytes"]) == t.handshake_bytes
        assert int(row["overhead_bytes"]) == t.overhead_bytes
        assert float(row["wire_bytes_per_message"]) == t.wire_bytes_per_message
    assert rows[2]["bytes_per_message_exact"] == "false"


def test_csv_with_connections_has_one_row_per_connection() -> None:
    report = sample_report()
    rows = list(csv.DictReader(io.StringIO(render(report, "csv", connections=True))))
    assert [r["id"] for r in rows] == [c.id for c in report.connections]
    assert int(rows[-1]["wire_bytes_server_to_client"]) == 136_817
    assert int(rows[-1]["anomalies"]) == 1
    assert HOSTILE_TARGET in rows[-1]["targets"]


def test_csv_leaves_missing_figures_empty() -> None:
    t = transport("sse", messages=pd(0, 0), payload=pd(0, 0), categories={"head": pd(200, 0), "payload": pd(0, 0)})
    (row,) = csv.DictReader(io.StringIO(render(Report({"sse": t}, ()), "csv")))
    assert row["wire_bytes_per_message"] == "" and row["bytes_per_message_p50"] == ""


# ---------------------------------------------------------------- Markdown


def test_markdown_has_a_row_per_transport_the_verdict_and_notes() -> None:
    text = render(sample_report(), "markdown")
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 1 + 5  # header and one row per transport
    for name in ("websocket", "sse", "http\\_stream", "long\\_poll", "short\\_poll"):
        assert any(row.startswith(f"| {name} |") for row in rows), name
    assert "**websocket spent the fewest wire bytes per message" in text
    assert "TLS record bytes are not in the wire byte counts" in text
    assert "\\~" in text  # the estimate mark is escaped, not strikethrough
    assert "## Connections" not in text


def test_markdown_connections_escape_traffic() -> None:
    text = render(sample_report(), "markdown", connections=True)
    assert "## Connections" in text
    assert "<script>" not in text and "\\<script\\>" in text
    c7 = next(line for line in text.splitlines() if line.startswith("| c7 |"))
    assert c7.count(" | ") == 12  # pipes inside cells are escaped


# ---------------------------------------------------------------- HTML


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs.extend(attrs)


def parse(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser


def test_html_is_self_contained_and_escapes_traffic() -> None:
    text = render(sample_report(), "html")
    tags = parse(text)
    assert "script" not in tags.tags and "img" not in tags.tags and "link" not in tags.tags
    for name, value in tags.attrs:
        assert name not in ("src", "href", "srcset", "xlink:href"), (name, value)
    assert "url(" not in text and "@import" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert tags.tags.count("svg") == 2
    assert "details" in tags.tags


def test_html_cost_chart_parts_add_up_to_wire_bytes_per_message() -> None:
    for t in sample_transports().values():
        parts = message_cost_parts(t)
        assert set(parts) == {"payload", "framing", "heads", "handshakes", "app control", "other"}
        assert sum(parts.values()) == pytest.approx(t.wire_bytes_per_message)
        assert all(v >= 0 for v in parts.values())
    ws = message_cost_parts(sample_transports()["websocket"])
    assert ws["other"] == pytest.approx(10 / 620)  # control frame payload


def test_html_sample_is_written_for_viewing(tmp_path: Path) -> None:
    text = render(sample_report(), "html")
    (tmp_path / "rtinspect-sample.html").write_text(text, encoding="utf-8")
    assert "Wire bytes per message, by transport" in text and "Messages over time" in text


def test_html_shows_the_clients_latency_beside_the_bytes() -> None:
    text = render(sample_report(), "html", clients=sample_clients("<b>run</b>/clients.json"))
    tags = parse(text)
    assert "script" not in tags.tags and "img" not in tags.tags and "link" not in tags.tags
    for name, value in tags.attrs:
        assert name not in ("src", "href", "srcset", "xlink:href"), (name, value)
    assert "url(" not in text and "@import" not in text
    assert tags.tags.count("svg") == 3
    section = text[text.index("<h2>Latency measured by the clients</h2>") :]
    section = section[: section.index("</section>")]
    assert text.index("<h2>Transports</h2>") < text.index("<h2>Latency measured by the clients</h2>")
    # One strip per client, in report order, each protocol named; then the same rows in the table.
    labels = re.findall(r'<text class="label"[^>]*>([^<]*)</text>', section)
    assert labels == ["websocket (http/1.1)", "websocket (h2)", "sse (http/1.1)", "short_poll"]
    for mark in ("p50", "p90", "p99", "max"):
        assert f"<title>websocket (h2) · {mark}: " in section
    assert "<title>short_poll · p99: 939 ms</title>" in section
    assert '<td class="name">sse (http/1.1)</td>' in section
    assert "<th" in section and '<td class="num">10</td>' in section  # short_poll lost 10
    # What came from the file is escaped: its name, a client's error.
    assert "&lt;b&gt;run&lt;/b&gt;/clients.json" in section and "<b>run</b>" not in text
    assert "short_poll: invalid chunk size &lt;img" in section


def test_html_latency_from_a_file_without_values() -> None:
    clients = sample_clients()
    bare = dataclasses.replace(clients.transports[0], values=(), p90=None, p99=None)
    text = render(sample_report(), "html", clients=dataclasses.replace(clients, transports=(bare,)))
    section = text[text.index("Latency measured by the clients") :]
    assert "<title>websocket (http/1.1) · p95: " in section and "· p90: " not in section
    assert "p90 and p99 need the latencies themselves" in section
    assert "messages (darker: more)" not in section


def test_json_holds_the_clients_latency_apart_from_the_report() -> None:
    doc = json.loads(render(sample_report(), "json", clients=sample_clients()))
    check_contract(doc)
    clients = doc["clients"]
    assert (clients["source"], clients["clients"]) == ("run/clients.json", "python")
    assert clients["feed"] == {"count": 200, "rate": 20.0, "size": 256}
    assert list(clients["transports"]) == ["websocket", "sse", "short_poll"]
    assert list(clients["transports"]["websocket"]["by_protocol"]) == ["http/1.1", "h2"]
    short_poll = clients["transports"]["short_poll"]
    assert (short_poll["lost"], short_poll["error"]) == (10, HOSTILE_REASON)
    assert set(short_poll["latency_ms"]) == {"count", "mean", "p50", "p90", "p95", "p99", "max", "exact"}
    assert "clients" not in json.loads(render(sample_report(), "json"))


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_text_views_list_the_clients_latency(fmt: str) -> None:
    text = render(sample_report(), fmt, clients=sample_clients())
    assert "Latency measured by the clients" in text
    assert "websocket (h2)" in text and "939 ms" in text
    if fmt == "markdown":
        assert 'x.png">' not in text and 'x.png"\\>' in text


def test_clients_of_transports_the_report_lacks_are_pointed_out() -> None:
    text = render(single_report(), "html", clients=sample_clients())
    assert "The report holds no traffic of sse, short_poll: are these the clients of this capture?" in text
    assert "holds no traffic" not in render(sample_report(), "html", clients=sample_clients())


def test_html_without_clients_has_no_latency() -> None:
    assert "Latency measured by the clients" not in render(sample_report(), "html")


def test_html_without_messages_or_timeline() -> None:
    t = transport("sse", messages=pd(0, 0), payload=pd(0, 0), categories={"head": pd(200, 0), "payload": pd(0, 0)})
    tags = parse(render(Report({"sse": t}, ()), "html"))
    assert "svg" not in tags.tags


# ---------------------------------------------------------------- terminal table


def test_table_lists_each_transport_and_the_verdict() -> None:
    text = render(sample_report(), "table")
    for name in ("websocket", "sse", "http_stream", "long_poll", "short_poll"):
        assert name in text
    assert "websocket spent the fewest wire bytes per message" in text
    assert "short_poll spent 13× the wire bytes per message of websocket" in text
    assert "TCP/IP and TLS record bytes are not in the wire byte counts." in text
    assert "~" in text
    assert "Connections" not in text.split("\n", 3)[0]


def test_table_with_connections_shows_traffic_literally() -> None:
    text = render_table(sample_report(), connections=True, width=400)
    assert "[bold red]markup[/]" in text  # not read as rich markup
    assert "security: s→c @412388: invalid chunk size <img" in text
    assert "127.0.0.1:50007" in text and "client closed" in text


def column(table: Table, header: str) -> list[str]:
    (found,) = [c for c in table.columns if str(c.header) == header]
    return [str(cell) for cell in found.cells]


def test_table_renderables_for_a_live_view() -> None:
    """The blocks a live view redraws: the transports, the verdict, the notes, and the connections."""
    report = sample_report()
    transports, sentences, notes, connections = table_renderables(report, connections=True)
    assert isinstance(transports, Table) and isinstance(connections, Table)
    assert column(transports, "Transport") == ["websocket", "sse", "http_stream", "long_poll", "short_poll"]
    # short_poll: 3 connections, 600 messages down and none up; websocket: 620 messages
    # over 1186 + 67,382 = 68,568 wire bytes, 110.6 B each.
    assert column(transports, "Conns")[-1] == "3"
    assert column(transports, "Msgs s→c/c→s") == ["600 / 20", "600 / 0", "600 / 0", "600 / 0", "600 / 0"]
    assert str(sentences).startswith("websocket spent the fewest wire bytes per message: 110.6 B all-in.\n")
    assert str(notes).splitlines()[:2] == [f"• {note}" for note in report.notes]
    assert column(connections, "ID") == ["c1", "c2", "c3", "c4", "c5", "c6", "c7"]
    assert column(connections, "Wire s→c")[4:] == ["140 KB", "130 KB", "137 KB"]  # 140,000, 130,000 and 136,817
    assert column(connections, "Exchanges")[3:] == ["612", "800", "800", "800"]
    # Without connections, the same blocks but the last.
    assert len(table_renderables(report)) == 3


# ---------------------------------------------------------------- verdict and units


def test_verdict_compares_every_transport_with_the_cheapest() -> None:
    headline, *rest = verdict(sample_report())
    assert headline.startswith("websocket spent the fewest wire bytes per message")
    assert [s.split()[0] for s in rest] == ["http_stream", "sse", "long_poll", "short_poll"]


def test_verdict_with_one_transport() -> None:
    (sentence,) = verdict(single_report())
    assert "Only one transport" in sentence and "websocket" in sentence


def test_verdict_ignores_transports_without_messages() -> None:
    transports = sample_transports()
    idle = transport("sse", messages=pd(0, 0), payload=pd(0, 0), categories={"head": pd(200, 0), "payload": pd(0, 0)})
    (sentence,) = verdict(Report({"websocket": transports["websocket"], "sse": idle}, ()))
    assert sentence.startswith("Only websocket delivered messages")


def test_verdict_ranks_exactly_and_says_a_tie() -> None:
    websocket = sample_transports()["websocket"]
    twin = dataclasses.replace(websocket, transport="sse")
    headline, same = verdict(Report({"websocket": websocket, "sse": twin}, ()))
    assert headline == "websocket spent the fewest wire bytes per message: 110.6 B all-in."
    assert same == "sse spent the same wire bytes per message as websocket."


def test_verdict_with_a_tolerance_does_not_rank_what_is_within_it() -> None:
    exact = verdict(sample_report())
    assert exact[1] == "http_stream spent 1.1× the wire bytes per message of websocket (117.6 B)."
    within = verdict(sample_report(), Tolerance(relative=0.2))
    assert within[1] == "http_stream spent within 20% of the wire bytes per message of websocket (117.6 B)."
    assert within[2:] == exact[2:]  # sse, at 1.21×, is outside it


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (812, "812 B"),
        (48.25, "48.2 B"),
        (1234, "1.2 KB"),
        (123_456, "123 KB"),
        (999_960, "1.0 MB"),
        (4_500_000, "4.5 MB"),
        (None, "–"),
        (math.nan, "–"),
    ],
)
def test_human_bytes(n: float | None, text: str) -> None:
    assert human_bytes(n) == text


def test_factor_never_rounds_a_difference_to_one() -> None:
    assert factor(3.14) == "3.1×"
    assert factor(1.004) == "1.00×"
    assert factor(1.04) == "1.04×"
    assert factor(12.4) == "12×"


def test_log_ticks_cover_the_range_in_powers_of_ten() -> None:
    assert log_ticks(0.6, 937) == [0.1, 1, 10, 100, 1000]
    assert log_ticks(2, 3) == [1, 2, 5, 10]
    assert log_ticks(1, 1) == [1, 2, 5, 10]
    assert log_ticks(0.03, 4) == [0.01, 0.1, 1, 10]


def test_nice_ticks_cover_the_maximum() -> None:
    assert nice_ticks(1398) == [0, 500, 1000, 1500]
    assert nice_ticks(0) == [0.0, 1.0]
    assert nice_ticks(61.5, 8)[-1] >= 61.5


any_float = st.floats(allow_nan=True, allow_infinity=True)
NOT_A_NUMBER = re.compile(r"\bnan\b|\binf\b|infinity", re.IGNORECASE)


@settings(max_examples=40, deadline=None)
@given(ratio=any_float, per_message=st.none() | any_float, p50=any_float, started=st.none() | any_float)
def test_odd_numbers_never_break_a_view(
    ratio: float, per_message: float | None, p50: float, started: float | None
) -> None:
    base = sample_transports()["sse"]
    odd = dataclasses.replace(
        base,
        overhead_ratio=ratio,
        wire_bytes_per_message=per_message,
        bytes_per_message=Quantiles(3, p50, p50, p50, p50, exact=False),
    )
    report = Report(
        {"sse": odd, "websocket": sample_transports()["websocket"]},
        (),
        started_at=started,
        timeline=(MessagePoint(p50, "sse", Direction.SERVER_TO_CLIENT, 10),),
    )
    check_contract(json.loads(render(report, "json")))
    for fmt in FORMATS:
        assert not NOT_A_NUMBER.search(render(report, fmt)), fmt


def test_every_format_renders_an_empty_report() -> None:
    """No traffic: every view says so, with no rows and no charts."""
    empty = Report({}, ())
    said = "No transport was recognised in this traffic."
    assert render(empty, "table").strip() == said
    assert said in render(empty, "markdown") and "| " not in render(empty, "markdown")
    doc = json.loads(render(empty, "json"))
    check_contract(doc)
    assert (doc["transports"], doc["connections"], doc["connection_count"], doc["timeline"]) == ({}, [], 0, [])
    header, *rows = render(empty, "csv").splitlines()
    assert header.startswith("transport,") and rows == []
    html = render(empty, "html")
    assert said in html
    assert "svg" not in parse(html).tags and "td" not in parse(html).tags
    assert set(FORMATS) == {"table", "json", "markdown", "csv", "html"}


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="table, json"):
        render(sample_report(), "xml")
