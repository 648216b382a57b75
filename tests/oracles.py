"""Tests that need an independent oracle (tshark, Chromium) skip, with the
reason "... is not installed", where it is missing. With
``RTINSPECT_REQUIRE_ORACLES=1`` (``.ci/run`` sets it) such a skip is a
failure instead, so a run that could not consult the oracles is never green."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

#: Words every skip for a missing oracle says.
ORACLE_MISSING = "is not installed"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if not report.skipped or os.environ.get("RTINSPECT_REQUIRE_ORACLES") != "1":
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if ORACLE_MISSING in reason:
        report.outcome = "failed"
        report.longrepr = f"{reason}; RTINSPECT_REQUIRE_ORACLES=1 makes a missing oracle a failure"
