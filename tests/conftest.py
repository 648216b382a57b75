"""Fixtures shared by the test suite: real servers on 127.0.0.1; and the
plugin that fails a run whose oracles are missing (:mod:`oracles`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import AppServer

pytest_plugins = ["oracles"]


@pytest.fixture(scope="session")
def confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A mitmproxy configuration directory (its CA) for the whole session."""
    return tmp_path_factory.mktemp("mitmproxy-confdir")


@pytest.fixture(scope="session")
def app_server() -> Iterator[AppServer]:
    """The test app (plain, SSE, NDJSON, WebSocket echo) under uvicorn."""
    with AppServer() as server:
        yield server
