"""The dependencies: bounded above where a release could change the counts, and pinned for CI;
the demo's servers and clients in an extra of their own, which the proxy, the report and the
pytest plugin never import."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import tomllib
import urllib.request
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version
from servers import ScriptedServer, respond_with, rtinspect_environment

from inspector.extras import DEMO_EXTRA, DEMO_MODULES, DEMO_PACKAGES
from inspector.proxy_process import ProxyProcess, free_port, proxy_arguments, rtinspect_command

ROOT = Path(__file__).parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
MIXED = ROOT / "tests" / "recordings" / "mixed.rtcap"


def requirements() -> list[Requirement]:
    """Every requirement listed, extras included; an extra that names another of the project's
    own extras (``rtinspect[demo]``) is checked through that one."""
    listed = [*PROJECT["dependencies"], *(d for extra in PROJECT["optional-dependencies"].values() for d in extra)]
    parsed = [Requirement(text) for text in listed]
    return [r for r in parsed if canonicalize_name(r.name) != canonicalize_name(PROJECT["name"])]


def pinned() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt pins with ==: {line!r}"
            pins[canonicalize_name(name)] = Version(version.split(";")[0].strip())
    return pins


def test_every_dependency_has_an_upper_bound() -> None:
    unbounded = [str(r) for r in requirements() if not any(s.operator in ("<", "<=", "~=", "==") for s in r.specifier)]
    assert unbounded == []


def test_ci_pins_a_version_of_every_dependency_within_its_bounds() -> None:
    pins = pinned()
    for requirement in requirements():
        version = pins.get(canonicalize_name(requirement.name))
        assert version is not None, f"constraints.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{requirement.name}=={version} is not {requirement}"
        )


def test_the_build_pins_the_cython_that_builds_the_compiled_modules() -> None:
    """scripts/setup hands constraints.txt to the build too, so CI builds with the pinned Cython."""
    build = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    cython = next(Requirement(text) for text in build if canonicalize_name(Requirement(text).name) == "cython")
    assert any(s.operator in ("<", "<=", "~=", "==") for s in cython.specifier)
    assert cython.specifier.contains(pinned()["cython"])
    assert 'PIP_CONSTRAINT="$PWD/constraints.txt"' in (ROOT / "scripts" / "setup").read_text()


def test_the_demo_extra_is_what_the_demo_needs_and_the_core_none_of_it() -> None:
    demo = {canonicalize_name(Requirement(text).name) for text in PROJECT["optional-dependencies"][DEMO_EXTRA]}
    core = {canonicalize_name(Requirement(text).name) for text in PROJECT["dependencies"]}
    assert demo == set(DEMO_PACKAGES.values())
    assert not demo & core
    assert f"rtinspect[{DEMO_EXTRA}]" in PROJECT["optional-dependencies"]["test"]


def _without_the_demo_extra(folder: Path) -> dict[str, str]:
    """The environment of an rtinspect whose Python (and every Python it starts) cannot import
    the demo extra's packages, nor Starlette (FastAPI's), as if they were not installed."""
    blocked = (*DEMO_MODULES, "starlette")
    (folder / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""\
            import sys

            for name in {blocked!r}:
                sys.modules[name] = None  # import name raises ModuleNotFoundError
            """
        )
    )
    environment = rtinspect_environment()
    environment["PYTHONPATH"] = f"{folder}:{environment['PYTHONPATH']}"
    return environment


def _run(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], env=environment, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_the_proxy_the_report_and_the_plugin_need_nothing_of_the_demo_extra(tmp_path: Path) -> None:
    environment = _without_the_demo_extra(tmp_path)
    blocked = _run(environment, "-c", "import fastapi")
    assert blocked.returncode == 1 and "ModuleNotFoundError" in blocked.stderr

    listed = _run(environment, "-m", "inspector", "--help")
    assert listed.returncode == 0, listed.stderr
    assert "demo" in listed.stdout and "demo-server" in listed.stdout
    reported = _run(environment, "-m", "inspector", "report", str(MIXED), "-f", "json")
    assert reported.returncode == 0, reported.stderr
    assert '"websocket"' in reported.stdout
    plugin = _run(
        environment, "-c", "import inspector.pytest_plugin, inspector.mitmproxy_script, inspector.metrics_addon"
    )
    assert plugin.returncode == 0, plugin.stderr

    # A real proxy (its relay and its analyser process), relaying a request and reporting it.
    capture, report = tmp_path / "feed.rtcap", tmp_path / "report.json"
    body = b"hello"
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
    with ScriptedServer(respond_with(head + body)) as server:
        port = free_port()
        arguments = proxy_arguments(
            server.url, "--report", str(report), port=port, confdir=tmp_path / "confdir", capture=capture
        )
        proxy = ProxyProcess(rtinspect_command(*arguments), port, capture, env=environment, cwd=ROOT)
        try:
            proxy.wait_listening()
            with urllib.request.urlopen(f"{proxy.url}/feed", timeout=10) as response:
                assert response.read() == body
            assert proxy.stop() == 0, proxy.output
            assert "Error" not in proxy.output and "Traceback" not in proxy.output, proxy.output
        finally:
            if proxy.running:
                proxy.stop()
            proxy.close()
    assert '"http"' in report.read_text()


def test_the_demo_without_its_extra_is_one_line_saying_what_to_install(tmp_path: Path) -> None:
    environment = _without_the_demo_extra(tmp_path)
    for command in ("demo", "demo-server"):
        done = _run(
            environment, "-m", "inspector", command, *(["-o", str(tmp_path / "out")] if command == "demo" else [])
        )
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        assert done.stderr.splitlines() == [
            f"Error: rtinspect {command} needs the demo extra (fastapi, uvicorn, hypercorn, trustme, httpx, "
            "socketio, aiohttp not installed): pip install 'rtinspect[demo]'"
        ]
    assert not (tmp_path / "out").exists()
    # Its help still says what it does.
    helped = _run(environment, "-m", "inspector", "demo", "--help")
    assert helped.returncode == 0 and "--long" in helped.stdout
