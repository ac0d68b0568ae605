"""Rows of a json entity export (`{"meta": {...}, "rows": [{...}, ...]}`, what
ferry.tabular.json writes) for ImportEntities.

Values keep their json types: text, numbers and null as written (the merge engine checks
them per field, naming row and field), so an empty text and a null stay apart. Rows are
numbered as the csv and xlsx readers number them (the first row is row 2), so errors read
the same for every format. The document is parsed whole, within the upload's byte limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO, Any

import orjson

from ferry.errors import InvalidArgument, ResourceExhausted
from ferry.tabular.base import ReadLimits
from ferry.tabular.limits import CappedReader

_SCALARS = (str, int, float, type(None))


def read_json_rows(src: IO[bytes], limits: ReadLimits) -> Iterator[dict[str, Any]]:
    """The document's rows as {column: value}; InvalidArgument for anything that is not
    such a document (naming the row), ResourceExhausted past max_rows or max_bytes."""
    data = CappedReader(src, limits.max_bytes).readall()
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise InvalidArgument(f"not a json document: {e}", field="file") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise InvalidArgument(
            'a json entity file is an object with a "rows" list (as Ferry exports it)',
            field="rows",
        )
    rows: list[Any] = doc["rows"]
    if len(rows) > limits.max_rows:
        raise ResourceExhausted(
            f"file has more than {limits.max_rows:,} rows", field=f"row {limits.max_rows + 2}"
        )
    columns: set[str] | None = None
    for i, row in enumerate(rows, start=2):
        if not isinstance(row, dict):
            raise InvalidArgument(f"row {i}: not an object", field=f"row {i}")
        if columns is None:
            columns = set(row)
        elif set(row) - columns:
            extra = ", ".join(sorted(set(row) - columns))
            raise InvalidArgument(
                f"row {i}: columns the first row lacks: {extra}", field=f"row {i}"
            )
        for key, value in row.items():
            if not isinstance(value, _SCALARS) or isinstance(value, bool):
                raise InvalidArgument(
                    f"row {i}, column {key!r}: expected text, a number or null, "
                    f"got {type(value).__name__}",
                    field=f"row {i} column {key}",
                )
            if isinstance(value, str) and len(value) > limits.max_cell_chars:
                raise InvalidArgument(
                    f"row {i}, column {key!r}: longer than {limits.max_cell_chars:,} characters",
                    field=f"row {i} column {key}",
                )
        yield row
