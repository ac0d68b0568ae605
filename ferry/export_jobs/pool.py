"""The export service's background threads: job workers, their heartbeat, and a reaper.

Workers claim pending jobs from the database (so jobs queued on any replica run
somewhere, exactly once), a heartbeat thread keeps this process's running jobs alive in
the job table, and the reaper, which runs in every replica, fails jobs whose worker
stopped beating (the process was killed) so none stays "running" forever.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable

from ferry.app import App
from ferry.db import schools, tenant
from ferry.db.export_models import FAILED, ExportJob
from ferry.export_jobs import metrics, store
from ferry.export_jobs.announce import announcing
from ferry.export_jobs.runner import Stop, announce, run_job
from ferry.storage import Storage

log = logging.getLogger("ferry.export")


class WorkerPool:
    def __init__(self, app: App, storage: Storage) -> None:
        self.app = app
        self.storage = storage
        self.settings = app.settings.export
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._running: dict[str, Stop] = {}  # job id -> its stop flag
        self._school_of: dict[str, int] = {}  # job id -> its school
        self._turn = 0  # the school a claim starts with, so no school starves the others

    def start(self) -> None:
        """Start the workers (export.workers of them), the heartbeat and the reaper."""
        targets: list[tuple[str, Callable[[str], None]]] = [
            (f"export-worker-{i}", self._work) for i in range(self.settings.workers)
        ]
        if self.settings.workers:
            targets.append(("export-heartbeat", self._beat))
        targets.append(("export-reaper", self._reap_loop))
        for name, target in targets:
            t = threading.Thread(target=target, name=name, args=(name,), daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking jobs; running ones go back to the queue for another replica."""
        self._stopping.set()
        self._wake.set()
        with self._lock:
            for flag in self._running.values():
                flag.set("shutdown")
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()

    def wake(self) -> None:
        """A job was queued here: let an idle worker take it without waiting for a poll."""
        self._wake.set()

    def cancel(self, job_id: str) -> None:
        """Stop a job this process runs at once (other replicas notice through the DB)."""
        with self._lock:
            flag = self._running.get(job_id)
        if flag is not None:
            flag.set("cancel")

    def _work(self, thread_name: str) -> None:
        worker_id = f"{self.name}/{thread_name.rsplit('-', 1)[-1]}"
        while not self._stopping.is_set():
            try:
                job = self._claim(worker_id)
            except Exception:  # a database hiccup must not kill the worker
                log.exception("claiming an export job failed", extra={"event": "claim_failed"})
                job = None
            if job is None:
                self._wake.wait(self.settings.poll_seconds)
                self._wake.clear()
                continue
            flag = Stop()
            with self._lock:
                self._running[job.id] = flag
                self._school_of[job.id] = job.school_id
            if self._stopping.is_set():
                flag.set("shutdown")
            try:
                log.info(
                    "export job %s started",
                    job.id,
                    extra={"event": "export_started", "job_id": job.id, "worker": worker_id},
                )
                with tenant.acting_for(job.school_id):  # its data, its file, its mail
                    status = run_job(self.app, self.storage, job, worker_id, flag)
                log.info(
                    "export job %s %s",
                    job.id,
                    status,
                    extra={"event": "export_ended", "job_id": job.id, "status": status},
                )
            except Exception:
                # run_job ends its job itself; what escapes is bookkeeping (the database
                # went away). The worker lives on; the reaper settles the row if needed.
                log.exception(
                    "export worker error on job %s", job.id, extra={"event": "worker_error"}
                )
            finally:
                with self._lock:
                    self._running.pop(job.id, None)
                    self._school_of.pop(job.id, None)

    def _claim(self, worker_id: str) -> ExportJob | None:
        """The oldest pending job of some school: each school in turn (a transaction
        sees one school's rows), starting one further each time."""
        found = schools.ids(self.app.engine)
        with self._lock:
            start = self._turn % max(len(found), 1)
            self._turn += 1
        for school in found[start:] + found[:start]:
            with tenant.acting_for(school):
                job = store.claim_next(self.app.engine, worker_id)
            if job is not None:
                return job
        return None

    def _beat(self, _name: str) -> None:
        while not self._stopping.wait(self.settings.heartbeat_seconds):
            with self._lock:
                by_school: dict[int, list[str]] = {}
                for job_id in self._running:
                    by_school.setdefault(self._school_of.get(job_id, 1), []).append(job_id)
            try:
                for school, ids in by_school.items():
                    with tenant.acting_for(school):
                        store.heartbeat(self.app.engine, ids)
            except Exception:  # retried on the next beat; the timeout allows several misses
                log.exception("export heartbeat failed", extra={"event": "heartbeat_failed"})

    def _reap_loop(self, _name: str) -> None:
        while not self._stopping.wait(self.settings.reaper_seconds):
            try:
                reap_once(self.app, self.settings.heartbeat_timeout_seconds)
            except Exception:  # retried on the next round
                log.exception("export reaper failed", extra={"event": "reaper_failed"})


def reap_once(app: App, timeout_seconds: float) -> int:
    """Fail jobs whose worker stopped responding, of every school; how many were failed."""
    count = 0
    for school in schools.ids(app.engine):
        with tenant.acting_for(school):
            count += _reap_school(app, timeout_seconds)
    return count


def _reap_school(app: App, timeout_seconds: float) -> int:
    reaped = store.reap(app.engine, timeout_seconds, lambda job: announcing(app, job, FAILED))
    for job in reaped:
        log.warning(
            "export job %s failed: %s (worker %s)",
            job.id,
            store.REAPED_MESSAGE,
            job.worker_id,
            extra={"event": "export_reaped", "job_id": job.id, "worker": job.worker_id},
        )
        metrics.JOBS.labels(job.export_type, job.format, FAILED).inc()
        announce(job, FAILED)
    return len(reaped)
