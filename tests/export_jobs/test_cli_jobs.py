"""`ferry export start|run|jobs|stats|cleanup` against a real server: exit codes, files."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from tests.conftest import running
from tests.integration.test_cli import env_for

SCHEDULES = (
    "{nightly: {type: students, format: csv, filters: {status: active}, notify: [ops@x.org]},"
    " broken: {type: students, format: broken}}"
)


def invoke(app: App, port: int, *args: str) -> Any:
    env = env_for(app, port, FERRY_EXPORT_SCHEDULES=SCHEDULES)
    env.update(
        FERRY_PLUGINS_STORAGE_LOCAL_DIR=app.settings.plugins["storage"]["local"]["dir"],
        FERRY_PLUGINS_STORAGE_LOCAL_ARCHIVE_DIR=app.settings.plugins["storage"]["local"][
            "archive_dir"
        ],
    )
    return CliRunner().invoke(cli, list(args), env=env)


def job_count(app: App) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM export_jobs")).scalar_one())


def test_run_schedule_completes_downloads_and_runs_once_a_day(
    job_app: Callable[..., App], tmp_path: Path
) -> None:
    app = job_app()
    out = tmp_path / "students.csv"
    with running(app) as srv:
        first = invoke(app, srv.port, "export", "run", "--schedule", "nightly", "-o", str(out))
        assert first.exit_code == 0, first.output
        assert "started job" in first.output and "completed" in first.output
        again = invoke(app, srv.port, "export", "run", "--schedule", "nightly")
        assert again.exit_code == 0, again.output
        assert "attached to job" in again.output
    with out.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["status"] for r in rows} == {"active"}
    assert job_count(app) == 1


def test_run_schedule_exits_non_zero_when_the_job_fails_and_reruns_it(
    job_app: Callable[..., App], test_formats: dict[str, Any]
) -> None:
    app = job_app()
    with running(app) as srv:
        failed = invoke(app, srv.port, "export", "run", "--schedule", "broken")
        # In words with a reference id; the exception's own text stays in the server log.
        assert failed.exit_code == 1, failed.output
        assert "failed: an unexpected error (RuntimeError) (reference " in failed.output
        retried = invoke(app, srv.port, "export", "run", "--schedule", "broken")
        assert retried.exit_code == 1 and "started job" in retried.output
    assert job_count(app) == 2


def test_start_in_greek_writes_greek_headers(job_app: Callable[..., App], tmp_path: Path) -> None:
    """`--language el`: the operator's file has the Greek labels the page's would have."""
    app = job_app()
    out = tmp_path / "courses.csv"
    with running(app) as srv:
        ok = invoke(app, srv.port, "export", "start", "--type", "courses", "--language", "el",
                    "--field", "course_code", "--field", "title", "-o", str(out))  # fmt: skip
        assert ok.exit_code == 0, ok.output
    header = out.read_text(encoding="utf-8-sig").splitlines()[0]
    assert header == "Κωδικός μαθήματος,Τίτλος"


def test_run_unknown_schedule_lists_the_known_ones(job_app: Callable[..., App]) -> None:
    app = job_app(FERRY_EXPORT_WORKERS="0")
    with running(app) as srv:
        result = invoke(app, srv.port, "export", "run", "--schedule", "weekly")
    assert result.exit_code == 2
    assert "unknown schedule 'weekly'; known: broken, nightly" in result.output
    assert job_count(app) == 0


def test_start_wait_downloads_a_verified_file_and_bad_input_exits_2(
    job_app: Callable[..., App], tmp_path: Path
) -> None:
    app = job_app()
    out = tmp_path / "courses.json"
    with running(app) as srv:
        ok = invoke(
            app, srv.port, "export", "start", "--type", "courses", "--format", "json",
            "--field", "course_code", "--field", "title", "--wait", "-o", str(out),
        )  # fmt: skip
        assert ok.exit_code == 0, ok.output
        bad_filter = invoke(
            app, srv.port, "export", "start", "--type", "students", "--filter", "colour=red"
        )
        assert bad_filter.exit_code == 2 and "unknown filter 'colour'" in bad_filter.output
        bad_type = invoke(app, srv.port, "export", "start", "--type", "teachers")
        assert bad_type.exit_code == 2 and "unknown export_type 'teachers'" in bad_type.output
        listed = invoke(app, srv.port, "export", "jobs")
        assert listed.exit_code == 0 and "courses" in listed.output
        stats = invoke(app, srv.port, "export", "stats")
        assert stats.exit_code == 0 and "success rate" in stats.output
        dry = invoke(app, srv.port, "export", "cleanup", "--dry-run")
        assert dry.exit_code == 0 and dry.output.startswith("would remove 0 jobs")
    with app.engine.connect() as conn:
        sha = conn.execute(sa.text("SELECT sha256 FROM export_jobs")).scalar_one()
    assert hashlib.sha256(out.read_bytes()).hexdigest() == sha
