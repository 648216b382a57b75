"""The README is the front door: short, the quick start and the proxy up front, and no link that leads nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))

#: What a reader should see on the first screen: the two quick-start commands.
QUICK_START = ("bash scripts/setup && .venv/bin/rtinspect demo", "bash .ci/run")
FIRST_SCREEN = 40
PROXY_BY = 100
MAX_LINES = 250

_FENCE = re.compile(r"^\s*```")
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def _outside_code(path: Path) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _links(path: Path) -> list[str]:
    """The targets of a page's links, code left out."""
    return [target for line in _outside_code(path) for target in _LINK.findall(_CODE_SPAN.sub("", line))]


def _anchors(path: Path) -> set[str]:
    """The anchors GitHub gives a page's headings."""
    anchors: set[str] = set()
    for line in _outside_code(path):
        match = _HEADING.match(line)
        if match is None:
            continue
        base = re.sub(r"[^\w\- ]", "", match.group(2).lower()).replace(" ", "-")
        anchor, n = base, 0
        while anchor in anchors:
            n += 1
            anchor = f"{base}-{n}"
        anchors.add(anchor)
    return anchors


def test_the_readme_is_short() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) < MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_the_first_screen_has_the_quick_start() -> None:
    first_screen = "\n".join(README.read_text().splitlines()[:FIRST_SCREEN])
    for command in QUICK_START:
        assert command in first_screen, f"{command!r} is not in README.md's first {FIRST_SCREEN} lines"


def test_the_proxy_comes_early() -> None:
    lines = README.read_text().splitlines()
    at = next((n for n, line in enumerate(lines, start=1) if line.startswith("rtinspect proxy http")), None)
    assert at is not None and at <= PROXY_BY, f"the proxy's use is at line {at} of README.md, after {PROXY_BY}"


def test_every_page_of_docs_is_linked_from_the_readme() -> None:
    linked = {target.split("#")[0] for target in _links(README)}
    assert PAGES, "docs/ has no pages"
    assert [page.name for page in PAGES if f"docs/{page.name}" not in linked] == []


@pytest.mark.parametrize("path", [README, *PAGES], ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_leads_somewhere(path: Path) -> None:
    broken = []
    for target in _links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto: ...
        file, _, anchor = target.partition("#")
        destination = (path.parent / file).resolve() if file else path
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{target}: no such heading")
    assert broken == [], f"{path.relative_to(ROOT)}: broken links"
