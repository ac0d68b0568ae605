"""An export job announces its end through the notify outbox, in the transaction that ends
it: a killed export process can neither lose nor double an announcement, and two reapers
failing the same abandoned job announce it once."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.db.engine import make_engine
from ferry.db.notify_models import Notification
from ferry.export_jobs import store
from ferry.export_jobs.announce import announcing
from ferry.export_jobs.pool import reap_once
from ferry.v1 import export_pb2, export_pb2_grpc
from tests.notify.helpers import SmtpServer, eventually, free_port
from tests.notify.test_processes import notify_process


def notifications(url: str, event_id: str) -> list[str]:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return list(
                c.execute(
                    sa.select(Notification.id).where(Notification.event_id == event_id)
                ).scalars()
            )
    finally:
        engine.dispose()


@pytest.mark.slow
def test_export_announced_although_its_process_is_killed_and_notify_was_down(
    empty_url: str, tmp_path: Path
) -> None:
    """StartExport with notify on a `ferry serve export` without a notify service; the
    process is SIGKILLed as soon as the job reads completed. The announcement committed
    with the job's end (an outbox row, the job's notification_id), so a notify service
    started afterwards mails it, once. (Announcing by a Send from a thread after the commit
    loses it here: nobody was listening, and the thread that would have retried is gone.)"""
    from tests.conftest import token_from_key_file
    from tests.imports.helpers import seed_small

    seed_small(empty_url)
    smtp = SmtpServer().start()
    md = [("authorization", f"Bearer {token_from_key_file(tmp_path / 'signing.key', 'admin')}")]
    shared = {
        "FERRY_NOTIFY_DEFAULT_CHANNELS": "[smtp]",
        "FERRY_NOTIFY_PUBLIC_URL": "https://ferry.school.example",
        "FERRY_CLIENT_TARGET": f"127.0.0.1:{free_port()}",  # nothing listens there
        "FERRY_PLUGINS_STORAGE_LOCAL_DIR": str(tmp_path / "exports"),
        "FERRY_EXPORT_POLL_SECONDS": "0.05",
    }
    try:
        with (
            notify_process(empty_url, tmp_path, smtp.port, services=("export",), **shared) as proc,
            grpc.insecure_channel(f"127.0.0.1:{proc.port}") as ch,
        ):
            stub = export_pb2_grpc.ExportServiceStub(ch)
            started = stub.StartExport(
                export_pb2.StartExportRequest(
                    export_type="courses", format="csv", notify=["office@school.example"]
                ),
                metadata=md,
                timeout=30,
            )

            def ended() -> export_pb2.ExportJob | None:
                job = stub.GetExportJob(
                    export_pb2.GetExportJobRequest(job_id=started.job.id), metadata=md
                ).job
                done = export_pb2.EXPORT_JOB_STATUS_COMPLETED
                return job if job.status == done else None

            job = eventually(ended, 60)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        # Announced with the job's end, although no notify service ever answered.
        assert job.notification_id
        assert notifications(empty_url, f"export:{job.id}:completed") == [job.notification_id]
        assert smtp.inbox.messages == []
        with notify_process(empty_url, tmp_path, smtp.port, **shared):
            (mail,) = smtp.inbox.wait_for(1, timeout=30)
            time.sleep(1.0)  # a second copy would arrive now
        assert len(smtp.inbox.messages) == 1
        assert mail["X-Ferry-Event"] == f"export:{job.id}:completed"
        assert "https://ferry.school.example/api/v1/exports/" in mail.get_body(
            ("plain",)
        ).get_content()
    finally:
        smtp.stop()


def test_an_abandoned_job_is_failed_and_announced_once_by_racing_reapers(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    """A job whose process died mid-run (claimed, never heartbeating again) is failed by
    the reaper, and its failure announced in that transaction; two reapers racing announce
    it once, and a reaper that lost announces nothing."""
    apps = [make_app(empty_url, FERRY_NOTIFY_DEFAULT_CHANNELS="[log]") for _ in range(2)]
    made, _ = store.create_job(
        apps[0].engine,
        store.NewJob(
            export_type="courses", format="csv", dataset="school",
            notify=["office@school.example"],
        ),
    )  # fmt: skip
    claimed = store.claim_next(apps[0].engine, "dead/1")
    assert claimed is not None and claimed.id == made.id
    time.sleep(1.2)  # its last heartbeat is older than the reapers' 1 s timeout
    barrier = threading.Barrier(2)
    counts: list[int] = []

    def reaper(app: App) -> None:
        barrier.wait()
        counts.append(reap_once(app, 1.0))

    threads = [threading.Thread(target=reaper, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(counts) == [0, 1]
    job = store.get_job(apps[0].engine, made.id)
    assert job.status == "failed" and job.error_message == store.REAPED_MESSAGE
    ids = notifications(empty_url, f"export:{made.id}:failed")
    assert ids == [job.notification_id]
    # Writing it again (a reaper retried after an unclear commit) makes no second one.
    write = announcing(apps[1], job, "failed")
    assert write is not None
    with apps[1].engine.begin() as c:
        assert write(c, job) == job.notification_id
    assert notifications(empty_url, f"export:{made.id}:failed") == ids
