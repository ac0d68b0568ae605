from __future__ import annotations

import io

import orjson

from ferry import plugins
from ferry.tabular.base import Table
from ferry.tabular.jsonrows import JsonFormat
from tests.tabular.conftest import student_rows


def test_json_is_loaded_by_name_from_the_plugin_registry() -> None:
    assert plugins.load("ferry.formats", "json") is JsonFormat


def test_json_document_has_meta_and_one_object_per_row(table: Table) -> None:
    out = io.BytesIO()
    assert JsonFormat().write(out, table, student_rows(6_001)) == 6_001
    doc = orjson.loads(out.getvalue())
    assert doc["meta"]["title"] == "Students"
    assert doc["meta"]["filters"] == {"status": "active"}
    assert doc["meta"]["generated_at"] == "2026-09-01T08:30:00Z"
    assert [c["name"] for c in doc["meta"]["columns"]] == [c.name for c in table.columns]
    assert len(doc["rows"]) == 6_001
    assert doc["rows"][1] == {
        "student_id": "S000001",
        "last_name": "Παπαδοπούλου",
        "year_level": 2,
        "score": -0.5,
        "date_of_birth": "2008-01-02",
        "updated_at": "2026-09-01T08:30:00Z",
    }
    # JSON has no formulas: text is written as it is.
    assert doc["rows"][0]["last_name"] == '=HYPERLINK("x")'


def test_json_of_an_empty_table_has_an_empty_rows_array(table: Table) -> None:
    out = io.BytesIO()
    JsonFormat().write(out, table, [])
    assert orjson.loads(out.getvalue())["rows"] == []
