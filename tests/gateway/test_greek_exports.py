"""Issue 24, one language per person: an entity export asked from a Greek page (its
`Accept-Language`, or the request's `language`) has Greek headers in csv, xlsx and pdf, the
pdf's numbers and dates written as Greek writes them (Babel), its file name carries the
semester and the language, and it imports back. A refused request carries a machine reason
(google.rpc.ErrorInfo) the page translates, never only English text.

On the code before this issue the headers were field names or English labels whatever the
page's language, and an error body had no reason."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import openpyxl
import pypdf
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ferry.app import App
from ferry.datasets.school import SCHOOL
from ferry.imports.tabular import RowMapper
from ferry.tabular import labels
from ferry.v1 import export_pb2 as pb
from ferry.v1 import export_pb2_grpc
from gateway.language import accepted
from tests.conftest import running, token
from tests.gateway.conftest import bearer, seed_small

Gateway = Callable[..., Any]


def _events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((fields.get("event", "message"), json.loads(fields["data"])))
    return out


ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "pdf"


def _save_png(data: bytes, name: str) -> None:
    """The first page as a PNG in test-artifacts/pdf/."""
    import pypdfium2

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    doc = pypdfium2.PdfDocument(data)
    doc[0].render(scale=1.5).to_pil().save(ARTIFACTS / f"{name}-p1.png")
    doc.close()


def _export(client: Any, h: dict[str, str], body: dict[str, Any]) -> tuple[dict[str, Any], bytes]:
    r = client.post("/api/v1/exports", headers=h, json=body)
    assert r.status_code == 200, r.text
    job_id = r.json()["job"]["id"]
    events = _events(client.get(f"/api/v1/exports/{job_id}/events", headers=h).text)
    job = events[-2][1]["job"]
    assert job["status"] == "EXPORT_JOB_STATUS_COMPLETED", job
    data = client.get(f"/api/v1/exports/{job_id}/download", headers=h)
    assert data.status_code == 200
    assert job["filename"] in data.headers["content-disposition"]
    return dict(job), data.content


def test_greek_page_gets_greek_headers_in_csv_xlsx_and_pdf(
    gateway: Gateway, empty_url: str
) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    greek = {**bearer(app, "operator"), "Accept-Language": "el-GR,el;q=0.9,en;q=0.5"}
    body = {"export_type": "grades", "format": "csv", "filters": {"semester": "2026-fall"}}

    job, data = _export(client, greek, body)
    assert job["language"] == "el"
    assert job["filename"] == "grades_2026-fall_el.csv"
    header = next(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert header[:3] == ["Αριθμός μητρώου", "Κωδικός μαθήματος", "Αξιολόγηση"]
    assert "Βαθμός" in header and "student_id" not in header

    # The Greek file imports back: every Greek header is read as its field.
    grades = SCHOOL.entity("grades")
    mapped = dict(RowMapper(grades, header, {}).columns)
    assert mapped["Αριθμός μητρώου"] == "student_id" and mapped["Βαθμός"] == "score"

    # The request's own language wins over the header; no language keeps field names.
    job, data = _export(client, greek, {**body, "language": "en"})
    assert job["filename"] == "grades_2026-fall_en.csv"
    assert next(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[0] == "Student ID"
    job, data = _export(client, bearer(app, "operator"), {**body, "filters": {}})
    assert job["filename"] == "grades_all.csv" and job["language"] == ""
    assert next(csv.reader(io.StringIO(data.decode("utf-8-sig"))))[0] == "student_id"

    job, data = _export(client, greek, {**body, "format": "xlsx"})
    assert job["filename"] == "grades_2026-fall_el.xlsx"
    sheet = openpyxl.load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    first = [c.value for c in next(sheet.iter_rows(max_row=1))]
    assert first[0] == "Αριθμός μητρώου" and "Βαθμός" in first
    assert sheet.title == "Βαθμοί"

    job, data = _export(client, greek, {**body, "format": "pdf", "limit": 40})
    _save_png(data, "grades-2026-fall-el")  # for a person to look at
    text = pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()
    assert text.startswith("Βαθμοί")
    assert "Φίλτρα: Εξάμηνο: 2026-fall" in text and "Σελίδα 1 από" in text
    assert "Αριθμός" in text and "Page" not in text and "Filters" not in text


def test_greek_pdf_cells_are_written_by_babel(gateway: Gateway, empty_url: str) -> None:
    """A decimal score reads 69,97 in Greek (69.97 in English) and a date names its
    month in Greek."""
    import datetime as dt

    from ferry.datasets.spec import Kind

    assert labels.cell(69.97, Kind.FLOAT, "el") == "69,97"
    assert labels.cell(69.97, Kind.FLOAT, "en") == "69.97"
    assert labels.cell(1234.5, Kind.FLOAT, "el") == "1.234,5"
    assert labels.cell(dt.date(2026, 9, 30), Kind.DATE, "el") == "30 Σεπ 2026"
    assert labels.cell(dt.date(2026, 9, 30), Kind.DATE, "en") == "Sep 30, 2026"
    seed_small(empty_url)
    client, app = gateway(empty_url)
    greek = {**bearer(app, "operator"), "Accept-Language": "el"}
    _, data = _export(client, greek, {
        "export_type": "grades", "format": "pdf", "limit": 40,
        "fields": ["student_id", "score", "graded_on"],
    })  # fmt: skip
    text = pypdf.PdfReader(io.BytesIO(data)).pages[0].extract_text()
    from babel.dates import get_month_names

    greek_months = get_month_names("abbreviated", locale="el").values()
    assert any(m in text for m in greek_months), text[:400]
    assert any("," in line and line.replace(",", "").isdigit() for line in text.split()), text


def test_accept_language_picks_the_preferred_language_ferry_writes() -> None:
    assert accepted("el") == "el"
    assert accepted("el-GR,el;q=0.9,en;q=0.8") == "el"
    assert accepted("fr-FR,en;q=0.5,el;q=0.7") == "el"
    assert accepted("fr, de") == "" and accepted("") == ""
    assert accepted("en;q=oops, el;q=0.1") == "el"


def test_unknown_language_is_refused_with_its_reason(gateway: Gateway, empty_url: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    r = client.post("/api/v1/exports", headers=bearer(app, "operator"),
                    json={"export_type": "grades", "format": "csv", "language": "fr"})  # fmt: skip
    assert r.status_code == 400
    body = r.json()
    assert body["reason"] == "UNKNOWN_LANGUAGE"
    assert body["metadata"] == {"field": "language", "value": "fr", "known": "en, el"}
    assert body["details"][0]["field"] == "language"


def test_every_refusal_carries_error_info_over_grpc(
    make_app: Callable[..., App], empty_url: str
) -> None:
    """The reason travels as google.rpc.ErrorInfo in the status details: a field refused
    without its own reason is FIELD_INVALID naming the field."""
    seed_small(empty_url)
    app = make_app(empty_url)
    with running(app, ["export"]) as srv:
        ch = grpc.insecure_channel(f"127.0.0.1:{srv.port}")
        md = (("authorization", f"Bearer {token(app, 'operator')}"),)
        stub = export_pb2_grpc.ExportServiceStub(ch)
        for req, reason, meta in (
            (pb.StartExportRequest(export_type="grades", format="csv", language="de"),
             "UNKNOWN_LANGUAGE", {"field": "language", "value": "de"}),
            (pb.StartExportRequest(export_type="grades", format="csv", limit=-1),
             "FIELD_INVALID", {"field": "limit"}),
        ):  # fmt: skip
            with pytest.raises(grpc.RpcError) as e:
                stub.StartExport(req, metadata=md, timeout=10)
            status = rpc_status.from_call(e.value)
            assert status is not None
            infos = []
            for d in status.details:
                info = error_details_pb2.ErrorInfo()
                if d.Unpack(info):
                    infos.append(info)
            assert len(infos) == 1
            assert infos[0].reason == reason and infos[0].domain == "ferry"
            assert meta.items() <= dict(infos[0].metadata).items()
        ch.close()
