"""Reading side of every bundle file format: records checked against the dataset spec,
metadata checked and upgraded, and the trailer's counts and records checksum verified."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ferry.bundle.formats.base import (
    Batch,
    BundleLimits,
    Event,
    Header,
    RawBatch,
    Record,
    Trailer,
)
from ferry.bundle.formats.common import (
    META_KEYS,
    READ_BATCH,
    RecordsDigest,
    Upgrade,
    schema,
    upgrades_for,
)
from ferry.bundle.scan import FORMAT_VERSION
from ferry.datasets.query import Column
from ferry.datasets.spec import Kind
from ferry.db.schools import check_code
from ferry.errors import DataLoss, InvalidArgument, ResourceExhausted
from ferry.v1 import bundle_pb2 as pb

UTC = dt.UTC


def _where(entity: str, position: int, name: str = "") -> str:
    return f"{entity}[{position}]" + (f".{name}" if name else "")


def _bad(entity: str, position: int, name: str, what: str) -> InvalidArgument:
    where = _where(entity, position, name)
    return InvalidArgument(f"{entity} record {position}, field {name!r}: {what}", field=where)


def decode_value(col: Column, value: Any, entity: str, position: int, limits: BundleLimits) -> Any:
    """`value` as the record value of `col`; raises InvalidArgument naming where."""
    if value is None:
        if col.nullable:
            return None
        raise _bad(entity, position, col.name, "must not be null")
    kind = col.kind
    if kind is Kind.STR:
        if not isinstance(value, str):
            raise _bad(entity, position, col.name, f"must be a string, not {value!r}")
        if len(value) > limits.max_string_chars:
            raise ResourceExhausted(
                f"{entity} record {position}, field {col.name!r}: longer than "
                f"{limits.max_string_chars} characters",
                field=_where(entity, position, col.name),
            )
        return value
    if isinstance(value, bool):
        raise _bad(entity, position, col.name, f"must not be a boolean ({value!r})")
    if kind is Kind.INT:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int):
            raise _bad(entity, position, col.name, f"must be an integer, not {value!r}")
        return value
    if kind is Kind.FLOAT:
        if not isinstance(value, int | float):
            raise _bad(entity, position, col.name, f"must be a number, not {value!r}")
        return float(value)
    if kind is Kind.DATE:
        if isinstance(value, dt.datetime):
            return value.date().isoformat()
        try:
            ok = isinstance(value, str) and dt.date.fromisoformat(value).isoformat() == value
        except ValueError:
            ok = False
        if not ok:
            raise _bad(entity, position, col.name, f"must be a date YYYY-MM-DD, not {value!r}")
        return value
    when = value
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            when = None
    if not isinstance(when, dt.datetime) or when.tzinfo is None:
        raise _bad(
            entity, position, col.name, f"must be an instant with a time zone, not {value!r}"
        )
    return when.astimezone(UTC)


# What a value may be to skip the full check: by far most values in a bundle.
_FAST = {
    Kind.STR: "type(v) is str and len(v) <= max_chars",
    Kind.INT: "type(v) is int",
    Kind.FLOAT: "type(v) is float",
}


def record_decoder(cols: dict[str, Column], max_chars: int) -> Any:
    """A function decode(raw, entity, position, limits) -> record for these columns.

    Generated once per entity: plainly valid strings and numbers are taken as they are
    and everything else (dates, instants, nulls, anything odd) goes through
    decode_value, which does the full check and names the field when it fails.
    """
    lines = ["def decode(raw, entity, position, limits):", "    g = raw.get"]
    names = list(cols)
    # A record without some fields keeps them absent (not null): a partial record
    # changes only what it carries when merged. Callers checked that its keys are known.
    lines.append(f"    if len(raw) != {len(names)}:")
    lines.append(
        "        return {k: slow(D[k], v, entity, position, limits) for k, v in raw.items()}"
    )
    for i, name in enumerate(names):
        col = cols[name]
        fast = _FAST.get(col.kind, "False")
        if col.nullable:
            fast = f"v is None or ({fast})"
        lines.append(f"    v = g({name!r})")
        lines.append(f"    v{i} = v if {fast} else slow(C[{i}], v, entity, position, limits)")
    lines.append("    return {" + ", ".join(f"{n!r}: v{i}" for i, n in enumerate(names)) + "}")
    namespace: dict[str, Any] = {
        "slow": decode_value,
        "C": [cols[n] for n in names],
        "D": dict(cols),
        "max_chars": max_chars,
    }
    exec(compile("\n".join(lines), f"<record_decoder {','.join(names)}>", "exec"), namespace)
    return namespace["decode"]


@dataclass
class Decoder:
    """Checks what a reader parsed and turns it into events: the header first (version,
    dataset), records against the spec in entity order, then the trailer (counts and
    checksum). Readers feed it; it yields Batches of READ_BATCH records."""

    limits: BundleLimits
    header: Header | None = None
    steps: list[Upgrade] = field(default_factory=list)
    fields: dict[str, dict[str, Column]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    digest: RecordsDigest = field(default_factory=RecordsDigest)
    total: int = 0
    _entity: str = ""
    _cols: dict[str, Column] = field(default_factory=dict)
    _decode: Any = None
    _decoders: dict[str, Any] = field(default_factory=dict)
    _pending: list[Record] = field(default_factory=list)

    def start(self, meta: Any) -> Header:
        """The Header of the metadata document `meta` (upgraded to this version)."""
        if not isinstance(meta, dict):
            raise InvalidArgument("metadata must be an object", field="metadata")
        self.steps = upgrades_for(meta.get("format_version"))
        for step in self.steps:
            meta = step.metadata(meta)
        unknown = sorted(set(meta) - META_KEYS)
        if unknown:
            raise InvalidArgument(
                f"metadata has unknown field {unknown[0]!r}", field=f"metadata.{unknown[0]}"
            )
        m = pb.BundleMetadata()
        try:
            m.semester = meta["semester"]
            m.exported_at.FromDatetime(_instant(meta["exported_at"], "exported_at"))
            m.exported_by = meta.get("exported_by", "")
            m.format_version = FORMAT_VERSION
            m.dataset = meta["dataset"]
            m.counts.update(meta.get("counts", {}))
            m.include_deleted = meta.get("include_deleted", False)
            m.entity_order.extend(meta.get("entity_order", []))
            m.scope = meta.get("scope", "")
            if meta.get("school", ""):  # the source school: a code, or the bundle is refused
                m.school = check_code(meta["school"], "metadata.school")
        except KeyError as e:
            raise InvalidArgument(
                f"metadata lacks {e.args[0]!r}", field=f"metadata.{e.args[0]}"
            ) from None
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"metadata is malformed: {e}", field="metadata") from None
        _renames(m, meta.get("renames", []))
        self.fields = schema(m.dataset)
        order = list(m.entity_order) or list(self.fields)
        for name in order:
            self._known(name)
        since = meta.get("updated_since")
        delta = _instant(since, "updated_since") if since is not None else None
        if delta is not None:
            m.updated_since.FromDatetime(delta)
        self.header = Header(m, delta)
        return self.header

    def _known(self, entity: str) -> dict[str, Column]:
        try:
            return self.fields[entity]
        except KeyError:
            raise InvalidArgument(
                f"unknown entity {entity!r}; known: {', '.join(self.fields)}", field=entity
            ) from None

    def record(self, entity: str, raw: Any) -> Iterator[Batch]:
        """Check one parsed record of `entity`; yields a Batch when one is full."""
        if self.header is None:
            raise InvalidArgument("records before the metadata", field=entity)
        if entity != self._entity:
            yield from self._switch(entity)
        position = self.counts[entity]
        if not isinstance(raw, dict):
            raise InvalidArgument(
                f"{entity} record {position} must be an object", field=_where(entity, position)
            )
        for step in self.steps:
            raw = step.record(entity, raw)
        cols = self._cols
        for name in raw:
            if name not in cols:
                raise _bad(entity, position, name, "unknown field")
        rec = self._decode(raw, entity, position, self.limits)
        self.counts[entity] = position + 1
        self.total += 1
        if self.total > self.limits.max_records:
            raise ResourceExhausted(
                f"bundle holds more than {self.limits.max_records} records", field=entity
            )
        self._pending.append(rec)
        if len(self._pending) >= READ_BATCH:
            yield from self.flush()

    def _switch(self, entity: str) -> Iterator[Batch]:
        """Start the section of `entity` (each entity is one section)."""
        yield from self.flush()
        cols = self._known(entity)
        if entity in self.counts:
            raise InvalidArgument(
                f"{entity} records appear in two places; each entity is one section",
                field=entity,
            )
        self.counts[entity] = 0
        self._entity = entity
        self._cols = cols
        self._decode = self._decoder(entity)

    def position(self, entity: str) -> int:
        """How many records of `entity` were read so far (the next one's position)."""
        return self.counts.get(entity, 0)

    def raw(
        self, entity: str, body: bytes, count: int, rows: list[Any] | None = None
    ) -> Iterator[Event]:
        """Take `count` records of `entity` that the caller checked and found canonical
        (see RawBatch; `rows`: as the check decoded them): counted and hashed as they
        are, without building them again."""
        if self.header is None:
            raise InvalidArgument("records before the metadata", field=entity)
        if entity != self._entity:
            yield from self._switch(entity)
        yield from self.flush()
        self.counts[entity] += count
        self.total += count
        if self.total > self.limits.max_records:
            raise ResourceExhausted(
                f"bundle holds more than {self.limits.max_records} records", field=entity
            )
        self.digest.update_encoded(entity, body)
        yield RawBatch(entity, body, count, rows)

    def expand(self, raw: RawBatch) -> Batch:
        """The Batch of a RawBatch this Decoder yielded: its records decoded (their
        values were checked already, so this only converts instants)."""
        decode = self._decoder(raw.entity)
        return Batch(raw.entity, [decode(r, raw.entity, 0, self.limits) for r in raw.records()])

    def _decoder(self, entity: str) -> Any:
        """The entity's generated record decoder, compiled once per Decoder."""
        if entity not in self._decoders:
            cols = self.fields[entity]
            self._decoders[entity] = record_decoder(cols, self.limits.max_string_chars)
        return self._decoders[entity]

    def flush(self) -> Iterator[Batch]:
        if self._pending:
            batch, self._pending = self._pending, []
            self.digest.update(self._entity, batch)
            yield Batch(self._entity, batch)

    def finish(self, trailer: Any, where: str) -> Iterator[Event]:
        """Flush, verify counts and checksum against `trailer` and the header, and yield
        the Trailer. Raises DataLoss naming what does not match."""
        yield from self.flush()
        if self.header is None:
            raise InvalidArgument("bundle has no metadata", field="metadata")
        if not isinstance(trailer, dict):
            raise InvalidArgument(f"{where} is missing or malformed", field=where)
        counts = {k: v for k, v in self.counts.items() if v}
        claimed = {k: v for k, v in (trailer.get("counts") or {}).items() if v}
        in_header = {k: v for k, v in self.header.metadata.counts.items() if v}
        for name, expected in (("metadata.counts", in_header), (f"{where}.counts", claimed)):
            if expected != counts:
                raise DataLoss(
                    f"{name} say {expected} but the bundle holds {counts}; it is incomplete "
                    "or was changed",
                    field=name,
                )
        sha = self.digest.hexdigest()
        if trailer.get("sha256") != sha:
            raise DataLoss(
                f"records checksum mismatch: {where}.sha256 is {trailer.get('sha256')!r}, the "
                f"records read hash to {sha!r}",
                field=f"{where}.sha256",
            )
        yield Trailer(dict(self.counts), sha)


def _instant(value: Any, name: str) -> dt.datetime:
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
            if when.tzinfo is not None:
                return when.astimezone(UTC)
        except ValueError:
            pass
    raise InvalidArgument(
        f"metadata.{name} must be an instant with a time zone, not {value!r}",
        field=f"metadata.{name}",
    )


def _renames(m: pb.BundleMetadata, raw: Any) -> None:
    """The metadata's `renames` (keys changed at the source) into `m`; InvalidArgument
    naming the rename and field that is malformed."""
    if not isinstance(raw, list):
        raise InvalidArgument("renames must be a list", field="metadata.renames")
    for i, r in enumerate(raw):
        where = f"metadata.renames[{i}]"
        if not isinstance(r, dict) or set(r) - {"entity", "old_key", "new_key", "renamed_at"}:
            raise InvalidArgument(
                f"{where} must be an object of entity, old_key, new_key, renamed_at", field=where
            )
        for name in ("entity", "old_key", "new_key"):
            value = r.get(name)
            if not isinstance(value, str) or not value or len(value) > 200 or "\x00" in value:
                raise InvalidArgument(
                    f"{where}.{name} must be a non-empty text of at most 200 characters",
                    field=f"{where}.{name}",
                )
        rename = m.renames.add(entity=r["entity"], old_key=r["old_key"], new_key=r["new_key"])
        rename.renamed_at.FromDatetime(_instant(r.get("renamed_at"), f"renames[{i}].renamed_at"))
