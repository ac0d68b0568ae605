"""`ferry oneroster check FILE`: the validator for a person, offline."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ferry.cli.main import cli
from tests.oneroster.corpus import CLEAN, T, package, replace_row


def check(tmp_path: Path, data: bytes) -> tuple[int, str]:
    f = tmp_path / "roster.zip"
    f.write_bytes(data)
    got = CliRunner().invoke(cli, ["oneroster", "check", str(f)])
    return got.exit_code, got.output


def test_a_valid_package_says_what_it_would_import_and_leave(tmp_path: Path) -> None:
    files = {"orgs.csv": CLEAN["orgs.csv"].replace("identifier", "identifer")}
    code, out = check(tmp_path, package(files))
    assert code == 0, out
    assert "warning: row 1 of orgs.csv: unknown column `identifer` ignored" in out
    assert "valid: would import 2 courses, 2 students, 3 enrollments, 3 grades" in out
    assert "not imported: users: 1 — only students and teachers cross (e.g. u-g1 (guardian))" in out


def test_a_refused_package_lists_every_refusal_and_exits_1(tmp_path: Path) -> None:
    bad = {
        **replace_row("users.csv", f"u-t1,active,{T}", f"u-t1,,{T}"),
        **replace_row("results.csv", "fully graded,12,", "fully graded,twelve,"),
    }
    code, out = check(tmp_path, package(bad, modes={"users": "delta"}))
    assert code == 1
    lines = out.splitlines()
    assert lines[:2] == [
        "error: row 4 of users.csv: `status` must be active or tobedeleted, got '' [required]",
        "error: row 3 of results.csv: `score` must be a finite number, got 'twelve' [number]",
    ]
    # then what stood on the refused teacher: role, enrollment, class, its rows
    assert all(x.endswith("[refused-parent]") for x in lines[2:-1])
    assert lines[-1] == (
        f"refused: {len(lines) - 1} row(s); an import would change nothing "
        "(with --on-error skip_invalid it would import the rest)"
    )
    code, out = check(tmp_path, b"not a zip")
    assert code == 1 and "not a zip file" in out
