"""HAR exports opened by real HAR readers, not by rtinspect.

The committed recordings are exported as HAR and read by:

- hario-core, a HAR 1.2 reader with typed models of Chrome DevTools'
  extensions (``_resourceType``, ``_transferSize``, ``_webSocketMessages``):
  it must validate every entry, and its entries must carry what the report
  counted: per connection, the wire bytes of each head and body, and the
  WebSocket messages with their opcodes and sizes;
- Chromium's own HAR import (the DevTools front end's ``HARRoot`` and
  ``Importer.requestsFromHARLog``, the code behind dropping a HAR file on the
  Network panel), run in headless Chromium from the front end it serves: it
  must see every entry, the WebSocket frames with their opcodes and sizes,
  and transfer sizes that are the report's wire bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hario_core.models.extensions.chrome_devtools import DevToolsEntry
from hario_core.parse import parse as hario_parse

from inspector.capture import read_capture
from inspector.demo.chromium import Chromium, find_chromium
from inspector.formats.export import export_records
from inspector.replay import analyze_captures
from inspector.report import PerDirection, Report
from inspector.summary import build_report
from inspector.wire import Category

# Importing mitmproxy's addons (for its HAR writer) imports ldap3, which warns about pyasn1 names.
pytestmark = pytest.mark.filterwarnings("ignore:.* is deprecated. Please use .* instead:DeprecationWarning")

RECORDINGS = Path(__file__).parent / "recordings"
NAMES = ["websocket", "websocket_deflate", "mixed"]
#: The ping the client of the websocket recording sent, and the pong that answered it.
RECORDED_PING = b"are you there"
CHROMIUM = find_chromium()


def exported_har(name: str, folder: Path) -> Path:
    target = folder / f"{name}.har"
    with read_capture(RECORDINGS / f"{name}.rtcap") as capture, open(target, "wb") as out:
        export_records(capture, "har", out)
    return target


def report_and_exchanges(name: str) -> tuple[Report, dict[str, int]]:
    """The recording's report, and how many exchanges each of its connections had."""
    analysis = analyze_captures([RECORDINGS / f"{name}.rtcap"])
    return build_report(analysis.records), {record.id: len(record.exchanges) for record in analysis.records}


def payload_size(opcode: int, data: str) -> int:
    """A WebSocket message's size as Chrome's DevTools protocol gives it: text as text, anything else in base64."""
    return len(data.encode()) if opcode == 1 else len(base64.b64decode(data))


def data_messages(frames: list[tuple[str, int, str]]) -> tuple[PerDirection, PerDirection]:
    """Counts and payload sizes, by direction, of the text and binary messages among (type, opcode, data)."""
    counts, sizes = Counter[str](), Counter[str]()
    for kind, opcode, data in frames:
        if opcode in (1, 2):
            counts[kind] += 1
            sizes[kind] += payload_size(opcode, data)
    return PerDirection(counts["send"], counts["receive"]), PerDirection(sizes["send"], sizes["receive"])


def recorded_pings(name: str, frames: list[tuple[str, int, str]]) -> None:
    """The websocket recording's one ping and pong are there, and no other recording has any."""
    control = [(kind, opcode, data) for kind, opcode, data in frames if opcode not in (1, 2)]
    ping = base64.b64encode(RECORDED_PING).decode()
    assert control == ([("send", 9, ping), ("receive", 10, ping)] if name == "websocket" else [])


# -- hario-core


@pytest.mark.parametrize("name", NAMES)
def test_hario_core_reads_the_har_export_with_the_reports_sizes_and_messages(name: str, tmp_path: Path) -> None:
    log = hario_parse(exported_har(name, tmp_path))
    report, exchanges = report_and_exchanges(name)
    # Every entry validates as an entry with Chrome's extensions, typed.
    assert log.entries and all(isinstance(entry, DevToolsEntry) for entry in log.entries)
    assert log.creator.name == "rtinspect" and log.version == "1.2"
    by_connection: dict[str, list[DevToolsEntry]] = {}
    for entry in log.entries:
        assert entry.connection is not None
        by_connection.setdefault(entry.connection, []).append(entry)  # type: ignore[arg-type]
    assert {cid: len(entries) for cid, entries in by_connection.items()} == exchanges

    for connection in report.connections:
        entries = by_connection[connection.id]
        sent = sum(entry.request.headersSize + entry.request.bodySize for entry in entries)
        received = sum(entry.response.transferSize or 0 for entry in entries)
        assert all(
            entry.response.transferSize == entry.response.headersSize + entry.response.bodySize for entry in entries
        )
        if connection.transport != "websocket":
            assert PerDirection(sent, received) == connection.wire_bytes, connection.id
            assert {entry.resourceType for entry in entries} <= {"eventsource", "other"}
            continue
        # A WebSocket connection: its handshake is the entry, its frames are the messages.
        (entry,) = entries
        assert entry.resourceType == "websocket"
        assert entry.webSocketMessages is not None
        frames = [(m.type, m.opcode, m.data) for m in entry.webSocketMessages]
        assert data_messages(frames) == (connection.messages, connection.payload_bytes), connection.id
        recorded_pings(name, frames)
        times = [m.time for m in entry.webSocketMessages]
        assert times == sorted(times) and entry.startedDateTime.timestamp() <= times[0]

    # Poll bodies: the decoded size of each response is its payload.
    for transport in ("long_poll", "short_poll"):
        if transport in report.transports:
            polls = [e for c in report.connections if c.transport == transport for e in by_connection[c.id]]
            assert (
                sum(e.response.content.size for e in polls)
                == report.transport(transport).payload_bytes.server_to_client
            )


# -- Chromium's own HAR import

IMPORT_IN_DEVTOOLS = """
(async () => {
  const HAR = await import('./models/har/har.js');
  const log = new HAR.HARFormat.HARRoot(JSON.parse(%s)).log;
  return HAR.Importer.Importer.requestsFromHARLog(log).map(request => ({
    url: request.url(),
    method: request.requestMethod,
    status: request.statusCode,
    type: request.resourceType().name(),
    transferSize: request.transferSize,
    resourceSize: request.resourceSize,
    frames: request.frames().map(frame => [frame.type, frame.opCode, frame.text]),
  }));
})()
"""


async def import_in_chromium(hars: list[Path], profile: Path) -> list[list[dict[str, Any]]]:
    """Each HAR file as Chromium's DevTools front end imports it: its network requests."""
    assert CHROMIUM is not None
    browser = await Chromium.launch(CHROMIUM, profile)
    try:
        port = (profile / "DevToolsActivePort").read_text().split()[0]
        await browser.open(f"http://127.0.0.1:{port}/devtools/inspector.html")
        deadline = time.monotonic() + 20
        while (
            await browser.evaluate("location.pathname + ' ' + document.readyState")
            != "/devtools/inspector.html complete"
        ):
            assert time.monotonic() < deadline, "the DevTools front end did not load"
            await asyncio.sleep(0.05)
        imported = []
        for har in hars:
            result = await browser.call(
                "Runtime.evaluate",
                expression=IMPORT_IN_DEVTOOLS % json.dumps(har.read_text()),
                awaitPromise=True,
                returnByValue=True,
            )
            assert "exceptionDetails" not in result, result["exceptionDetails"]
            imported.append(result["result"]["value"])
        return imported
    finally:
        await browser.close()


@pytest.fixture(scope="module")
def chromium_imports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, list[dict[str, Any]]]]:
    if CHROMIUM is None:
        pytest.skip("Chromium is not installed (chromium, chromium-browser or google-chrome on PATH)")
    folder = tmp_path_factory.mktemp("har-in-chromium")
    hars = [exported_har(name, folder) for name in NAMES]
    imported = asyncio.run(import_in_chromium(hars, folder / "profile"))
    return {name: (har, requests) for name, har, requests in zip(NAMES, hars, imported, strict=True)}


@pytest.mark.parametrize("name", NAMES)
def test_chromium_imports_the_har_export_with_the_reports_sizes_and_frames(
    name: str, chromium_imports: dict[str, tuple[Path, list[dict[str, Any]]]]
) -> None:
    har, requests = chromium_imports[name]
    report, exchanges = report_and_exchanges(name)
    entries = json.loads(har.read_text())["log"]["entries"]
    assert len(requests) == len(entries) == sum(exchanges.values())
    assert Counter((r["method"], r["url"], r["status"]) for r in requests) == Counter(
        (e["request"]["method"], e["request"]["url"], e["response"]["status"]) for e in entries
    )

    websockets = [r for r in requests if r["type"] == "websocket"]
    summary = report.transport("websocket")
    assert len(websockets) == summary.connections
    frames = [tuple(frame) for r in websockets for frame in r["frames"]]
    assert data_messages(frames) == (summary.messages, summary.payload_bytes)  # type: ignore[arg-type]
    recorded_pings(name, frames)  # type: ignore[arg-type]
    # A WebSocket request transfers its handshake's response head; the frames come after.
    head = summary.categories[Category.HEAD.value].server_to_client
    assert sum(r["transferSize"] for r in websockets) == head

    # Every other request transfers its response head and body as they travelled.
    others = [r for r in requests if r["type"] != "websocket"]
    wire = sum(s.wire_bytes.server_to_client for t, s in report.transports.items() if t != "websocket")
    assert sum(r["transferSize"] for r in others) == wire
    if "sse" in report.transports:
        assert [r["type"] for r in others if r["url"].endswith("/sse")] == ["eventsource"] * report.transport(
            "sse"
        ).connections
