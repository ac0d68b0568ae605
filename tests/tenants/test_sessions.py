"""A bundle imported with one school's token lands in that school, and each school's
DownloadSession holds its own records only (docs/tenants.md): the threads an upload and
a download start act for the school of the call that started them."""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.auth import parse_role
from ferry.bundle.formats.base import BundleLimits, Event
from ferry.bundle.formats.json import JsonBundle
from ferry.v1 import import_pb2
from tests.conftest import make_settings
from tests.imports.helpers import download, import_file, serving
from tests.merge.helpers import comparable, records
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres


def test_an_upload_and_a_download_stay_in_the_callers_school(
    tenancy: Tenancy, source_events: list[Event], tmp_path: Path
) -> None:
    t = tenancy
    out = io.BytesIO()
    JsonBundle().write(source_events, out)
    app = App(make_settings(t.app_url, tmp_path))
    try:
        with serving(app) as stubs:

            def as_school(code: str) -> None:
                made = app.issuer().issue("t", parse_role("admin"), dt.timedelta(minutes=5),
                                          school=code)  # fmt: skip
                stubs.md = [("authorization", f"Bearer {made.token}")]

            as_school("north")
            result = import_file(stubs, out.getvalue(), "fall.json")
            assert result.status == import_pb2.IMPORT_STATUS_COMPLETED, result
            north = list(JsonBundle().read(io.BytesIO(download(stubs)), BundleLimits()))
            # To south the semester does not exist: its rows are north's.
            as_school("south")
            with pytest.raises(grpc.RpcError) as e:
                download(stubs)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        app.close()
    assert comparable(north) == comparable(source_events)
    with t.platform.connect() as conn:  # the oracle: where the rows went, in plain SQL
        where = dict(
            conn.execute(sa.text("SELECT school_id, count(*) FROM students GROUP BY 1")).all()
        )
    assert where == {t.schools["north"]: len(records(source_events)["students"])}
