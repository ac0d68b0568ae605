"""StartExport's checks, called directly: each bad field is named, and a valid request
becomes the job the queue stores."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ferry.app import App
from ferry.errors import InvalidArgument
from ferry.export.validate import new_job
from ferry.v1 import export_pb2 as pb


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
        (pb.StartExportRequest(export_type="students", format="csv", notify=[" "]), "notify"),
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
