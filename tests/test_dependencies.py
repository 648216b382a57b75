"""The dependencies: bounded above where a release could change the counts, and pinned for CI."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parent.parent


def requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    listed = [*project["dependencies"], *(d for extra in project["optional-dependencies"].values() for d in extra)]
    return [Requirement(text) for text in listed]


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
