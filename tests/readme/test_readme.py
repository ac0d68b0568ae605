"""The README cannot go stale: a demo is started the way `make run` starts it (the
Makefile's own `run` recipe, from a folder outside the repository), then

- the `make run` output in the README is what `ferry serve` printed (ferry/cli/banner.py),
  ports and the database path aside;
- every ```sh block runs against that demo with bash -e and succeeds (the block of
  `make` targets is the one left out: it would start another demo and the suite itself);
- every `ferry ...` verb in a ```text synopsis exists (`ferry VERB --help` exits 0);
- every example id (students, courses, semesters) exists, live, in the demo data, and a
  README student report on the demo is not empty."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ferry import config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
FERRY = str(Path(sys.executable).parent / "ferry")
BLOCK = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)


def blocks(lang: str) -> list[str]:
    out = []
    for m in BLOCK.finditer(README):
        if m.group(2) == lang:
            indent = len(m.group(1))
            out.append("\n".join(line[indent:] for line in m.group(3).splitlines()))
    return out


def make_run_recipe() -> list[list[str]]:
    """The commands of the Makefile's `run` target, `$(FERRY)` as the venv's ferry."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^run:.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe, "the Makefile has no run target"
    return [
        line.strip().replace("$(FERRY)", FERRY).split() for line in recipe.group(1).splitlines()
    ]


@dataclass
class Demo:
    work: Path
    db: Path
    env: dict[str, str]
    banner: str
    first_lines: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    tmp = tmp_path_factory.mktemp("demo")
    work = tmp / "elsewhere"  # not the repository: the CLI finds ferry.yaml by itself
    work.mkdir()
    db = tmp / "ferry.db"
    env = {k: v for k, v in os.environ.items() if k not in ("FERRY_CONFIG", "FERRY_TOKEN")}
    env |= {
        "FERRY_DATABASE_URL": f"sqlite:///{db}",
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp / "var" / "auth" / "signing-key.pem"),
        "FERRY_PLUGINS_STORAGE_LOCAL_DIR": str(tmp / "exports"),
        "FERRY_PLUGINS_STORAGE_LOCAL_ARCHIVE_DIR": str(tmp / "archive"),
        "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
        "FERRY_METRICS_PORT": "0",
        "FERRY_GATEWAY_PORT": "0",
        "FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS": "0",
        "FERRY_EXPORT_POLL_SECONDS": "0.1",
    }
    *setup, serve = make_run_recipe()
    assert serve[1:] == ["serve"], serve
    first = []
    for cmd in setup:
        r = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
        first.append(r.stdout + r.stderr)
    proc = subprocess.Popen(serve, cwd=work, env=env, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    lines: list[str] = []
    # Read stderr on a thread (readline would block past any deadline); the banner is one
    # write, so it is complete once its first line is in and stderr has been quiet a moment.
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any(x.startswith("Ferry is running:") for x in lines):
                time.sleep(1)
                break
            time.sleep(0.1)
        plain = [x.rstrip("\n") for x in list(lines) if not x.startswith("{")]  # not log lines
        at = next((i for i, x in enumerate(plain) if x.startswith("Ferry is running:")), None)
        assert at is not None, "\n".join(plain)
        banner = [plain[at]]
        banner += [x for x in itertools.takewhile(lambda x: x.startswith("  "), plain[at + 1 :])]
        text = "\n".join(banner)
        port = re.search(r"gRPC\s+127\.0\.0\.1:(\d+)", text)
        assert port, text
        yield Demo(work, db, env | {"FERRY_TARGET": f"127.0.0.1:{port.group(1)}"}, text,
                   "".join(first))  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_the_make_run_output_in_the_readme_is_what_serve_prints(demo: Demo) -> None:
    s = config.load(ROOT / "ferry.yaml", env={})
    shown = demo.banner
    shown = re.sub(r"(gRPC\s+)\S+", rf"\g<1>{s.server.address}", shown)
    shown = re.sub(r"(metrics http://[\d.]+:)\d+", rf"\g<1>{s.metrics.port}", shown)
    shown = re.sub(r"(web\s+http://[\d.]+:)\d+", rf"\g<1>{s.gateway.port}", shown)
    shown = re.sub(r"(database )\S+", r"\1sqlite:////…/var/ferry.db", shown)
    readme = next(b for b in blocks("text") if "Ferry is running:" in b)
    demo_line = readme.split("\n")[0]
    assert demo_line in demo.first_lines  # what `ferry user add ... --demo` printed
    assert readme.split("\n", 1)[1].rstrip() == shown.rstrip()


def test_every_sh_block_runs_against_the_demo(demo: Demo) -> None:
    path = f"{Path(FERRY).parent}:{demo.env['PATH']}"
    ran = 0
    for block in blocks("sh"):
        if re.search(r"^make ", block, re.M):
            continue  # `make run` / `make test`: what this test and the suite are
        if "grpcurl" in block and not shutil.which("grpcurl"):
            continue  # grpcurl is not part of Ferry; the block runs where it is installed
        env = demo.env | {"PATH": path}
        cmd = ["bash", "-e", "-c", block]
        r = subprocess.run(cmd, cwd=demo.work, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{block}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"
        ran += 1
    assert ran >= 3


def test_every_verb_in_a_synopsis_exists() -> None:
    word = re.compile(r"^[a-z][a-z0-9-]*$")
    paths: set[tuple[str, ...]] = set()
    for block in blocks("text"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if not line.startswith("ferry "):
                continue
            base: list[str] = []
            for i, part in enumerate(line.removeprefix("ferry ").split(" | ")):
                words = []
                for w in part.split():
                    if not word.match(w):
                        break
                    words.append(w)
                path = words if i == 0 else base[:1] + words
                if i == 0:
                    base = words
                paths.add(tuple(path))
    assert len(paths) > 20, paths
    # In-process (click's runner over the same `cli` the console script calls): a
    # subprocess per verb cost a second each. The sh blocks below still run the real script.
    from click.testing import CliRunner

    from ferry.cli.main import cli

    for path in sorted(paths):
        r = CliRunner().invoke(cli, [*path, "--help"])
        assert r.exit_code == 0, (path, r.output)


def test_every_example_id_exists_in_the_demo_data(demo: Demo) -> None:
    con = sqlite3.connect(demo.db)
    try:
        for sid in set(re.findall(r"\bS\d{6}\b", README)):
            q = "SELECT 1 FROM students WHERE student_id = ? AND deleted_at IS NULL"
            assert con.execute(q, (sid,)).fetchone(), sid
        for code in set(re.findall(r"\b[A-Z]{2,4}\d{3}-\d{4}[FS]\b", README)):
            q = "SELECT 1 FROM courses WHERE course_code = ? AND deleted_at IS NULL"
            assert con.execute(q, (code,)).fetchone(), code
        for sem in set(re.findall(r"\b20\d\d-(?:fall|spring)\b", README)):
            q = "SELECT 1 FROM courses WHERE semester = ? AND deleted_at IS NULL"
            assert con.execute(q, (sem,)).fetchone(), sem
    finally:
        con.close()
    examples = set(re.findall(r"ferry report student (S\d+) --semester (\S+)", README))
    assert examples
    for sid, sem in examples:
        r = subprocess.run([FERRY, "report", "student", sid, "--semester", sem, "--format", "json",
                            "-o", "-"], cwd=demo.work, env=demo.env, capture_output=True,
                           text=True, timeout=60)  # fmt: skip
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)
        assert not report.get("empty") and report["courses"], (sid, sem)
