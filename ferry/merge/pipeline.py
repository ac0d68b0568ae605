"""Staging a bundle while the merge already works on the entities staged before.

A bundle arrives in dependency order, one section per entity, and an entity can be
resolved and applied as soon as its section has ended. On PostgreSQL staging therefore
runs in a thread on its own connection, into UNLOGGED tables named per dataset
(`ferry_stage_<dataset>_<entity>`, committed so the import's transaction can read them),
while the import's transaction merges entity after entity: parsing, staging and merging
use the database's cores at once. The tables belong to the run whose staging connection
holds the dataset's staging lock (a session-level advisory lock), taken before it creates
them and released only after it dropped them and its thread ended. The import lock alone
did not make the names safe: it ends with the import's transaction, before the run drops
its tables (the next import's tables were dropped under it) and, on a failure, before its
staging thread stops (whose next INSERT would land in the next import's tables). A run
first drops whatever a killed run left.
Records refused in Python (on_error=skip_invalid) go to a staging table too, and the
import's transaction adopts them into import_rejects.

On SQLite everything stays on the import's connection, in TEMP tables, one step after the
other (SQLite has one writer).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.bundle.formats.base import Batch, Event, Header, RawBatch, Trailer
from ferry.bundle.pipe import ahead
from ferry.datasets.spec import Dataset
from ferry.db import tenant
from ferry.errors import DataLoss, InvalidArgument, Unavailable
from ferry.merge import rejects
from ferry.merge.shape import Shape
from ferry.merge.stagetables import Stager, create_tables

log = logging.getLogger(__name__)
# ANALYZE of the staging and resolved tables samples 300 x this many rows: enough for
# the planner to pick hash joins over a whole bundle, a tenth of the default's cost.
STATISTICS_TARGET = 10
# Seconds a run waits for an earlier run's staging to drop its tables (normally a few ms;
# longer only when that run's staging thread is stuck, see Staging.close).
STAGING_LOCK_WAIT = 60


class Staging:
    """Stages `events` into the shapes' staging tables; `wait(entity)` returns once the
    entity is fully staged (raising what went wrong in staging, if anything)."""

    def __init__(
        self,
        engine: Engine,
        conn: Connection,
        ds: Dataset,
        shapes: dict[str, Shape],
        *,
        only: str = "",
        keep_rejects: bool = False,
        import_id: str = "",
    ) -> None:
        self._sqlite = engine.dialect.name == "sqlite"
        self._shapes = shapes
        self._only = only
        self._keep = keep_rejects
        self._import_id = import_id
        self._rejects = f"ferry_stage_{ds.name}__rejects"
        self._lock_key = f"ferry.import.staging:{ds.name}"
        self._locked = False
        self._conn = conn if self._sqlite else engine.connect()
        self.stager = Stager(self._conn, shapes, self._sqlite)
        self._done: set[str] = set()
        self._assumed: set[str] = set()  # entities the merge took as absent
        self._order = {name: i for i, name in enumerate(shapes)}
        self._current = ""
        self._finished = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the staging side ----------------------------------------------------------

    def start(self, events: Iterable[Event]) -> None:
        """Create the staging tables and stage `events`: in a thread on PostgreSQL, here
        and now on SQLite."""
        if not self._sqlite:
            self._lock()
        create_tables(self._conn, self._shapes.values(), self._sqlite)
        if self._sqlite:
            self._stage(iter(events))
            return
        if self._keep:
            rejects.create_staged(self._conn, self._rejects)
        self._conn.commit()
        self._thread = threading.Thread(
            target=tenant.carried(self._stage),
            args=(iter(events),),
            name="import-staging",
            daemon=True,
        )
        self._thread.start()

    def _lock(self) -> None:
        """Take the dataset's staging lock on the staging connection, waiting at most
        STAGING_LOCK_WAIT for a run before this one to drop its tables."""
        try:
            self._conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{STAGING_LOCK_WAIT}s'")
            self._conn.execute(
                sa.text("SELECT pg_advisory_lock(hashtext(:k))"), {"k": self._lock_key}
            )
        except sa.exc.OperationalError as e:
            if getattr(e.orig, "sqlstate", "") != "55P03":  # lock_not_available
                raise
            raise Unavailable(
                "the staging tables of an earlier import are still in use (its staging "
                "did not stop); try again later"
            ) from None
        self._locked = True

    def _stage(self, events: Iterator[Event]) -> None:
        batches = ahead(events) if not self._sqlite else events
        try:
            trailer: Trailer | None = None
            keep = self._save_rejects if self._keep else None
            for event in batches:
                if self._stop.is_set():
                    return
                if isinstance(event, Batch | RawBatch):
                    self._enter(event.entity)
                    if isinstance(event, Batch):
                        self.stager.stage(event.entity, event.records, keep)
                    else:
                        self.stager.stage_raw(event, keep)
                elif isinstance(event, Trailer):
                    trailer = event
                elif isinstance(event, Header):
                    raise InvalidArgument("a bundle has exactly one header, first", field="header")
            self._close(self._current)
            if trailer is not None:
                self._check_counts(trailer)
            with self._cond:
                self._finished = True
                self._cond.notify_all()
        except BaseException as exc:
            with self._cond:
                self._error = exc
                self._cond.notify_all()
        finally:
            if hasattr(batches, "close"):
                batches.close()

    def _enter(self, entity: str) -> None:
        if self._only and entity != self._only:
            raise InvalidArgument(
                f"this import takes {self._only} records, not {entity!r}", field="entity"
            )
        if entity == self._current:
            return
        with self._cond:
            if entity in self._done:
                raise InvalidArgument(
                    f"{entity} records appear in two places; each entity is one section",
                    field=entity,
                )
            if entity in self._assumed:
                raise InvalidArgument(
                    f"{entity} records come after records of entities that depend on them; "
                    "a bundle lists entities in dependency order",
                    field=entity,
                )
        self._close(self._current)
        with self._cond:
            self._current = entity

    def _close(self, entity: str) -> None:
        """The section of `entity` ended: commit and analyze it, and let the merge go."""
        if not entity:
            return
        if not self._sqlite:
            self._conn.commit()
            self._conn.exec_driver_sql(f"SET LOCAL default_statistics_target = {STATISTICS_TARGET}")
            self._conn.exec_driver_sql(f"ANALYZE {self._shapes[entity].stage}")
            self._conn.commit()
        with self._cond:
            self._done.add(entity)
            self._cond.notify_all()

    def _save_rejects(self, entity: str, records: list[tuple[int, dict[str, Any]]]) -> None:
        if self._sqlite:
            rejects.save(self._conn, self._import_id, entity, records)
        else:
            rejects.save_staged(self._conn, self._rejects, entity, records)

    def _check_counts(self, trailer: Trailer) -> None:
        entities = self.stager.entities
        for name, expected in trailer.counts.items():
            got = entities[name].staged if name in entities else 0
            if int(expected) != got:
                raise DataLoss(
                    f"the trailer counts {expected} {name} records but the bundle holds {got}",
                    field=name,
                )

    # ---- the merging side ----------------------------------------------------------

    def wait(self, entity: str | None = None) -> None:
        """Block until `entity` is staged (None: everything, trailer checked)."""
        with self._cond:
            while True:
                if self._error is not None:
                    raise self._error
                if self._finished or (entity is not None and entity in self._done):
                    return
                if entity is not None and self._passed(entity):
                    self._assumed.add(entity)  # none in the bundle
                    return
                self._cond.wait(0.5)

    def _passed(self, entity: str) -> bool:
        """Staging is at an entity after `entity` (in dependency order) without having
        seen any of it: the bundle has none."""
        order = self._order
        return bool(self._current) and order[self._current] > order[entity]

    def adopt_rejects(self, conn: Connection) -> None:
        """Move the records refused while staging into import_rejects (in `conn`'s
        transaction, so they commit or roll back with the import). On SQLite they were
        saved there as they came."""
        if self._keep and not self._sqlite:
            rejects.adopt_staged(conn, self._rejects, self._import_id)

    def close(self) -> None:
        """Stop staging and drop the staging tables (PostgreSQL; call after the import's
        transaction ended, which read them)."""
        if self._sqlite:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            if self._thread.is_alive():  # stuck reading the upload
                log.warning("staging did not stop; its tables and lock stay until it does")
                threading.Thread(target=tenant.carried(self._finish_after), args=(self._thread,),
                                 name="import-staging-close", daemon=True).start()  # fmt: skip
                return
        self._finish()

    def _finish_after(self, thread: threading.Thread) -> None:
        thread.join()
        self._finish()

    def _finish(self) -> None:
        """Drop the tables, then release the staging lock (only then may another run
        create tables of the same names), and close the staging connection."""
        try:
            self._conn.rollback()
            if self._locked:  # the tables are this run's only while it holds the lock
                names = [s.stage for s in self._shapes.values()] + [self._rejects]
                self._conn.exec_driver_sql(f"DROP TABLE IF EXISTS {', '.join(names)}")
                self._conn.commit()
                self._conn.execute(
                    sa.text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": self._lock_key}
                )
                self._conn.commit()
                self._locked = False
        except sa.exc.SQLAlchemyError:
            log.warning("could not drop the staging tables", exc_info=True)
        finally:
            if self._locked:  # never hand a connection holding the lock back to the pool
                self._conn.invalidate()
            self._conn.close()
