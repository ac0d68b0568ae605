"""Entity export jobs end to end through a real server: start, watch, download."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY

from ferry.app import App
from ferry.v1 import export_pb2 as pb
from tests.conftest import running
from tests.export_jobs.conftest import files_in
from tests.export_jobs.helpers import jobs_client


def sql_count(app: App, sql: str) -> int:
    with app.engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def test_csv_export_completes_downloads_the_filtered_rows_and_records_metrics(
    job_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ferry.export")
    labels = {"type": "students", "format": "csv"}

    def samples() -> tuple[float, ...]:
        names = [
            ("ferry_export_jobs_total", {"status": "completed"}),
            ("ferry_export_records_total", {}),
            ("ferry_export_duration_seconds_count", {"status": "completed"}),
            ("ferry_export_bytes_count", {}),
        ]
        return tuple(REGISTRY.get_sample_value(n, {**labels, **x}) or 0.0 for n, x in names)

    before = samples()
    app = job_app()
    with running(app) as srv, jobs_client(app, srv) as jobs:
        started = jobs.start(
            export_type="students",
            format="csv",
            filters={"status": "active"},
            notify=["office@school.example"],
        )
        assert started.created
        assert started.job.requested_by == "tester"
        job = jobs.wait(started.job.id)
        assert job.status == pb.EXPORT_JOB_STATUS_COMPLETED, job.error_message
        chunks = jobs.chunks(job.id)
    data = b"".join(c.chunk.data for c in chunks)
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
    expected = sql_count(
        app, "SELECT count(*) FROM students WHERE status = 'active' AND deleted_at IS NULL"
    )
    assert len(rows) == expected == job.total_records == job.processed_records
    assert {r["status"] for r in rows} == {"active"}
    assert chunks[0].chunk.filename == job.filename and job.filename.endswith(".csv")
    assert chunks[0].chunk.content_type.startswith("text/csv")
    assert chunks[-1].chunk.sha256 == job.sha256 == hashlib.sha256(data).hexdigest()
    assert job.file_size_bytes == len(data)
    assert job.progress_percent == 100
    assert job.duration_seconds > 0 and job.records_per_second > 0
    assert job.started_at.seconds and job.finished_at.seconds
    after = samples()
    assert after[0] == before[0] + 1 and after[1] == before[1] + job.total_records
    assert after[2] == before[2] + 1 and after[3] == before[3] + 1
    assert REGISTRY.get_sample_value("ferry_export_jobs_in_flight") == 0
    # Recipients are told through the log until the notify service delivers.
    told = [r for r in caplog.records if getattr(r, "event", "") == "export_notify"]
    assert [(r.job_id, r.status, r.recipients) for r in told] == [  # type: ignore[attr-defined]
        (job.id, "completed", ["office@school.example"])
    ]


def test_json_export_selects_orders_and_limits_fields(job_app: Callable[..., App]) -> None:
    app = job_app()
    with running(app) as srv, jobs_client(app, srv) as jobs:
        started = jobs.start(
            export_type="grades",
            format="json",
            fields=["score", "student_id", "course_code"],
            limit=7,
            filters={"semester": "2026-fall"},
        )
        job = jobs.wait(started.job.id)
        assert job.status == pb.EXPORT_JOB_STATUS_COMPLETED, job.error_message
        doc = json.loads(jobs.download(job.id))
    assert len(doc["rows"]) == 7 == job.total_records
    assert [list(r) for r in doc["rows"]] == [["score", "student_id", "course_code"]] * 7
    assert list(job.fields) == ["score", "student_id", "course_code"]


def test_search_date_and_course_filters_match_sql(job_app: Callable[..., App]) -> None:
    app = job_app()
    with app.engine.connect() as conn:
        code, day = conn.execute(
            sa.text(
                "SELECT c.course_code, a.date FROM attendance a "
                "JOIN enrollments e ON e.id = a.enrollment_ref "
                "JOIN courses c ON c.id = e.course_ref WHERE a.deleted_at IS NULL LIMIT 1"
            )
        ).one()
    day = str(day)[:10]
    expected = sql_count(
        app,
        # Live rows under live parents only (an enrolment, student or course soft-deleted
        # takes its attendance out of every output).
        "SELECT count(*) FROM attendance a JOIN enrollments e ON e.id = a.enrollment_ref "
        "JOIN students s ON s.id = e.student_ref "
        f"JOIN courses c ON c.id = e.course_ref WHERE c.course_code = '{code}' "
        f"AND a.date >= '{day}' AND a.deleted_at IS NULL AND e.deleted_at IS NULL "
        "AND s.deleted_at IS NULL AND c.deleted_at IS NULL",
    )
    with running(app) as srv, jobs_client(app, srv) as jobs:
        job = jobs.wait(
            jobs.start(
                export_type="attendance",
                format="csv",
                filters={"course_code": code, "date_from": day},
            ).job.id
        )
        rows = list(csv.DictReader(io.StringIO(jobs.download(job.id).decode())))
        assert len(rows) == expected > 0
        assert all(r["course_code"] == code and r["date"] >= day for r in rows)
        # Free text: case-insensitive over the entity's text fields.
        with app.engine.connect() as conn:
            last = conn.execute(sa.text("SELECT last_name FROM students LIMIT 1")).scalar_one()
        job = jobs.wait(
            jobs.start(
                export_type="students", format="csv", filters={"search": last.upper()}
            ).job.id
        )
        rows = list(csv.DictReader(io.StringIO(jobs.download(job.id).decode())))
        assert rows and all(
            last.lower() in " ".join(v or "" for v in r.values()).lower() for r in rows
        )


BAD_STARTS: list[tuple[dict[str, Any], str, str]] = [
    ({"export_type": "teachers", "format": "csv"}, "export_type", "known: courses"),
    ({"export_type": "students", "format": "docx"}, "format", "known:"),
    ({"export_type": "students", "format": "csv", "fields": ["shoe_size"]}, "shoe_size", "email"),
    ({"export_type": "students", "format": "csv", "limit": 1_000_001}, "limit", "max_rows"),
    ({"export_type": "grades", "format": "csv", "filters": {"status": "x"}}, "status", "grades"),
    (
        {"export_type": "courses", "format": "csv", "filters": {"date_from": "2026-01-01"}},
        "date_from",
        "courses",
    ),
    (
        {"export_type": "students", "format": "csv", "filters": {"date_to": "yesterday"}},
        "date_to",
        "yesterday",
    ),
    (
        {"export_type": "students", "format": "csv", "filters": {"semester": "1999-fall"}},
        "semester",
        "2026-fall",
    ),
]


def test_bad_start_is_invalid_argument_naming_the_problem_and_creates_nothing(
    job_app: Callable[..., App],
) -> None:
    app = job_app(FERRY_EXPORT_WORKERS="0")
    with running(app) as srv, jobs_client(app, srv) as jobs:
        for request_fields, named, hint in BAD_STARTS:
            with pytest.raises(grpc.RpcError) as err:
                jobs.start(**dict(request_fields))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request_fields
            assert named in err.value.details() and hint in err.value.details(), request_fields
    assert sql_count(app, "SELECT count(*) FROM export_jobs") == 0


def test_download_resumes_from_an_offset_and_rejects_one_past_the_end(
    job_app: Callable[..., App],
) -> None:
    app = job_app()
    with running(app) as srv, jobs_client(app, srv) as jobs:
        job = jobs.wait(jobs.start(export_type="attendance", format="csv").job.id)
        whole = jobs.download(job.id)
        assert len(whole) > 1024 * 1024 // 8
        half = len(whole) // 2
        tail = jobs.chunks(job.id, half)
        assert b"".join(c.chunk.data for c in tail) == whole[half:]
        assert tail[0].chunk.offset == half
        assert tail[-1].chunk.sha256 == hashlib.sha256(whole).hexdigest()
        assert all(len(c.chunk.data) <= 1024 * 1024 for c in tail)
        at_end = jobs.chunks(job.id, len(whole))
        assert [c.chunk.data for c in at_end] == [b""] and at_end[0].chunk.sha256 == job.sha256
        with pytest.raises(grpc.RpcError) as err:
            jobs.chunks(job.id, len(whole) + 1)
        assert err.value.code() == grpc.StatusCode.OUT_OF_RANGE


def test_same_key_same_job_pending_cancel_is_immediate_and_no_download_before_done(
    job_app: Callable[..., App], tmp_path: Path
) -> None:
    app = job_app(FERRY_EXPORT_WORKERS="0")
    with running(app) as srv, jobs_client(app, srv) as jobs:
        first = jobs.start(export_type="students", format="csv", idempotency_key="k-1")
        again = jobs.start(export_type="students", format="csv", idempotency_key="k-1")
        other = jobs.start(export_type="students", format="csv", idempotency_key="k-2")
        assert first.created and not again.created and other.created
        assert again.job.id == first.job.id != other.job.id
        assert again.job.idempotency_key == "k-1"
        job = jobs.start(export_type="students", format="csv").job
        assert job.status == pb.EXPORT_JOB_STATUS_PENDING
        with pytest.raises(grpc.RpcError) as err:
            jobs.chunks(job.id)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        cancelled = jobs.cancel(job.id)
        assert cancelled.status == pb.EXPORT_JOB_STATUS_CANCELLED
        assert jobs.cancel(job.id).status == pb.EXPORT_JOB_STATUS_CANCELLED  # idempotent
        with pytest.raises(grpc.RpcError) as err:
            jobs.get("no-such-job")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert files_in(tmp_path / "exports") == []


def test_cancelled_or_failed_running_jobs_leave_no_file(
    job_app: Callable[..., App], test_formats: dict[str, Any], tmp_path: Path
) -> None:
    app = job_app()
    with running(app) as srv, jobs_client(app, srv) as jobs:
        job = jobs.start(export_type="attendance", format="slow").job
        assert test_formats["slow"].started.wait(10)
        jobs.cancel(job.id)
        ended = jobs.wait(job.id)
        assert ended.status == pb.EXPORT_JOB_STATUS_CANCELLED
        assert 0 < ended.processed_records < ended.total_records
        with pytest.raises(grpc.RpcError) as err:
            jobs.cancel(job.id)  # cancelled twice is fine...
            jobs.chunks(job.id)  # ...but there is no file
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        failed = jobs.wait(jobs.start(export_type="students", format="broken").job.id)
        assert failed.status == pb.EXPORT_JOB_STATUS_FAILED
        # In words with a reference id (the exception's text is only in the server log).
        assert "an unexpected error (RuntimeError) (reference " in failed.error_message
        assert "disk on fire" not in failed.error_message
        with pytest.raises(grpc.RpcError) as err:
            jobs.cancel(failed.id)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert files_in(tmp_path / "exports") == []


def test_watch_streams_progress_until_the_job_ends(
    job_app: Callable[..., App], test_formats: dict[str, Any]
) -> None:
    test_formats["slow"].delay = 0.004
    app = job_app()
    with running(app) as srv, jobs_client(app, srv) as jobs:
        job = jobs.start(export_type="grades", format="slow", limit=400).job
        seen = jobs.watch(job.id)
    assert seen[-1].status == pb.EXPORT_JOB_STATUS_COMPLETED
    assert [s for s in seen if s.status == pb.EXPORT_JOB_STATUS_RUNNING]
    percents = [s.progress_percent for s in seen]
    assert percents == sorted(percents) and percents[-1] == 100
    assert len({p for p in percents if 0 < p < 100}) >= 2  # progress in between


def test_list_pages_newest_first_and_filters(job_app: Callable[..., App]) -> None:
    app = job_app(FERRY_EXPORT_WORKERS="0")
    with running(app) as srv, jobs_client(app, srv) as jobs:
        made = [jobs.start(export_type="students", format="csv").job.id for _ in range(4)]
        made.append(jobs.start(export_type="courses", format="csv").job.id)
        jobs.cancel(made[0])
        seen: list[str] = []
        token = ""
        while True:
            page = jobs.stub.ListExportJobs(
                pb.ListExportJobsRequest(page_size=2, page_token=token), metadata=jobs.md
            )
            assert page.total_size == 5 and len(page.jobs) <= 2
            seen += [j.id for j in page.jobs]
            token = page.next_page_token
            if not token:
                break
        assert seen == made[::-1]
        only = jobs.stub.ListExportJobs(
            pb.ListExportJobsRequest(export_type="students", status=pb.EXPORT_JOB_STATUS_PENDING),
            metadata=jobs.md,
        )
        assert [j.id for j in only.jobs] == made[1:4][::-1] and only.total_size == 3
        with pytest.raises(grpc.RpcError) as err:
            jobs.stub.ListExportJobs(
                pb.ListExportJobsRequest(page_token="not-a-token"), metadata=jobs.md
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in err.value.details()
