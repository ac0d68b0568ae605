"""Reading XLSX uploads for ImportEntities, refusing zip bombs and XML bombs.

The zip's central directory is checked first (entries, total uncompressed size, compression
ratio per entry) so a bomb is refused before any XML is parsed. Python's zipfile never
inflates past an entry's declared size, so the checked sizes bound the real work. openpyxl
parses through defusedxml (refusing entity declarations: billion laughs, XXE); reading is
refused outright if defusedxml is not active.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from typing import IO, Any

import defusedxml
import openpyxl
import openpyxl.xml
from openpyxl.utils.exceptions import InvalidFileException

from ferry.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from ferry.tabular.base import ReadLimits
from ferry.tabular.limits import CappedReader
from ferry.tabular.safety import restore

# OOXML escapes characters XML cannot hold (and "_" before such a pattern) as _xHHHH_;
# openpyxl's read-only mode leaves them in place.
_OOXML_ESCAPE = re.compile("_x([0-9A-Fa-f]{4})_")

# Entries this small cannot hold a meaningful bomb; their ratio is not checked.
_RATIO_MIN_BYTES = 1024 * 1024


def check_zip(src: IO[bytes], limits: ReadLimits) -> None:
    """Raise unless `src` is a zip within `limits` (entries, total size, ratio)."""
    check_zip_caps(src, limits.max_zip_entries, limits.max_bytes, limits.max_compression_ratio)


def check_zip_caps(src: IO[bytes], max_entries: int, max_bytes: int, max_ratio: float) -> None:
    """Refuse a zip bomb from its central directory, before any entry is inflated
    (shared by tabular xlsx and xlsx bundles); leaves `src` at its start."""
    try:
        with zipfile.ZipFile(src) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise InvalidArgument(f"not an XLSX file (bad zip: {e})", field="file") from e
    if len(infos) > max_entries:
        raise ResourceExhausted(
            f"XLSX has {len(infos):,} zip entries, more than {max_entries:,}", field="file"
        )
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise ResourceExhausted(
            f"XLSX expands to {total:,} bytes, more than the {max_bytes:,}-byte limit",
            field="file",
        )
    for i in infos:
        if i.file_size >= _RATIO_MIN_BYTES:
            ratio = i.file_size / max(i.compress_size, 1)
            if ratio > max_ratio:
                raise ResourceExhausted(
                    f"XLSX entry {i.filename!r} compresses {ratio:,.0f}:1, more than "
                    f"{max_ratio:,.0f}:1: refusing a zip bomb",
                    field="file",
                )
    src.seek(0)


def _text(value: Any, number_format: str) -> str | None:
    """A cell's value as the text an importer parses."""
    if value is None:
        return None
    if isinstance(value, str):
        if "_x" in value:
            value = _OOXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
        return restore(value) if value else None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        # Excel keeps dates as datetimes; a format without hours means a plain date.
        if value.time() == dt.time(0) and "h" not in number_format.lower():
            return value.date().isoformat()
        return value.isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return str(value)


def read_xlsx(src: IO[bytes], limits: ReadLimits) -> Iterator[dict[str, str | None]]:
    """Rows as {header: text or None}; neutralisation undone; continuation sheets appended.

    The first sheet's first row is the header; later sheets with the same header are
    continuations (how Ferry splits past Excel's row limit), other sheets are ignored.
    Raises InvalidArgument for a file that is not XLSX or has a bad header, naming row and
    column for bad cells; ResourceExhausted for zip bombs, XML bombs and rows past limits.
    """
    if not openpyxl.xml.DEFUSEDXML:
        raise FailedPrecondition("defusedxml is not active; refusing to parse XLSX uploads")
    with tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024) as buf:
        # Upload streams are not always seekable; zipfile needs to seek.
        shutil.copyfileobj(CappedReader(src, limits.max_bytes), buf)
        buf.seek(0)
        check_zip(buf, limits)  # type: ignore[arg-type]
        yield from _rows(buf, limits)  # type: ignore[arg-type]


def _rows(buf: IO[bytes], limits: ReadLimits) -> Iterator[dict[str, str | None]]:
    try:
        wb = openpyxl.load_workbook(buf, read_only=True, data_only=True)
    except defusedxml.DefusedXmlException as e:
        raise InvalidArgument(
            f"XLSX refused: {e!r} (XML entities are not allowed)", field="file"
        ) from e
    except (InvalidFileException, KeyError, ValueError, zipfile.BadZipFile) as e:
        # openpyxl wraps parse errors; an entity refusal anywhere in the chain is a bomb.
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, defusedxml.DefusedXmlException):
            cause = cause.__cause__ or cause.__context__
        if cause is not None:
            raise InvalidArgument(
                f"XLSX refused: {cause!r} (XML entities are not allowed)", field="file"
            ) from e
        raise InvalidArgument(f"not a readable XLSX file: {e}", field="file") from e
    try:
        header: list[str] | None = None
        n = 0
        for ws in wb.worksheets:
            try:
                cells_iter = ws.iter_rows()
                first = next(cells_iter, None)
                if first is None:
                    continue
                names = [_text(c.value, "") or "" for c in first]
                while names and not names[-1]:
                    names.pop()  # trailing empty header cells are formatting, not columns
                if header is None:
                    header = _check_header(names)
                elif names != header:
                    continue
                for r, row in enumerate(cells_iter, start=2):
                    values = [_text(c.value, getattr(c, "number_format", "") or "") for c in row]
                    if not any(v is not None for v in values):
                        continue
                    n += 1
                    if n > limits.max_rows:
                        raise ResourceExhausted(
                            f"file has more than {limits.max_rows:,} rows", field=f"row {r}"
                        )
                    yield _record(header, values, r, ws.title, limits)
            except defusedxml.DefusedXmlException as e:
                raise InvalidArgument(
                    f"sheet {ws.title!r} refused: {e!r} (XML entities are not allowed)",
                    field="file",
                ) from e
    finally:
        wb.close()


def _check_header(names: list[str]) -> list[str]:
    seen: set[str] = set()
    for j, h in enumerate(names):
        if not h.strip():
            raise InvalidArgument(f"row 1: column {j + 1} has no header", field="row 1")
        if h.strip().lower() in seen:
            raise InvalidArgument(f"row 1: duplicate column {h!r}", field="row 1")
        seen.add(h.strip().lower())
    return [h.strip() for h in names]


def _record(
    header: list[str], values: list[str | None], r: int, sheet: str, limits: ReadLimits
) -> dict[str, str | None]:
    extra = values[len(header) :]
    if any(v is not None for v in extra):
        raise InvalidArgument(
            f"sheet {sheet!r} row {r}: a value right of the last header column",
            field=f"row {r}",
        )
    out: dict[str, str | None] = {}
    for j, h in enumerate(header):
        v = values[j] if j < len(values) else None
        if v is not None and len(v) > limits.max_cell_chars:
            raise InvalidArgument(
                f"sheet {sheet!r} row {r}, column {h!r}: longer than "
                f"{limits.max_cell_chars:,} characters",
                field=f"row {r}",
            )
        out[h] = v
    return out
