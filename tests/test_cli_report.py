"""`rtinspect report` as a user meets it: formats, files, and one clear line for mistakes."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from inspector.capture import CaptureWriter, ConnectionClosed, ConnectionOpened, DataChunk
from inspector.wire import Direction


def rtinspect(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "polls.rtcap"
    with CaptureWriter(path) as writer:
        writer.write(ConnectionOpened(1, 10.0, "127.0.0.1:50001", "127.0.0.1:8000", "reverse"))
        for i in range(3):
            writer.write(
                DataChunk(1, 10.0 + i, Direction.CLIENT_TO_SERVER, b"GET /updates HTTP/1.1\r\nHost: x\r\n\r\n")
            )
            writer.write(
                DataChunk(1, 10.1 + i, Direction.SERVER_TO_CLIENT, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
            )
        writer.write(ConnectionClosed(1, 14.0, "client closed"))
    return path


def test_the_default_is_a_table_with_a_verdict(capture: Path) -> None:
    result = rtinspect("report", str(capture))
    assert result.returncode == 0, result.stderr
    assert "short_poll" in result.stdout
    assert "TCP/IP" in result.stdout


def test_json_goes_to_a_file_and_rules_change_the_transport(capture: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = rtinspect("report", str(capture), "-f", "json", "-o", str(out), "--transport", "/updates=long_poll")
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["format"] == "rtinspect-report"
    assert list(report["transports"]) == ["long_poll"]
    assert report["transports"]["long_poll"]["messages"] == {"client_to_server": 0, "server_to_client": 3}


#: The capture's figures, by hand. Request: "GET /updates HTTP/1.1\r\n" (23) + "Host: x\r\n" (9)
#: + "\r\n" (2) = 34 bytes; response: "HTTP/1.1 200 OK\r\n" (17) + "Content-Length: 2\r\n" (19)
#: + "\r\n" (2) + "hi" (2) = 40 bytes. Three polls: 3 * 34 = 102 bytes up, 3 * 40 = 120 down,
#: 222 in all, of which 3 * 2 = 6 are payload: overhead 216 / 222 = 97.3%, 222 / 3 = 74 per message.
WIRE_UP, WIRE_DOWN, PAYLOAD, MESSAGES = 3 * 34, 3 * 40, 3 * 2, 3
TRANSPORT_CELLS = ["short_poll", "3 / 0", f"{PAYLOAD} B", f"{WIRE_UP + WIRE_DOWN} B", "97.3%", "74 B"]
CONNECTION_CELLS = ["short_poll", "127.0.0.1:50001", "127.0.0.1:8000", f"{WIRE_UP} B", f"{WIRE_DOWN} B", "3 / 0"]


class _Cells(HTMLParser):
    """The text of every table cell, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def table_rows(text: str, fmt: str) -> list[list[str]]:
    """Every table row of a Markdown or HTML report, as its cells' text."""
    if fmt == "html":
        cells = _Cells()
        cells.feed(text)
        return cells.rows
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip().replace("\\", "") for cell in line.strip("|").split(" | ")] for line in lines]


def test_csv_has_the_hand_counted_figures(capture: Path) -> None:
    result = rtinspect("report", str(capture), "-f", "csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows and {row["transport"] for row in rows} == {"short_poll"}  # all of it, and each HTTP version
    for row in rows:
        assert (row["connections"], row["messages_server_to_client"]) == ("1", str(MESSAGES))
        assert int(row["wire_bytes_client_to_server"]) == WIRE_UP
        assert int(row["wire_bytes_server_to_client"]) == WIRE_DOWN
        assert int(row["payload_bytes_server_to_client"]) == PAYLOAD
        assert int(row["overhead_bytes"]) == WIRE_UP + WIRE_DOWN - PAYLOAD
        assert float(row["overhead_ratio"]) == pytest.approx(216 / 222)
        assert float(row["wire_bytes_per_message"]) == (WIRE_UP + WIRE_DOWN) / MESSAGES
    connections = rtinspect("report", str(capture), "-f", "csv", "--connections")
    (connection,) = csv.DictReader(io.StringIO(connections.stdout))
    assert (connection["client"], connection["exchanges"]) == ("127.0.0.1:50001", "3")
    assert connection["close_reason"] == "client closed"
    assert int(connection["wire_bytes_client_to_server"]) == WIRE_UP
    assert int(connection["wire_bytes_server_to_client"]) == WIRE_DOWN


@pytest.mark.parametrize("fmt", ["markdown", "html"])
def test_every_format_renders_the_hand_counted_figures(capture: Path, fmt: str) -> None:
    result = rtinspect("report", str(capture), "-f", fmt, "--connections")
    assert result.returncode == 0, result.stderr
    rows = table_rows(result.stdout, fmt)
    transport_rows = [row for row in rows if row[0] == "short_poll"]
    connection_rows = [row for row in rows if row[0] == "1"]
    assert len(transport_rows) == 1 and len(connection_rows) == 1, rows
    for row, cells in ((transport_rows[0], TRANSPORT_CELLS), (connection_rows[0], CONNECTION_CELLS)):
        assert [cell for cell in cells if cell not in row] == [], row


def _one_line_failure(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert any(expected in line for line in lines), result.stderr


def test_a_file_that_is_not_a_capture(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    _one_line_failure(rtinspect("report", str(path)), "not an rtinspect capture")


def test_a_missing_file(tmp_path: Path) -> None:
    _one_line_failure(rtinspect("report", str(tmp_path / "nope.rtcap")), "cannot read")


def test_an_empty_capture(tmp_path: Path) -> None:
    path = tmp_path / "empty.rtcap"
    CaptureWriter(path).close()
    _one_line_failure(rtinspect("report", str(path)), "no connections recorded")


def test_a_bad_rule(capture: Path) -> None:
    _one_line_failure(rtinspect("report", str(capture), "--transport", "/x=pigeon"), "unknown transport")


RECORDING = Path(__file__).parent / "recordings" / "mixed.rtcap"


def _latency(values: list[float]) -> dict[str, object]:
    ordered = sorted(values)
    return {
        "received": len(values),
        "lost": 0,
        "duplicates": 0,
        "error": None,
        "latency_ms": {
            "mean": sum(values) / len(values),
            "p50": ordered[len(ordered) // 2],
            "p95": ordered[-1],
            "max": ordered[-1],
            "count": len(values),
            "exact": True,
            "values": values,
        },
    }


@pytest.fixture
def clients_json(tmp_path: Path) -> Path:
    """What a demo's clients of the recording's transports could have measured."""
    path = tmp_path / "clients.json"
    path.write_text(
        json.dumps(
            {
                "format": "rtinspect-demo-clients",
                "version": 1,
                "clients": "python",
                "feed": {"count": 12, "rate": 20.0, "size": 64},
                "transports": {
                    "websocket": _latency([1.0 + i / 10 for i in range(12)]),
                    "sse": {
                        "path": "/sse",
                        "by_protocol": {"http/1.1": _latency([2.0] * 12), "h2": _latency([3.0] * 12)},
                    },
                    "short_poll": _latency([100.0 + 40 * i for i in range(12)]) | {"lost": 1, "error": "HTTP <502>"},
                },
            }
        )
    )
    return path


def test_html_with_the_clients_latency(clients_json: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.html"
    result = rtinspect("report", str(RECORDING), "--clients", str(clients_json), "-f", "html", "-o", str(out))
    assert result.returncode == 0, result.stderr
    html = out.read_text()
    latency = html[html.index("<h2>Latency measured by the clients</h2>") :]
    latency = latency[: latency.index("</section>")]
    assert "<svg" in latency and html.count("<svg") == 3
    for label in ("websocket", "sse (http/1.1)", "sse (h2)", "short_poll"):
        assert f"<title>{label} · p50: " in latency and f'<td class="name">{label}</td>' in latency
    assert "short_poll: HTTP &lt;502&gt;" in latency and "<502>" not in html
    assert "src=" not in html and "href=" not in html


def test_json_with_the_clients_latency(clients_json: Path) -> None:
    result = rtinspect("report", str(RECORDING), "--clients", str(clients_json), "-f", "json")
    assert result.returncode == 0, result.stderr
    clients = json.loads(result.stdout)["clients"]
    assert clients["source"] == str(clients_json)
    assert list(clients["transports"]) == ["websocket", "sse", "short_poll"]
    assert clients["transports"]["sse"]["by_protocol"]["h2"]["latency_ms"]["p99"] == 3.0
    assert clients["transports"]["websocket"]["latency_ms"]["p90"] == pytest.approx(1.99)  # from the values
    # The report's own figures are unchanged; without --clients there is no "clients".
    plain = json.loads(rtinspect("report", str(RECORDING), "-f", "json").stdout)
    assert "clients" not in plain and plain["transports"] == json.loads(result.stdout)["transports"]


def test_json_connections_streamed_with_the_clients_latency(clients_json: Path) -> None:
    result = rtinspect("report", str(RECORDING), "--clients", str(clients_json), "-f", "json", "--connections")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["clients"]["transports"]["short_poll"]["lost"] == 1


@pytest.mark.parametrize("fmt", ["table", "markdown"])
def test_text_views_with_the_clients_latency(clients_json: Path, fmt: str) -> None:
    result = rtinspect("report", str(RECORDING), "--clients", str(clients_json), "-f", fmt)
    assert result.returncode == 0, result.stderr
    assert "Latency measured by the clients" in result.stdout and "sse (h2)" in result.stdout


def test_a_file_that_is_not_a_clients_file(tmp_path: Path) -> None:
    path = tmp_path / "clients.json"
    path.write_text('{"format": "rtinspect-report", "version": 1}')
    result = rtinspect("report", str(RECORDING), "--clients", str(path), "-f", "html")
    _one_line_failure(result, f"Error: {path}: not a clients file")
    assert not result.stdout
    _one_line_failure(rtinspect("report", str(RECORDING), "--clients", str(tmp_path / "nope.json")), "cannot read")


def test_clients_do_not_go_into_csv(clients_json: Path) -> None:
    _one_line_failure(rtinspect("report", str(RECORDING), "--clients", str(clients_json), "-f", "csv"), "-f csv")
