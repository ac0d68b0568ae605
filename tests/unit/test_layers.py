"""Arrows point down only: the import graph of ferry/ against the layers written once in
docs/layers.md. A module may import its own room, any room of its own layer, or a room
of a layer below; never a room above, and the rooms never import each other in a circle.

Every import counts, a lazy one inside a function too (a lazy import hides an arrow, it
does not remove it); only imports under `if TYPE_CHECKING:` are left out, since they name
types and run nothing."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "layers.md"


def layers() -> list[list[str]]:
    """The layers, bottom first, each a list of rooms (module prefixes), read from the
    table in docs/layers.md (its rows are listed top first)."""
    rows = []
    for line in DOC.read_text().splitlines():
        m = re.match(r"^\| (-?\d+) \| [^|]+ \| (.+) \|$", line)
        if m:
            rows.append((int(m.group(1)), re.findall(r"`(ferry[\w.]*)`", m.group(2))))
    assert rows, "docs/layers.md has no layer table"
    return [rooms for _, rooms in sorted(rows)]


def room_of(module: str, rooms: list[str]) -> str:
    """The longest room (module prefix) that holds `module`."""
    best = ""
    for r in rooms:
        if (module == r or module.startswith(r + ".")) and len(r) > len(best):
            best = r
    assert best, f"{module} is in no room of docs/layers.md"
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    """The ferry modules `path` imports at run time (TYPE_CHECKING blocks left out)."""
    tree = ast.parse(path.read_text())
    typing_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only.update(id(n) for n in ast.walk(node))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in out if m == "ferry" or m.startswith("ferry.")}


def graph() -> tuple[dict[str, int], dict[tuple[str, str], list[str]]]:
    """(room -> layer, (from room, to room) -> the files with that arrow)."""
    level = {room: i for i, rooms in enumerate(layers()) for room in rooms}
    rooms = list(level)
    arrows: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in sorted((ROOT / "ferry").rglob("*.py")):
        if "v1" in path.parts or "migrations" in path.parts:
            continue
        src = room_of(module_name(path), rooms)
        for target in imports(path):
            dst = room_of(target, rooms)
            if dst != src:
                arrows[(src, dst)].append(str(path.relative_to(ROOT)))
    return level, arrows


def test_every_arrow_points_down_or_across() -> None:
    level, arrows = graph()
    up = [
        f"{a} (layer {level[a]}) -> {b} (layer {level[b]}): {', '.join(sorted(set(files)))}"
        for (a, b), files in sorted(arrows.items())
        if level[b] > level[a]
    ]
    assert not up, "imports that point up:\n" + "\n".join(up)


def test_no_circles_between_rooms() -> None:
    _, arrows = graph()
    out: dict[str, set[str]] = defaultdict(set)
    for a, b in arrows:
        out[a].add(b)
    state: dict[str, int] = {}
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(out[node]):
            if state.get(nxt) == 1:
                loop = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                cycles.append(" -> ".join(loop))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(out):
        if node not in state:
            visit(node, [node])
    detail = [
        f"  {a} -> {b}: {', '.join(sorted(set(arrows[(a, b)])))}"
        for c in cycles
        for a, b in zip(c.split(" -> "), c.split(" -> ")[1:], strict=False)
    ]
    assert not cycles, "circles:\n" + "\n".join(cycles) + "\n" + "\n".join(detail)


def test_the_table_names_real_modules_once() -> None:
    seen: list[str] = []
    for rooms in layers():
        for room in rooms:
            assert room not in seen, f"{room} is listed twice"
            seen.append(room)
            path = ROOT / Path(*room.split("."))
            assert path.is_dir() or path.with_suffix(".py").exists(), f"{room} does not exist"
