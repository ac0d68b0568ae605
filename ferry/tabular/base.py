"""The contract of a tabular format plugin (`ferry.formats`).

Writers stream: they take rows as an iterable and never hold the whole table, so an
export's memory does not grow with its size. Readers (csv, xlsx) feed ImportEntities.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

# The group's contract lives with every other group's (ferry.contracts).
from ferry.contracts import TabularFormat as TabularFormat
from ferry.contracts import TabularReader as TabularReader
from ferry.datasets.spec import Kind

# Called with the rows written so far; raising stops the writer (the exception propagates).
Progress = Callable[[int], object]
# How often (in rows) writers report progress.
PROGRESS_EVERY = 5_000


@dataclass(frozen=True)
class TableColumn:
    name: str  # field name, e.g. "date_of_birth"
    label: str  # header text, e.g. "Date of birth"
    kind: Kind = Kind.STR  # STR, INT, FLOAT, DATE (datetime.date), TIMESTAMP (aware datetime)


@dataclass(frozen=True)
class Table:
    """What a writer needs besides the rows."""

    title: str  # e.g. "Students"
    columns: Sequence[TableColumn]
    # Shown in document headers (pdf) and metadata: {"status": "active", ...}
    filters: Mapping[str, str] = field(default_factory=dict)
    generated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    # Rows the caller expects, when known (progress, pdf "page n of m" planning); 0 = unknown.
    expected_rows: int = 0
    # "" (field names as headers, English words) or en | el: headers are the columns'
    # labels and a pdf's words and cells are in that language (ferry.tabular.labels).
    language: str = ""

    def headers(self) -> list[str]:
        """The header row: field names, or labels when the table has a language."""
        return [c.label if self.language else c.name for c in self.columns]


@dataclass(frozen=True)
class ReadLimits:
    """Caps that keep hostile files (zip bombs, endless rows) from exhausting the server."""

    max_rows: int = 1_000_000
    max_bytes: int = 200 * 1024 * 1024  # uncompressed
    max_cell_chars: int = 32_767
    # xlsx only, checked on the zip's central directory before any XML is parsed.
    max_zip_entries: int = 1_000
    # Deflate tops out near 1032:1; real sheets compress 5-30:1, zip bombs hundreds or more.
    max_compression_ratio: float = 200.0
