"""The contract of a bundle format plugin (`ferry.bundle_formats`).

A bundle travels as events: one Header, then Batches of one entity each (entities in the
dataset's dependency order), then one Trailer. Writers consume events and stream bytes;
readers parse bytes and yield events, never holding the whole bundle.

Record values inside a Batch are plain Python, keyed by bundle field name (the proto
field names of bundle.proto): str, int, float, None; dates as "YYYY-MM-DD" strings;
instants as timezone-aware UTC datetimes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable

import orjson

# The group's contract lives with every other group's (ferry.contracts).
from ferry.contracts import BundleFormat as BundleFormat
from ferry.datasets.spec import Kind
from ferry.v1 import bundle_pb2 as pb

Record = dict[str, Any]


@dataclass
class Note:
    """Something a reader wants the import's result to say: a warning (a OneRoster
    package's ignored columns, what did not cross: its loss report), listed as an
    ImportWarning of the same fields, or a refused record (kind REFUSED)."""

    kind: str
    entity: str
    field: str
    count: int
    sample: list[str]
    message: str
    # A machine reason the page words (ferry.errors.REASONS), e.g. a loss's LOSS_NO_PLACE.
    reason: str = ""


# A Note of this kind is a record the reader refused (entity: the file, field: the
# column, count: its row, sample: [its key]); the merge engine counts it as an invalid
# record, so on_error decides between importing nothing and importing the rest.
REFUSED = "refused"


@dataclass
class Header:
    metadata: pb.BundleMetadata
    # Set on a delta bundle: it holds records changed or deleted since this instant.
    # (BundleMetadata has no field for it, so it travels beside the metadata.)
    updated_since: dt.datetime | None = None
    notes: list[Note] = field(default_factory=list)


@dataclass
class Batch:
    entity: str  # "grades"
    records: list[Record]


@dataclass
class Trailer:
    counts: dict[str, int]
    # Hex sha256 over the records (ferry.bundle.formats.common.RecordsDigest for the file
    # formats, the RecordBatch serialization for typed chunks); "" if the source has none.
    sha256: str = ""


@dataclass
class RawBatch:
    """Records of one entity still in the JSON they arrived in (the json reader's fast path).

    `body` is the inside of a JSON array of `count` records, each already checked against
    the reader's FieldRules (so converting them cannot fail) and in canonical form (the
    bytes the records checksum covers). A consumer that wants dicts calls `records()`.

    `rows`, when the reader kept them, are the same records as its run check decoded
    them (ferry.bundle.formats.runs): msgspec structs whose fields are the record's
    fields in sorted order (`__struct_fields__`), values typed (str, int, float, None,
    dt.date, aware dt.datetime), exactly what the JSON says (the run encodes back to
    `body`). The merge engine COPYs them into PostgreSQL as they are: no second parse.
    """

    entity: str
    body: bytes
    count: int
    rows: list[Any] | None = field(default=None, repr=False, compare=False)

    def records(self) -> list[Record]:
        """The records as dicts; instants stay RFC 3339 text (the merge accepts text)."""
        return list(orjson.loads(b"[" + self.body + b"]"))


@dataclass
class JsonLines:
    """Records of one entity already encoded, for the writers that take them
    (`writes_lines`: json, jsonl, tar.gz; DownloadSession on PostgreSQL,
    ferry.bundle.pgjson): `lines` holds `count` records, each in the canonical form the
    records checksum covers (compact JSON, sorted keys, instants RFC 3339 with `Z`) and
    a newline after each (JSON text holds no raw newline). A writer writes exactly what
    it writes for a Batch of the same records."""

    entity: str
    lines: bytes
    count: int


Event = Header | Batch | RawBatch | JsonLines | Trailer


@dataclass(frozen=True)
class FieldRule:
    """What a value must be for a record to take the json reader's fast path: its kind,
    whether it may be null, a text length limit and an integer range. A value outside
    the rule is not an error: the record just goes the slow, checking way."""

    kind: Kind
    nullable: bool
    max_length: int | None = None
    bounds: tuple[int, int] | None = None
    span: tuple[float, float] | None = None  # a FLOAT's range


FieldRules = Mapping[str, Mapping[str, FieldRule]]  # entity -> bundle field -> rule


@dataclass(frozen=True)
class BundleLimits:
    """Caps on what a reader accepts (hostile or broken files)."""

    max_bytes: int = 2 * 1024 * 1024 * 1024  # uncompressed payload
    max_records: int = 20_000_000
    max_depth: int = 32  # JSON nesting
    max_entries: int = 64  # zip/tar members
    max_ratio: float = 200.0  # uncompressed / compressed, for zip and gzip
    max_string_chars: int = 1_000_000

    @classmethod
    def for_upload(cls, max_upload_bytes: int) -> BundleLimits:
        """An upload's caps: its payload may be as large as the upload an operator allows
        (`imports.max_upload_bytes`), never less than the default. A fixed 2 GiB here
        refused every import of a file above it whatever that setting said, so a bundle
        of ~9M records (Ferry's own backup of them included) could not be imported."""
        return cls(max_bytes=max(cls.max_bytes, max_upload_bytes))

    @classmethod
    def own_backup(cls) -> BundleLimits:
        """Reading back a backup Ferry wrote itself (an import's backup in Ferry's
        storage, an all-schools backup an operator restores from a local file): no cap on
        its size or record count below what Ferry can write; the depth, member, ratio and
        string caps stay (a damaged file still fails cleanly)."""
        return cls(max_bytes=_UNCAPPED, max_records=_UNCAPPED)


_UNCAPPED = 2**62


@runtime_checkable
class RawReading(Protocol):
    """A bundle format whose reader can leave runs of records unparsed (RawBatches)."""

    def read_raw(self, src: IO[bytes], limits: BundleLimits, rules: FieldRules) -> Iterator[Event]:
        """Like read, but runs of records that pass `rules` come as RawBatches."""
        ...


@dataclass
class Counter:
    """Counts per entity while streaming (helper for writers and readers)."""

    counts: dict[str, int] = field(default_factory=dict)

    def add(self, entity: str, n: int) -> None:
        self.counts[entity] = self.counts.get(entity, 0) + n


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
