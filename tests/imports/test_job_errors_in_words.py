"""A database error during an export job is stored and returned in words with a reference
id; the SQL goes only to the log line carrying that id (issue 10)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from ferry.app import App
from ferry.export_jobs import store
from ferry.export_jobs.runner import Stop, run_job
from ferry.v1 import export_pb2
from tests.conftest import running
from tests.export_jobs.helpers import jobs_client
from tests.imports.helpers import seed_small

SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|FROM|VALUES)\b|\[SQL|\[parameters", re.I)


def test_a_failed_job_keeps_no_sql(
    empty_url: str,
    make_app: Callable[..., App],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url, FERRY_PLUGINS_STORAGE_LOCAL_DIR=str(tmp_path / "exports"))
    job, _ = store.create_job(
        app.engine,
        store.NewJob(
            export_type="students",
            format="csv",
            dataset="school",
            extension="csv",
            filename="students.csv",
        ),
    )
    claimed = store.claim_next(app.engine, "w1")
    assert claimed is not None and claimed.id == job.id
    with app.engine.begin() as conn:  # the table the job reads is gone: a database error
        conn.exec_driver_sql("ALTER TABLE students RENAME TO students_gone")
    assert run_job(app, app.storage(), claimed, "w1", Stop()) == "failed"
    failed = store.get_job(app.engine, job.id)
    assert not SQL.search(failed.error_message), failed.error_message
    ref = re.search(r"reference ([0-9a-f]{12})", failed.error_message)
    assert ref, failed.error_message
    logged = [r for r in caplog.records if ref.group(1) in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    with running(app, ["export"]) as srv, jobs_client(app, srv) as jobs:
        shown: export_pb2.ExportJob = jobs.get(job.id)
    assert shown.error_message == failed.error_message
