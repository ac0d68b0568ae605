"""Two revisions in one run: `python -m bench.ab BASE [--only reports,stream] [--rounds 3]`.

A change that should not move the bench ("ratios stay within 5%") is judged here, not by two
runs an hour apart: the machines are noisy and drift. BASE (any git revision) is checked out
into a temporary worktree with its own virtualenv, installed at its own pins; then the two
trees run `python -m bench --only ... --repeat 1` in turns (BASE, HEAD, HEAD, BASE, ...: each
side goes first as often as second), each against its own database. Every run's
`bench/results/latest.json` is read; a row's figure is its ratio against the raw baseline of
that same run, so the comparison is ratio against ratio, medians over the rounds.

The working tree (HEAD plus uncommitted changes) is the new side, or `--head REV`.
Exit code 0 always: the
table is for a person (or a closing note) to read, with the spread beside each median.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import database_url

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Side:
    name: str  # "base" or "head"
    tree: Path
    python: str
    ratios: dict[str, list[float]] = field(default_factory=dict)


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, env=env, check=True)


def tree_at(rev: str, name: str, tmp: Path) -> Side:
    """REV in a detached worktree with a virtualenv installed at REV's own pins."""
    tree = tmp / name
    _run(["git", "worktree", "add", "--detach", str(tree), rev], ROOT)
    venv = tree / ".venv"
    _run([sys.executable, "-m", "venv", str(venv)], tree)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "-c", "constraints.txt", "-e", ".[dev,bench]"], tree)
    return Side(name, tree, str(venv / "bin" / "python"))


def bench_once(side: Side, only: str, scale: str, db: str) -> None:
    """One `python -m bench` in SIDE's tree; its rows' ratios are appended to SIDE."""
    env = {**os.environ, "FERRY_BENCH_DB": f"{db}_{side.name}"}
    cmd = [side.python, "-m", "bench", "--only", only, "--scale", scale, "--repeat", "1"]
    _run(cmd, side.tree, env)
    rows = json.loads((side.tree / "bench" / "results" / "latest.json").read_text())["rows"]
    for row in rows:
        side.ratios.setdefault(row["what"], []).append(float(row["ratio"]))


def cpu_once(side: Side, db: str, n_miss: int, n_hit: int) -> None:
    """Server CPU per call (bench/cpu_calls.py of the working tree, run by SIDE's Python
    on SIDE's code); appended to SIDE as rows whose figure is microseconds, not a ratio."""
    url = database_url(f"{db}_{side.name}_cpu")
    script = str(ROOT / "bench" / "cpu_calls.py")
    env = {**os.environ, "PYTHONPATH": str(side.tree)}
    cmd = [side.python, script, url, str(n_miss), str(n_hit)]
    print("$", " ".join(cmd[:2]), "...", flush=True)
    out = subprocess.run(cmd, cwd=side.tree, env=env, check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    for what, us in figures.items():
        side.ratios.setdefault(f"server CPU us per call: {what}", []).append(float(us))


def table(base: Side, head: Side) -> list[str]:
    lines = [
        "| what | base (median, min-max) | head (median, min-max) | head / base |",
        "|---|---|---|---|",
    ]
    for what in sorted(set(base.ratios) & set(head.ratios)):
        b, h = base.ratios[what], head.ratios[what]
        bm, hm = statistics.median(b), statistics.median(h)
        change = f"{hm / bm:.3f}" if bm else "-"
        lines.append(
            f"| {what} | {bm:.3f} ({min(b):.3f}-{max(b):.3f}) "
            f"| {hm:.3f} ({min(h):.3f}-{max(h):.3f}) | {change} |"
        )
    only_one = sorted(set(base.ratios) ^ set(head.ratios))
    if only_one:
        lines.append(f"\nrows on one side only (renamed or new): {', '.join(only_one)}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the git revision to compare the working tree with")
    parser.add_argument("--head", default="", help="a revision in place of the working tree")
    parser.add_argument("--only", default="reports,stream,export_jobs")
    parser.add_argument("--rounds", type=int, default=3, help="runs per side (default 3)")
    parser.add_argument("--scale", choices=["small", "bench"], default="small")
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="instead of `python -m bench`: the reports server's CPU per miss, hit and health "
        "Check (bench/cpu_calls.py); lower is better, steady on a loaded machine",
    )
    parser.add_argument("--calls", type=int, default=200, help="misses per --cpu round")
    args = parser.parse_args()
    db = os.environ.get("FERRY_BENCH_DB", "ferry_bench_ab")
    tmp = Path(tempfile.mkdtemp(prefix="ferry-bench-ab-"))
    try:
        base = tree_at(args.base, "base", tmp)
        head = tree_at(args.head, "head", tmp) if args.head else Side("head", ROOT, sys.executable)
        for i in range(args.rounds):
            order = (base, head) if i % 2 == 0 else (head, base)
            for side in order:
                if args.cpu:
                    cpu_once(side, db, args.calls, args.calls * 10)
                else:
                    bench_once(side, args.only, args.scale, db)
        against = args.head or "the working tree"
        print(f"\n## {args.base} (base) against {against} (head), {args.rounds} rounds")
        print("\n".join(table(base, head)))
    finally:
        for name in ("base", "head"):
            if (tmp / name).exists():
                subprocess.run(["git", "worktree", "remove", "--force", str(tmp / name)], cwd=ROOT)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
