"""The `xlsx` bundle: one workbook, a `metadata` sheet then one sheet per entity.

`metadata` holds key/value rows (the metadata document, then `trailer.counts`,
`trailer.total_records` and `trailer.sha256`); strings are written as they are, other
values as JSON. Each entity sheet has the bundle field names in row 1 and one record per
row; an entity with more rows than a sheet holds continues on `<entity>.2`, `<entity>.3`...

Cells: strings are text (formula-injection neutralised with a leading quote, undone on
read; control characters use Excel's `_xHHHH_` escapes), numbers are numbers (Excel keeps
16 significant digits, so floats are rounded to 16 digits before the checksum), dates are
date cells (text before March 1900), instants are RFC 3339 UTC text (exact, unlike Excel's
serial times), null is an empty cell. Writing uses XlsxWriter's constant_memory mode;
reading checks the zip's central directory first (entries, total size, compression ratio)
and then streams with openpyxl's read-only mode, which parses XML through defusedxml.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

import openpyxl
import openpyxl.xml
import orjson
import xlsxwriter  # type: ignore[import-untyped]
from defusedxml import DefusedXmlException

from ferry.bundle.formats.base import Batch, BundleLimits, Event
from ferry.bundle.formats.common import JSON_OPTS, Encoder, iso, metadata_dict, schema
from ferry.bundle.formats.decode import Decoder
from ferry.datasets.spec import Kind
from ferry.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from ferry.tabular.safety import neutralise, restore
from ferry.tabular.xlsx_read import check_zip_caps

META_SHEET = "metadata"
MAX_ROWS = 1_048_576  # Excel's rows per sheet, the header row included
MAX_CELL_CHARS = 32_767
# Excel's serial dates are wrong before March 1900 (its phantom 1900-02-29): text before.
FIRST_DATE_CELL = "1900-03-01"
TEXT_META = {
    "semester",
    "exported_at",
    "exported_by",
    "dataset",
    "updated_since",
    "sha256",
    "scope",
}
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")


def _unescape(s: str) -> str:
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), s) if "_x" in s else s


class XlsxBundle:
    name = "xlsx"
    extension = "xlsx"
    content_type = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

    def __init__(self, app: object = None) -> None:
        """Built as `factory(app)`; it takes no settings from the app."""

    def write(self, events: Iterable[Event], out: IO[bytes]) -> None:
        """Write the workbook; rows go to temporary files until it is zipped at the end."""
        enc = Encoder()
        it = iter(events)
        header = enc.start(next(it, None))  # type: ignore[arg-type]
        wb = xlsxwriter.Workbook(
            out,
            {
                "constant_memory": True,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "strings_to_numbers": False,
            },
        )
        bold = wb.add_format({"bold": True})
        day = wb.add_format({"num_format": "yyyy-mm-dd"})
        meta_ws = wb.add_worksheet(META_SHEET)
        sheets = _Sheets(wb, bold, header.metadata.dataset)
        for event in it:
            if not isinstance(event, Batch):
                break
            names = sheets.columns(event.entity)
            dates = {n for n in names if sheets.is_date(event.entity, n)}
            rows = []
            for position, rec in enumerate(event.records, enc.counts.get(event.entity, 0)):
                ws, row = sheets.next_row(event.entity)
                cells = []
                for col, name in enumerate(names):
                    v = rec.get(name)
                    if isinstance(v, str):
                        if len(v) > MAX_CELL_CHARS:
                            raise InvalidArgument(
                                f"{event.entity} record {position}, field {name!r}: longer than "
                                f"an Excel cell holds ({MAX_CELL_CHARS} characters)",
                                field=f"{event.entity}[{position}].{name}",
                            )
                        if name in dates and len(v) == 10 and v >= FIRST_DATE_CELL:
                            ws.write_datetime(row, col, dt.date.fromisoformat(v), day)
                        else:
                            ws.write_string(row, col, neutralise(v))
                    elif isinstance(v, float):
                        v = float(f"{v:.16g}") + 0.0  # what the cell holds (no -0.0)
                        if not math.isfinite(v):
                            raise InvalidArgument(
                                f"{event.entity} record {position}, field {name!r}: {v} does "
                                "not fit in an Excel cell",
                                field=f"{event.entity}[{position}].{name}",
                            )
                        ws.write_number(row, col, v)
                    elif isinstance(v, int):
                        ws.write_number(row, col, v)
                    elif isinstance(v, dt.datetime):
                        ws.write_string(row, col, iso(v))
                    elif v is not None:
                        raise InvalidArgument(
                            f"{event.entity} record {position}, field {name!r}: "
                            f"cannot store {type(v).__name__}",
                            field=f"{event.entity}[{position}].{name}",
                        )
                    cells.append(v)
                rows.append(dict(zip(names, cells, strict=True)))
            enc.batch(Batch(event.entity, rows))
        items = list(metadata_dict(header).items())
        items += [(f"trailer.{k}", v) for k, v in enc.trailer().items()]
        meta_ws.write_row(0, 0, ["key", "value"], bold)
        for row, (key, value) in enumerate(items, 1):
            meta_ws.write_string(row, 0, key)
            text = value if key.rpartition(".")[2] in TEXT_META else _json(value)
            meta_ws.write_string(row, 1, neutralise(text))
        for entity in enc.order():
            sheets.ensure(entity)
        wb.close()

    def read(self, src: IO[bytes], limits: BundleLimits) -> Iterator[Event]:
        """Check the zip, then stream the sheets; see Decoder for record errors."""
        if not openpyxl.xml.DEFUSEDXML:
            raise FailedPrecondition("reading xlsx needs defusedxml installed")
        with tempfile.TemporaryFile() as f:
            _copy_capped(src, f, limits)
            _check_zip(f, limits)
            f.seek(0)
            try:
                yield from _read(f, limits)
            except (
                DefusedXmlException,
                zipfile.BadZipFile,
                KeyError,
                ValueError,
                SyntaxError,
                OSError,
            ) as e:
                unsafe = _unsafe_xml(e)
                if unsafe is not None:
                    raise InvalidArgument(
                        f"unsafe XML in the workbook ({type(unsafe).__name__}): refused",
                        field="file",
                    ) from None
                raise InvalidArgument(f"not a readable xlsx bundle: {e}", field="file") from None


class _Sheets:
    """Entity sheets, created in bundle order, continued when one is full."""

    def __init__(self, wb: Any, bold: Any, dataset: str) -> None:
        self.wb = wb
        self.bold = bold
        self.fields = schema(dataset)
        self.current: dict[str, tuple[Any, int, int]] = {}  # entity -> (sheet, row, part)

    def columns(self, entity: str) -> list[str]:
        if entity not in self.fields:
            raise InvalidArgument(f"unknown entity {entity!r}", field=entity)
        return list(self.fields[entity])

    def is_date(self, entity: str, name: str) -> bool:
        return self.fields[entity][name].kind is Kind.DATE

    def ensure(self, entity: str) -> None:
        if entity not in self.current:
            self._open(entity, 1)

    def _open(self, entity: str, part: int) -> None:
        ws = self.wb.add_worksheet(entity if part == 1 else f"{entity}.{part}")
        ws.freeze_panes(1, 0)
        ws.write_row(0, 0, self.columns(entity), self.bold)
        self.current[entity] = (ws, 0, part)

    def next_row(self, entity: str) -> tuple[Any, int]:
        self.ensure(entity)
        ws, row, part = self.current[entity]
        if row + 1 >= MAX_ROWS:
            self._open(entity, part + 1)
            ws, row, part = self.current[entity]
        self.current[entity] = (ws, row + 1, part)
        return ws, row + 1


def _unsafe_xml(e: BaseException | None) -> BaseException | None:
    """The defusedxml refusal behind `e` (openpyxl wraps parse errors), if any."""
    seen = 0
    while e is not None and seen < 10:
        if isinstance(e, DefusedXmlException):
            return e
        e = e.__cause__ or e.__context__
        seen += 1
    return None


def _json(value: Any) -> str:
    return orjson.dumps(value, option=JSON_OPTS).decode()


def _copy_capped(src: IO[bytes], f: IO[bytes], limits: BundleLimits) -> None:
    copied = 0
    while block := src.read(1024 * 1024):
        copied += len(block)
        if copied > limits.max_bytes:
            raise ResourceExhausted(f"file is larger than {limits.max_bytes} bytes", field="file")
        f.write(block)
    f.seek(0)


def _check_zip(f: IO[bytes], limits: BundleLimits) -> None:
    check_zip_caps(f, limits.max_entries, limits.max_bytes, limits.max_ratio)


def _read(f: IO[bytes], limits: BundleLimits) -> Iterator[Event]:
    wb = openpyxl.load_workbook(f, read_only=True, data_only=True)
    try:
        names = wb.sheetnames
        if not names or names[0] != META_SHEET:
            raise InvalidArgument(f"the first sheet must be {META_SHEET!r}", field=META_SHEET)
        meta, trailer = _metadata(wb[META_SHEET])
        dec = Decoder(limits)
        yield dec.start(meta)
        for sheet in names[1:]:
            entity = sheet.partition(".")[0]
            rows = wb[sheet].iter_rows(values_only=True)
            head = next(rows, None) or ()
            fields = [_cell(h) for h in head]
            start = dec.counts.get(entity, 0)
            known = dec.fields.get(entity, {})
            named = [f for f in fields if isinstance(f, str) and f in known]
            for position, row in enumerate(rows, start):
                # An empty cell under a field's name is null; a field the sheet has no
                # column for stays absent (the record does not carry it).
                raw: dict[str, Any] = dict.fromkeys(named)
                for i, value in enumerate(row):
                    if value is None:
                        continue
                    if i >= len(fields) or not isinstance(fields[i], str):
                        raise InvalidArgument(
                            f"{entity} record {position}: a value in column {i + 1} has no "
                            "field name in row 1",
                            field=f"{entity}[{position}]",
                        )
                    raw[fields[i]] = _cell(value)
                yield from dec.record(entity, raw)
        yield from dec.finish(trailer, "metadata trailer")
    finally:
        wb.close()


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return restore(_unescape(value))
    return value


def _metadata(ws: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    meta: dict[str, Any] = {}
    trailer: dict[str, Any] = {}
    for n, row in enumerate(ws.iter_rows(values_only=True)):
        if n == 0 or not row or row[0] is None:
            continue
        key, value = str(row[0]), _cell(row[1] if len(row) > 1 else None)
        name = key.rpartition(".")[2]
        if name not in TEXT_META and isinstance(value, str):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise InvalidArgument(
                    f"metadata {key!r} is not valid JSON", field=f"metadata.{key}"
                ) from None
        if key.startswith("trailer."):
            trailer[name] = value
        else:
            meta[key] = value
    return meta, trailer
