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
from typing import IO

from ferry.bundle.formats.base import Batch, BundleLimits, Event, Header, Note, Trailer
from ferry.bundle.scan import FORMAT_VERSION
from ferry.errors import InvalidArgument, ResourceExhausted
from ferry.oneroster.export import build, write_zip
from ferry.oneroster.importing import Mapped, map_package
from ferry.oneroster.loss import LossReport
from ferry.oneroster.validate import Limits, Package, Problem, read_package
from ferry.v1 import bundle_pb2 as pb

ORDER = ("courses", "students", "enrollments", "grades")
BATCH = 1000
LISTED = 20  # refusals quoted in the error message


class OneRosterBundle:
    name = "oneroster"
    extension = "zip"
    content_type = "application/zip"

    def write(self, events: Iterable[Event], out: IO[bytes]) -> None:
        tables, manifest, _loss = build(events)
        write_zip(tables, manifest, out)

    def read(self, src: IO[bytes], limits: BundleLimits) -> Iterator[Event]:
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
            pkg = read_package(
                f,
                Limits(
                    max_bytes=limits.max_bytes,
                    max_entries=limits.max_entries,
                    max_ratio=limits.max_ratio,
                ),
            )
        check(pkg)
        yield from events(map_package(pkg), pkg)


def check(pkg: Package) -> None:
    """Raise InvalidArgument naming the package's errors (the first LISTED, and a count)."""
    if not pkg.errors:
        return
    listed = "; ".join(str(p) for p in pkg.errors[:LISTED])
    more = len(pkg.errors) - LISTED
    tail = f"; and {more} more" if more > 0 else ""
    first = pkg.errors[0]
    raise InvalidArgument(
        f"the OneRoster package was refused, nothing was imported: {len(pkg.errors)} "
        f"problem(s): {listed}{tail}",
        field=f"{first.file}:{first.row}:{first.column}" if first.row else first.file,
    )


def notes(pkg: Package, loss: LossReport) -> list[Note]:
    """The package's warnings and the loss report as the import result's warnings."""
    out: list[Note] = []
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
        out.append(Note("not_imported", x.entity, x.field, x.count, x.sample, message))
    return out


def events(mapped: Mapped, pkg: Package) -> Iterator[Event]:
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
            yield Batch(entity, rows[i : i + BATCH])
    yield Trailer(counts=counts)
