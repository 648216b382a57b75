"""``[METHOD ]PATH=VALUE``: how the command line's rules name the requests they apply to.

``--transport``, ``--app-messages`` and ``--app-protocol`` each say something
about the requests to a path (exactly, or a glob such as ``/api/*``), for one
method or all of them; this is how they are written and matched.
"""

from __future__ import annotations

import fnmatch


class PathRule:
    """What the rules share: a path ``pattern`` and, optionally, a ``method``."""

    __slots__ = ()
    pattern: str
    method: str | None

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return path == self.pattern or fnmatch.fnmatchcase(path, self.pattern)


def split_rule(text: str, what: str, shape: str) -> tuple[str | None, str, str]:
    """A rule as written on the command line: its method (or None), path and value;
    ValueError says what is wrong, naming the rule as ``what`` and its ``shape``."""
    where, sep, value = text.rpartition("=")
    value = value.strip()
    if not sep or not where.strip():
        raise ValueError(f"{what} {text!r} is not {shape}")
    method, _, pattern = where.strip().rpartition(" ")
    if not pattern.startswith("/"):
        raise ValueError(f"{what} {text!r}: the path must start with '/'")
    return method.strip().upper() or None, pattern, value
