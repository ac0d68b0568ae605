"""Run one claimed export job: count, stream rows through a format writer into storage,
record progress, and end the job completed, failed or cancelled.

A job stops promptly when asked: the row feed and the writer's progress callback both
check the job's stop flag, and the exception they raise makes storage discard the temp
file, so a stopped job never leaves a partial file.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from ferry import plugins
from ferry.app import App
from ferry.bundle.stream import snapshot
from ferry.db.export_models import CANCELLED, COMPLETED, FAILED, ExportJob
from ferry.errors import FerryError, described, reason_of
from ferry.export_jobs import metrics, store
from ferry.export_jobs.announce import announcing
from ferry.export_jobs.query import ExportRequest, plan_export, row_fixer
from ferry.rpc.files import blocks
from ferry.storage import Storage
from ferry.tabular.base import TabularFormat

log = logging.getLogger("ferry.export")
FETCH_ROWS = 1000  # rows per cursor fetch; also how often the feed checks for a stop


class StopJob(Exception):
    """Raised inside a running job to stop it; `reason` is cancel or shutdown."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.processed = 0  # rows written when the job stopped


class Stop:
    """A stop request for one running job, settable from another thread."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = reason
        self._event.set()

    def check(self) -> None:
        if self._event.is_set():
            raise StopJob(self.reason)


@dataclass
class Progress:
    """Counts rows, saves progress at most every `interval` seconds and notices cancels
    asked through the database (another replica's CancelExportJob)."""

    engine: Engine
    job_id: str
    worker_id: str
    total: int
    stop: Stop
    interval: float
    processed: int = 0
    _last: float = 0.0

    def feed(self, batches: Iterable[Sequence[Any]]) -> Iterator[Any]:
        for batch in batches:
            self.tick()
            yield from batch
            # Counted once the writer asks for more: these rows are written by then.
            self.processed += len(batch)

    def written(self, rows: int) -> None:
        """The writer's progress callback (rows written so far)."""
        self.processed = max(self.processed, rows)
        self.tick()

    def tick(self) -> None:
        try:
            self._tick()
        except StopJob as e:
            e.processed = min(self.processed, self.total)
            raise

    def _tick(self) -> None:
        self.stop.check()
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        done = min(self.processed, self.total)
        percent = int(done * 100 / self.total) if self.total else 0
        if store.save_progress(
            self.engine,
            self.job_id,
            self.worker_id,
            processed_records=done,
            progress_percent=min(percent, 99),  # 100 only once the file is in place
        ):
            raise StopJob("cancel")


def tabular_format(name: str, app: App | None = None) -> TabularFormat:
    """The `ferry.formats` plugin `name`, built by `app.plugin` (with its
    `plugins.formats.<name>` settings); InvalidArgument listing the known formats when
    there is none."""
    fmt: TabularFormat = plugins.from_request("ferry.formats", name, "format", app)
    return fmt


def run_job(app: App, storage: Storage, job: ExportJob, worker_id: str, stop: Stop) -> str:
    """Run `job` (already claimed by `worker_id`) to its end; returns its final status
    ("pending" when it was handed back because this worker is shutting down)."""
    started = time.monotonic()
    metrics.IN_FLIGHT.inc()
    status = FAILED
    rows = 0
    size: int | None = None
    try:
        rows, size, sha = _write(app, storage, job, worker_id, stop)
        duration = time.monotonic() - started
        status = COMPLETED
        ours = store.finish(
            app.engine,
            job.id,
            worker_id,
            COMPLETED,
            announcing(app, job, COMPLETED),
            processed_records=rows,
            progress_percent=100,
            file_size_bytes=size,
            sha256=sha,
            duration_seconds=duration,
            records_per_second=rows / duration if duration > 0 else 0.0,
        )
        if not ours:
            # The reaper gave up on us meanwhile and already counted and announced the
            # failure; the row says failed, so the file must go.
            storage.delete(job.storage_key)
            status = "reaped"
            return FAILED
        return COMPLETED
    except StopJob as e:
        size = None
        if e.reason == "shutdown" and store.requeue(app.engine, job.id, worker_id):
            status = "pending"
            return status
        status = CANCELLED
        store.finish(
            app.engine,
            job.id,
            worker_id,
            CANCELLED,
            processed_records=e.processed,
            **_timing(started),
        )
        return CANCELLED
    except Exception as e:  # any failure ends the job as failed, with its reason kept
        size = None
        if isinstance(e, FerryError):
            message, reason = e.message, reason_of(e)
            meta = {**({"field": e.field} if e.field else {}), **e.metadata}
            log.exception(
                "export job %s failed", job.id, extra={"event": "export_failed", "job_id": job.id}
            )
        else:  # in words: a database error's text is its SQL, readable through GetExportJob
            message, ref = described(e, f"export job {job.id}", log)
            reason, meta = "INTERNAL", {"reference": ref}
        store.finish(
            app.engine, job.id, worker_id, FAILED, announcing(app, job, FAILED),
            error_message=message, error_reason=reason,
            error_metadata={k: str(v)[:64] for k, v in meta.items()}, **_timing(started),
        )  # fmt: skip
        return FAILED
    finally:
        metrics.IN_FLIGHT.dec()
        if status not in ("pending", "reaped"):
            metrics.record_end(
                job.export_type, job.format, status, time.monotonic() - started, rows, size
            )
            announce(job, status)


def _timing(started: float) -> dict[str, Any]:
    return {"duration_seconds": time.monotonic() - started}


def _write(
    app: App, storage: Storage, job: ExportJob, worker_id: str, stop: Stop
) -> tuple[int, int, str]:
    """(rows, bytes, sha256) of the file written for `job`."""
    fmt = tabular_format(job.format, app)
    ds = app.dataset(job.dataset)
    settings = app.settings.export
    req = ExportRequest(
        export_type=job.export_type,
        filters=dict(job.filters or {}),
        fields=list(job.fields or []),
        limit=job.row_limit,
        include_deleted=job.include_deleted,
        omit_unless_asked=tuple(getattr(fmt, "omit_unless_asked", ())),
        language=job.language or "",
    )
    # One snapshot: the COUNT behind progress_percent and the rows agree.
    with snapshot(app.engine) as conn:
        plan = plan_export(conn, ds, req, max(settings.max_rows, job.row_limit))
        total = int(conn.execute(plan.count).scalar_one())
        store.save_progress(app.engine, job.id, worker_id, total_records=total)
        progress = Progress(app.engine, job.id, worker_id, total, stop, settings.progress_seconds)
        result = conn.execution_options(stream_results=True, yield_per=FETCH_ROWS).execute(
            plan.rows
        )
        fix = row_fixer(plan.columns, app.engine.dialect.name)
        # About 1% of the job per batch, so progress moves smoothly on small jobs too.
        batches: Iterable[Sequence[Any]] = result.partitions(
            max(100, min(FETCH_ROWS, total // 100))
        )
        if fix is not None:
            batches = (list(fix(b)) for b in batches)
        table = plan.table(req.filters, total, req.language)
        try:
            with storage.writer(job.storage_key) as out:
                rows = fmt.write(out, table, progress.feed(batches), progress.written)
        finally:
            # A writer that stopped early leaves the cursor mid-result; an open SQLite
            # read would pin an old snapshot on this pooled connection.
            result.close()
    size, sha = _digest(storage, job.storage_key)
    return int(rows), size, sha


def _digest(storage: Storage, key: str) -> tuple[int, str]:
    """Size and sha256 of the stored file, read back: formats may seek while writing
    (xlsx is a zip), so hashing the byte stream as it is written would be wrong."""
    h = hashlib.sha256()
    size = 0
    with storage.open(key) as f:
        for chunk in blocks(f):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def announce(job: ExportJob, status: str) -> None:
    """The structured log line (export_notify) of how a job with recipients ended; its
    announcement itself was written with the job's end (ferry.export_jobs.announce)."""
    if not job.notify:
        return
    log.info(
        "export job %s %s; notify %s",
        job.id,
        status,
        ", ".join(job.notify),
        extra={
            "event": "export_notify",
            "job_id": job.id,
            "status": status,
            "recipients": list(job.notify),
            "export_type": job.export_type,
            "export_filename": job.filename,
        },
    )
