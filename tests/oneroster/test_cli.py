"""`ferry oneroster check FILE`: the validator for a person, offline."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from ferry.oneroster.validate import read_package
from tests.conftest import engine_for
from tests.imports.helpers import seed_small, serving
from tests.imports.test_import_cli import _env
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


def test_export_with_its_loss_report_and_import_it_against_a_real_server(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url)
    engine = engine_for(empty_url)
    try:
        with engine.connect() as conn:  # the oracle: the semester's attendance in SQL
            attendance = conn.execute(
                sa.text(
                    "SELECT count(*) FROM attendance a JOIN enrollments e "
                    "ON e.id = a.enrollment_ref JOIN courses c ON c.id = e.course_ref "
                    "JOIN students s ON s.id = e.student_ref "
                    "WHERE c.semester = '2026-fall' AND a.deleted_at IS NULL "
                    "AND e.deleted_at IS NULL AND c.deleted_at IS NULL AND s.deleted_at IS NULL"
                )
            ).scalar_one()
    finally:
        engine.dispose()
    with serving(app) as stubs:
        env = _env(app, stubs.port)
        target = tmp_path / "roster.zip"
        run = CliRunner()
        got = run.invoke(
            cli, ["oneroster", "export", "--semester", "2026-fall", "-o", str(target)], env=env
        )
        assert got.exit_code == 0, got.output
        assert f"not exported: attendance: {attendance} — OneRoster has no such records" in (
            got.output
        )
        assert read_package(io.BytesIO(target.read_bytes())).errors == []
        assert not list(tmp_path.glob("*.part"))
        back = run.invoke(
            cli, ["import", str(target), "--format", "oneroster", "--dry-run"], env=env
        )
        assert back.exit_code == 0, back.output
        assert "dry run (nothing changed)" in back.output
        assert "note: orgs.name: 1 not imported — Ferry has no place for it" in back.output
        bad = run.invoke(
            cli, ["oneroster", "export", "--semester", "1999-fall", "-o", str(target)], env=env
        )
        assert bad.exit_code != 0 and "1999-fall" in bad.output
