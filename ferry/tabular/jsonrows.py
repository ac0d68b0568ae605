"""JSON: `{"meta": {...}, "rows": [{...}, ...]}`, streamed a batch of rows at a time.

`meta` holds the title, filters, generation time (UTC) and the columns (name, label, kind),
so a consumer knows what it got without a second call. Each row is an object keyed by
column name, in column order, serialised by orjson: dates "2026-09-01", timestamps
ISO-8601 UTC with a `Z`, null for empty. JSON has no formulas, so nothing is neutralised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any

import orjson

from ferry.datasets.spec import Kind
from ferry.tabular.base import ReadLimits, Table
from ferry.tabular.cells import batches, utc

_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS


def _to_utc(row: Sequence[Any], ts_cols: list[int]) -> Sequence[Any]:
    cells = list(row)
    for i in ts_cols:
        if cells[i] is not None:
            cells[i] = utc(cells[i])
    return cells


def _default(value: Any) -> Any:
    # Decimal (PostgreSQL NUMERIC) and anything else orjson does not know.
    return str(value)


class JsonFormat:
    name = "json"
    extension = "json"
    content_type = "application/json"
    # Its cells tell null from "" (a csv or xlsx cell cannot): ImportEntities keeps both.
    typed_cells = True

    def __init__(self, app: Any = None) -> None:
        """Built as `factory(app)`; it takes no settings from the app."""

    def write(
        self,
        out: IO[bytes],
        table: Table,
        rows: Iterable[Sequence[Any]],
        progress: Callable[[int], object] | None = None,
    ) -> int:
        """Write the document to `out`; returns the number of rows written."""
        meta = {
            "title": table.title,
            "filters": dict(table.filters),
            "generated_at": utc(table.generated_at),
            "columns": [
                {"name": c.name, "label": c.label, "kind": str(c.kind)} for c in table.columns
            ],
        }
        out.write(b'{"meta":' + orjson.dumps(meta, option=_OPTS) + b',"rows":[')
        names = [c.name for c in table.columns]
        dumps = orjson.dumps
        n = 0
        # orjson keeps a timestamp's own offset; the document promises UTC.
        ts_cols = [i for i, c in enumerate(table.columns) if c.kind is Kind.TIMESTAMP]
        for batch in batches(rows):
            if ts_cols:
                batch = [_to_utc(row, ts_cols) for row in batch]
            parts = [
                dumps(dict(zip(names, row, strict=True)), default=_default, option=_OPTS)
                for row in batch
            ]
            out.write((b",\n" if n else b"\n") + b",\n".join(parts))
            n += len(batch)
            if progress is not None:
                progress(n)
        out.write(b"\n]}\n")
        return n

    def read(self, src: IO[bytes], limits: ReadLimits) -> Iterator[dict[str, Any]]:
        """The rows of a document this format wrote, for ImportEntities (values keep their
        json types; see ferry.tabular.jsonrows_read)."""
        from ferry.tabular.jsonrows_read import read_json_rows

        return read_json_rows(src, limits)
