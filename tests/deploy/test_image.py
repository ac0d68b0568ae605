"""The image's recipe agrees with the repository: what the Dockerfile copies exists and is in
the build context, the package carries its non-Python files, every dependency is pinned in
constraints.txt, and the package installs from those pins into a fresh environment.

There is no container engine on these machines, so the image itself is not built here; these
tests check each thing the build relies on."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def ignored(path: str) -> bool:
    """Whether .dockerignore leaves `path` out of the build context (last match wins)."""
    verdict = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(p, pattern[3:]) for p in parts)
        else:
            hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes)
        if hit:
            verdict = not negate
    return verdict


def copied_sources() -> list[str]:
    sources = []
    for word, args in instructions():
        if word == "COPY" and "--from=" not in args:
            *srcs, _dest = args.split()
            sources += srcs
    return sources


def test_every_file_the_dockerfile_copies_exists_and_is_in_the_context() -> None:
    sources = copied_sources()
    assert {"constraints.txt", "pyproject.toml", "ferry", "services", "gateway"} <= set(sources)
    for src in sources:
        assert (ROOT / src).exists(), src
        assert not ignored(src), f"{src} is copied but .dockerignore leaves it out"
    # What must stay out of the context does.
    for path in (".venv", "var", "tests", "ferry/__pycache__", ".git"):
        assert ignored(path), path


def test_the_image_runs_ferry_as_a_non_root_user_with_constraints() -> None:
    steps = instructions()
    entry = [json.loads(a) for w, a in steps if w == "ENTRYPOINT"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry[-1] == ["ferry"] and "ferry" in scripts
    user = [a for w, a in steps if w == "USER"][-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0
    froms = [a for w, a in steps if w == "FROM"]
    assert all("slim" in f for f in froms)
    env = " ".join(a for w, a in steps if w == "ENV")
    assert "PIP_CONSTRAINT=/src/constraints.txt" in env
    # Installed as a package, not editable: the image has no source tree to point at.
    runs = " ".join(a for w, a in steps if w == "RUN")
    assert "pip install ." in runs and "-e " not in runs


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not an exact pin"
            out[canonical(name)] = version
    return out


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_wheel_carries_every_non_python_file_of_the_packages(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("ferry-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = subprocess.run(
        ["git", "ls-files", "ferry", "services", "gateway"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    data = [p for p in tracked if not p.endswith((".py", ".md"))]
    assert "gateway/static/index.html" in data
    assert [p for p in data if p not in names] == []
    assert "ferry/db/migrations/versions/0001_school_dataset.py" in names


@pytest.mark.slow
@pytest.mark.long  # a whole install, about 40 s: make test-long
def test_the_package_installs_into_a_fresh_venv_from_the_constraints(tmp_path: Path) -> None:
    """What the image's build stage does, in a new virtual environment: the CLI starts and
    every installed version is the pinned one."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_CONSTRAINT": str(ROOT / "constraints.txt")}
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", str(ROOT)],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "list", "--format", "json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    pinned = pins()
    installed = {canonical(p["name"]): p["version"] for p in json.loads(listed)}
    installed.pop("ferry")
    assert {n: v for n, v in installed.items() if pinned.get(n) != v} == {}
    assert "grpcio" in installed and "pytest" not in installed  # runtime only
    help_ = subprocess.run(
        [str(venv / "bin" / "ferry"), "--help"], capture_output=True, text=True, cwd=tmp_path
    )
    assert help_.returncode == 0 and "serve" in help_.stdout
