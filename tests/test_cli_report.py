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
    return subprocess.run(
        [sys.executable, "-m", "inspector", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def capture(tmp_path: Path) -> Path:
    path = tmp_path / "polls.rtcap"
    with CaptureWriter(path) as writer:
        writer.write(ConnectionOpened(1, 10.0, "127.0.0.1:50001", "127.0.0.1:8000", "reverse"))
        for i in range(3):
            writer.write(DataChunk(1, 10.0 + i, Direction.CLIENT_TO_SERVER, b"GET /updates HTTP/1.1\r\nHost: x\r\n\r\n"))
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
