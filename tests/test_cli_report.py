"""`rtinspect report` as a user meets it: formats, files, and one clear line for mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
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


@pytest.mark.parametrize("fmt", ["markdown", "csv", "html"])
def test_every_format_renders(capture: Path, fmt: str) -> None:
    result = rtinspect("report", str(capture), "-f", fmt, "--connections")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


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
