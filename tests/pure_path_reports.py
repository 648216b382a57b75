"""Every committed recording's report, and any capture named on the command line, as JSON.

Run as ``python tests/pure_path_reports.py OUT.json [CAPTURE ...]`` by
``test_pure_path.py``, once with the compiled parsers and once with
``RTINSPECT_NO_EXTENSIONS=1``, with the repository on PYTHONPATH: the two outputs must be the same, byte for byte.
The inputs are the recordings' captures (HTTP/1.1, HTTP/2, WebSocket with and
without permessage-deflate, SSE, NDJSON, polls, HTTP/3), the pcapng files the tshark
cross-checks read, and the corpus of hostile traffic.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from inspector import speedups
from inspector.capture import ConnectionOpened, read_capture
from inspector.classify import TransportRule
from inspector.render import render
from inspector.replay import report_from_captures

TESTS = Path(__file__).parent
RECORDINGS = TESTS / "recordings"


def _rules(rtcap: Path) -> tuple[TransportRule, ...]:
    expected = rtcap.with_name(rtcap.name.removesuffix(".rtcap") + ".expected.json")
    if not expected.exists():
        return ()
    return tuple(TransportRule.parse(rule) for rule in json.loads(expected.read_text())["rules"])


def _server_ports(rtcap: Path) -> tuple[int, ...]:
    with read_capture(rtcap) as capture:
        return tuple(sorted({int(r.server.rpartition(":")[2]) for r in capture if isinstance(r, ConnectionOpened)}))


def inputs(extra: list[str]) -> list[tuple[Path, tuple[TransportRule, ...], tuple[int, ...]]]:
    """Each file to report, with its transport rules and, for a packet capture, its server ports."""
    found = []
    for rtcap in sorted(
        [*RECORDINGS.glob("*.rtcap"), *RECORDINGS.glob("http2/*.rtcap"), *RECORDINGS.glob("http3/*.rtcap")]
    ):
        found.append((rtcap, _rules(rtcap), ()))
        pcapng = rtcap.with_suffix(".pcapng")
        if pcapng.exists() and rtcap.parent == RECORDINGS:  # the HTTP/2 and HTTP/3 ones are encrypted
            found.append((pcapng, _rules(rtcap), _server_ports(rtcap)))
    found += [(rtcap, (), ()) for rtcap in sorted((TESTS / "corpus").glob("*.rtcap"))]
    found += [(Path(path), (), ()) for path in extra]
    return found


def main() -> None:
    out, *extra = sys.argv[1:]
    reports = {}
    for path, rules, ports in inputs(extra):
        built = report_from_captures([path], rules=rules, server_ports=ports)
        reports[str(path)] = render(built, "json", connections=True)
    Path(out).write_text(json.dumps({"parsers": speedups.describe(), "reports": reports}))


if __name__ == "__main__":
    main()
