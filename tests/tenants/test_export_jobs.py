"""Export jobs run for their own school (docs/tenants.md): the worker finds a school's
pending job by acting for each school in turn and runs it acting for the job's school,
so its file holds that school's rows only; another school's token finds no such job."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.auth import parse_role
from ferry.bundle.formats.base import Event
from ferry.db import tenant
from ferry.v1 import export_pb2 as pb
from ferry.v1 import export_pb2_grpc
from tests.conftest import make_settings, running
from tests.merge.helpers import edited, records, run
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres


def test_an_export_job_runs_for_its_school_and_is_hidden_from_others(
    tenancy: Tenancy, source_events: list[Event], tmp_path: Path
) -> None:
    t = tenancy
    for code in ("north", "south"):
        with tenant.acting_for(t.schools[code]):
            run(t.app, edited(source_events, "students", 0, first_name=f"Of {code}"))
    with t.platform.connect() as conn:  # the oracle: north's live students, in plain SQL
        students = conn.execute(
            sa.text("SELECT count(*) FROM students WHERE school_id = :s AND deleted_at IS NULL"),
            {"s": t.schools["north"]},
        ).scalar_one()
    assert 0 < students < len(records(source_events)["students"]) * 2
    app = App(make_settings(t.app_url, tmp_path, FERRY_EXPORT_POLL_SECONDS="0.2"))
    try:
        with (
            running(app, ["export"]) as srv,
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            stub = export_pb2_grpc.ExportServiceStub(channel)

            def md(school: str) -> list[tuple[str, str]]:
                made = app.issuer().issue("t", parse_role("admin"), dt.timedelta(minutes=5),
                                          school=school)  # fmt: skip
                return [("authorization", f"Bearer {made.token}")]

            started = stub.StartExport(
                pb.StartExportRequest(export_type="students", format="csv"),
                metadata=md("north"),
                timeout=10,
            )
            watched = stub.WatchExportJob(
                pb.WatchExportJobRequest(job_id=started.job.id), metadata=md("north"), timeout=60
            )
            last = [r.job for r in watched][-1]
            assert last.status == pb.EXPORT_JOB_STATUS_COMPLETED, last.error_message
            data = b"".join(
                c.chunk.data
                for c in stub.DownloadExport(
                    pb.DownloadExportRequest(job_id=started.job.id), metadata=md("north")
                )
            )
            rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
            assert len(rows) == students
            names = {r["first_name"] for r in rows}
            assert "Of north" in names and "Of south" not in names

            for other in ("south", "default"):
                get = pb.GetExportJobRequest(job_id=started.job.id)
                with pytest.raises(grpc.RpcError) as e:
                    stub.GetExportJob(get, metadata=md(other), timeout=10)
                assert e.value.code() == grpc.StatusCode.NOT_FOUND, other
                download = pb.DownloadExportRequest(job_id=started.job.id)
                with pytest.raises(grpc.RpcError) as e:
                    list(stub.DownloadExport(download, metadata=md(other), timeout=10))
                assert e.value.code() == grpc.StatusCode.NOT_FOUND, other
    finally:
        app.close()
