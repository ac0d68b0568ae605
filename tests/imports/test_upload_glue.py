"""The import glue that needs no database: spooling, format detection, typed streams,
csv/xlsx rows -> records."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ferry.bundle.stream import batch_digest
from ferry.datasets.school import SCHOOL
from ferry.errors import DataLoss, InvalidArgument, ResourceExhausted
from ferry.imports.detect import format_from_filename, tabular_reader
from ferry.imports.spool import FileUpload, Spool
from ferry.imports.tabular import field_kinds, find_entity, row_batches
from ferry.imports.typed import TypedUpload, replay
from ferry.v1 import bundle_pb2 as pb


def test_spool_refuses_the_chunk_that_passes_the_limit_and_keeps_nothing_of_it(
    tmp_path: Path,
) -> None:
    with Spool(10, tmp_path / "spool") as spool:
        spool.write(b"12345")
        with pytest.raises(ResourceExhausted, match="limit of 10 bytes"):
            spool.write(b"678901")
        assert spool.rewind().read() == b"12345"
    # The spool file is anonymous: nothing is left in its folder.
    assert list((tmp_path / "spool").iterdir()) == []


def test_file_upload_checks_offsets_and_the_senders_sha256(tmp_path: Path) -> None:
    with Spool(1000, tmp_path) as spool:
        up = FileUpload(spool)
        up.add(b"abc", 0, "x.json")
        with pytest.raises(InvalidArgument, match="offset is 7"):
            up.add(b"def", 7)
        up.add(b"def", 3, sha256=hashlib.sha256(b"abcdef").hexdigest())
        assert up.finish() == hashlib.sha256(b"abcdef").hexdigest()
        assert up.filename == "x.json"
    with Spool(1000, tmp_path) as spool:
        up = FileUpload(spool)
        up.add(b"abc", 0, sha256="00" * 32)
        with pytest.raises(DataLoss, match="damaged"):
            up.finish()


def test_format_is_the_longest_known_extension_of_the_filename() -> None:
    known = ["json", "jsonl", "xlsx", "tar.gz", "gz"]
    assert format_from_filename("Fall.TAR.GZ", known) == "tar.gz"
    assert format_from_filename("a.jsonl", known) == "jsonl"
    assert format_from_filename("a.txt", known) == ""


def test_tabular_reader_names_readable_formats_for_unknown_ones() -> None:
    with pytest.raises(InvalidArgument, match="csv, xlsx or json"):
        tabular_reader("", "students.txt")
    with pytest.raises(InvalidArgument, match="readable formats: csv, xlsx, json"):
        tabular_reader("pdf", "students.pdf")


def _chunks() -> list[pb.BundleChunk]:
    header = pb.BundleChunk()
    header.header.metadata.semester = "2026-fall"
    a = pb.BundleChunk()
    a.records.courses.add(course_code="C1", title="One")
    b = pb.BundleChunk()
    b.records.students.add(student_id="S1")
    b.records.students.add(student_id="S2")
    trailer = pb.BundleChunk()
    trailer.trailer.counts.update({"courses": 1, "students": 2, "grades": 0})
    trailer.trailer.sha256 = batch_digest(iter([a.records, b.records]))
    trailer.trailer.total_records = 3
    return [header, a, b, trailer]


def test_typed_stream_is_verified_then_replayed_unchanged(tmp_path: Path) -> None:
    chunks = _chunks()
    with Spool(10_000, tmp_path) as spool:
        up = TypedUpload(spool)
        for c in chunks:
            up.add(c)
        assert up.finish() == chunks[-1].trailer.sha256
        assert list(replay(spool.rewind())) == chunks


def test_typed_stream_with_a_changed_record_is_data_loss(tmp_path: Path) -> None:
    chunks = _chunks()
    chunks[2].records.students[1].student_id = "S3"
    with Spool(10_000, tmp_path) as spool:
        up = TypedUpload(spool)
        for c in chunks:
            up.add(c)
        with pytest.raises(DataLoss, match="trailer says"):
            up.finish()


def test_typed_stream_out_of_order_or_truncated_is_invalid(tmp_path: Path) -> None:
    chunks = _chunks()
    with Spool(10_000, tmp_path) as spool:
        with pytest.raises(InvalidArgument, match="first bundle_chunk must be the header"):
            TypedUpload(spool).add(chunks[1])
        up = TypedUpload(spool)
        for c in chunks[:-1]:
            up.add(c)
        with pytest.raises(InvalidArgument, match="without a trailer"):
            up.finish()


def test_typed_stream_over_the_limit_is_resource_exhausted(tmp_path: Path) -> None:
    with Spool(30, tmp_path) as spool, pytest.raises(ResourceExhausted):
        up = TypedUpload(spool)
        for c in _chunks():
            up.add(c)


def test_rows_map_case_insensitive_headers_and_column_mapping_to_fields() -> None:
    students = find_entity(SCHOOL, "Students")
    rows = [
        {"STUDENT_ID": "S1", "First Name": "Ada", "Surname": "L", "date_of_birth": ""},
        {"STUDENT_ID": "S2", "First Name": "Bo", "Surname": "K", "date_of_birth": "2001-02-03"},
    ]
    batches = list(row_batches(students, rows, {"Surname": "last_name"}, batch_size=1))
    assert [b.entity for b in batches] == ["students", "students"]
    assert batches[0].records == [
        {"student_id": "S1", "first_name": "Ada", "last_name": "L", "date_of_birth": None}
    ]
    assert batches[1].records[0]["date_of_birth"] == "2001-02-03"


def test_unknown_column_is_named_with_the_known_fields() -> None:
    students = find_entity(SCHOOL, "students")
    with pytest.raises(InvalidArgument) as e:
        list(row_batches(students, [{"student_id": "S1", "shoe size": "42"}], {}, 10))
    assert "'shoe size'" in e.value.message and "first_name" in e.value.message


def test_mapping_a_column_the_file_lacks_or_two_columns_to_one_field_is_invalid() -> None:
    students = find_entity(SCHOOL, "students")
    with pytest.raises(InvalidArgument, match="does not have"):
        list(row_batches(students, [{"student_id": "S1"}], {"Nachname": "last_name"}, 10))
    with pytest.raises(InvalidArgument, match="both give"):
        list(row_batches(students, [{"student_id": "S1", "ID": "S1"}], {"ID": "student_id"}, 10))


def test_enrollment_rows_take_reference_fields_and_timestamps_parse() -> None:
    enrollments = find_entity(SCHOOL, "enrollments")
    assert {"student_id", "course_code", "enrolled_on"} <= set(field_kinds(enrollments))
    rows = [{"student_id": "S1", "course_code": "C1", "created_at": "2026-01-02T03:04:05Z"}]
    (batch,) = row_batches(enrollments, rows, {}, 10)
    assert batch.records[0]["created_at"].isoformat() == "2026-01-02T03:04:05+00:00"
    with pytest.raises(InvalidArgument, match="row 2, column 'created_at'"):
        list(row_batches(enrollments, [{"student_id": "S1", "created_at": "soon"}], {}, 10))


def test_unknown_entity_lists_the_known_ones() -> None:
    with pytest.raises(InvalidArgument, match="known: courses, students"):
        find_entity(SCHOOL, "teachers")
