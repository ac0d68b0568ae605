"""ReportsService over real gRPC and through the gateway's REST routes."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Iterator

import grpc
import pytest
from pypdf import PdfReader

from ferry.app import App
from ferry.v1 import reports_pb2 as pb
from ferry.v1 import reports_pb2_grpc
from tests.conftest import auth, running
from tests.gateway.conftest import bearer, gateway_for


@pytest.fixture
def stub(reports_app: App) -> Iterator[tuple[reports_pb2_grpc.ReportsServiceStub, App]]:
    with (
        running(reports_app, ["reports"]) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch,
    ):
        yield reports_pb2_grpc.ReportsServiceStub(ch), reports_app


def _file(chunks: Iterator[object]) -> tuple[str, str, bytes, str]:
    name = ctype = sha = ""
    data = b""
    for c in chunks:
        chunk = c.chunk  # type: ignore[attr-defined]
        name = name or chunk.filename
        ctype = ctype or chunk.content_type
        assert chunk.offset == len(data)
        data += chunk.data
        sha = chunk.sha256 or sha
    return name, ctype, data, sha


def test_student_report_then_cached(stub: tuple[reports_pb2_grpc.ReportsServiceStub, App]) -> None:
    s, app = stub
    req = pb.GetStudentReportRequest(student_id="S1", semester="2026-fall")
    first = s.GetStudentReport(req, metadata=auth(app, "viewer"))
    again = s.GetStudentReport(req, metadata=auth(app, "viewer"))
    assert not first.cached and again.cached
    assert first.report == again.report and again.report.overall_percent == 90.0
    stats = s.GetCacheStats(pb.GetCacheStatsRequest(), metadata=auth(app, "viewer"))
    assert (stats.backend, stats.hits, stats.misses) == ("memory", 1, 1)
    assert stats.hit_ratio == 0.5 and stats.entries == 1 and stats.breaker == "closed"


@pytest.mark.parametrize(
    ("req", "code", "field"),
    [
        (pb.GetStudentReportRequest(student_id="S404"), grpc.StatusCode.NOT_FOUND, ""),
        (pb.GetStudentReportRequest(), grpc.StatusCode.INVALID_ARGUMENT, "student_id"),
        (
            pb.GetStudentReportRequest(student_id="S1", date_from="1.1.2026"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "date_from",
        ),
    ],
)
def test_bad_requests(
    stub: tuple[reports_pb2_grpc.ReportsServiceStub, App],
    req: pb.GetStudentReportRequest,
    code: grpc.StatusCode,
    field: str,
) -> None:
    s, app = stub
    with pytest.raises(grpc.RpcError) as e:
        s.GetStudentReport(req, metadata=auth(app, "viewer"))
    assert e.value.code() == code
    if field:
        assert field in e.value.details()


def test_roles(stub: tuple[reports_pb2_grpc.ReportsServiceStub, App]) -> None:
    s, app = stub
    with pytest.raises(grpc.RpcError) as e:
        s.GetStudentReport(pb.GetStudentReportRequest(student_id="S1"))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        s.InvalidateCache(pb.InvalidateCacheRequest(), metadata=auth(app, "viewer"))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("fmt", ["pdf", "csv", "json"])
def test_render_student_report(
    stub: tuple[reports_pb2_grpc.ReportsServiceStub, App], fmt: str
) -> None:
    s, app = stub
    req = pb.RenderStudentReportRequest(
        report=pb.GetStudentReportRequest(student_id="S1"), format=fmt
    )
    name, ctype, data, sha = _file(s.RenderStudentReport(req, metadata=auth(app, "viewer")))
    assert name == f"S1_performance_2026-09-07_2026-09-22_en.{fmt}"
    assert sha == hashlib.sha256(data).hexdigest()
    again = _file(s.RenderStudentReport(req, metadata=auth(app, "viewer")))[2]
    assert again == data  # the same data, the same bytes
    if fmt == "pdf":
        assert ctype == "application/pdf"
        text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages)
        assert "Ελένη Νικολάου" in text and "87.50" in text and "77.50" in text
    elif fmt == "csv":
        assert "# Courses" in data.decode() and "S1,MATH,Mathematics" in data.decode()
    else:
        assert json.loads(data)["overall_percent"] == 90.0


def test_render_bad_format(stub: tuple[reports_pb2_grpc.ReportsServiceStub, App]) -> None:
    s, app = stub
    req = pb.RenderStudentReportRequest(
        report=pb.GetStudentReportRequest(student_id="S1"), format="docx"
    )
    with pytest.raises(grpc.RpcError) as e:
        list(s.RenderStudentReport(req, metadata=auth(app, "viewer")))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "docx" in e.value.details()


def test_semester_report_and_render(stub: tuple[reports_pb2_grpc.ReportsServiceStub, App]) -> None:
    s, app = stub
    r = s.GetSemesterReport(
        pb.GetSemesterReportRequest(semester="2026-fall"), metadata=auth(app, "viewer")
    )
    assert [a.student_id for a in r.report.at_risk] == ["S1"]
    name, _, data, _ = _file(
        s.RenderSemesterReport(
            pb.RenderSemesterReportRequest(semester="2026-fall", format="csv"),
            metadata=auth(app, "viewer"),
        )
    )
    assert name == "semester_2026-fall_en.csv" and "# At risk" in data.decode()
    with pytest.raises(grpc.RpcError) as e:
        s.GetSemesterReport(
            pb.GetSemesterReportRequest(semester="1999-fall"), metadata=auth(app, "viewer")
        )
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


def test_rest_routes(reports_app: App) -> None:
    with gateway_for(reports_app, ["reports"]) as client:
        h = bearer(reports_app, "operator")
        r = client.post(
            "/api/v1/reports/student-performance",
            json={"student_id": "S1", "semester": "2026-fall"},
            headers=h,
        )
        assert r.status_code == 200 and r.json()["report"]["gpa"] == 3.33
        r = client.post(
            "/api/v1/reports/student-performance/download?format=csv",
            json={"student_id": "S1"},
            headers=h,
        )
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
        assert "S1_performance_2026-09-07_2026-09-22_en.csv" in r.headers["content-disposition"]
        r = client.get("/api/v1/reports/semesters/2026-fall", headers=h)
        assert r.status_code == 200 and r.json()["report"]["student_count"] == "5"
        r = client.post(
            "/api/v1/reports/bulk/student-performance",
            json={"student_ids": ["S1", "S404"], "output": "zip"},
            headers=h,
        )
        assert r.status_code == 200
        names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
        assert names == ["S1_performance_2026-09-07_2026-09-22_en.pdf", "failures.csv"]
        assert client.delete("/api/v1/reports/cache/S1", headers=h).json()["version"] == "1"
        assert client.delete("/api/v1/reports/cache", headers=h).json()["version"] == "1"
        stats = client.get("/api/v1/reports/cache/stats", headers=h).json()
        assert stats["backend"] == "memory"
        r = client.post(
            "/api/v1/reports/student-performance", json={"student_id": "S404"}, headers=h
        )
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
        r = client.post(
            "/api/v1/reports/student-performance",
            json={"student_id": "S1", "date_to": "soon"},
            headers=h,
        )
        assert r.status_code == 400
        assert r.json()["details"][0]["field"] == "date_to"


def test_semester_report_in_a_language(reports_app: App) -> None:
    """The at-risk reasons in words of the asked language, each its own cache entry; an
    unknown language is INVALID_ARGUMENT naming the field."""
    with gateway_for(reports_app, ["reports"]) as client:
        h = bearer(reports_app, "viewer")
        en = client.get("/api/v1/reports/semesters/2026-fall", headers=h).json()["report"]
        el = client.get("/api/v1/reports/semesters/2026-fall?language=el", headers=h).json()
        assert en["at_risk"][0]["reason_texts"] == ["falling trend -1 points/week ≤ -0.25"]
        assert el["report"]["at_risk"][0]["reason_texts"] == [
            "πτωτική τάση -1 μονάδες/εβδομάδα ≤ -0.25"
        ]
        assert el["cached"] is False and el["report"]["language"] == "el"
        r = client.get("/api/v1/reports/semesters/2026-fall?language=fr", headers=h)
        assert r.status_code == 400 and r.json()["details"][0]["field"] == "language"
        r = client.get("/api/v1/reports/semesters/2026-fall/download?language=el", headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"


def test_student_report_in_a_language(reports_app: App) -> None:
    with gateway_for(reports_app, ["reports"]) as client:
        h = bearer(reports_app, "viewer")
        url = "/api/v1/reports/student-performance"
        el = client.post(url, json={"student_id": "S6", "language": "el"}, headers=h).json()
        assert el["report"]["language"] == "el" and el["report"]["note"].startswith("Δεν υπάρχουν")
        en = client.post(url, json={"student_id": "S6"}, headers=h).json()
        assert en["report"]["note"].startswith("No grades") and en["cached"] is False
        r = client.post(url, json={"student_id": "S1", "language": "xx"}, headers=h)
        assert r.status_code == 400 and r.json()["details"][0]["field"] == "language"
        r = client.post(f"{url}/download", json={"student_id": "S1", "language": "xx"}, headers=h)
        assert r.status_code == 400 and r.json()["details"][0]["field"] == "report.language"
        r = client.post(f"{url}/download", json={"student_id": "S1", "language": "el"}, headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
