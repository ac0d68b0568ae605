"""Reading CSV uploads for ImportEntities: UTF-8 (BOM stripped), RFC 4180, capped.

Errors name the row (1 = the header line's row, data starts at 2, as a spreadsheet
numbers them) and the column, so a user can find the cell.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import IO

from ferry.errors import InvalidArgument, ResourceExhausted
from ferry.tabular.base import ReadLimits
from ferry.tabular.limits import CappedReader
from ferry.tabular.safety import restore

# Bytes that are not UTF-8 decode (surrogateescape) to lone surrogates U+DC80..U+DCFF.
_UNDECODABLE = re.compile("[\udc80-\udcff]")
_DELIMITERS = (",", ";", "\t")


def _delimiter(first_line: str) -> str:
    """`,` unless the header plainly uses `;` (Excel in many locales) or tab."""
    counts = {d: first_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > counts[","] else ","


def _check_utf8(cells: list[str], header: list[str], row: int) -> None:
    for j, cell in enumerate(cells):
        if _UNDECODABLE.search(cell):
            column = header[j] if j < len(header) else f"#{j + 1}"
            raise InvalidArgument(
                f"row {row}, column {column!r}: not valid UTF-8 (save the file as UTF-8)",
                field=f"row {row}",
            )


def read_csv(src: IO[bytes], limits: ReadLimits) -> Iterator[dict[str, str | None]]:
    """Rows as {header: text}, with empty cells as None and neutralisation undone.

    Raises InvalidArgument naming row and column for bad UTF-8, a ragged row, a duplicate
    or empty header, or an oversized cell; ResourceExhausted past max_rows or max_bytes.
    """
    raw = io.BufferedReader(CappedReader(src, limits.max_bytes))
    # utf-8-sig strips a BOM if there is one; surrogateescape lets us name the bad row.
    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="surrogateescape", newline="")
    first = text.readline()
    if not first.strip():
        return
    rest = csv.reader(
        _chain(first, text), delimiter=_delimiter(first), strict=True, doublequote=True
    )
    try:
        header = next(rest)
    except csv.Error as e:
        raise InvalidArgument(f"row 1: malformed CSV header: {e}", field="row 1") from e
    _check_utf8(header, header, 1)
    header = [h.strip() for h in header]
    seen: set[str] = set()
    for j, h in enumerate(header):
        if not h:
            raise InvalidArgument(f"row 1: column {j + 1} has no header", field="row 1")
        if h.lower() in seen:
            raise InvalidArgument(f"row 1: duplicate column {h!r}", field="row 1")
        seen.add(h.lower())
    width = len(header)
    row = 1
    while True:
        try:
            cells = next(rest)
        except StopIteration:
            return
        except csv.Error as e:
            raise InvalidArgument(
                f"row {row + 1}: malformed CSV: {e}", field=f"row {row + 1}"
            ) from e
        row += 1
        if not cells:  # a blank line
            continue
        if row - 1 > limits.max_rows:
            raise ResourceExhausted(
                f"file has more than {limits.max_rows:,} rows", field=f"row {row}"
            )
        _check_utf8(cells, header, row)
        if len(cells) != width:
            raise InvalidArgument(
                f"row {row}: has {len(cells)} cells, the header has {width}", field=f"row {row}"
            )
        out: dict[str, str | None] = {}
        for h, cell in zip(header, cells, strict=True):
            if len(cell) > limits.max_cell_chars:
                raise InvalidArgument(
                    f"row {row}, column {h!r}: longer than {limits.max_cell_chars:,} characters",
                    field=f"row {row}",
                )
            out[h] = restore(cell) if cell else None
        yield out


def _chain(first: str, text: IO[str]) -> Iterator[str]:
    yield first
    yield from text
