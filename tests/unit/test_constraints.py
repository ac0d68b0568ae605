"""constraints.txt pins every package Ferry installs, inside the ranges pyproject.toml allows.

`make setup` (and so `make run`, `make test`, CI) installs with `-c constraints.txt`, so a fresh
clone gets the versions CI got, whatever was released since. That only holds while the two files
agree: a dependency added to pyproject.toml without a pin would float again, and a pin outside a
changed range would make every install fail. `make constraints` rewrites the file (README).
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
EXTRAS = ("dev", "bench")


def _pins(text: str) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"constraints.txt:{number}: {raw!r} is not NAME==VERSION"
        key = canonicalize_name(name.strip())
        assert key not in pins, f"constraints.txt:{number}: {name} is pinned twice"
        pins[key] = Version(version.strip())
    return pins


def _declared(pyproject: dict[str, object]) -> Iterator[tuple[str, Requirement]]:
    project = pyproject["project"]
    assert isinstance(project, dict)
    for text in project["dependencies"]:
        yield "dependencies", Requirement(text)
    for extra in EXTRAS:
        for text in project["optional-dependencies"][extra]:
            yield f"optional-dependencies.{extra}", Requirement(text)


def _disagreements(pyproject: dict[str, object], pins: dict[str, Version]) -> list[str]:
    problems = []
    for where, req in _declared(pyproject):
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req.name} ({where}) is not pinned in constraints.txt")
        elif req.specifier and not req.specifier.contains(pin, prereleases=True):
            problems.append(f"{req.name}=={pin} in constraints.txt is outside {req} ({where})")
    return problems


@pytest.fixture(scope="module")
def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


@pytest.fixture(scope="module")
def pins() -> dict[str, Version]:
    return _pins((ROOT / "constraints.txt").read_text())


def test_every_declared_dependency_is_pinned_inside_its_range(
    pyproject: dict[str, object], pins: dict[str, Version]
) -> None:
    assert _disagreements(pyproject, pins) == []


def test_a_missing_pin_and_a_pin_outside_its_range_are_both_caught(
    pyproject: dict[str, object], pins: dict[str, Version]
) -> None:
    # The check above must be able to fail: drop one pin and move another out of its range.
    broken = dict(pins)
    del broken[canonicalize_name("grpcio")]
    broken[canonicalize_name("pydantic")] = Version("1.10.0")  # pyproject: >=2.7,<3
    problems = _disagreements(pyproject, broken)
    assert any(p.startswith("grpcio ") and "not pinned" in p for p in problems), problems
    assert any(p.startswith("pydantic==1.10.0") and "outside" in p for p in problems), problems


def test_what_is_installed_is_what_is_pinned_all_the_way_down(pins: dict[str, Version]) -> None:
    """Every distribution Ferry's requirements reach (main and dev, transitively, extras
    included) is pinned, installed at its pin, and its pin satisfies whoever requires it. A venv
    installed without `-c constraints.txt` fails here as soon as anything was released since."""
    env = default_environment()
    queue: list[tuple[str, Requirement]] = []
    for text in metadata.requires("ferry") or []:
        req = Requirement(text)
        if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in ("", "dev")):
            queue.append(("ferry", req))
    seen: set[tuple[str, frozenset[str]]] = set()
    problems: list[str] = []
    while queue:
        parent, req = queue.pop()
        key = canonicalize_name(req.name)
        if (key, frozenset(req.extras)) in seen:
            continue
        seen.add((key, frozenset(req.extras)))
        pin = pins.get(key)
        try:
            installed = Version(metadata.version(req.name))
        except metadata.PackageNotFoundError:
            problems.append(f"{req.name} (required by {parent}) is not installed: run make setup")
            continue
        if pin is None:
            problems.append(f"{req.name} (required by {parent}) is not pinned in constraints.txt")
            continue
        if installed != pin:
            problems.append(f"{req.name} is installed at {installed}, pinned at {pin}: make setup")
        if req.specifier and not req.specifier.contains(pin, prereleases=True):
            problems.append(f"{req.name}=={pin} does not satisfy {parent}'s {req}")
        for text in metadata.requires(req.name) or []:
            child = Requirement(text)
            wanted = ["", *sorted(req.extras)]
            marker = child.marker
            if marker is None or any(marker.evaluate({**env, "extra": e}) for e in wanted):
                queue.append((req.name, child))
    assert problems == []
    assert len(seen) > 40  # the walk really went down the tree
