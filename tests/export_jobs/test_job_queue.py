"""The job table as a queue: idempotency under concurrency, claiming across replicas,
the reaper, stats and retention (core functions, both backends)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from ferry.app import App
from ferry.db.export_models import ExportJob
from ferry.export_jobs import store
from ferry.export_jobs.cleanup import cleanup
from ferry.export_jobs.pool import WorkerPool, reap_once
from ferry.export_jobs.stats import export_stats
from tests.export_jobs.conftest import files_in

T = ExportJob.__table__


def new_job(key: str = "", fmt: str = "csv", export_type: str = "students") -> store.NewJob:
    return store.NewJob(
        export_type=export_type,
        format=fmt,
        dataset="school",
        idempotency_key=key,
        extension="txt",
        filename=f"{export_type}.txt",
    )


def test_concurrent_starts_with_one_key_create_one_job(job_app: Callable[..., App]) -> None:
    app = job_app()
    results: list[tuple[str, bool]] = []
    gate = threading.Barrier(8)

    def start() -> None:
        gate.wait()
        job, created = store.create_job(app.engine, new_job("same-key"))
        results.append((job.id, created))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with app.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T)).scalar_one() == 1


def test_two_worker_pools_on_one_database_run_each_job_exactly_once(
    job_app: Callable[..., App], test_formats: dict[str, Any]
) -> None:
    apps = [job_app(FERRY_EXPORT_WORKERS="3"), job_app(FERRY_EXPORT_WORKERS="3")]
    ids = [store.create_job(apps[0].engine, new_job(fmt="counting"))[0].id for _ in range(12)]
    pools = [WorkerPool(a, a.storage()) for a in apps]
    for p in pools:
        p.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            jobs = [store.get_job(apps[0].engine, i) for i in ids]
            if all(j.status == "completed" for j in jobs):
                break
            time.sleep(0.05)
    finally:
        for p in pools:
            p.stop()
    assert [j.status for j in jobs] == ["completed"] * 12
    assert test_formats["counting"].writes == 12
    assert len({j.worker_id.split("/")[0] for j in jobs}) >= 1


def test_reaper_fails_a_job_whose_heartbeat_stopped(job_app: Callable[..., App]) -> None:
    app = job_app()
    job, _ = store.create_job(app.engine, new_job())
    fresh, _ = store.create_job(app.engine, new_job())
    assert store.claim_next(app.engine, "dead-worker") is not None
    assert store.claim_next(app.engine, "live-worker") is not None
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    with app.engine.begin() as conn:
        conn.execute(T.update().where(T.c.id == job.id).values(heartbeat_at=old))
    assert reap_once(app, timeout_seconds=60) == 1
    reaped = store.get_job(app.engine, job.id)
    assert reaped.status == "failed" and reaped.error_message == "worker stopped responding"
    assert store.get_job(app.engine, fresh.id).status == "running"
    # The dead worker, should it wake up, cannot overwrite the outcome.
    assert not store.finish(app.engine, job.id, "dead-worker", "completed")


def test_stats_count_outcomes_durations_and_the_slowest(job_app: Callable[..., App]) -> None:
    app = job_app()
    rows = [("completed", d, 100.0 * d) for d in (1, 2, 3, 4, 10)]
    rows += [("failed", 0.5, 0.0), ("cancelled", 0.2, 0.0), ("pending", 0.0, 0.0)]
    for i, (status, duration, rate) in enumerate(rows):
        job, _ = store.create_job(app.engine, new_job(export_type="grades" if i else "students"))
        with app.engine.begin() as conn:
            conn.execute(
                T.update()
                .where(T.c.id == job.id)
                .values(status=status, duration_seconds=duration, records_per_second=rate)
            )
    s = export_stats(app.engine, days=1, slowest=2)
    assert (s.total_jobs, s.succeeded, s.failed, s.cancelled) == (8, 5, 1, 1)
    assert s.success_rate == 5 / 6
    assert s.average_duration_seconds == 4.0
    assert s.p95_duration_seconds == 10.0
    assert s.average_records_per_second == 400.0
    assert [j.duration_seconds for j in s.slowest] == [10.0, 4.0]
    assert export_stats(app.engine, days=1, export_type="students").total_jobs == 1


def test_cleanup_deletes_or_archives_old_files_and_rows_and_dry_run_changes_nothing(
    job_app: Callable[..., App], tmp_path: Path
) -> None:
    app = job_app()
    storage = app.storage()
    ids = []
    for age_days in (40, 35, 1):
        job, _ = store.create_job(app.engine, new_job())
        with storage.writer(job.storage_key) as f:
            f.write(b"x" * 100)
        ended = dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days)
        with app.engine.begin() as conn:
            conn.execute(
                T.update().where(T.c.id == job.id).values(status="completed", finished_at=ended)
            )
        ids.append(job.id)
    dry = cleanup(app.engine, storage, 0, retention_days=30, dry_run=True)
    assert (dry.jobs_removed, dry.files_deleted, dry.bytes_freed) == (2, 2, 200)
    assert len(files_in(tmp_path / "exports")) == 3
    archived = cleanup(app.engine, storage, 38, retention_days=30, archive=True)
    assert (archived.jobs_removed, archived.files_archived, archived.bytes_freed) == (1, 1, 100)
    assert [p.name for p in files_in(tmp_path / "archive")] == [f"default--{ids[0]}.txt"]
    deleted = cleanup(app.engine, storage, 0, retention_days=30)
    assert (deleted.jobs_removed, deleted.files_deleted, deleted.files_archived) == (1, 1, 0)
    assert [p.name for p in files_in(tmp_path / "exports")] == [f"default--{ids[2]}.txt"]
    with app.engine.connect() as conn:
        assert list(conn.execute(sa.select(T.c.id)).scalars()) == [ids[2]]


def test_stopping_a_pool_hands_its_running_job_back_to_the_queue(
    job_app: Callable[..., App], test_formats: dict[str, Any], tmp_path: Path
) -> None:
    app = job_app(FERRY_EXPORT_WORKERS="1")
    job, _ = store.create_job(app.engine, new_job(fmt="slow", export_type="attendance"))
    pool = WorkerPool(app, app.storage())
    pool.start()
    try:
        assert test_formats["slow"].started.wait(10)
    finally:
        pool.stop()
    back = store.get_job(app.engine, job.id)
    assert (back.status, back.worker_id, back.processed_records) == ("pending", "", 0)
    assert files_in(tmp_path / "exports") == []
