"""The `oneroster` bundle format (`ferry.bundle_formats`): a OneRoster 1.2 CSV zip.

Registered like any bundle format, so a OneRoster zip goes through the merge engine as a
bundle does (dry run, strategies, undo, idempotency), and DownloadSession writes one.
Reading validates the whole package first (ferry.oneroster.validate): any refused row or
file refuses the package, naming each refusal by file, row, column and rule, and nothing
is imported. Warnings (ignored columns) and the loss report travel to the import's result
as warnings (Header.notes).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterable, Iterator
from typing import IO, Any

import msgspec

from ferry.bundle.formats import runs
from ferry.bundle.formats.base import (
    REFUSED,
    Batch,
    BundleLimits,
    Event,
    FieldRules,
    Header,
    Note,
    RawBatch,
    Record,
    Trailer,
)
from ferry.bundle.formats.common import schema
from ferry.bundle.scan import FORMAT_VERSION
from ferry.errors import InvalidArgument, ResourceExhausted
from ferry.oneroster.export import build, write_zip
from ferry.oneroster.importing import Mapped, map_package
from ferry.oneroster.loss import LossReport
from ferry.oneroster.validate import Limits, Package, Problem, gc_paused, read_package
from ferry.v1 import bundle_pb2 as pb

ORDER = ("courses", "students", "enrollments", "grades")
BATCH = 1000
LISTED = 20  # refusals quoted in the error message


class OneRosterBundle:
    name = "oneroster"
    extension = "zip"
    content_type = "application/zip"

    def __init__(self, app: object = None) -> None:
        """Built as `factory(app)`; it takes no settings from the app."""

    def write(self, events: Iterable[Event], out: IO[bytes]) -> None:
        tables, manifest, _loss = build(events)
        write_zip(tables, manifest, out)

    def read(self, src: IO[bytes], limits: BundleLimits) -> Iterator[Event]:
        return self._read(src, limits, None)

    def read_raw(self, src: IO[bytes], limits: BundleLimits, rules: FieldRules) -> Iterator[Event]:
        """Like read, but batches of records that pass `rules` come as RawBatches: the
        merge engine hands their JSON to PostgreSQL instead of converting each record."""
        return self._read(src, limits, rules)

    def _read(
        self, src: IO[bytes], limits: BundleLimits, rules: FieldRules | None
    ) -> Iterator[Event]:
        with tempfile.TemporaryFile() as f:
            copied = 0
            while block := src.read(1024 * 1024):
                copied += len(block)
                if copied > limits.max_bytes:
                    raise ResourceExhausted(
                        f"file is larger than {limits.max_bytes} bytes", field="file"
                    )
                f.write(block)
            f.seek(0)
            with gc_paused():
                pkg = read_package(
                    f,
                    Limits(
                        max_bytes=limits.max_bytes,
                        max_entries=limits.max_entries,
                        max_ratio=limits.max_ratio,
                    ),
                )
                check(pkg)
                mapped = map_package(pkg)
        raw = None if rules is None else _Raw(limits, rules, mapped.now)
        yield from events(mapped, pkg, raw)


def check(pkg: Package, rows_too: bool = False) -> None:
    """Raise InvalidArgument naming the package's errors (the first LISTED, and a count)
    when one is about a file (the manifest, a header, the zip) or, with `rows_too`, any.
    Refused rows otherwise travel as `refused` notes: the merge engine counts them as
    invalid records, so `on_error` decides (abort: nothing imported; skip_invalid: the
    rest is)."""
    fatal = pkg.errors if rows_too else [p for p in pkg.errors if p.row < 2]
    if not fatal:
        return
    listed = "; ".join(str(p) for p in fatal[:LISTED])
    more = len(fatal) - LISTED
    tail = f"; and {more} more" if more > 0 else ""
    first = fatal[0]
    raise InvalidArgument(
        f"the OneRoster package was refused, nothing was imported: {len(fatal)} "
        f"problem(s): {listed}{tail}",
        field=f"{first.file}:{first.row}:{first.column}" if first.row else first.file,
    )


def notes(pkg: Package, loss: LossReport) -> list[Note]:
    """The package's warnings and the loss report as the import result's warnings."""
    out: list[Note] = []
    sids = (
        {(t, r.number): r.get("sourcedId") for t, rows in pkg.tables.items() for r in rows}
        if pkg.errors
        else {}
    )
    for p in pkg.errors:  # rows only: check() raised for the rest
        table = p.file.removesuffix(".csv")
        out.append(Note(REFUSED, p.file, p.column, p.row, [sids.get((table, p.row), "")], str(p)))
    by_rule: dict[tuple[str, str, str], list[Problem]] = {}
    for p in pkg.warnings:
        by_rule.setdefault((p.file, p.column, p.rule), []).append(p)
    for (file, column, rule), ps in by_rule.items():
        out.append(
            Note(
                "oneroster_" + rule.replace("-", "_"),
                file,
                column,
                len(ps),
                [f"row {p.row}" if p.row else file for p in ps[:5]],
                str(ps[0]) + (f" (and {len(ps) - 1} more like it)" if len(ps) > 1 else ""),
            )
        )
    for x in loss.items():
        what = f"{x.entity}.{x.field}" if x.field else x.entity
        message = f"{what}: {x.count:,} not imported — {x.reason}"
        out.append(Note("not_imported", x.entity, x.field, x.count, x.sample, message, x.code))
    return out


class _Raw:
    """Batches as RawBatches where every record passes the merge engine's FieldRules
    (checked in one msgspec call per batch, as the json and jsonl readers do); a batch
    that does not pass goes as a plain Batch, checked record by record."""

    def __init__(self, limits: BundleLimits, rules: FieldRules, now: dt.datetime) -> None:
        self.limits = limits
        self.rules = rules
        self.now = now
        self.fields = schema("school")
        self.encoder = msgspec.json.Encoder()
        self.decoders: dict[str, msgspec.json.Decoder[Any]] = {}

    def batch(self, entity: str, records: list[Record]) -> Event:
        cols = self.fields[entity]
        names = sorted(cols)
        # Each record laid over the full row of defaults keeps the columns' sorted order;
        # one with a key outside the columns comes out longer and is built field by field.
        base: dict[str, Any] = dict.fromkeys(names)
        if "created_at" in base:
            base["created_at"] = self.now
        full = [{**base, **r} for r in records]
        if any(len(f) != len(names) for f in full):
            full = [
                {n: r.get(n, self.now if n == "created_at" else None) for n in names}
                for r in records
            ]
        decoder = self.decoders.get(entity)
        if decoder is None:
            decoder = runs.run_decoder(cols, self.rules.get(entity, {}), self.limits)
            self.decoders[entity] = decoder
        text = self.encoder.encode(full)
        try:
            decoded = decoder.decode(text)
        except msgspec.DecodeError:  # ValidationError included
            return Batch(entity, records)
        if b"\\u0000" in text or self.encoder.encode(decoded) != text:
            return Batch(entity, records)
        return RawBatch(entity, text[1:-1], len(records))


def events(mapped: Mapped, pkg: Package, raw: _Raw | None = None) -> Iterator[Event]:
    meta = pb.BundleMetadata(
        semester=mapped.semesters[0] if len(mapped.semesters) == 1 else "",
        dataset="school",
        format_version=FORMAT_VERSION,
        exported_by=pkg.manifest.get("source.systemName", ""),
    )
    meta.exported_at.FromDatetime(dt.datetime.now(dt.UTC))
    counts = {e: len(mapped.records.get(e, [])) for e in ORDER}
    for e, n in counts.items():
        meta.counts[e] = n
    yield Header(meta, updated_since=mapped.since, notes=notes(pkg, mapped.loss))
    for entity in ORDER:
        rows = mapped.records.get(entity, [])
        for i in range(0, len(rows), BATCH):
            part = rows[i : i + BATCH]
            yield Batch(entity, part) if raw is None else raw.batch(entity, part)
    yield Trailer(counts=counts)
