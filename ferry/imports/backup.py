"""Backups as bundles in storage: what an import writes before it merges (backup_before)
and what a `backup` schedule writes (ferry export run --schedule NAME).

A backup of a semester is that semester's bundle, soft-deleted records included (a
semester that does not exist yet is an empty bundle of it: restoring it with replace
takes the semester back to nothing); a backup of the whole database is the bundle of
scope "all". Both read one snapshot, streamed with flat memory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from typing import cast

from sqlalchemy.engine import Engine

from ferry.bundle.bundlefile import bundle_format
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import BundleLimits, Event, Header, Trailer
from ferry.bundle.scan import SCOPE_ALL, SessionRequest, semester_exists, snapshot
from ferry.bundle.stream import fill_metadata
from ferry.datasets.spec import Dataset
from ferry.errors import FailedPrecondition, NotFound
from ferry.merge import ImportOutcome, MergeOptions, Strategy, get_import
from ferry.merge.run import Backup, run_import
from ferry.storage.base import Storage
from ferry.v1 import bundle_pb2 as pb

BACKUP_FORMAT = "json"


def backup_request(semester: str | None, exported_by: str) -> SessionRequest:
    """The bundle request of a backup of `semester` (None: the whole database)."""
    if semester is None:
        return SessionRequest(
            "", include_deleted=True, scope=SCOPE_ALL, exported_by=exported_by, hold_tables=True
        )
    return SessionRequest(semester, include_deleted=True, exported_by=exported_by, hold_tables=True)


def backup_events(engine: Engine, ds: Dataset, req: SessionRequest) -> Iterator[Event]:
    """The events of the backup `req`; an empty bundle for a semester with no records."""
    if not req.whole:
        with snapshot(engine) as conn:
            exists = semester_exists(conn, ds, req.semester)
        if not exists:
            meta = pb.BundleMetadata()
            fill_metadata(meta, ds, req, {e.name: 0 for e in ds.in_order()}, None)
            yield Header(meta)
            yield Trailer({})
            return
    with closing(cast(Generator[Event], session_events(engine, ds, req))) as events:
        yield from events


def write_backup(
    engine: Engine,
    ds: Dataset,
    storage: Storage,
    key: str,
    semester: str | None,
    exported_by: str = "",
    format_name: str = BACKUP_FORMAT,
    ready: Callable[[], None] | None = None,
) -> str:
    """Write the backup of `semester` (None: the whole database) to storage at `key`;
    returns the key. `ready` is called once the backup's snapshot is taken (what it holds
    is fixed from then on). A failure leaves no file (the storage discards it)."""
    fmt = bundle_format(format_name)
    with storage.writer(key) as out:
        events = backup_events(engine, ds, backup_request(semester, exported_by))
        first = next(events)  # the Header: the snapshot is open, its counts taken
        if ready is not None:
            ready()
        fmt.write(itertools.chain([first], events), out)
    return key


def backup_key(import_id: str, semester: str | None, when: dt.datetime | None = None) -> str:
    """The storage key of the backup an import takes before it merges."""
    stamp = (when or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%SZ")
    what = semester or "all"
    return f"backup-before-import-{import_id}-{what}-{stamp}.{BACKUP_FORMAT}"


def before_import(engine: Engine, ds: Dataset, storage: Storage, requested_by: str) -> Backup:
    """The `backup` an import service hands to run_import: the backup goes to `storage`
    under backup_key()."""

    def take(semester: str | None, import_id: str, ready: Callable[[], None]) -> str:
        return write_backup(
            engine,
            ds,
            storage,
            backup_key(import_id, semester),
            semester,
            requested_by,
            ready=ready,
        )

    return take


def restore_import_backup(
    engine: Engine,
    ds: Dataset,
    storage: Storage,
    import_id: str,
    *,
    dry_run: bool,
    requested_by: str,
) -> ImportOutcome:
    """Import the backup import `import_id` took before it ran, with replace (taking a
    backup of the present state first, unless a dry run). NotFound when it took none,
    FailedPrecondition when the file is gone."""
    earlier = get_import(engine, import_id)
    if not earlier.backup_key:
        raise NotFound(f"import {import_id} took no backup before it ran", field="import_id")
    digest = hashlib.sha256()
    try:
        with storage.open(earlier.backup_key) as f:
            while block := f.read(1024 * 1024):
                digest.update(block)
    except FileNotFoundError:
        raise FailedPrecondition(
            f"the backup import {import_id} took is no longer in storage (retention?)",
            field="import_id",
        ) from None
    fmt = bundle_format(BACKUP_FORMAT)
    with storage.open(earlier.backup_key) as f:
        return run_import(
            engine,
            ds,
            fmt.read(f, BundleLimits.own_backup()),
            MergeOptions(
                strategy=Strategy.REPLACE,
                dry_run=dry_run,
                filename=earlier.backup_key.rpartition("/")[2],
                bundle_format=BACKUP_FORMAT,
                dataset=ds.name,
            ),
            requested_by=requested_by,
            source_sha256=digest.hexdigest(),
            backup=before_import(engine, ds, storage, requested_by),
        )
