"""CSV (RFC 4180): UTF-8 with a byte-order mark, a header row of field names, streamed.

The BOM is on by default (`plugins.formats.csv.bom`): without it Excel on Windows reads
UTF-8 as the local code page and garbles Greek. Ferry's own reader strips it.

The header holds column *names* (`date_of_birth`), or the labels of the language the export
was asked in ("Ημερομηνία γέννησης"); the import reads both, so a file exported from Ferry
imports back unchanged. Dates are ISO (2026-09-01), timestamps ISO-8601 UTC with a
`Z`, floats their shortest round-trip repr. Strings that a spreadsheet would run as a
formula are neutralised (ferry.tabular.safety); `CsvFormat.read` undoes it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO, Any, ClassVar

from ferry.config import Strict
from ferry.datasets.spec import Kind
from ferry.tabular.base import ReadLimits, Table
from ferry.tabular.cells import batches, utc_iso
from ferry.tabular.csv_read import read_csv
from ferry.tabular.safety import SUSPECT, neutralise


def _safe_str(value: Any) -> Any:
    # Only strings are neutralised; a number in a text column stays as it is.
    if isinstance(value, str) and value and value[0] in SUSPECT:
        return neutralise(value)
    return value


def _converters(table: Table) -> list[tuple[int, Callable[[Any], Any]]]:
    """(column index, converter) for the columns csv.writer would not render right itself.

    Ints, floats (str == repr) and dates (str == isoformat) need nothing, which keeps the
    hot loop to the few text and timestamp columns.
    """
    out: list[tuple[int, Callable[[Any], Any]]] = []
    for i, col in enumerate(table.columns):
        if col.kind is Kind.TIMESTAMP:
            out.append((i, utc_iso))
        elif col.kind is Kind.STR:
            out.append((i, _safe_str))
    return out


class CsvSettings(Strict):
    # Write a UTF-8 byte-order mark first, so Excel on Windows reads Greek right.
    bom: bool = True


class CsvFormat:
    name = "csv"
    extension = "csv"
    content_type = "text/csv; charset=utf-8"
    settings_model: ClassVar[type[Strict]] = CsvSettings

    def __init__(self, app: Any = None, *, bom: bool = True) -> None:
        """Built as `factory(app)`: `plugins.formats.csv` (ferry.yaml) when there is an app."""
        self.bom = bom
        if app is not None:
            settings: CsvSettings = app.plugin_settings("ferry.formats", "csv")
            self.bom = settings.bom

    def write(
        self,
        out: IO[bytes],
        table: Table,
        rows: Iterable[Sequence[Any]],
        progress: Callable[[int], object] | None = None,
    ) -> int:
        """Write header and rows to `out`; returns the number of rows written."""
        text = io.TextIOWrapper(
            out, encoding="utf-8-sig" if self.bom else "utf-8", newline="", write_through=False
        )
        try:
            writer = csv.writer(text, lineterminator="\r\n")
            writer.writerow(table.headers())
            convs = _converters(table)
            n = 0
            for batch in batches(rows):
                if convs:
                    for i, row in enumerate(batch):
                        cells = list(row)
                        for j, conv in convs:
                            cells[j] = conv(cells[j])
                        batch[i] = cells
                writer.writerows(batch)
                n += len(batch)
                if progress is not None:
                    progress(n)
            text.flush()
            return n
        finally:
            # Hand `out` back to the caller open: the wrapper must not close it.
            text.detach()

    def read(self, src: IO[bytes], limits: ReadLimits) -> Iterator[dict[str, str | None]]:
        """Rows as {header: text or None for an empty cell}, neutralisation undone.

        See ferry.tabular.csv_read for the errors it raises.
        """
        return read_csv(src, limits)
