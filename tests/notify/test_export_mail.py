"""Export jobs announce how they ended through NotifyService: a real aiosmtpd receives the
mail, its link downloads the file through the gateway, an expired link is a 403 page."""

from __future__ import annotations

import datetime as dt
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.auth import TokenIssuer, links
from ferry.auth import store as token_store
from ferry.db.engine import make_engine
from ferry.db.notify_models import Notification
from ferry.demo.seed import Scale, seed
from ferry.export_jobs import store as export_store
from ferry.export_jobs.announce import announcing
from ferry.v1 import export_pb2 as epb
from ferry.v1 import options_pb2
from gateway.app import create_app
from gateway.calls import ServiceChannels
from tests.conftest import auth, running
from tests.notify.conftest import FAST
from tests.notify.helpers import SmtpServer, eventually, free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture
def seeded(empty_url: str) -> str:
    engine = make_engine(empty_url)
    try:
        seed(engine, Scale.SMALL, seed=7)
    finally:
        engine.dispose()
    return empty_url


@pytest.fixture
def export_app(
    seeded: str, make_app: Callable[..., App], smtp: SmtpServer, tmp_path: Path
) -> Iterator[App]:
    port = free_port()
    app = make_app(
        seeded,
        **FAST,
        FERRY_SERVER_ADDRESS=f"127.0.0.1:{port}",
        FERRY_CLIENT_TARGET=f"127.0.0.1:{port}",
        FERRY_NOTIFY_CHANNELS="[smtp, log]",
        FERRY_NOTIFY_DEFAULT_CHANNELS="[smtp]",
        FERRY_NOTIFY_PUBLIC_URL="https://ferry.school.example",
        FERRY_PLUGINS_CHANNELS_SMTP_PORT=str(smtp.port),
        FERRY_PLUGINS_CHANNELS_SMTP_FROM_ADDRESS="ferry@school.example",
        FERRY_PLUGINS_STORAGE_LOCAL_DIR=str(tmp_path / "exports"),
        FERRY_EXPORT_POLL_SECONDS="0.05",
        FERRY_EXPORT_PROGRESS_SECONDS="0.05",
    )
    yield app


def wait_job(stub: object, md: list[tuple[str, str]], job_id: str) -> epb.ExportJob:
    def ended() -> epb.ExportJob | None:
        job = stub.GetExportJob(epb.GetExportJobRequest(job_id=job_id), metadata=md).job  # type: ignore[attr-defined]
        return (
            job if job.status >= epb.EXPORT_JOB_STATUS_COMPLETED and job.notification_id else None
        )

    result: epb.ExportJob = eventually(ended, 30)
    return result


def test_completed_export_mails_a_link_that_downloads(export_app: App, smtp: SmtpServer) -> None:
    import grpc

    from ferry.v1 import export_pb2_grpc

    app = export_app
    with (
        running(app, ["export", "notify"]) as srv,
        grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch,
    ):
        stub = export_pb2_grpc.ExportServiceStub(ch)
        md = auth(app)
        started = stub.StartExport(
            epb.StartExportRequest(
                export_type="students", format="csv", notify=["office@school.example"]
            ),
            metadata=md,
        )
        job = wait_job(stub, md, started.job.id)
        assert job.status == epb.EXPORT_JOB_STATUS_COMPLETED
        (mail,) = smtp.inbox.wait_for(1)
        assert mail["Subject"] == f"Export ready: students (csv), {job.processed_records:,} records"
        text = mail.get_body(("plain",)).get_content()
        link = next(w for w in text.split() if w.startswith("https://ferry.school.example/"))
        assert f"/api/v1/exports/{job.id}/download?link=" in link
        html = mail.get_body(("html",)).get_content()
        assert link.replace("&", "&amp;") in html
        token = parse_qs(urlsplit(link).query)["link"][0]
        claims = links.verifier(app).claims(token)
        assert claims["lnk"] == f"/api/v1/exports/{job.id}/download" and claims["mth"] == "GET"
        assert claims["rpc"] == "/ferry.v1.ExportService/DownloadExport"
        assert claims["arg"] == {"job_id": job.id} and claims["sub"] == "tester"
        assert 7 * 86400 - 60 < claims["exp"] - time.time() <= 7 * 86400
        # Minted for this one download, recorded under the job's owner (listed, revocable).
        (row,) = [t for t in token_store.list_tokens(app.engine, "tester") if t.kind == "link"]
        assert row.jti == claims["jti"] and row.issued_by == "service:export"
        with app.engine.connect() as c:
            n = c.execute(sa.select(Notification.__table__)).one()
        assert n.id == job.notification_id and n.event_id == f"export:{job.id}:completed"

        # The link opens the download through the gateway, without any header.
        asgi = create_app(app, ServiceChannels(app.settings.client, f"127.0.0.1:{srv.port}"))
        with TestClient(asgi, raise_server_exceptions=False) as gw:
            parts = urlsplit(link)
            r = gw.get(f"{parts.path}?{parts.query}")
            assert r.status_code == 200, r.text
            want = b"".join(
                x.chunk.data
                for x in stub.DownloadExport(epb.DownloadExportRequest(job_id=job.id), metadata=md)
            )
            assert r.content == want and len(want) == job.file_size_bytes
            # The mail's token is no login: as a Bearer header it opens nothing.
            bearer = {"Authorization": f"Bearer {token}"}
            assert gw.get(parts.path, headers=bearer).status_code == 401
            assert gw.get(f"/api/v1/exports/{job.id}", headers=bearer).status_code == 401
            # Eight days later the same kind of link is a 403 page saying it expired.
            base = app.issuer()
            stale = TokenIssuer(base.key, base.issuer, links.audience(base.audience)).issue(
                "tester", options_pb2.ROLE_VIEWER, dt.timedelta(days=7),
                extra=links.claims_for(links.target(parts.path), parts.path),
                now=dt.datetime.now(dt.UTC) - dt.timedelta(days=8),
            ).token  # fmt: skip
            old = f"{parts.path}?link={stale}"
            r = gw.get(old, headers={"accept": "text/html"})
            assert r.status_code == 403 and r.headers["content-type"].startswith("text/html")
            assert "This link has expired" in r.text
            # A Greek browser reads the page in Greek.
            el = gw.get(old, headers={"accept": "text/html", "accept-language": "el-GR,el"})
            assert el.status_code == 403 and '<html lang="el">' in el.text
            assert "Αυτός ο σύνδεσμος έχει λήξει" in el.text and "expired" not in el.text  # noqa: RUF001 (Greek)
            r = gw.get(old)
            assert r.status_code == 403 and r.json()["code"] == "PERMISSION_DENIED"
            # A tampered link is still 401, not "expired".
            assert (
                gw.get(old[:-4] + ("AAAA" if not old.endswith("AAAA") else "BBBB")).status_code
                == 401
            )

        # Announcing the same job again sends nothing more.
        ended = export_store.get_job(app.engine, job.id)
        write = announcing(app, ended, "completed")
        assert write is not None
        with app.engine.begin() as conn:
            assert write(conn, ended) == job.notification_id
        time.sleep(0.5)
        assert len(smtp.inbox.messages) == 1


def test_an_export_asked_in_greek_is_announced_in_greek(export_app: App, smtp: SmtpServer) -> None:
    """Issue 24: the mail speaks the language the export was asked in (the page's, through
    the gateway's Accept-Language): Greek subject and body, numbers as Greek writes them,
    the file name with semester and language. One asked in none stays English."""
    import grpc

    from ferry.v1 import export_pb2_grpc

    app = export_app
    with (
        running(app, ["export", "notify"]) as srv,
        grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch,
    ):
        stub = export_pb2_grpc.ExportServiceStub(ch)
        md = auth(app)
        asgi = create_app(app, ServiceChannels(app.settings.client, f"127.0.0.1:{srv.port}"))
        with TestClient(asgi, raise_server_exceptions=False) as gw:
            r = gw.post(
                "/api/v1/exports",
                headers={"authorization": md[0][1], "Accept-Language": "el-GR,el;q=0.9"},
                json={"export_type": "grades", "format": "csv",
                      "notify": ["teacher@school.example"], "filters": {"semester": "2026-fall"}},
            )  # fmt: skip
            assert r.status_code == 200, r.text
        job = wait_job(stub, md, r.json()["job"]["id"])
        assert job.status == epb.EXPORT_JOB_STATUS_COMPLETED and job.language == "el"
        (mail,) = smtp.inbox.wait_for(1)
        greek_count = f"{job.processed_records:,}".replace(",", ".")
        assert mail["Subject"] == (
            f"{chr(0x397)} εξαγωγή είναι έτοιμη: Βαθμοί (csv), {greek_count} εγγραφές"
        ), mail["Subject"]  # chr(0x397): Greek capital eta
        text = mail.get_body(("plain",)).get_content()
        assert "Κατεβάστε το εδώ" in text and "Αρχείο: grades_2026-fall_el.csv" in text
        assert "Download" not in text and "grades (" not in text
        html = mail.get_body(("html",)).get_content()
        assert "Βαθμοί" in html

        started = stub.StartExport(
            epb.StartExportRequest(export_type="grades", format="csv",
                                   notify=["office@school.example"]),
            metadata=md,
        )  # fmt: skip
        wait_job(stub, md, started.job.id)
        _, english = smtp.inbox.wait_for(2)
        assert english["Subject"].startswith("Export ready: grades (csv)")


def _broken_export(
    app: App, smtp: SmtpServer, language: str = "", failure: Exception | None = None
) -> tuple[Any, Any]:
    """(the job, its one mail) of a courses export whose format fails with `failure` (a
    RuntimeError "disk on fire" by default), asked in `language`, served with the notify
    service."""
    import grpc

    from ferry import plugins
    from ferry.v1 import export_pb2_grpc

    class Broken:
        name, extension, content_type = "broken", "txt", "text/plain"

        def write(self, *a: object, **k: object) -> int:
            raise failure or RuntimeError("disk on fire")

    plugins.register("ferry.formats", "broken", lambda app: Broken())
    try:
        with (
            running(app, ["export", "notify"]) as srv,
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch,
        ):
            stub = export_pb2_grpc.ExportServiceStub(ch)
            md = auth(app)
            started = stub.StartExport(
                epb.StartExportRequest(export_type="courses", format="broken",
                                       language=language, notify=["office@school.example"]),
                metadata=md,
            )  # fmt: skip
            job = wait_job(stub, md, started.job.id)
            # Delivery runs in the server's workers: wait while they still run.
            (mail,) = smtp.inbox.wait_for(1)
    finally:
        plugins.unregister("ferry.formats", "broken")
    return job, mail


def test_failed_export_mails_the_error(export_app: App, smtp: SmtpServer) -> None:
    job, mail = _broken_export(export_app, smtp)
    assert job.status == epb.EXPORT_JOB_STATUS_FAILED
    assert mail["Subject"] == "Export failed: courses (broken)"
    text = mail.get_body(("plain",)).get_content()
    # The error in words (its reason's, with the reference of the log line), never the
    # exception's own text.
    ref = job.error_metadata["reference"]
    assert f"What went wrong: a server error (reference {ref})" in text
    assert "disk on fire" not in text, text


def test_a_failed_greek_export_says_why_in_greek(export_app: App, smtp: SmtpServer) -> None:
    """The job keeps its failure as a machine reason (INTERNAL with the reference of the
    log line); the Greek mail words it in Greek, never the server's English sentence."""
    job, mail = _broken_export(export_app, smtp, "el")
    assert job.status == epb.EXPORT_JOB_STATUS_FAILED and job.error_reason == "INTERNAL"
    ref = job.error_metadata["reference"]
    assert len(ref) == 12 and f"reference {ref}" in job.error_message
    text = mail.get_body(("plain",)).get_content()
    assert f"σφάλμα του διακομιστή (αριθμός αναφοράς {ref})" in text
    assert "export job" not in text and "disk on fire" not in text
    html = mail.get_body(("html",)).get_content()
    assert f"αριθμός αναφοράς {ref}" in html


def test_notify_down_never_fails_the_export_and_is_sent_later(
    export_app: App, smtp: SmtpServer
) -> None:
    """The export runs without the notify service; the job completes with its announcement
    already in the outbox, and once notify is up it is mailed."""
    import grpc

    from ferry.v1 import export_pb2_grpc

    app = export_app
    with running(app, ["export"]) as srv, grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        md = auth(app)
        started = stub.StartExport(
            epb.StartExportRequest(
                export_type="courses", format="csv", notify=["office@school.example"]
            ),
            metadata=md,
        )

        def ended() -> epb.ExportJob | None:
            j = stub.GetExportJob(epb.GetExportJobRequest(job_id=started.job.id), metadata=md).job
            return j if j.status == epb.EXPORT_JOB_STATUS_COMPLETED else None

        job = eventually(ended, 30)
        assert job.notification_id  # written with the job's end, notify or not
        assert smtp.inbox.messages == []
    with running(app, ["notify"]):
        smtp.inbox.wait_for(1)
