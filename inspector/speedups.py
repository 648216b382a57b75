"""Which compiled versions of the parsers' per-byte loops are in use.

The compiled modules (``inspector/_*.pyx``, built with Cython at install time
where a C compiler exists) give exactly the results of the pure-Python modules
they stand in for, which stay the reference and the fallback. Setting
``RTINSPECT_NO_EXTENSIONS`` to a non-empty value uses the pure-Python modules
even where the compiled ones are built.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["ACTIVE", "DISABLED", "ENVIRONMENT_VARIABLE", "EXTENSIONS", "compiled", "describe"]

ENVIRONMENT_VARIABLE = "RTINSPECT_NO_EXTENSIONS"
#: Every compiled module, by the name of the pure-Python module it stands in for.
EXTENSIONS: dict[str, str] = {"capture": "inspector._capture", "websocket": "inspector._websocket"}
#: Whether the environment asks for the pure-Python modules.
DISABLED = bool(os.environ.get(ENVIRONMENT_VARIABLE))


def _load() -> dict[str, ModuleType]:
    if DISABLED:
        return {}
    loaded = {}
    for pure, name in EXTENSIONS.items():
        try:
            loaded[pure] = importlib.import_module(name)
        except ImportError:
            continue
    return loaded


_COMPILED = _load()
#: The pure-Python modules whose compiled version is in use.
ACTIVE: frozenset[str] = frozenset(_COMPILED)


def compiled(pure: str) -> ModuleType | None:
    """The compiled module that stands in for ``inspector.<pure>``, or None where the pure one is used."""
    return _COMPILED.get(pure)


def describe() -> str:
    """Which modules are compiled, in words (``rtinspect --version`` says it)."""
    if DISABLED:
        return f"pure Python ({ENVIRONMENT_VARIABLE} is set)"
    if not ACTIVE:
        return "pure Python (the compiled modules are not built)"
    missing = sorted(set(EXTENSIONS) - ACTIVE)
    text = "compiled: " + ", ".join(sorted(ACTIVE))
    return text + (f"; pure Python: {', '.join(missing)}" if missing else "")
