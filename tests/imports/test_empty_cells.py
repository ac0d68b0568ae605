"""The empty-cell rule of csv/xlsx entity imports (issue 21; docs/merging.md "An empty cell"):
a present but empty cell is the empty text in a text field, nullable or not, and null in
every other kind; an empty cell in a required number is a record error naming row, column,
record and field, and nothing changes. Through ImportEntities on a real server, on SQLite
and PostgreSQL; the oracle is plain SQL on the rows."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
import xlsxwriter  # type: ignore[import-untyped]
from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from ferry.db.engine import make_engine
from ferry.imports.tabular import EMPTY_CELL_RULE
from ferry.v1 import import_pb2
from tests.imports.helpers import entity_requests, fingerprint, seed_small, serving
from tests.imports.test_import_cli import _env

COLUMNS = ["student_id", "course_code", "assessment", "score", "comment", "graded_on"]


def _csv(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if r[k] is None else r[k] for k in COLUMNS})
    return buf.getvalue().encode()


def _xlsx(rows: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    wb = xlsxwriter.Workbook(out, {"in_memory": True})
    ws = wb.add_worksheet("grades")
    ws.write_row(0, 0, COLUMNS)
    for i, r in enumerate(rows, 1):
        for j, k in enumerate(COLUMNS):
            if r[k] not in (None, ""):  # an empty cell is a cell with nothing written
                ws.write_string(i, j, str(r[k]))
    wb.close()
    return out.getvalue()


WRITERS: dict[str, Callable[[list[dict[str, Any]]], bytes]] = {"csv": _csv, "xlsx": _xlsx}


@pytest.fixture
def seeded(empty_url: str) -> Iterator[str]:
    seed_small(empty_url)
    yield empty_url


def _grades(url: str, n: int) -> list[dict[str, Any]]:
    """`n` live grades that have a comment and a graded_on, as csv rows, with their ids."""
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT g.id, s.student_id, c.course_code, g.assessment, g.score, g.comment, "
                "g.graded_on FROM grades g JOIN enrollments e ON e.id = g.enrollment_ref "
                "JOIN students s ON s.id = e.student_ref JOIN courses c ON c.id = e.course_ref "
                "WHERE g.comment IS NOT NULL AND g.comment <> '' AND g.graded_on IS NOT NULL "
                "AND g.deleted_at IS NULL ORDER BY g.id LIMIT :n"
            ),
            {"n": n},
        ).mappings()
        out = [dict(r) for r in rows]
    engine.dispose()
    assert len(out) == n, "the demo data has grades with a comment and a date"
    for r in out:
        r["graded_on"] = str(r["graded_on"])
    return out


def _stored(url: str, ids: list[int]) -> dict[int, tuple[Any, Any, Any]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT id, score, comment, graded_on FROM grades WHERE id IN :ids").bindparams(
                sa.bindparam("ids", expanding=True)
            ),
            {"ids": ids},
        )
        out = {r[0]: (r[1], r[2], r[3]) for r in rows}
    engine.dispose()
    return out


def _upload(stubs: Any, data: bytes, fmt: str, **options: Any) -> Any:
    return stubs.imports.ImportEntities(
        entity_requests(data, f"grades.{fmt}", entity="grades", **options),
        metadata=stubs.md,
        timeout=60,
    ).result


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_an_empty_cell_is_empty_text_in_a_nullable_text_field_and_null_in_a_date(
    seeded: str, make_app: Callable[..., App], fmt: str
) -> None:
    grades = _grades(seeded, 2)
    cleared, kept = grades
    cleared_row = {**cleared, "comment": None, "graded_on": None}
    data = WRITERS[fmt]([cleared_row, kept])
    with serving(make_app(seeded)) as stubs:
        preview = _upload(stubs, data, fmt, dry_run=True)
        [change] = preview.sample_changes
        shown = {c.field: (c.old_value, c.new_value) for c in change.changes}
        assert shown["comment"] == (cleared["comment"], "")
        assert shown["graded_on"][1] == ""
        result = _upload(stubs, data, fmt)
    assert result.status == import_pb2.IMPORT_STATUS_COMPLETED, result.errors
    after = _stored(seeded, [cleared["id"], kept["id"]])
    # The rule: nullable text -> empty text (not NULL, as it was before issue 21's rule);
    # a date -> NULL. The untouched row keeps both.
    assert after[cleared["id"]][1] == ""
    assert after[cleared["id"]][2] is None
    assert after[kept["id"]][1] == kept["comment"]
    assert str(after[kept["id"]][2]) == kept["graded_on"]


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_an_empty_cell_in_a_required_number_names_row_column_record_and_field(
    seeded: str, make_app: Callable[..., App], fmt: str
) -> None:
    grades = _grades(seeded, 3)
    bad = {**grades[1], "score": None, "comment": "changed"}
    rows = [{**grades[0], "comment": "changed too"}, bad, grades[2]]
    data = WRITERS[fmt](rows)
    before = fingerprint(seeded)
    with serving(make_app(seeded)) as stubs, pytest.raises(grpc.RpcError) as refused:
        _upload(stubs, data, fmt)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = refused.value.details() or ""
    key = f"{bad['student_id']}/{bad['course_code']}/{bad['assessment']}"
    assert "row 3, column 'score': required field is missing" in details, details
    assert key in details, details
    assert fingerprint(seeded) == before  # nothing changed, the good rows neither


def test_the_cli_states_the_rule_in_help_and_after_an_entity_import(
    seeded: str, make_app: Callable[..., App], tmp_path: Any
) -> None:
    runner = CliRunner()
    shown = runner.invoke(cli, ["import", "file", "--help"])
    assert shown.exit_code == 0, shown.output
    words = " ".join(shown.output.split())
    assert "an empty csv/xlsx cell" in words and "becomes empty text" in words
    cleared = {**_grades(seeded, 1)[0], "comment": None}
    path = tmp_path / "grades.csv"
    path.write_bytes(_csv([cleared]))
    app = make_app(seeded)
    with serving(app) as stubs:
        out = runner.invoke(
            cli, ["import", str(path), "--entity", "grades"], env=_env(app, stubs.port)
        )
    assert out.exit_code == 0, out.output
    assert f"empty cells: {EMPTY_CELL_RULE}" in out.output
    assert _stored(seeded, [cleared["id"]])[cleared["id"]][1] == ""
