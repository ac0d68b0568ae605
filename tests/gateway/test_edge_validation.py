"""Every string is checked at the edge (issue 23, items 6 and 7).

A NUL byte or another control character in a path id, a query, a login name, a body field
or a list entry is 400 / INVALID_ARGUMENT naming the field and changes nothing, through
the gateway and over gRPC alike (the `validate` server filter); a bulk report lists the one
bad student as failed; an error quotes at most 64 characters of any input, so a
5,000-character id is a plain 400 or 404, never 429 "metadata size exceeds".
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.db.engine import make_engine
from ferry.v1 import export_pb2, export_pb2_grpc, import_pb2, import_pb2_grpc
from tests.conftest import auth, running
from tests.gateway.conftest import bearer, seed_small

Gateway = Callable[..., Any]
NUL = "a\x00b"

# (method, url, json body, the field the 400 must name)
CASES: list[tuple[str, str, Any, str]] = [
    ("GET", "/api/v1/exports/a%00b", None, "job_id"),
    ("GET", "/api/v1/exports/a%00b/download", None, "job_id"),
    ("DELETE", "/api/v1/exports/a%01b", None, "job_id"),
    ("GET", "/api/v1/exports?export_type=a%00b", None, "export_type"),
    ("GET", "/api/v1/imports/a%00b", None, "import_id"),
    ("POST", "/api/v1/imports/a%00b/undo", {}, "import_id"),
    ("GET", "/api/v1/notifications/a%1bb", None, "id"),
    ("GET", "/api/v1/reports/semesters/a%00b", None, "semester"),
    ("GET", "/api/v1/reports/students?query=a%00b", None, "query"),
    ("DELETE", "/api/v1/reports/cache/a%00b", None, "student_id"),
    ("GET", "/api/v1/sessions/a%00b/records", None, "semester"),
    ("GET", "/api/v1/auth/tokens?subject=a%00b", None, "subject"),
    ("POST", "/api/v1/auth/users/a%00b/disable", {}, "username"),
    ("POST", "/api/v1/auth/login", {"username": NUL, "password": "x"}, "username"),
    ("POST", "/api/v1/auth/login", {"username": "ada", "password": NUL}, "password"),
    ("POST", "/api/v1/auth/users", {"username": NUL, "role": "ROLE_VIEWER"}, "username"),
    ("POST", "/api/v1/reports/student-performance", {"student_id": NUL}, "student_id"),
    ("POST", "/api/v1/exports",
     {"export_type": "students", "format": "csv", "filters": {"search": NUL}}, "filters.search"),
    ("POST", "/api/v1/exports",
     {"export_type": "students", "format": "csv", "fields": ["student_id", NUL]}, "fields[1]"),
    ("POST", "/api/v1/notifications",
     {"recipients": ["a@school.example"], "subject": "s", "body": f"line\n{NUL}"}, "body"),
    ("POST", "/api/v1/notifications",
     {"recipients": ["a@school.example"], "subject": "s\nBcc: x@evil.example", "body": "b"},
     "subject"),
    ("POST", "/api/v1/notifications",
     {"recipients": ["a@school.example"], "template": "export_failed",
      "variables": {"export_type": NUL}}, "variables.export_type"),
]  # fmt: skip

TABLES = ("export_jobs", "imports", "notifications", "users", "auth_tokens")


def _counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return {t: c.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one() for t in TABLES}
    finally:
        engine.dispose()


def test_control_characters_are_400_naming_the_field_and_change_nothing(
    gateway: Gateway, empty_url: str
) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    h = bearer(app, "admin")
    before = _counts(empty_url)
    for method, url, body, field in CASES:
        r = client.request(method, url, headers=h, json=body)
        assert r.status_code == 400, (url, body, r.status_code, r.text)
        got = r.json()
        assert got["code"] == "INVALID_ARGUMENT" and "control character" in got["message"]
        assert [d["field"] for d in got["details"]] == [field], (url, got)
        assert "\x00" not in r.text and "\\u0000" not in r.text
    assert _counts(empty_url) == before
    # Tab and newline are fine where a field holds prose: a mail body.
    ok = client.post("/api/v1/notifications", headers=h,
                     json={"recipients": ["a@school.example"], "subject": "s",
                           "body": "one\n\ttwo"})  # fmt: skip
    assert ok.status_code == 200, ok.text


def test_grpc_callers_meet_the_same_check(empty_url: str, make_app: Callable[..., App]) -> None:
    """gRPC callers never pass the gateway: the server filter refuses for them, unary,
    server-streaming and client-streaming calls alike."""
    app = make_app(empty_url)
    with (
        running(app, ["export", "import"]) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch,
    ):
        export = export_pb2_grpc.ExportServiceStub(ch)
        imports = import_pb2_grpc.ImportServiceStub(ch)
        md = auth(app, "admin")
        calls: list[tuple[Callable[[], Any], str]] = [
            (lambda: export.GetExportJob(export_pb2.GetExportJobRequest(job_id=NUL), metadata=md,
                                         timeout=10), "job_id"),
            (lambda: list(export.DownloadExport(export_pb2.DownloadExportRequest(job_id=NUL),
                                                metadata=md, timeout=10)), "job_id"),
            (lambda: export.StartExport(export_pb2.StartExportRequest(
                export_type="students", format="csv", idempotency_key=NUL), metadata=md,
                timeout=10), "idempotency_key"),
            (lambda: imports.ImportEntities(iter([import_pb2.ImportEntitiesRequest(
                options=import_pb2.ImportEntitiesOptions(entity="students", format="csv",
                                                         filename="a\x00.csv"))]),
                metadata=md, timeout=10), "options.filename"),
        ]  # fmt: skip
        for call, field in calls:
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()  # type: ignore[attr-defined]
            assert e.value.details().startswith(f"{field} contains a control character")  # type: ignore[attr-defined]
    with make_engine(empty_url).connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM export_jobs")).scalar_one() == 0
        assert c.execute(sa.text("SELECT count(*) FROM imports")).scalar_one() == 0


def test_a_bulk_report_lists_the_one_bad_student_as_failed(
    gateway: Gateway, empty_url: str
) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as c:
        good = c.execute(sa.text(
            "SELECT s.student_id FROM students s JOIN enrollments e ON e.student_ref = s.id "
            "WHERE s.deleted_at IS NULL AND e.deleted_at IS NULL ORDER BY s.student_id LIMIT 1"
        )).scalar_one()  # fmt: skip
    engine.dispose()
    long_id = "x" * 5000
    r = client.post("/api/v1/reports/bulk/student-performance", headers=bearer(app, "operator"),
                    json={"student_ids": [good, NUL, long_id], "output": "json"})  # fmt: skip
    assert r.status_code == 200, r.text[:300]
    doc = json.loads(r.content)
    assert doc["requested"] == 3 and doc["succeeded"] == 1
    assert [x["student_id"] for x in doc["reports"]] == [good]
    failed = {f["student_id"]: f["reason"] for f in doc["failed"]}
    assert set(failed) == {NUL, long_id}
    assert "control character" in failed[NUL] and "longer than 64" in failed[long_id]


LONG = "x" * 5000
LONG_CASES: list[tuple[str, str, Any]] = [
    ("GET", f"/api/v1/exports/{LONG}", None),
    ("GET", f"/api/v1/exports/{LONG}/download", None),
    ("GET", f"/api/v1/imports/{LONG}", None),
    ("GET", f"/api/v1/notifications/{LONG}", None),
    ("GET", f"/api/v1/sessions/{LONG}/records", None),
    ("GET", f"/api/v1/sessions/semesters?dataset={LONG}", None),
    ("POST", f"/api/v1/auth/users/{LONG}/disable", {}),
    ("POST", "/api/v1/reports/student-performance", {"student_id": LONG}),
    ("POST", "/api/v1/exports", {"export_type": LONG, "format": "csv"}),
    ("POST", "/api/v1/exports", {"export_type": "students", "format": LONG}),
    ("POST", "/api/v1/notifications", {"recipients": ["a@school.example"], "template": LONG}),
    ("POST", "/api/v1/notifications", {"recipients": [f"{LONG}@school.example"],
                                       "subject": "s", "body": "b"}),
    ("GET", f"/api/v1/exports/x?{LONG}=1", None),
]  # fmt: skip


def test_errors_quote_at_most_64_characters_of_any_input(gateway: Gateway, empty_url: str) -> None:
    """A 5,000-character id comes back as a short 400 or 404: the error quotes at most
    64 characters of it, so the trailers never pass gRPC's metadata limit (which a client
    saw as 429 "metadata size exceeds hard limit")."""
    client, app = gateway(empty_url)
    h = bearer(app, "admin")
    for method, url, body in LONG_CASES:
        r = client.request(method, url, headers=h, json=body)
        assert r.status_code in (400, 404), (url[:80], r.status_code, r.text[:300])
        assert not re.search("x{65}", r.text), (url[:80], r.text[:300])
        assert len(r.content) < 2048, (url[:80], len(r.content))
