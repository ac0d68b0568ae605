"""OneRoster zip -> Ferry through the merge engine (the `oneroster` bundle format): the
mapping checked with plain SQL, and what every bundle import promises (dry run, replace,
delta deletions, idempotency, undo, nothing changed on a refused package)."""

from __future__ import annotations

import io
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry import plugins
from ferry.bundle.formats.base import BundleLimits
from ferry.datasets.school import SCHOOL
from ferry.errors import InvalidArgument
from ferry.merge import ImportOutcome, MergeOptions, run_import, undo_import
from tests.conftest import engine_for
from tests.oneroster.corpus import CLEAN, T, package, replace_row

pytestmark = pytest.mark.postgres


@pytest.fixture
def engine(empty_url: str) -> Any:
    e = engine_for(empty_url)
    yield e
    e.dispose()


def run(engine: Engine, data: bytes, **options: Any) -> ImportOutcome:
    fmt = plugins.load("ferry.bundle_formats", "oneroster")()
    return run_import(
        engine,
        SCHOOL,
        fmt.read(io.BytesIO(data), BundleLimits()),
        MergeOptions(bundle_format="oneroster", **options),
        requested_by="tester",
        source_sha256=options.get("idempotency_key", "") or "sha",
    )


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def table_counts(engine: Engine) -> dict[str, int]:
    return {
        t: rows(engine, f"SELECT count(*) FROM {t}")[0][0]
        for t in ("courses", "students", "enrollments", "grades")
    }


def test_a_hand_written_package_lands_on_the_dataset(engine: Engine) -> None:
    out = run(engine, package())
    assert out.status == "completed", out.error_message
    assert rows(engine, "SELECT course_code, semester, title, teacher, deleted_at FROM courses "
                        "ORDER BY course_code") == [
        ("HIST-A-2026F", "2026-fall", "History A", "", None),
        ("MATH-A-2026F", "2026-fall", "Mathematics A", "Maria Kosta", None),
    ]  # fmt: skip
    assert rows(engine, "SELECT student_id, first_name, last_name, email, "
                        "CAST(date_of_birth AS VARCHAR(10)), year_level, status "
                        "FROM students ORDER BY student_id") == [
        ("S1001", "Eleni", "Papadaki", "eleni@example.org", "2010-04-02", 10, "active"),
        ("S1002", "Nikos", "Georgiou", "nikos@example.org", None, 11, "inactive"),
    ]  # fmt: skip
    assert rows(engine, "SELECT s.student_id, c.course_code, CAST(e.enrolled_on AS VARCHAR(10)) "
                        "FROM enrollments e JOIN students s ON s.id = e.student_ref "
                        "JOIN courses c ON c.id = e.course_ref "
                        "ORDER BY s.student_id, c.course_code") == [
        ("S1001", "HIST-A-2026F", None),
        ("S1001", "MATH-A-2026F", "2026-09-01"),
        ("S1002", "MATH-A-2026F", "2026-09-03"),
    ]  # fmt: skip
    assert rows(engine, "SELECT s.student_id, c.course_code, g.assessment, g.score, g.max_score, "
                        "g.weight, CAST(g.graded_on AS VARCHAR(10)), g.comment FROM grades g "
                        "JOIN enrollments e ON e.id = g.enrollment_ref "
                        "JOIN students s ON s.id = e.student_ref "
                        "JOIN courses c ON c.id = e.course_ref "
                        "ORDER BY s.student_id, c.course_code") == [
        ("S1001", "HIST-A-2026F", "Essay 1", 88.0, 100.0, 0.4, "2026-10-09", None),
        ("S1001", "MATH-A-2026F", "Midterm", 17.5, 20.0, 0.6, "2026-10-21", "Well done"),
        ("S1002", "MATH-A-2026F", "Midterm", 12.0, 20.0, 0.6, "2026-10-21", None),
    ]  # fmt: skip
    # The loss report is in the result: the guardian, the sessions that are no semester,
    # the columns Ferry has no place for.
    lost = {(w.kind, w.entity, w.field): w for w in out.warnings}
    assert lost[("not_imported", "users", "")].sample == ["u-g1 (guardian)"]
    assert lost[("not_imported", "academicSessions", "")].count == 2
    assert lost[("not_imported", "users", "phone")].count == 1
    assert lost[("not_imported", "demographics", "sex")].count == 1


BAD_ROWS = {
    **replace_row("users.csv", f"u-s2,active,{T}", f"u-s2,,{T}"),
    **replace_row("results.csv", "fully graded,88,", "fully graded,eighty-eight,"),
}


def test_refused_rows_fail_the_import_by_default_and_change_nothing(engine: Engine) -> None:
    run(engine, package())
    before = table_counts(engine)
    out = run(engine, package(BAD_ROWS, modes={"users": "delta"}))
    assert out.status == "failed"
    assert out.error_message == f"{out.total_errors} invalid record(s); nothing was imported"
    reasons = [e.reason for e in out.errors]
    assert reasons[:2] == [
        "row 3 of users.csv: `status` must be active or tobedeleted, got ''",
        "row 4 of results.csv: `score` must be a finite number, got 'eighty-eight'",
    ]
    # and what stood on the refused student: its role, enrollment and result
    assert {(e.entity, e.position) for e in out.errors[2:]} == {
        ("roles.csv", 3), ("enrollments.csv", 3), ("results.csv", 3),
    }  # fmt: skip
    assert (out.errors[0].entity, out.errors[0].natural_key, out.errors[0].field) == (
        "users.csv", "u-s2", "status",
    )  # fmt: skip
    assert table_counts(engine) == before


def test_skip_invalid_imports_the_rest_and_names_every_refusal(engine: Engine) -> None:
    out = run(engine, package(BAD_ROWS, modes={"users": "delta"}), on_error="skip_invalid")
    assert out.status == "completed" and out.total_errors == 5
    assert not out.has_rejected_file  # the merge itself refused nothing
    assert rows(engine, "SELECT student_id FROM students") == [("S1001",)]
    assert rows(engine, "SELECT count(*), min(score), max(score) FROM grades") == [(1, 17.5, 17.5)]


def test_a_broken_file_refuses_the_package_whole(engine: Engine) -> None:
    run(engine, package())
    before = table_counts(engine)
    no_title = {
        "categories.csv": f"sourcedId,status,dateLastModified,weight\ncat-exam,active,{T},0.6\n"
    }
    with pytest.raises(InvalidArgument) as e:
        run(engine, package(no_title), on_error="skip_invalid")
    assert "nothing was imported: 1 problem(s): row 1 of categories.csv: required column " in (
        e.value.message
    )
    assert e.value.field == "categories.csv:1:title"
    with pytest.raises(InvalidArgument, match="not a zip file"):
        run(engine, b"PK\x03\x04 not really")
    assert table_counts(engine) == before


def test_warnings_do_not_stop_an_import(engine: Engine) -> None:
    files = {"orgs.csv": CLEAN["orgs.csv"].replace("identifier", "identifer")}
    out = run(engine, package(files))
    assert out.status == "completed"
    (w,) = [w for w in out.warnings if w.kind == "oneroster_unknown_column"]
    assert (w.entity, w.field) == ("orgs.csv", "identifer")
    assert "did you mean `identifier`?" in w.message


def test_dry_run_idempotency_and_undo(engine: Engine) -> None:
    data = package()
    dry = run(engine, data, dry_run=True)
    assert dry.status == "dry_run"
    assert {s.entity: s.created for s in dry.summaries if s.created} == {
        "courses": 2, "students": 2, "enrollments": 3, "grades": 3,
    }  # fmt: skip
    assert table_counts(engine) == {"courses": 0, "students": 0, "enrollments": 0, "grades": 0}
    first = run(engine, data, idempotency_key="k1")
    assert first.status == "completed"
    again = run(engine, data, idempotency_key="k1")
    assert again.id == first.id  # the same key and file: the first result
    second = run(engine, data)  # a new run of the same file changes nothing
    assert all(s.created == s.updated == 0 for s in second.summaries)
    assert {s.entity: s.unchanged for s in second.summaries}["grades"] == 3
    undo_import(engine, SCHOOL, second.id)
    undo_import(engine, SCHOOL, first.id)
    assert rows(engine, "SELECT count(*) FROM courses WHERE deleted_at IS NULL") == [(0,)]


def test_tobedeleted_rows_in_a_delta_are_soft_deletes(engine: Engine) -> None:
    run(engine, package())
    later = "2026-11-01T09:00:00.000Z"
    delta = replace_row("enrollments.csv", f"e-2,active,{T}", f"e-2,tobedeleted,{later}")
    all_delta = {t.removesuffix(".csv"): "delta" for t in CLEAN}
    out = run(engine, package(delta, modes=all_delta))
    assert out.status == "completed", out.error_message
    assert {s.entity: s.deleted for s in out.summaries}["enrollments"] == 1
    deleted = rows(
        engine,
        "SELECT s.student_id FROM enrollments e JOIN students s "
        "ON s.id = e.student_ref WHERE e.deleted_at IS NOT NULL",
    )
    assert deleted == [("S1002",)]
    # replace cannot take a delta (it would delete everything the delta lacks)
    with pytest.raises(InvalidArgument, match="replace cannot take a delta"):
        run(engine, package(delta, modes=all_delta), strategy="replace")


def test_a_bulk_package_with_replace_removes_what_it_no_longer_holds(engine: Engine) -> None:
    run(engine, package())

    def without(file: str, word: str) -> str:
        return "\n".join(x for x in CLEAN[file].splitlines() if word not in x) + "\n"

    without_history = {
        "classes.csv": without("classes.csv", "k-hist"),
        "enrollments.csv": without("enrollments.csv", "k-hist"),
        "lineItems.csv": without("lineItems.csv", "k-hist"),
        "results.csv": without("results.csv", "li-2"),
    }
    out = run(engine, package(without_history), strategy="replace")
    assert out.status == "completed", out.error_message
    assert rows(engine, "SELECT course_code FROM courses WHERE deleted_at IS NOT NULL") == [
        ("HIST-A-2026F",)
    ]
