"""What every bundle file format shares: the metadata document, the records checksum,
format versions and their upgrades, the dataset schema, and the writers' Encoder (the
readers' Decoder is in ferry.bundle.formats.decode).

The records checksum (`RecordsDigest`) is the same for every file format: sha256 over,
per entity in bundle order, a line `#<entity>` and then each record as compact JSON with
sorted keys (instants as RFC 3339 UTC with `Z`) followed by a comma. A reader recomputes it
from the values it parsed, so it proves the records, not the bytes. (A JSON array of a
batch, minus its brackets, plus a comma is exactly that, so batches hash in one call.)
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from ferry.bundle.formats.base import Batch, Event, Header, JsonLines, Record
from ferry.bundle.scan import FORMAT_VERSION
from ferry.datasets import load_dataset
from ferry.datasets.query import Column, export_query
from ferry.errors import InvalidArgument

JSON_OPTS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
DIGEST_OPTS = JSON_OPTS | orjson.OPT_SORT_KEYS
READ_BATCH = 1000  # records per Batch a reader yields
UTC = dt.UTC


def iso(value: dt.datetime) -> str:
    """An instant as RFC 3339 UTC with a `Z`, as every bundle format writes it."""
    return orjson.dumps(value, option=JSON_OPTS).decode()[1:-1]


def bundle_filename(semester: str, extension: str, when: dt.datetime) -> str:
    """session_<semester>_<YYYYmmddTHHMMSSZ>.<ext>"""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in semester)
    return f"session_{safe}_{when.astimezone(UTC):%Y%m%dT%H%M%SZ}.{extension}"


class RecordsDigest:
    """The records checksum every file format carries (see the module docstring)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._entity = ""

    def update(self, entity: str, records: list[Record]) -> None:
        if records:
            self.update_encoded(entity, orjson.dumps(records, option=DIGEST_OPTS)[1:-1])

    def update_encoded(self, entity: str, body: bytes) -> None:
        """Add records already encoded with DIGEST_OPTS and joined by commas."""
        if entity != self._entity:
            self._hash.update(b"#" + entity.encode() + b"\n")
            self._entity = entity
        self._hash.update(body)
        self._hash.update(b",")

    def update_joined(self, entity: str, body: bytes) -> None:
        """Add records already encoded with DIGEST_OPTS, each followed by a comma."""
        if entity != self._entity:
            self._hash.update(b"#" + entity.encode() + b"\n")
            self._entity = entity
        self._hash.update(body)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def encode_records(records: list[Record]) -> tuple[bytes, bool]:
    """(body, splittable): `records` as DIGEST_OPTS JSON joined by commas (the form the
    checksum and the json bundle take), in one orjson call per batch rather than one per
    record; `splittable` when the `},{` between two records occurs nowhere else in `body`
    (in no string value), so that replacing each with `}<sep>{` gives the records one per
    line, byte for byte what encoding them one by one gives (records are flat objects)."""
    body = orjson.dumps(records, option=DIGEST_OPTS)[1:-1]
    return body, len(records) > 0 and body.count(b"},{") == len(records) - 1


def record_lines(
    records: list[Record], prefix: bytes = b"", suffix: bytes = b""
) -> tuple[bytes, bytes]:
    """(body, lines): body as encode_records gives it; lines the records one per line,
    each as `prefix` + the record's JSON + `suffix` + a newline (jsonl, tar.gz members)."""
    sep = b"}" + suffix + b"\n" + prefix + b"{"
    if len(sep) == 3 or not records:
        body, splittable = encode_records(records)
        lines = body.replace(b"},{", sep) if splittable else b""
    else:
        # A longer separator: its count is in the length the replacement adds, so the
        # array's `},{` need not be counted first (a pass over the batch less).
        full = orjson.dumps(records, option=DIGEST_OPTS)
        body = full[1:-1]
        lines = full.replace(b"},{", sep)
        if len(lines) - len(full) == (len(records) - 1) * (len(sep) - 3):
            return body, b"".join((prefix, memoryview(lines)[1:-1], suffix, b"\n"))
        lines = b""
    if lines:
        return body, b"".join((prefix, lines, suffix, b"\n"))
    # A string holds `},{` (or no records): one call per record.
    return body, b"".join(
        prefix + orjson.dumps(r, option=DIGEST_OPTS) + suffix + b"\n" for r in records
    )


def prefixed(lines: bytes, prefix: bytes, suffix: bytes) -> bytes:
    """`lines` (records, a newline after each: JsonLines) with `prefix` before and
    `suffix` after each record, as record_lines writes them."""
    if not lines:
        return b""
    each = lines.replace(b"\n", suffix + b"\n" + prefix)  # a prefix too many at the end
    return b"".join((prefix, memoryview(each)[: len(each) - len(prefix)]))


# ---- metadata ----------------------------------------------------------------------

META_KEYS = {
    "semester",
    "exported_at",
    "exported_by",
    "format_version",
    "dataset",
    "counts",
    "include_deleted",
    "entity_order",
    "updated_since",
    "scope",
    "renames",
    "school",
}


def metadata_dict(header: Header) -> dict[str, Any]:
    """The metadata document a file format writes for `header`."""
    m = header.metadata
    out: dict[str, Any] = {
        "semester": m.semester,
        "exported_at": iso(m.exported_at.ToDatetime(UTC)),
        "exported_by": m.exported_by,
        "format_version": m.format_version,
        "dataset": m.dataset,
        "counts": dict(m.counts),
        "include_deleted": m.include_deleted,
        "entity_order": list(m.entity_order),
    }
    if header.updated_since is not None:
        out["updated_since"] = iso(header.updated_since)
    if m.scope:  # only whole-database bundles say so: semester bundles are as before
        out["scope"] = m.scope
    if m.school:  # the source school's code (docs/tenants.md)
        out["school"] = m.school
    if m.renames:  # keys changed at the source (issue 29); bundles without are as before
        out["renames"] = [
            {
                "entity": r.entity,
                "old_key": r.old_key,
                "new_key": r.new_key,
                "renamed_at": iso(r.renamed_at.ToDatetime(UTC)),
            }
            for r in m.renames
        ]
    return out


def trailer_dict(counts: Mapping[str, int], sha256: str) -> dict[str, Any]:
    """The closing document: records written per entity, their total and checksum."""
    return {"counts": dict(counts), "total_records": sum(counts.values()), "sha256": sha256}


# ---- versions ----------------------------------------------------------------------


@dataclass(frozen=True)
class Upgrade:
    """Turns a bundle of format version `n` into version `n + 1` (registered under n)."""

    metadata: Callable[[dict[str, Any]], dict[str, Any]]
    record: Callable[[str, dict[str, Any]], dict[str, Any]]


def _same_records(entity: str, raw: dict[str, Any]) -> dict[str, Any]:
    return raw


# Version 1 is the first. Version 2 (schools as tenants) only adds the optional metadata
# key `school`: a version 1 bundle names no school and its records are unchanged.
UPGRADES: dict[int, Upgrade] = {
    1: Upgrade(lambda m: {**m, "format_version": 2}, _same_records),
}


def upgrades_for(version: Any) -> list[Upgrade]:
    """The steps that bring a bundle of `version` to FORMAT_VERSION (none for current).

    Raises InvalidArgument for a newer or unknown version, naming both versions.
    """
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidArgument(
            f"metadata.format_version must be a number, not {version!r}", field="format_version"
        )
    if version > FORMAT_VERSION:
        raise InvalidArgument(
            f"bundle format version {version} is newer than this Ferry reads "
            f"(version {FORMAT_VERSION}); upgrade Ferry",
            field="format_version",
        )
    steps = []
    for v in range(version, FORMAT_VERSION):
        if v not in UPGRADES:
            raise InvalidArgument(
                f"bundle format version {version} cannot be read: no upgrade from version "
                f"{v} to {v + 1} (this Ferry reads version {FORMAT_VERSION})",
                field="format_version",
            )
        steps.append(UPGRADES[v])
    return steps


# ---- schema ------------------------------------------------------------------------


@functools.cache
def schema(dataset: str) -> dict[str, dict[str, Column]]:
    """entity -> bundle field -> Column, for the dataset named in a bundle."""
    ds = load_dataset(dataset, field="metadata.dataset")
    return {e.name: {c.name: c for c in export_query(ds, e, "", False)[1]} for e in ds.in_order()}


# ---- writing -----------------------------------------------------------------------


@dataclass
class Encoder:
    """Checks the event sequence a writer gets and keeps counts and the checksum."""

    header: Header | None = None
    counts: dict[str, int] = field(default_factory=dict)
    digest: RecordsDigest = field(default_factory=RecordsDigest)
    done: set[str] = field(default_factory=set)
    entity: str = ""

    def start(self, event: Event) -> Header:
        if not isinstance(event, Header):
            raise InvalidArgument("a bundle starts with a Header event", field="events")
        self.header = event
        return event

    def order(self) -> list[str]:
        """Entities in bundle order (the header's order, else the dataset's)."""
        assert self.header is not None
        return list(self.header.metadata.entity_order) or list(schema(self.header.metadata.dataset))

    def _section(self, entity: str) -> None:
        """Entities come as contiguous sections, in the bundle's order."""
        if entity != self.entity:
            if entity in self.done or entity not in self.order():
                raise InvalidArgument(f"{entity} records out of order or unknown", field=entity)
            if self.entity:
                self.done.add(self.entity)
            self.entity = entity

    def batch(self, batch: Batch, encoded: bytes | None = None) -> None:
        """Count and hash `batch` (`encoded`: its records already in DIGEST_OPTS JSON,
        comma-joined); entities must come as contiguous sections."""
        self._section(batch.entity)
        self.counts[batch.entity] = self.counts.get(batch.entity, 0) + len(batch.records)
        if encoded is None:
            self.digest.update(batch.entity, batch.records)
        elif batch.records:
            self.digest.update_encoded(batch.entity, encoded)

    def lines(self, event: JsonLines) -> bytes:
        """Count and hash `event` like a Batch of its records; returns its records each
        followed by a comma (the newlines replaced: JSON text holds no raw newline), the
        bytes the checksum covers and the json bundle's body with one comma more."""
        self._section(event.entity)
        self.counts[event.entity] = self.counts.get(event.entity, 0) + event.count
        joined = event.lines.replace(b"\n", b",")
        if event.count:
            self.digest.update_joined(event.entity, joined)
        return joined

    def trailer(self) -> dict[str, Any]:
        counts = {name: self.counts.get(name, 0) for name in self.order()}
        return trailer_dict(counts, self.digest.hexdigest())
