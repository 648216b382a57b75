"""What the optional parts of rtinspect need beyond the proxy and the report.

``pip install rtinspect`` installs the proxy, the report and the pytest
plugin. ``rtinspect demo`` and ``rtinspect demo-server`` also need the demo's
servers and clients, the ``demo`` extra (``pip install 'rtinspect[demo]'``);
without it they say so in one line. Only this module's check runs before the
demo is imported: nothing else the command line loads imports them.
"""

from __future__ import annotations

import importlib.util

import click

#: The extra that installs the demo's servers and clients.
DEMO_EXTRA = "demo"
#: The ``demo`` extra's packages, by their top-level modules (FastAPI, uvicorn, Hypercorn, trustme, httpx,
#: python-socketio and aiohttp).
DEMO_PACKAGES = {
    "fastapi": "fastapi",
    "uvicorn": "uvicorn",
    "hypercorn": "hypercorn",
    "trustme": "trustme",
    "httpx": "httpx",
    "socketio": "python-socketio",
    "aiohttp": "aiohttp",
}
#: The top-level modules of the ``demo`` extra's packages.
DEMO_MODULES = tuple(DEMO_PACKAGES)


def missing_modules(modules: tuple[str, ...] = DEMO_MODULES) -> list[str]:
    """The modules that cannot be imported here, looked up without importing them."""
    missing = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    return missing


def demo_extra_problem(command: str = "rtinspect demo") -> str | None:
    """One line saying what to install for ``command``, or None when the demo extra is installed."""
    missing = missing_modules()
    if not missing:
        return None
    return (
        f"{command} needs the {DEMO_EXTRA} extra ({', '.join(missing)} not installed): "
        f"pip install 'rtinspect[{DEMO_EXTRA}]'"
    )


class DemoCommand(click.Command):
    """A command that needs the demo extra: without it, one line saying what to install and exit
    status 1 (before any of its options is read); ``--help`` works either way."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not any(arg in self.get_help_option_names(ctx) for arg in args):
            problem = demo_extra_problem(f"rtinspect {self.name}")
            if problem is not None:
                raise click.ClickException(problem)
        return super().parse_args(ctx, args)
