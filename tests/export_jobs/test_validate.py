"""StartExport's checks, called directly: each bad field is named, and a valid request
becomes the job the queue stores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from ferry import config
from ferry.app import App
from ferry.errors import InvalidArgument
from ferry.export_jobs.validate import new_job
from ferry.v1 import export_pb2 as pb
from tests.conftest import running
from tests.export_jobs.helpers import jobs_client


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.StartExportRequest(format="csv"), "export_type"),
        (pb.StartExportRequest(export_type="students"), "format"),
        (pb.StartExportRequest(export_type="students", format="os:system"), "format"),
        (
            pb.StartExportRequest(export_type="students", format="csv", idempotency_key="k" * 201),
            "idempotency_key",
        ),
        (pb.StartExportRequest(export_type="students", format="csv", notify=[" "]), "notify[0]"),
        (
            pb.StartExportRequest(
                export_type="students",
                format="csv",
                notify=["good@school.example", "bad@b.c\r\nX: y"],
            ),
            "notify[1]",
        ),
        (
            pb.StartExportRequest(
                export_type="students", format="csv", notify=["good@school.example", "office"]
            ),
            "notify[1]",
        ),
    ],
)
def test_bad_requests_name_their_field(
    seeded_url: str, make_app: Callable[..., App], request_: pb.StartExportRequest, field: str
) -> None:
    with pytest.raises(InvalidArgument) as e:
        new_job(make_app(seeded_url), request_)
    assert e.value.field == field


def test_a_valid_request_becomes_a_new_job(seeded_url: str, make_app: Callable[..., App]) -> None:
    req = pb.StartExportRequest(
        export_type="students", format="csv", filters=pb.ExportFilters(status="active"),
        notify=[" ops@example.org "],
    )  # fmt: skip
    job = new_job(make_app(seeded_url), req, "cli:tester")
    assert job.filters == {"status": "active"} and job.notify == ["ops@example.org"]
    assert job.requested_by == "cli:tester" and job.filename.endswith(".csv")


def test_recipients_are_checked_where_they_enter(
    job_app: Callable[..., App], tmp_path: Path
) -> None:
    """Issue 23, item 3: StartExport with one bad address among good ones is refused
    naming that address and makes no job (it used to complete and mail nobody); a
    schedule's bad address in ferry.yaml stops start-up naming it."""
    app = job_app()
    with running(app, ["export"]) as srv, jobs_client(app, srv) as jobs:
        for bad in ("bad@b.c\r\nX: y", "not an address", "x" * 300 + "@school.example"):
            with pytest.raises(grpc.RpcError) as e:
                jobs.start(export_type="students", format="csv",
                           notify=["good@school.example", bad])  # fmt: skip
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
            assert e.value.details().startswith("notify[1]")  # type: ignore[attr-defined]
            if bad == "not an address":
                assert "'not an address' is not a mail address" in e.value.details()  # type: ignore[attr-defined]
    with app.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM export_jobs")).scalar_one() == 0
    path = tmp_path / "ferry.yaml"
    path.write_text(
        "export:\n  schedules:\n    nightly: {type: students, "
        "notify: [ops@school.example, 'ops at school']}\n"
    )
    with pytest.raises(
        config.ConfigError, match=r"nightly\.notify: .*notify\[1\]: 'ops at school'"
    ):
        config.load(path, {})


def test_an_old_job_with_a_bad_address_still_tells_the_good_ones(
    job_app: Callable[..., App],
) -> None:
    """A job stored before addresses were checked (one bad among good ones) is announced
    to the good ones instead of being refused as a whole, again and again, by Send."""
    from ferry.export_jobs import announce, store

    app = job_app()
    made, _ = store.create_job(app.engine, store.NewJob(
        export_type="students", format="csv", dataset="school",
        notify=["good@school.example", "bad@b.c\r\nX: y", "other@school.example"],
    ))  # fmt: skip
    with app.engine.begin() as c:
        c.execute(sa.text("UPDATE export_jobs SET status = 'failed', error_message = 'x' "
                          "WHERE id = :id"), {"id": made.id})  # fmt: skip
    new = announce.announcement(app, store.get_job(app.engine, made.id))
    assert new is not None
    assert [r for _, r in new.deliveries] == ["good@school.example", "other@school.example"]
