"""ImportEntities, GetImport/ListImports, UndoImport, idempotency and DownloadRejected
through a real server on both backends."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Callable
from typing import Any

import grpc
import openpyxl
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.bundle.formats.base import Batch
from ferry.db.engine import make_engine
from ferry.v1 import import_pb2
from tests.imports.helpers import (
    counts,
    download,
    edit_first,
    entity_requests,
    fingerprint,
    import_file,
    rewrite,
    seed_small,
    serving,
    summary,
)

STUDENTS_CSV = (
    "Student_ID,FIRST NAME,Last Name,E-mail,Date of Birth,Jahrgang,status\n"
    "S90001,Ada,Lovelace,ada@example.org,2009-12-10,10,active\n"
    "S90002,Bob,Byte,bob@example.org,,11,active\n"
)
MAPPING = {"E-mail": "email", "Jahrgang": "year_level"}


def test_csv_with_other_headers_and_a_mapping_creates_students_and_undo_removes_them(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    before = fingerprint(empty_url)
    with serving(make_app(empty_url)) as stubs:
        requests = entity_requests(
            STUDENTS_CSV.encode(), "new.csv", entity="students", column_mapping=MAPPING
        )
        result = stubs.imports.ImportEntities(requests, metadata=stubs.md).result
        assert result.status == import_pb2.IMPORT_STATUS_COMPLETED
        assert result.entity == "students" and result.options.bundle_format == "csv"
        assert summary(result) == {"students": {"created": 2}}
        undo = stubs.imports.UndoImport(
            import_pb2.UndoImportRequest(import_id=result.id), metadata=stubs.md
        ).result
    assert undo.status == import_pb2.IMPORT_STATUS_UNDONE
    assert fingerprint(empty_url) == before


def test_a_bad_date_names_row_and_column_and_the_failed_import_is_recorded(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    bad = STUDENTS_CSV.replace(",,11,", ",2009-13-45,11,")
    with serving(make_app(empty_url)) as stubs:
        before = fingerprint(empty_url)
        requests = entity_requests(
            bad.encode(), "bad.csv", entity="students", column_mapping=MAPPING
        )
        with pytest.raises(grpc.RpcError) as e:
            stubs.imports.ImportEntities(requests, metadata=stubs.md)
        listed = stubs.imports.ListImports(import_pb2.ListImportsRequest(), metadata=stubs.md)
    details = e.value.details() or ""
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "row 3, column 'Date of Birth'" in details and "S90002" in details
    assert fingerprint(empty_url) == before
    (failed,) = listed.imports
    assert failed.status == import_pb2.IMPORT_STATUS_FAILED and failed.id in details
    assert failed.total_errors == 1 and failed.errors[0].field == "date_of_birth"


def test_unknown_column_is_invalid_argument_listing_the_fields(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    with serving(make_app(empty_url)) as stubs:
        requests = entity_requests(b"student_id,shoe_size\nS1,42\n", "x.csv", entity="students")
        with pytest.raises(grpc.RpcError) as e:
            stubs.imports.ImportEntities(requests, metadata=stubs.md)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'shoe_size'" in (e.value.details() or "")
    assert "first_name" in (e.value.details() or "")


def test_same_idempotency_key_returns_the_first_result_and_a_new_payload_is_refused(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
        first = import_file(stubs, data, "a.json", idempotency_key="k1")
        again = import_file(stubs, data, "a.json", idempotency_key="k1")
        other = rewrite(data, _drop_one_highlight())
        with pytest.raises(grpc.RpcError) as e:
            import_file(stubs, other, "a.json", idempotency_key="k1")
        listed = stubs.imports.ListImports(import_pb2.ListImportsRequest(), metadata=stubs.md)
    assert again.id == first.id
    assert first.source_sha256 == hashlib.sha256(data).hexdigest()
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert [r.id for r in listed.imports] == [first.id]


def _drop_one_highlight() -> Callable[[Batch], None]:
    done: list[bool] = []

    def edit(batch: Batch) -> None:
        if batch.entity == "highlights" and batch.records and not done:
            batch.records.pop()
            done.append(True)

    return edit


def test_undo_of_an_update_restores_the_old_values(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
        before = fingerprint(empty_url)
        edited = rewrite(data, _retitle_courses)
        result = import_file(stubs, edited, "edited.json")
        assert summary(result)["courses"]["updated"] > 0
        assert fingerprint(empty_url) != before
        got = stubs.imports.GetImport(
            import_pb2.GetImportRequest(import_id=result.id), metadata=stubs.md
        ).result
        assert got == result
        stubs.imports.UndoImport(
            import_pb2.UndoImportRequest(import_id=result.id), metadata=stubs.md
        )
        with pytest.raises(grpc.RpcError) as e:
            stubs.imports.GetImport(
                import_pb2.GetImportRequest(import_id="nope"), metadata=stubs.md
            )
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert fingerprint(empty_url) == before


def _retitle_courses(batch: Batch) -> None:
    if batch.entity == "courses":
        for r in batch.records:
            r["title"] = r["title"] + " (new)"


def test_rejected_records_of_a_skip_invalid_run_download_as_a_bundle(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
        edited = rewrite(data, edit_first("grades", _no_such_course))
        result = import_file(
            stubs, edited, "b.json", on_error=import_pb2.ON_ERROR_SKIP_INVALID, dry_run=False
        )
        assert result.status == import_pb2.IMPORT_STATUS_COMPLETED
        assert result.total_errors == 1 and result.has_rejected_file
        pieces = list(
            stubs.imports.DownloadRejected(
                import_pb2.DownloadRejectedRequest(import_id=result.id), metadata=stubs.md
            )
        )
    body = b"".join(p.chunk.data for p in pieces)
    assert pieces[0].chunk.filename.endswith(".json")
    assert pieces[-1].chunk.sha256 == hashlib.sha256(body).hexdigest()
    assert b"NO-SUCH-COURSE" in body
    assert counts(empty_url)["grades"] > 0


def _no_such_course(record: dict[str, Any]) -> None:
    # A parent that exists nowhere: the reader accepts it, the merge engine rejects it.
    record["course_code"] = "NO-SUCH-COURSE"


def test_xlsx_rows_import_with_real_dates_and_neutralised_formulas_restored(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(
        ["student_id", "First name", "Last name", "Email", "Date of birth", "Year level", "Status"]
    )
    sheet.append(["S91000", "'=Eve", "Smith", "eve@example.org", dt.date(2010, 5, 6), 9, "active"])
    buf = io.BytesIO()
    book.save(buf)
    with serving(make_app(empty_url)) as stubs:
        requests = entity_requests(buf.getvalue(), "students.xlsx", entity="students")
        result = stubs.imports.ImportEntities(requests, metadata=stubs.md).result
    assert summary(result) == {"students": {"created": 1}}
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT first_name, date_of_birth FROM students WHERE student_id = 'S91000'")
        ).one()
    engine.dispose()
    assert row[0] == "=Eve" and str(row[1]).startswith("2010-05-06")
