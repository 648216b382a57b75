"""The fleet projection, checked on recordings against figures computed by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from inspector.cli import main as rtinspect
from inspector.projection import Fleet

RECORDINGS = Path(__file__).parent / "recordings"


def projected(name: str, fleet: str, *extra: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(
        rtinspect, ["report", str(RECORDINGS / f"{name}.rtcap"), "-f", "json", "--project", fleet, *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["projection"]  # type: ignore[no-any-return]


def test_fleets_parse_and_refuse_with_a_reason() -> None:
    assert Fleet.parse("10000@1/s") == Fleet(10_000, 1.0)
    assert Fleet.parse("10,000 @ 30/min") == Fleet(10_000, 0.5)
    assert Fleet.parse("500@36/h") == Fleet(500, 0.01)
    for bad in ("10000", "10000@1", "x@1/s", "10@1/week", "0@1/s"):
        with pytest.raises(ValueError):
            Fleet.parse(bad)


def test_a_streaming_projection_by_hand() -> None:
    # The SSE recording: 2,662 wire bytes (396 + 2,266) in 2 streams whose handshakes took 790 bytes,
    # for 13 application messages. Per message besides the handshakes: (2,662 - 790) / 13 = 144 B.
    # A day of 10,000 clients at 1/s: 10,000 x 86,400 x 144 + 10,000 handshakes of 395 B = 124,419,950,000 B.
    projection = projected("sse", "10000@1/s")
    assert projection["clients"] == 10_000 and projection["app_messages_per_second_per_client"] == 1.0
    sse = projection["transports"]["sse"]
    assert sse["wire_bytes_per_day"] == pytest.approx(124_419_950_000)
    assert sse["requests_per_second"] == pytest.approx(10_000 / 86_400)  # one stream a day each
    assert sse["handshakes_per_hour"] == pytest.approx(10_000 / 24)
    assert sse["tcp_connects_per_hour"] == pytest.approx(10_000 / 24)
    assert sse["open_connections"] == 10_000
    assert len(projection["assumptions"]) == 3


def test_a_polling_projection_by_hand() -> None:
    # The short-poll recording: 7,518 wire bytes (3,499 + 4,019) in 22 polls for 10 application messages.
    # A day of 10,000 clients at 1/s: 10,000 x 86,400 x 751.8 = 649,555,200,000 B; 10,000 x 2.2 polls a second.
    poll = projected("short_poll", "10000@1/s")["transports"]["short_poll"]
    assert poll["wire_bytes_per_day"] == pytest.approx(649_555_200_000)
    assert poll["requests_per_second"] == pytest.approx(22_000)
    assert poll["handshakes_per_hour"] == 0
    # Half the rate, half the polls and bytes: the cost per application message is what was measured.
    half = projected("short_poll", "10000@30/min")["transports"]["short_poll"]
    assert half["wire_bytes_per_day"] == pytest.approx(649_555_200_000 / 2)
    assert half["requests_per_second"] == pytest.approx(11_000)


def test_the_rate_counts_the_messages_the_server_sends() -> None:
    # The permessage-deflate WebSocket recording: its clients send 8 application messages and receive 20.
    # 8,892 wire bytes (3,482 + 5,410), 2 handshakes of 1,051 B in all. The fleet's rate is of messages
    # received, so the cost per message is (8,892 - 1,051) / 20 = 392.05 B, the client's messages included;
    # dividing by all 28 messages would make it 280 B, 29 % cheaper than what a received message costs.
    # A day of 10,000 clients at 1/s: 10,000 x 86,400 x 392.05 + 10,000 handshakes of 525.5 B.
    projection = projected("websocket_deflate", "10000@1/s")
    assert projection["app_messages_direction"] == "server_to_client"
    websocket = projection["transports"]["websocket"]
    assert websocket["wire_bytes_per_day"] == pytest.approx(10_000 * 86_400 * 392.05 + 10_000 * 525.5)
    assert websocket["wire_bytes_per_day"] == pytest.approx(338_736_455_000)
    # The rendered text says which direction the rate counts.
    for fmt in ("table", "markdown", "html"):
        capture = str(RECORDINGS / "websocket_deflate.rtcap")
        result = CliRunner().invoke(rtinspect, ["report", capture, "-f", fmt, "--project", "10000@1/s"])
        assert result.exit_code == 0, result.output
        assert "each receiving 1 application messages/s from the server" in " ".join(result.output.split()), fmt
        assert "per application message from the server" in " ".join(result.output.split()), fmt


def test_every_rendering_shows_the_projection_and_its_assumptions() -> None:
    capture = str(RECORDINGS / "mixed.rtcap")
    for fmt, marks in [
        ("table", ["Projection: 10,000 clients", "Wire per day", "Every client opens one connection a day"]),
        ("markdown", ["## Projection: 10,000 clients", "| Wire per day |"]),
        ("html", ["Projection: 10,000 clients", "Every client opens one connection a day"]),
        ("csv", ["projected_wire_bytes_per_day"]),
    ]:
        result = CliRunner().invoke(rtinspect, ["report", capture, "-f", fmt, "--project", "10000@1/s"])
        assert result.exit_code == 0, result.output
        for mark in marks:
            assert mark in result.output, (fmt, mark)
    bad = CliRunner().invoke(rtinspect, ["report", capture, "--project", "lots"])
    assert bad.exit_code == 2 and "is not CLIENTS@RATE" in bad.output
