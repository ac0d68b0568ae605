"""csv/xlsx rows of one entity -> bundle records for the merge engine.

Rows are numbered as a spreadsheet shows them: the header is row 1, the first data row is
row 2 (its record position is 1).

Headers are matched to the entity's bundle field names case-insensitively, with spaces and
dashes read as underscores, and the labels an export writes in any language ("Date of
birth", "Ημερομηνία γέννησης", ferry.tabular.labels) are read as their fields, so a file
exported with labels imports as is. An explicit column mapping wins over that matching.
Values stay text: the merge engine parses numbers and dates and reports the row and column
of a bad one.

The empty-cell rule (EMPTY_CELL_RULE, docs/merging.md): a present but empty csv/xlsx cell
is the empty text in a text field, nullable or not, and null in every other kind (a
number, a date, an instant, a key, a link); the merge then refuses null where a field is
required, naming row and column. A reader whose cells tell null from "" (json,
`typed_cells`) keeps them apart: "" is empty text, null is null.

A field without a column is not carried: the merge never compares nor writes it (a csv
without `comment` or `deleted_at` keeps what the database holds; docs/merging.md).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ferry.bundle.formats.base import Batch, Record
from ferry.datasets.spec import Dataset, Entity, Kind, SpecError
from ferry.errors import InvalidArgument
from ferry.tabular.labels import header_names

_SEPARATORS = re.compile(r"[\s\-]+")
# The rule in words, for the CLI's --help and result and the page's preview (one source).
EMPTY_CELL_RULE = (
    "an empty csv/xlsx cell in a column the file has becomes empty text in a text field "
    "(nullable or not) and empty (null) in a number, date, key or link field, which is an "
    "error where the field is required; leave a column out to keep what Ferry holds"
)


def normalise(header: str) -> str:
    """'  Date of-Birth ' -> 'date_of_birth'."""
    return _SEPARATORS.sub("_", header.strip()).lower()


def find_entity(ds: Dataset, name: str, field: str = "options.entity") -> Entity:
    """The entity called `name` (case-insensitive); InvalidArgument listing the known ones."""
    if not name.strip():
        raise InvalidArgument(f"entity is required; one of: {', '.join(ds.entities)}", field=field)
    try:
        return ds.entity(name.strip().lower())
    except SpecError as e:
        raise InvalidArgument(str(e), field=field) from None


def field_kinds(entity: Entity) -> dict[str, Kind]:
    """Every bundle field of `entity` (natural key first, then own fields, then references'
    key fields) with how it travels."""
    kinds: dict[str, Kind] = {}
    own = {f.name: f.kind for f in entity.fields}
    ref_fields = [name for ref in entity.references for name in ref.fields]
    for name in (*entity.natural_key, *own, *ref_fields):
        kinds.setdefault(name, own.get(name, Kind.STR))
    return kinds


class RowMapper:
    """Maps the file's headers to field names once, then each row to a record."""

    def __init__(
        self,
        entity: Entity,
        headers: Iterable[str],
        mapping: Mapping[str, str],
        typed_cells: bool = False,
    ):
        self.entity = entity
        kinds = field_kinds(entity)
        known = {normalise(n): n for n in kinds}
        for label, field_name in header_names().items():
            if field_name in kinds:
                known.setdefault(normalise(label), field_name)
        listing = ", ".join(kinds)
        by_header = {normalise(k): v for k, v in mapping.items()}
        headers = list(headers)
        present = {normalise(h) for h in headers}
        for source in mapping:
            if normalise(source) not in present:
                raise InvalidArgument(
                    f"column_mapping names column {source!r}, which the file does not have; "
                    f"its columns: {', '.join(headers)}",
                    field=f"options.column_mapping[{source}]",
                )
        self.columns: list[tuple[str, str]] = []  # (header in file, field name)
        seen: dict[str, str] = {}
        for header in headers:
            target = by_header.get(normalise(header), header)
            name = known.get(normalise(target))
            if name is None:
                where = f" (mapped to {target!r})" if target != header else ""
                raise InvalidArgument(
                    f"unknown column {header!r}{where} for {entity.name}; known fields: {listing}",
                    field=f"column {header}",
                )
            if name in seen:
                raise InvalidArgument(
                    f"columns {seen[name]!r} and {header!r} both give {entity.name} field {name!r}",
                    field=f"column {header}",
                )
            seen[name] = header
            self.columns.append((header, name))
        self._timestamps = {n for n, k in kinds.items() if k is Kind.TIMESTAMP}
        # The empty-cell rule (EMPTY_CELL_RULE): an empty cell of a text field is the empty
        # text, nullable or not; of a key, a link or any other kind it is null (a required
        # one is then named with its row by the merge).
        linked = {name for ref in entity.references for name in ref.fields}
        text = {
            f.name: f.nullable
            for f in entity.fields
            if f.kind is Kind.STR and f.name not in entity.natural_key and f.name not in linked
        }
        self._empty_text = set(text)
        # A cell that is null: a csv/xlsx cell cannot be told from "", so it is empty text
        # too; a reader that tells them apart (json) keeps null in a nullable text field.
        self._null_text = {n for n, nullable in text.items() if not nullable or not typed_cells}

    def record(self, row: Mapping[str, Any], position: int) -> Record:
        """The record of data row `position` (1-based); empty cells follow the empty-cell
        rule: "" in text fields, None in every other kind."""
        out: Record = {}
        for header, name in self.columns:
            value = row.get(header)
            if value is None:
                out[name] = "" if name in self._null_text else None
            elif value == "":
                out[name] = "" if name in self._empty_text else None
            elif name in self._timestamps:
                out[name] = _instant(value, position, header)
            else:
                out[name] = value
        return out


def _instant(text: Any, position: int, header: str) -> dt.datetime:
    # Instants travel as aware datetimes (bundle contract); a file gives ISO-8601 text.
    try:
        if not isinstance(text, str):
            raise ValueError(text)
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        row = position + 1  # as a spreadsheet numbers it: the header is row 1
        raise InvalidArgument(
            f"row {row}, column {header!r}: {text!r} is not an ISO-8601 date-time",
            field=f"row {row} column {header}",
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class EntityRows:
    """The batches of one entity's rows, for the merge engine.

    Iterating yields Batches of at most `batch_size` records in file order, and raises
    InvalidArgument for an unknown or doubly-mapped column or a file without data rows.
    Afterwards `headers` maps each field to the file's header, so errors can name columns.
    """

    def __init__(
        self,
        entity: Entity,
        rows: Iterable[Mapping[str, str | None]],
        mapping: Mapping[str, str],
        batch_size: int,
        typed_cells: bool = False,
    ) -> None:
        self.entity = entity
        self.rows = rows
        self.mapping = mapping
        self.batch_size = batch_size
        self.typed_cells = typed_cells  # the reader tells null from "" (RowMapper)
        self.headers: dict[str, str] = {}

    def __iter__(self) -> Iterator[Batch]:
        mapper: RowMapper | None = None
        batch: list[Any] = []
        for position, row in enumerate(self.rows, start=1):
            if mapper is None:
                mapper = RowMapper(self.entity, row.keys(), self.mapping, self.typed_cells)
                self.headers = {name: header for header, name in mapper.columns}
            batch.append(mapper.record(row, position))
            if len(batch) >= self.batch_size:
                yield Batch(self.entity.name, batch)
                batch = []
        if mapper is None:
            raise InvalidArgument("the file has no data rows", field="file_chunk")
        if batch:
            yield Batch(self.entity.name, batch)


def row_batches(
    entity: Entity,
    rows: Iterable[Mapping[str, str | None]],
    mapping: Mapping[str, str],
    batch_size: int,
) -> Iterator[Batch]:
    """Batches of at most `batch_size` records of `entity` (see EntityRows)."""
    return iter(EntityRows(entity, rows, mapping, batch_size))
