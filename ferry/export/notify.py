"""Tell NotifyService how export jobs ended, without ever holding up or failing a job.

A job worker hands the ended job to the process's Announcer and goes on; the announcer's
own thread calls `NotifyService.Send` through the typed client with a deadline
(notify.send_timeout_seconds) and records the notification's id on the job. The event id
is `export:<job id>:<status>`, so a job is announced once however often it is sent (a
retry after an unclear outcome, two replicas sweeping at once). When the notify service
is down the job keeps an empty notification_id and a later sweep (every reaper round)
sends it again, so an announcement is not lost with a restart either.

Recipients: the job's `notify` and, for a scheduled run (idempotency key
`schedule:<name>:…`), that schedule's `notify:` in ferry.yaml. The completion mail links
the gateway's job download with a link token for that one download (ferry.auth.links),
valid for notify.link_ttl_days.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from typing import Any

import grpc
import sqlalchemy as sa

from ferry.app import App
from ferry.db.export_models import COMPLETED, FAILED, ExportJob
from ferry.db.models import utcnow
from ferry.export import store

log = logging.getLogger("ferry.export")
SWEEP_WINDOW = dt.timedelta(days=1)  # jobs that ended longer ago are not announced late
SWEEP_LIMIT = 100
T: sa.Table = ExportJob.__table__  # type: ignore[assignment]


def schedule_of(job: ExportJob) -> str:
    """The schedule a job was started for ("" for a job started by hand)."""
    key = job.idempotency_key or ""
    return key.split(":", 2)[1] if key.startswith("schedule:") and key.count(":") >= 2 else ""


def recipients(app: App, job: ExportJob) -> list[str]:
    """The job's notify, then its schedule's notify, without repeats. Both were checked
    where they entered (StartExport, ferry.yaml); an address that is not one anyway (a
    job queued before that check) is left out and logged, never silencing the others."""
    from ferry.notify.channels.smtp import parse_address

    out = list(job.notify or [])
    sched = app.settings.export.schedules.get(schedule_of(job))
    if sched is not None:
        out += sched.notify
    good = []
    for r in dict.fromkeys(r.strip() for r in out if r.strip()):
        try:
            good.append(parse_address(r))
        except ValueError:
            log.warning(
                "export job %s: %r is not a mail address; the others are told",
                job.id, r[:64], extra={"event": "export_notify_bad_address", "job_id": job.id},
            )  # fmt: skip
    return good


def download_link(app: App, job_id: str, owner: str = "") -> tuple[str, dt.datetime]:
    """(the URL of the job's download on the gateway with its link token, when it expires).

    The token is a link token for one GET of that path (ferry.auth.links), valid for
    notify.link_ttl_days and recorded under the job's owner (`owner`, else the export
    service), so it is listed with their tokens, revocable by id and revoked with them:
    issued here where the private key is readable (a laptop, the all-in-one process),
    else by the auth service."""
    from urllib.parse import quote, urlencode

    path = f"/api/v1/exports/{quote(job_id, safe='')}/download"
    ttl = app.settings.notify.link_ttl_days * 86400
    token, expires = _link_token(app, path, ttl, owner)
    url = app.settings.notify.public_url.rstrip("/") + path + "?" + urlencode({"link": token})
    return url, expires


def _link_token(app: App, path: str, ttl_seconds: int, owner: str) -> tuple[str, dt.datetime]:
    from ferry.auth import Principal
    from ferry.auth.issuing import link_token
    from ferry.auth.keys import KeyFileError
    from ferry.v1 import auth_pb2, options_pb2

    me = "service:export"
    if owner and _disabled(app, owner):
        owner = ""  # the mail is for its recipients: the link is the service's own then
    try:
        app.issuer()
    except (KeyFileError, OSError):  # no private key here: the auth service issues it
        from ferry.rpc.client import Clients

        clients = Clients(app.settings.client, lambda: app.local_token(me))
        try:
            got = clients.auth().CreateLinkToken(
                auth_pb2.CreateLinkTokenRequest(path=path, ttl_seconds=ttl_seconds, subject=owner)
            )
        finally:
            clients.close()
        return got.token, got.expires_at.ToDatetime(dt.UTC)
    issued = link_token(app, path, ttl_seconds, Principal(me, options_pb2.ROLE_ADMIN), owner)
    return issued.token, issued.expires_at


def _disabled(app: App, username: str) -> bool:
    from ferry.db.user_models import User

    with app.engine.connect() as conn:
        found = conn.execute(sa.select(User.disabled).where(User.username == username)).first()
    return bool(found and found[0])


def send_request(app: App, job: ExportJob) -> Any:
    """The SendRequest announcing `job` (already ended), or None when nobody is told."""
    from ferry.v1 import notify_pb2

    to = recipients(app, job)
    if not to or job.status not in (COMPLETED, FAILED):
        return None
    sched = schedule_of(job)
    variables: dict[str, Any] = {
        "job_id": job.id,
        "export_type": job.export_type,
        "format": job.format,
        "filename": job.filename,
    }
    if sched:
        variables["schedule"] = sched
    if job.status == COMPLETED:
        url, expires = download_link(app, job.id, job.requested_by)
        variables.update(
            records=job.processed_records,
            size_bytes=job.file_size_bytes,
            duration_seconds=round(job.duration_seconds, 3),
            download_url=url,
            link_expires_at=expires.isoformat(),
        )
        template = "backup_done" if sched else "export_completed"
    else:
        variables["error"] = job.error_message or "unknown error"
        # The machine reason and its values: a template words them in its own language.
        variables["error_reason"] = job.error_reason or ""
        variables["error_details"] = dict(job.error_metadata or {})
        template = "backup_failed" if sched else "export_failed"
    # The mail speaks the language the export was asked in ("" is notify.default_language).
    req = notify_pb2.SendRequest(
        recipients=to,
        template=template,
        event_id=f"export:{job.id}:{job.status}",
        language=job.language or "",
    )
    req.variables.update(variables)
    return req


class Announcer:
    """One per process: a queue of ended jobs and a thread that announces them."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=10_000)
        self._queued: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._clients: Any = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="export-announcer", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Stop after the announcements already queued, waiting at most `timeout`; what is
        left is sent by the next sweep (the jobs keep an empty notification_id)."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        if self._clients is not None:
            self._clients.close()
            self._clients = None

    def announce(self, job_id: str) -> None:
        """Queue `job_id` for announcing; never blocks and never raises."""
        with self._lock:
            if job_id in self._queued:
                return
            self._queued.add(job_id)
        try:
            self._queue.put_nowait(job_id)
        except queue.Full:
            with self._lock:
                self._queued.discard(job_id)  # the sweep picks it up later

    def sweep(self) -> int:
        """Queue recently ended jobs whose announcement was never recorded."""
        since = utcnow() - SWEEP_WINDOW
        with self.app.engine.connect() as conn:
            ids = [
                r[0]
                for r in conn.execute(
                    sa.select(T.c.id)
                    .where(
                        T.c.status.in_([COMPLETED, FAILED]),
                        T.c.notification_id == "",
                        T.c.finished_at >= since,
                        sa.or_(
                            sa.cast(T.c.notify, sa.String) != "[]",
                            T.c.idempotency_key.like("schedule:%"),
                        ),
                    )
                    .order_by(T.c.finished_at)
                    .limit(SWEEP_LIMIT)
                )
            ]
        for job_id in ids:
            self.announce(job_id)
        return len(ids)

    def _run(self) -> None:
        while True:
            job_id = self._queue.get()
            if job_id is None:
                return
            with self._lock:
                self._queued.discard(job_id)
            try:
                self.send(job_id)
            except grpc.RpcError as e:
                log.warning(
                    "export job %s: notify not reached (%s); a later sweep retries",
                    job_id,
                    e.code().name if hasattr(e, "code") else "error",
                    extra={"event": "export_notify_failed", "job_id": job_id},
                )
            except Exception:
                log.exception(
                    "export job %s: announcing failed",
                    job_id,
                    extra={"event": "export_notify_failed", "job_id": job_id},
                )

    def send(self, job_id: str) -> str:
        """Announce one ended job now; the notification id ("" when nobody is told)."""
        job = store.get_job(self.app.engine, job_id)
        if job.notification_id:
            return job.notification_id
        req = send_request(self.app, job)
        if req is None:
            return ""
        if self._clients is None:
            from ferry.rpc.client import Clients

            self._clients = Clients(
                self.app.settings.client,
                token=lambda: self.app.local_token("service:export", role=2),
            )
        # wait_for_ready: a notify service that is (re)starting gets the whole deadline to
        # come up; this thread is the only one that waits.
        resp = self._clients.notify().Send(
            req, timeout=self.app.settings.notify.send_timeout_seconds, wait_for_ready=True
        )
        nid = str(resp.notification.id)
        with self.app.engine.begin() as conn:
            conn.execute(
                T.update()
                .where(T.c.id == job_id, T.c.notification_id == "")
                .values(notification_id=nid)
            )
        return nid


def announcer(app: App) -> Announcer:
    """The process's announcer for `app` (created and started on first use)."""
    a: Announcer | None = app._extra.get("export_announcer")
    if a is None:
        a = Announcer(app)
        app._extra["export_announcer"] = a
        a.start()
    return a
