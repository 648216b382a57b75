"""The pytest plugin as its users meet it: test files run by pytest's own ``pytester``.

The plugin is loaded from rtinspect's ``pytest11`` entry point, as in any
environment where rtinspect is installed. The live-proxy test runs the real
``rtinspect proxy`` in front of a real server on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tshark import dissect_pcapng, frame_figures, needs_tshark

pytest_plugins = ["pytester"]

REPO_ROOT = Path(__file__).resolve().parent.parent
MIXED = REPO_ROOT / "tests" / "recordings" / "mixed.rtcap"
#: What the mixed recording's clients saw, and the port of its server.
MIXED_SEEN = json.loads(MIXED.with_suffix(".expected.json").read_text())


@pytest.fixture
def feed(pytester: pytest.Pytester) -> Path:
    """The mixed recording next to the test files, as ``flows/feed.rtcap``."""
    flows = pytester.mkdir("flows")
    shutil.copy(MIXED, flows / "feed.rtcap")
    return flows / "feed.rtcap"


def test_a_passing_test_reads_the_report_as_typed_results(pytester: pytest.Pytester, feed: Path) -> None:
    pytester.makepyfile(
        """
        from inspector.pytest_plugin import assert_transport
        from inspector.report import Report

        def test_feed(rtinspect_report):
            report = rtinspect_report("flows/feed.rtcap", rules=["/longpoll=long_poll"])
            assert isinstance(report, Report)
            assert report.transport("websocket").messages.server_to_client == 12
            assert report.transport("long_poll").connections == 1
            summary = assert_transport(report, "sse", messages_server_to_client=13, anomalies=0, max_overhead_ratio=0.3)
            assert summary.transport == "sse"

        def test_a_lower_threshold_makes_the_held_polls_long(rtinspect_report):
            assert "long_poll" not in rtinspect_report("flows/feed.rtcap").transports
            assert_transport(rtinspect_report("flows/feed.rtcap", long_poll_threshold=0.04), "long_poll", connections=1)

        def test_several_captures_merge(rtinspect_report):
            report = rtinspect_report("flows/feed.rtcap", "flows/feed.rtcap")
            assert_transport(report, "websocket", connections=2, messages_server_to_client=24)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def websocket_overhead_ratio_from_tshark() -> float:
    """The overhead ratio of the mixed recording's WebSocket connection as tshark counts
    it in the recording's packets: TCP payload bytes that are not WebSocket data frame
    payload, over all TCP payload bytes (the connection's, both ways)."""
    streams = dissect_pcapng(MIXED.with_suffix(".pcapng"), MIXED_SEEN["server_port"])
    (websocket,) = [stream for stream in streams.values() if stream.frames]
    wire = sum(websocket.tcp_len.values())
    return (wire - frame_figures(websocket.frames)["wire_payload_bytes"].total) / wire


@needs_tshark
def test_a_failing_check_names_transport_figure_expected_actual_and_connection(
    pytester: pytest.Pytester, feed: Path
) -> None:
    pytester.makepyfile(
        """
        from inspector.pytest_plugin import assert_transport

        def test_feed(rtinspect_report):
            report = rtinspect_report("flows/feed.rtcap")
            assert_transport(report, "websocket", messages_server_to_client=200, max_overhead_ratio=0.1, anomalies=0)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    received = MIXED_SEEN["transports"]["websocket"]["messages"]["server_to_client"]  # 12
    server = f"127.0.0.1:{MIXED_SEEN['server_port']}"
    result.stdout.fnmatch_lines(
        [
            "*websocket: 2 figures not as expected",
            f"*messages.server_to_client is {received}, expected 200",
            f"*overhead_ratio is {websocket_overhead_ratio_from_tshark():.6g}, expected at most 0.1",
            "*websocket connections (1):",
            f"*connection 1: 127.0.0.1:51936 -> {server} /ws*messages client_to_server 0, server_to_client {received}*",
        ]
    )
    assert "anomalies is" not in result.stdout.str()


def test_a_missing_transport_names_the_transports_present(pytester: pytest.Pytester, feed: Path) -> None:
    pytester.makepyfile(
        """
        from inspector.pytest_plugin import assert_transport

        def test_feed(rtinspect_report):
            assert_transport(rtinspect_report("flows/feed.rtcap"), "long_poll", messages_server_to_client=12)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*no 'long_poll' traffic in */flows/feed.rtcap; present: websocket (1 connection), sse (1 connection),"
            " http_stream (1 connection), short_poll (2 connections)"
        ]
    )


def test_a_plain_assert_says_which_transport_and_both_numbers(pytester: pytest.Pytester, feed: Path) -> None:
    pytester.makepyfile(
        """
        def test_feed(rtinspect_report):
            report = rtinspect_report("flows/feed.rtcap")
            assert report.transport("sse").messages.server_to_client == 10
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["*assert 13 == 10", "*where 13 = PerDirection(client_to_server=0, server_to_client=13)*"]
    )
    result.stdout.fnmatch_lines(["*TransportSummary(transport='sse'*"])


def test_mistakes_fail_with_one_clear_line(pytester: pytest.Pytester, feed: Path) -> None:
    pytester.path.joinpath("flows", "not-a-capture.rtcap").write_bytes(b"hello")
    pytester.makepyfile(
        """
        import pytest
        from inspector.pytest_plugin import assert_transport

        def test_unreadable(rtinspect_report):
            rtinspect_report("flows/not-a-capture.rtcap")

        def test_missing(rtinspect_report):
            rtinspect_report("flows/nowhere.rtcap")

        def test_misspelt_figure(rtinspect_report):
            with pytest.raises(TypeError, match="did you mean messages"):
                assert_transport(rtinspect_report("flows/feed.rtcap"), "sse", mesages=1)

        def test_bad_rule(rtinspect_report):
            with pytest.raises(ValueError, match="unknown transport 'longpoll'"):
                rtinspect_report("flows/feed.rtcap", rules=["/longpoll=longpoll"])
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2, passed=2)
    output = result.stdout.str()
    assert "Traceback" not in output and "CaptureError" not in output
    result.stdout.fnmatch_lines(["*not-a-capture.rtcap*", "*nowhere.rtcap*"])


TINY_SERVER_TEST = """
import http.server
import threading
import urllib.request

from inspector.pytest_plugin import assert_transport

BODY = b"pinned bytes\\n" * 10


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


def test_live(rtinspect_proxy):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proxy = rtinspect_proxy(f"http://127.0.0.1:{server.server_address[1]}")
        assert proxy.ws_url == proxy.url.replace("http://", "ws://")
        for _ in range(2):
            with urllib.request.urlopen(proxy.url + "/pinned", timeout=10) as response:
                assert response.read() == BODY
        report = proxy.report()
    finally:
        server.shutdown()
        server.server_close()
    assert proxy.capture.exists()
    assert_transport(
        report, "short_poll", connections=2, messages_server_to_client=2, payload_bytes_server_to_client=2 * len(BODY)
    )
"""


def test_the_live_proxy_fixture_reports_what_it_relayed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(TINY_SERVER_TEST)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_example_passes_where_only_rtinspect_is_installed(tmp_path: Path) -> None:
    """A new virtual environment with rtinspect (built from this checkout) and
    pytest, run on a copy of ``examples/`` outside the checkout. pip takes the
    dependencies from its cache, which setting up ``.venv`` filled: about 20 s."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(REPO_ROOT), "pytest"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    examples = tmp_path / "examples"
    shutil.copytree(REPO_ROOT / "examples", examples, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    where = subprocess.run(
        [str(python), "-c", "import inspector; print(inspector.__file__)"],
        cwd=examples,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert str(venv) in where.stdout, where.stdout + where.stderr
    run = subprocess.run(
        [str(python), "-m", "pytest", "-p", "no:cacheprovider", "test_my_traffic.py"],
        cwd=examples,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert " passed" in run.stdout


def test_a_missing_oracle_fails_the_run_when_oracles_are_required(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.skipif(True, reason="tshark is not installed (apt-get install tshark)")
        def test_oracle():
            pass

        def test_other():
            pytest.skip("needs something else")
        """
    )
    monkeypatch.delenv("RTINSPECT_REQUIRE_ORACLES", raising=False)
    pytester.runpytest("-p", "oracles").assert_outcomes(skipped=2)
    monkeypatch.setenv("RTINSPECT_REQUIRE_ORACLES", "1")
    result = pytester.runpytest("-p", "oracles")
    result.assert_outcomes(errors=1, skipped=1)  # a skip mark acts at setup: there it is an error
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*tshark is not installed*RTINSPECT_REQUIRE_ORACLES=1 makes a missing oracle a failure*"]
    )
