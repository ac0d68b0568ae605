"""How an export job (a scheduled run or backup included) announces its end: a row in the
notify outbox written in the transaction that ends the job, as imports do
(ferry.merge.announce, ferry.notify.import_announcement).

`store.finish` and `store.reap` call the `Announce` made here right after their UPDATE wins,
in the same transaction, inside a SAVEPOINT: the outbox row and the job's
`notification_id` commit with the job's end or not at all. A process killed before that
commit leaves the job running (the reaper fails it later and announces that, once); one
killed after it has already announced. The event id `export:<job id>:<status>` is unique
in the outbox, so nothing is announced twice. The notify service's workers find the row
when they poll; when they are down it waits there. An announcement that cannot be written
is logged and never fails the job.

Recipients: the job's `notify` and, for a scheduled run (idempotency key
`schedule:<name>:…`), that schedule's `notify:` in ferry.yaml. The completion mail links
the gateway's job download with a link token for that one download (ferry.auth.links),
valid for notify.link_ttl_days, made before the transaction (its record is the auth
store's own write).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.app import App
from ferry.db.export_models import COMPLETED, FAILED, ExportJob
from ferry.notify import store as notify_store
from ferry.notify.core import announcement as announcement_of
from ferry.notify.store import NewNotification

log = logging.getLogger("ferry.export")


def schedule_of(job: ExportJob) -> str:
    """The schedule a job was started for ("" for a job started by hand)."""
    key = job.idempotency_key or ""
    return key.split(":", 2)[1] if key.startswith("schedule:") and key.count(":") >= 2 else ""


def recipients(app: App, job: ExportJob) -> list[str]:
    """The job's notify, then its schedule's notify, without repeats. Both were checked
    where they entered (StartExport, ferry.yaml); an address that is not one anyway (a
    job queued before that check) is left out and logged, never silencing the others."""
    from ferry.addresses import parse_address

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


def plain_link(app: App, job_id: str) -> tuple[str, dt.datetime]:
    """(the URL of the job's download without a link token, when a link made now would
    have expired): the download then asks for a login."""
    from urllib.parse import quote

    from ferry.db.models import utcnow

    path = f"/api/v1/exports/{quote(job_id, safe='')}/download"
    ttl = dt.timedelta(days=app.settings.notify.link_ttl_days)
    return app.settings.notify.public_url.rstrip("/") + path, utcnow() + ttl


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


# Called in the transaction that ends the job, with the job as it ends there; writes the
# announcement and returns its notification id ("" when nobody is told).
Announce = Callable[[Connection, ExportJob], str]


def announcing(app: App, job: ExportJob, status: str) -> Announce | None:
    """The announcement of `job` ending as `status`, ready to be written by `store.finish`
    or `store.reap`; None when nobody is told (no recipients, or a status that is not
    announced). A completed job's download link is made here, before the transaction."""
    try:
        if status not in (COMPLETED, FAILED) or not recipients(app, job):
            return None
    except Exception:  # never fails the job: logged, and nobody is told
        log.exception(
            "export job %s: its recipients could not be read", job.id,
            extra={"event": "export_announce_failed", "job_id": job.id},
        )  # fmt: skip
        return None
    link: tuple[str, dt.datetime] | None = None
    if status == COMPLETED:
        try:
            link = download_link(app, job.id, job.requested_by)
        except Exception:
            # No link token could be made (the auth service is down): the mail links the
            # download itself, which asks for a login, so the announcement is still made.
            log.warning(
                "export job %s: no link token for its mail; it links the plain download",
                job.id, exc_info=True,
                extra={"event": "export_link_failed", "job_id": job.id},
            )  # fmt: skip
            link = plain_link(app, job.id)

    def write(conn: Connection, ended: ExportJob) -> str:
        new = announcement(app, ended, link)
        if new is None:
            return ""
        ((view, _created),) = notify_store.create_many(conn, [new])
        return str(view.notification.id)

    return write


def announcement(
    app: App, job: ExportJob, link: tuple[str, dt.datetime] | None = None
) -> NewNotification | None:
    """The outbox notification announcing `job` (already ended), or None when nobody is
    told. `link` is (download URL, when it expires) for a completed job."""
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
        url, expires = link if link is not None else download_link(app, job.id, job.requested_by)
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
    return announcement_of(
        app.settings.notify, to, template, variables, f"export:{job.id}:{job.status}",
        "service:export",
        # The mail speaks the language the export was asked in ("" is notify.default_language).
        language=job.language or "",
    )  # fmt: skip
