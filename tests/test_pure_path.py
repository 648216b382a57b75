"""The pure-Python path, in the same run as the compiled one.

The suite runs once, on the compiled parsers where they are built. What makes
the two paths equivalent is checked here, with ``RTINSPECT_NO_EXTENSIONS=1`` in
a child process: the report of every recording, of the pcapng files the tshark
cross-checks read, of the hostile-traffic corpus and of a synthetic capture
must be the same JSON, byte for byte, on both paths (so every check made of
those reports, tshark's included, holds on both); and the compiled parsers'
own tests, their hypothesis invariants included, pass on the pure-Python path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.synthetic import write_synthetic
from inspector import speedups

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def _environment(*, pure: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != speedups.ENVIRONMENT_VARIABLE}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if pure:
        env[speedups.ENVIRONMENT_VARIABLE] = "1"
    return env


def _reports(out: Path, captures: list[Path], *, pure: bool) -> dict[str, object]:
    command = [sys.executable, str(TESTS / "pure_path_reports.py"), str(out), *map(str, captures)]
    subprocess.run(command, env=_environment(pure=pure), check=True, timeout=300)
    return json.loads(out.read_text())


def test_every_report_is_the_same_on_both_paths(tmp_path: Path) -> None:
    synthetic = tmp_path / "synthetic.rtcap"
    # WebSocket chat and feeds (reads that cut frames anywhere), permessage-deflate, keep-alive polls.
    write_synthetic(synthetic, scale=0.01, seed=7)
    compiled = _reports(tmp_path / "compiled.json", [synthetic], pure=False)
    if not str(compiled["parsers"]).startswith("compiled"):
        pytest.skip(f"the compiled modules are not built ({compiled['parsers']})")
    pure = _reports(tmp_path / "pure.json", [synthetic], pure=True)
    assert pure["parsers"] == f"pure Python ({speedups.ENVIRONMENT_VARIABLE} is set)"
    assert len(compiled["reports"]) > 60  # type: ignore[arg-type]
    differing = [name for name, text in compiled["reports"].items() if pure["reports"][name] != text]  # type: ignore[attr-defined,index]
    assert differing == []
    assert compiled["reports"] == pure["reports"]


@pytest.mark.skipif(speedups.DISABLED or not speedups.ACTIVE, reason="this run is on the pure-Python path already")
def test_the_compiled_parsers_tests_pass_on_the_pure_path() -> None:
    """The parsers' examples and hypothesis invariants (results whatever the split, every byte
    counted once, anomalies not exceptions), run against the pure-Python reader."""
    tests = [str(TESTS / name) for name in ("test_websocket.py", "test_capture.py", "test_speedups.py")]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    result = subprocess.run(command, env=_environment(pure=True), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]
