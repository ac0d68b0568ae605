"""run_import: stage a bundle, validate and apply it set-based, in one transaction.

The run: take the dataset's import lock, stage the batches (ferry.merge.pipeline: on
PostgreSQL in a thread on a connection of its own, so an entity is merged while the next
one is still being staged), and per entity in dependency order, as soon as it is staged,
resolve + classify (ferry.merge.plan) and apply (ferry.merge.apply); then bind late
references, and for `replace` soft-delete what the bundle lacks. A dry run, or an aborting
run with invalid records, rolls all of it back and is then recorded on its own; a good run
commits its data, its undo log and its record at once.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass
from typing import IO, Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.bundle import semesters
from ferry.bundle.formats.base import REFUSED, Event, Header
from ferry.bundle.scan import FORMAT_VERSION
from ferry.bundle.schools import import_target
from ferry.datasets.spec import Dataset
from ferry.db import tenant
from ferry.errors import FerryError, Internal, InvalidArgument, described, reason_of
from ferry.merge import (
    announce,
    apply,
    approval,
    digest,
    limits,
    links,
    plan,
    rejects,
    renames,
    store,
    threeway,
)
from ferry.merge.header import refuse_out_of_scope, scope_condition
from ferry.merge.idempotency import earlier_run, record_rolled_back
from ferry.merge.model import (
    MAX_LISTED_ERRORS,
    MAX_SAMPLES_PER_ENTITY,
    EntitySummary,
    ImportOutcome,
    ImportWarning,
    MergeOptions,
    OnError,
    RecordChange,
    RecordError,
    Status,
    Strategy,
)
from ferry.merge.pipeline import STATISTICS_TARGET, Staging
from ferry.merge.planfile import PlanRecords
from ferry.merge.shape import Shape, build_shapes
from ferry.merge.stagetables import drop_tables
from ferry.reports import versions
from ferry.reports.versions import bump_and_touched

log = logging.getLogger(__name__)


def begin_locked(conn: Connection, dataset: str, importing: bool = True) -> None:
    """Open the transaction holding the dataset's import lock of the acting school.

    One lock per dataset and school, not per semester: semesters share students, and two
    imports updating the same rows in different orders could otherwise deadlock. SQLite
    holds one school and locks the whole database.
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock now, not at the first write
    else:
        # Per school too: one school's imports never queue behind another's (their rows
        # are apart, docs/tenants.md).
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
            {"k": f"ferry.import:{dataset}:{tenant.school_id()}"},
        )
        # Room for the hash joins and aggregates over a whole bundle (server memory,
        # for this transaction only).
        conn.exec_driver_sql("SET LOCAL work_mem = '128MB'")
        conn.exec_driver_sql(f"SET LOCAL default_statistics_target = {STATISTICS_TARGET}")
        # No JIT: the planner's cost for a merge statement over a bundle (inflated by
        # correlated subqueries that never run) passes jit_above_cost, and compiling took
        # ~50 ms per statement, longer than the statements themselves; 10,000 students
        # imported at half the speed with it on.
        conn.exec_driver_sql("SET LOCAL jit = off")
    # The import's writes are no local edits (no base saved for them; ferry.merge.threeway).
    # An entity file (csv, xlsx) is a person's edit: its writes are.
    if importing:
        threeway.importing(conn, True)


class Backup(Protocol):
    """Writes a backup of `semester` (None: the whole database) for import `import_id`
    and returns its storage key, calling `ready()` as soon as its snapshot is taken."""

    def __call__(self, semester: str | None, import_id: str, ready: Callable[[], None]) -> str: ...


class _Backing:
    """A backup running in a thread beside the merge. Its snapshot is taken before the
    merge changes anything (start() returns then), and the import cannot commit before
    it has ended (result()): it holds exactly the state the import started from."""

    def __init__(self, backup: Backup, semester: str | None, import_id: str) -> None:
        self._ready = threading.Event()
        self._key = ""
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=tenant.carried(self._run),
            args=(backup, semester, import_id),
            name="backup-before",
        )

    def _run(self, backup: Backup, semester: str | None, import_id: str) -> None:
        try:
            self._key = backup(semester, import_id, self._ready.set)
        except BaseException as e:  # handed to the import by result()
            self._error = e
        finally:
            self._ready.set()

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def result(self) -> str:
        """The backup's storage key once it has ended; its error if it failed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._key


class ArrivingSha(Protocol):
    """The sha256 of a source that arrives over the network (an upload), possibly while
    the import reads it."""

    def __call__(self, wait: bool = True) -> str:
        """The source's hex sha256 once it has arrived whole: waits for that, or with
        wait=False (asked once the import failed) is "" while it still arrives. Raises
        the source's own error when it failed to arrive (too big, damaged, cancelled),
        and run_import then records nothing."""
        ...


def run_import(
    engine: Engine,
    ds: Dataset,
    events: Iterable[Event],
    options: MergeOptions,
    *,
    requested_by: str,
    source_sha256: str | ArrivingSha,
    entity: str = "",
    backup: Backup | None = None,
    plan_sink: Callable[[str], AbstractContextManager[IO[bytes]]] | None = None,
) -> ImportOutcome:
    """Merge `events` (Header?, Batches, Trailer?) into the database; see the module doc.

    Returns the outcome (COMPLETED, FAILED with errors listed, or DRY_RUN). Raises
    InvalidArgument for structural problems (unknown entity or field, replace without a
    semester), AlreadyExists when the idempotency key was used for another payload.

    `backup`, when given and the options want one (backup_before; by default for
    replace), writes what the import touches (its semester; None: the whole database, for
    a whole bundle or an entity import) and returns where. It starts once the import
    holds the dataset's lock and runs in a thread beside the merge: its snapshot is taken
    before the merge changes anything, and the import commits only after it has ended,
    so it holds exactly the state the merge started from.

    `plan_sink`, when given and the options are a dry run with plan_records, is asked for
    a file for this run's id (plan_sink(id)) and gets every record's decision
    (ferry.merge.planfile) as the run goes; the file is kept only if the dry run ends as
    one (DRY_RUN), otherwise the writer is left with an exception (nothing kept).

    `source_sha256` may be an ArrivingSha when `events` are read from an upload, perhaps
    still arriving: its sha256 is taken once the events were read to their end (before
    the run, with an idempotency key). If the source fails to arrive, its error is
    raised and the run is not recorded.
    """
    started = dt.datetime.now(dt.UTC)
    clock = time.perf_counter()
    options = _normalized(options)
    if entity and entity not in ds.entities:
        raise InvalidArgument(
            f"unknown entity {entity!r}; known: {', '.join(ds.entities)}", field="entity"
        )
    stream = iter(events)
    first = next(stream, None)
    semester = ""
    whole = False  # a whole-database bundle (scope "all", a backup)
    notes: list[ImportWarning] = []
    refused: list[RecordError] = []
    if isinstance(first, Header):
        semester = first.metadata.semester
        notes = [n for n in first.notes if n.kind != REFUSED]
        # Records a reader refused before the merge (a OneRoster row): invalid records.
        refused = [
            RecordError(
                n.entity,
                n.sample[0] if n.sample else "",
                n.field,
                n.message,
                n.count,
                n.reason or "REFUSED_BY_READER",
            )
            for n in first.notes
            if n.kind == REFUSED
        ]
        whole = _whole(first)
        if first.metadata.dataset and first.metadata.dataset != ds.name:
            raise InvalidArgument(
                f"the bundle is of dataset {first.metadata.dataset!r}, not {ds.name!r}",
                field="dataset",
            )
    if isinstance(first, Header):
        _readable(first)
    # A bundle of another school goes only where the caller said (docs/tenants.md).
    source = first.metadata.school if isinstance(first, Header) else ""
    import_target(engine, source, options.school)
    rest: Iterator[Event] = (
        stream if first is None or isinstance(first, Header) else itertools.chain([first], stream)
    )
    if options.strategy is Strategy.REPLACE and not semester and not whole:
        raise InvalidArgument("replace needs a semester scope; use a bundle", field="strategy")
    since = _delta_since(first)
    if options.strategy is Strategy.REPLACE and since is not None:
        # A delta lacks every record unchanged since: replace would soft-delete them all.
        raise InvalidArgument(
            f"merge_strategy replace cannot take a delta bundle: it holds only the records "
            f"of {semester} changed since updated_since {since.strftime('%Y-%m-%dT%H:%M:%SZ')}, "
            "and replace would soft-delete all the others; import it with merge_strategy "
            "update (its deletions are applied as soft-deletes)",
            field="options.strategy",
        )
    limits.check_limits(ds, options.change_limits)
    approval.require_plan(options)
    key = "" if options.dry_run else options.idempotency_key
    arriving: ArrivingSha | None = None
    if callable(source_sha256):
        arriving = source_sha256
        # The key's check needs the payload's sha256 before the run.
        source_sha256 = arriving() if key else ""
    if key:
        with engine.connect() as conn:
            earlier = earlier_run(conn, key, source_sha256)
        if earlier is not None:
            return earlier
    outcome = ImportOutcome(
        id=str(uuid.uuid4()),
        status=Status.FAILED,
        options=options,
        entity=entity,
        requested_by=requested_by,
        source_sha256=source_sha256,
        semester=semester,
        summaries=[],
        total_errors=0,
        errors=[],
        sample_changes=[],
        has_rejected_file=False,
        created_at=started,
        finished_at=None,
        undone_at=None,
        duration_seconds=0.0,
        error_message="",
        warnings=notes,
    )
    shapes = build_shapes(ds, engine.dialect)
    sqlite = engine.dialect.name == "sqlite"
    temps = [n for s in shapes.values() for n in (s.stage, s.resolved, s.scope)]
    conn = engine.connect()
    was_changed = False  # versions bumped and committed: settle() before returning
    staging: Staging | None = None
    work: _Run | None = None
    backing: _Backing | None = None
    sink = ExitStack()
    try:
        begin_locked(conn, ds.name, importing=not entity)
        if key:
            earlier = earlier_run(conn, key, source_sha256)
            if earlier is not None:
                conn.rollback()
                return earlier
        preview: digest.Preview | None = None
        if options.plan_digest and not options.dry_run:
            # Under the lock: nothing can change between this check and the commit.
            preview = digest.find_preview(conn, options.plan_digest)
            approval.check_apply(options, preview.approval, preview.id, preview.expires_at)
            if isinstance(source_sha256, str):
                digest.check_source(preview, source_sha256)
        if backup is not None and options.wants_backup:
            backing = _Backing(backup, semester if semester and not whole else None, outcome.id)
            backing.start()
        store.insert(conn, outcome, claim_key=bool(key))
        if sqlite:
            drop_tables(conn, temps)
        staging = Staging(
            engine,
            conn,
            ds,
            shapes,
            only=entity,
            keep_rejects=options.on_error is OnError.SKIP_INVALID,
            import_id=outcome.id,
        )
        work = _Run(conn, ds, shapes, options, outcome, sqlite, entity, staging, preview)
        if plan_sink is not None and options.dry_run and options.plan_records:
            work.records = PlanRecords(sink.enter_context(plan_sink(outcome.id)))
        # Bundles from a source installation merge three-way when asked (entity files
        # are local edits).
        work.bundle = isinstance(first, Header)
        work.three_way = options.keep_local_edits and work.bundle
        if isinstance(first, Header):
            work.renames = list(first.metadata.renames)
        staging.start(rest)
        work.merge(None if whole else semester, started)
        work.step = "finishing"
        with _timed("staging finished"):
            staging.wait()
        staging.adopt_rejects(conn)
        if refused:
            outcome.errors = (refused + outcome.errors)[:MAX_LISTED_ERRORS]
            outcome.total_errors += len(refused)
        if arriving is not None:  # the events were read to their end: it has arrived
            outcome.source_sha256 = arriving()
        outcome.plan_digest = digest.digest(
            outcome.source_sha256, options, entity, outcome.plan_parts
        )
        if preview is not None:
            digest.check_source(preview, outcome.source_sha256)
            if outcome.plan_digest != options.plan_digest.strip().lower():
                raise digest.refuse_different(preview, outcome.plan_parts)
        failed_early = outcome.total_errors > 0 and options.on_error is OnError.ABORT
        if not options.dry_run and not failed_early and not options.allow_mass_change:
            limits.refuse_exceeded(outcome.limits)
        if backing is not None:
            with _timed("backup before (its end)"):
                outcome.backup_key = backing.result()
        outcome.finished_at = dt.datetime.now(dt.UTC)
        outcome.duration_seconds = time.perf_counter() - clock
        failed = outcome.total_errors > 0 and options.on_error is OnError.ABORT
        if failed or options.dry_run:
            conn.rollback()
            outcome.status = Status.FAILED if failed else Status.DRY_RUN
            if not failed and work.records is not None:
                outcome.plan_records = True
                sink.close()  # the file of every record is kept
            if not failed:
                approval.propose(outcome, options)  # it waits for an admin's approval
            outcome.has_rejected_file = False
            if failed:
                outcome.warnings = []
                outcome.error_message = (
                    f"{outcome.total_errors} invalid record(s); nothing was imported"
                )
                # (reasons of an import, not of a job: ferry.merge.reasons.IMPORT)
                outcome.error_reason, outcome.error_details = (
                    "INVALID_RECORDS",
                    {"count": str(outcome.total_errors)},
                )
            record_rolled_back(engine, outcome)
        else:
            outcome.status = Status.COMPLETED
            # (the rejects file holds what the merge refused, not what a reader did)
            outcome.has_rejected_file = outcome.total_errors > len(refused)
            store.update(conn, outcome, claim_key=bool(key))
            # The import is about to commit, in this transaction, with everything it
            # changed (import_changes rows of outcome.id; outcome.semester): anything
            # that must change with the data (data versions) goes right here.
            # Report cache keys change with this commit.
            # ListSemesters' counts of the semesters it changed, too.
            with _timed("report versions"):
                _, touched = bump_and_touched(conn, ds, outcome.id, created=False)
            with _timed("semester counts"):
                semesters.recount(conn, ds, touched)
            announce.recorded(conn, outcome)  # its notification commits with it
            threeway.importing(conn, False)
            with _timed("commit"):
                conn.commit()
            was_changed = versions.changed(conn)
    except BaseException as exc:
        conn.rollback()
        with suppress(Exception):  # nothing of the plan file is kept
            sink.__exit__(type(exc), exc, exc.__traceback__)
        if key and isinstance(exc, sa.exc.IntegrityError):
            # Another run claimed the key meanwhile: its outcome is ours.
            earlier = earlier_run(conn, key, source_sha256)
            if earlier is not None:
                return earlier
        if arriving is not None:
            # A source that failed to arrive raises its own error here, unrecorded, as
            # an upload that fails before its import starts; one still arriving (the
            # import failed first) has no sha256 yet.
            outcome.source_sha256 = arriving(wait=False)
        outcome.finished_at = dt.datetime.now(dt.UTC)
        outcome.duration_seconds = time.perf_counter() - clock
        raised: BaseException = exc
        if isinstance(exc, FerryError):
            outcome.error_message = exc.message
            outcome.error_reason = reason_of(exc)
            outcome.error_details = {k: str(v) for k, v in exc.metadata.items()}
            if exc.field:
                outcome.error_details.setdefault("field", exc.field)
        elif isinstance(exc, Exception):
            # In words with a reference id: a database error's text is its statement
            # and parameters, readable by any viewer through GetImport.
            step = work.step if work is not None else "starting"
            outcome.error_message, ref = described(exc, f"import {outcome.id} while {step}", log)
            outcome.error_reason, outcome.error_details = "INTERNAL", {"reference": ref}
            if not isinstance(exc, sa.exc.OperationalError):  # UNAVAILABLE stays UNAVAILABLE
                raised = Internal(outcome.error_message)
            else:
                outcome.error_reason, outcome.error_details = "UNAVAILABLE", {}
        else:
            outcome.error_message = f"import {outcome.id} was interrupted"
            outcome.error_reason, outcome.error_details = "INTERRUPTED", {}
        outcome.summaries, outcome.errors, outcome.sample_changes = [], [], []
        outcome.warnings = []
        try:
            record_rolled_back(engine, outcome)
        except sa.exc.SQLAlchemyError:
            log.exception("could not record failed import %s", outcome.id)
        if raised is exc:
            raise
        raise raised from exc
    finally:
        if not outcome.plan_records:  # a failed run's plan file: none
            with suppress(BaseException):
                sink.__exit__(RuntimeError, RuntimeError("no plan"), None)
        if backing is not None:  # a failed import still waits for its backup thread
            with suppress(BaseException):
                backing.result()
        if sqlite:
            drop_tables(conn, temps)
            conn.commit()
        conn.close()
        if staging is not None:
            staging.close()
    # Committed: before it returns (to gRPC, the CLI, the gateway, a job), no reports
    # process serves a report from before it (ferry.reports.versions.settle).
    with _timed("report listeners"):
        versions.settle(engine, was_changed)
    log.info(
        "import %s %s: %s errors in %.2fs",
        outcome.id,
        outcome.status,
        outcome.total_errors,
        outcome.duration_seconds,
    )
    return outcome


def _readable(header: Header) -> None:
    """InvalidArgument for a header of a newer bundle format than this Ferry reads. The
    file formats check (and upgrade) while decoding; this catches typed chunks
    (ImportSession's bundle_chunk), whose header arrives as the sender wrote it. An older
    version's typed records are the same messages: nothing to upgrade."""
    version = header.metadata.format_version
    if version > FORMAT_VERSION:
        raise InvalidArgument(
            f"bundle format version {version} is newer than this Ferry reads "
            f"(version {FORMAT_VERSION}); upgrade Ferry",
            field="format_version",
        )


def _whole(header: Header) -> bool:
    """Whether the bundle holds the whole dataset (scope "all"); InvalidArgument for a
    scope this code does not know."""
    scope = header.metadata.scope
    if scope not in ("", "semester", "school", "all"):
        raise InvalidArgument(
            f"the bundle's scope {scope!r} is unknown; known: semester, school, all",
            field="metadata.scope",
        )
    if scope in ("school", "all") and header.metadata.semester:
        raise InvalidArgument(
            f"a bundle of scope {scope} names no semester", field="metadata.semester"
        )
    return scope in ("school", "all")


def _delta_since(first: Event | None) -> dt.datetime | None:
    """The bundle's updated_since (UTC) when it is a delta bundle, else None."""
    if not isinstance(first, Header):
        return None
    since = first.updated_since
    if since is None and first.metadata.HasField("updated_since"):
        since = first.metadata.updated_since.ToDatetime(dt.UTC)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    return None if since is None else since.astimezone(dt.UTC)


def _normalized(options: MergeOptions) -> MergeOptions:
    """Options with real enum members (callers may pass plain strings)."""
    try:
        strategy = Strategy(options.strategy)
    except ValueError:
        known = ", ".join(s.value for s in Strategy)
        raise InvalidArgument(
            f"unknown strategy {options.strategy!r}; known: {known}", field="strategy"
        ) from None
    try:
        on_error = OnError(options.on_error)
    except ValueError:
        known = ", ".join(s.value for s in OnError)
        raise InvalidArgument(
            f"unknown on_error {options.on_error!r}; known: {known}", field="on_error"
        ) from None
    return dataclasses.replace(options, strategy=strategy, on_error=on_error)


@contextmanager
def _timed(what: str) -> Iterator[None]:
    """Log how long a phase took (DEBUG): where an import's time goes."""
    clock = time.perf_counter()
    yield
    log.debug("%s: %.3fs", what, time.perf_counter() - clock)


@dataclass
class _Run:
    conn: Connection
    ds: Dataset
    shapes: dict[str, Shape]
    options: MergeOptions
    outcome: ImportOutcome
    sqlite: bool
    entity: str
    staging: Staging
    preview: digest.Preview | None = None  # the plan this run must apply exactly
    three_way: bool = False  # keep local edits (ferry.merge.threeway)
    bundle: bool = False  # from a source installation (not an entity file)
    renames: list[Any] = dataclasses.field(default_factory=list)  # keys changed at the source
    records: PlanRecords | None = None  # every record's decision (plan_records)

    def _rename(self, now: object, now_dt: dt.datetime) -> tuple[list[RecordError], dict[str, int]]:
        """Apply the bundle's renames before any record is merged (ferry.merge.renames)."""
        if not self.renames:
            return [], {}
        self.step = "renaming records"
        found, samples, counted, part = renames.apply(
            self.conn, self.ds, self.renames, self.outcome.id, now, now_dt
        )
        self.outcome.sample_changes += samples
        if self.records is not None:
            self.records.renames(samples)
        self._fingerprint("renames", part, None, None)
        return found, counted

    step: str = "staging"  # what the run is doing, in words, for a failure's message
    now_dt: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def _fingerprint(
        self, name: str, part: str, shape: Shape | None, now: EntitySummary | None
    ) -> None:
        """Record a part of the plan; with a preview, refuse when it differs from its own."""
        self.outcome.plan_parts[name] = part
        if self.preview is not None and self.preview.parts.get(name) != part:
            raise digest.refuse_changed(self.conn, self.preview, name, shape, now)

    @property
    def active(self) -> list[Shape]:
        if self.entity:
            return [self.shapes[self.entity]]
        return list(self.shapes.values())

    def merge(self, semester: str | None, now_dt: dt.datetime) -> None:
        """`semester` None: the bundle is the whole dataset (a replace then soft-deletes
        whatever live row of any entity it lacks)."""
        conn, sqlite, out = self.conn, self.sqlite, self.outcome
        self.now_dt = now_dt
        now = apply.ts_param(now_dt, sqlite)
        replace = self.options.strategy is Strategy.REPLACE
        conflicts, renamed = self._rename(now, now_dt)
        scoped = set()
        if replace:
            scoped = {
                s.name for s in self.active if plan.scope_snapshot(conn, self.ds, s, semester)
            }
            for name in sorted(scoped):
                shape = self.shapes[name]
                self._fingerprint(f"scope:{name}", digest.scope_part(conn, shape), shape, None)
        limit_bases = limits.bases(
            conn, self.ds, self.options.change_limits, semester, {s.name for s in self.active}
        )
        errors: list[RecordError] = []
        summaries: dict[str, EntitySummary] = {}
        staged = self.staging.stager.entities
        statuses: dict[str, str] = {}
        for shape in self.active:
            self.step = f"checking {shape.name}"
            with _timed(f"wait for {shape.name}"):
                self.staging.wait(shape.name)
            count = staged[shape.name].staged if shape.name in staged else 0
            if shape.name in staged:  # the fields its records carry, from here on
                shape = shape.carrying(staged[shape.name].carried)
                self.shapes[shape.name] = shape
            narrow = not sqlite and plan.mostly_existing(conn, shape, count)
            with _timed(f"resolve {shape.name}{' (narrow)' if narrow else ''}"):
                statuses[shape.name] = plan.resolve(
                    conn,
                    self.ds,
                    shape,
                    self.shapes,
                    self.options.strategy,
                    sqlite,
                    frozenset(summaries),
                    narrow,
                    # A semester bundle: its records must be of that semester.
                    scope_condition(self.ds, shape, semester or "", conn.dialect),
                    lines=self.records is not None,
                )
                kept = self._three_way(shape, statuses[shape.name])
                try:
                    summaries[shape.name] = plan.summarize(conn, shape, statuses[shape.name])
                except plan.OutOfScope:
                    refuse_out_of_scope(conn, self.ds, shape, semester or "")
                    raise InvalidArgument(
                        f"{shape.name} records are not of the bundle's semester {semester}",
                        field=shape.name,
                    ) from None
                summaries[shape.name].kept_local, summaries[shape.name].conflicts = kept
            with _timed(f"plan digest {shape.name}"):
                self._fingerprint(
                    shape.name,
                    digest.entity_part(conn, shape, statuses[shape.name]),
                    shape,
                    summaries[shape.name],
                )
            if self.records is not None:
                with _timed(f"plan records {shape.name}"):
                    # Local values kept by the three-way merge change lines composed before.
                    self.records.entity(conn, shape, None if kept[0] else statuses[shape.name])
            found = (
                plan.list_errors(conn, shape, self.shapes) if summaries[shape.name].errors else []
            )
            if shape.name in staged:
                found += staged[shape.name].errors
            errors += sorted(found, key=lambda e: e.position)[:MAX_LISTED_ERRORS]
            if self.options.on_error is OnError.SKIP_INVALID and summaries[shape.name].errors:
                rejects.save_resolved(conn, out.id, shape, sqlite)
            # Each step scans the entity's resolved rows: only those with work to do.
            summary = summaries[shape.name]
            if summary.updated:
                deleting = plan.count_deletions(conn, shape)
                summary.updated -= deleting
                summary.deleted += deleting
            if summary.created or summary.updated or summary.deleted:
                with _timed(f"samples {shape.name}"):
                    out.sample_changes += plan.samples(
                        conn, shape, summary.created > 0, summary.updated + summary.deleted > 0
                    )
            self.step = f"applying {shape.name}"
            if summary.created:
                with _timed(f"insert {shape.name}"):
                    apply.insert_new(
                        conn, shape, out.id, now, sqlite, summary.created, semester is None
                    )
            if summary.updated or summary.deleted:
                with _timed(f"update {shape.name}"):
                    apply.update_changed(conn, shape, out.id, now, sqlite)
        self.step = "linking records"
        with _timed("late binding"):
            for shape in self.active:
                for ref in shape.written_refs:
                    if ref.late:
                        apply.bind_late(conn, self.ds, shape, ref, sqlite)
        with _timed("pending links"):
            self._pending_links(now)
        if replace:
            self.step = "soft-deleting what the bundle lacks"
            for shape in self.active:
                if shape.name not in scoped:
                    continue
                found_st = statuses[shape.name]
                if self.records is not None:
                    self.records.deletions(conn, self.ds, shape, found_st)
                out.sample_changes += [
                    RecordChange(shape.name, k, "delete")
                    for k in apply.deleted_sample(
                        conn, self.ds, shape, MAX_SAMPLES_PER_ENTITY, found_st
                    )
                ]
                summaries[shape.name].deleted += apply.soft_delete_missing(
                    conn, shape, out.id, now, sqlite, found_st
                )
        plan.drop_views(
            conn, [self.shapes[n] for n, t in statuses.items() if t != self.shapes[n].resolved]
        )
        for e in conflicts:  # renames onto a key that exists: listed, counted as errors
            summaries.setdefault(e.entity, EntitySummary(e.entity)).errors += 1
        for name, n in renamed.items():
            summaries.setdefault(name, EntitySummary(name)).renamed += n
        errors = conflicts + errors
        out.summaries = list(summaries.values())
        out.total_errors = sum(s.errors for s in out.summaries)
        out.limits = limits.measure(self.options.change_limits, summaries, limit_bases, semester)
        out.errors = errors[:MAX_LISTED_ERRORS]

    def _three_way(self, shape: Shape, statuses: str) -> tuple[int, int]:
        """Keep local edits (ferry.merge.threeway) of rows with a base: decide, rebase,
        keep. A two-way bundle import drops the bases of the rows it writes. Nothing
        at all for an entity without bases. (kept_local, conflicts)"""
        if not self.bundle or not threeway.has_bases(self.conn, shape):
            return 0, 0
        with _timed(f"three-way {shape.name}"):
            kept, conflicts = 0, 0
            samples: list[RecordChange] = []
            if self.three_way:
                kept, conflicts, samples = threeway.classify(
                    self.conn, shape, self.options.conflicts, self.sqlite
                )
                if conflicts:  # those left for a person (policy review) are listed
                    threeway.record_review(
                        self.conn, shape, self.options.conflicts, self.outcome.id, self.now_dt
                    )
            threeway.rebase(self.conn, shape, statuses, self.outcome.id, self.sqlite, kept > 0)
            if kept:
                threeway.keep(self.conn, shape, statuses)
            self.outcome.sample_changes += samples
        return kept, conflicts

    def _pending_links(self, now: object) -> None:
        """Optional links whose target exists nowhere wait in pending_links; those waiting
        from earlier imports whose target this run brought are bound (ferry.merge.links)."""
        params = {"iid": self.outcome.id, "now": now}
        active = {s.name for s in self.active}
        warnings = self.outcome.warnings
        for shape in self.shapes.values():
            for ref in shape.refs:
                if not ref.late:
                    continue
                if shape.name in active and shape.carries_ref(ref):
                    links.supersede(self.conn, self.ds, shape, ref, params)
                    opened = links.open_missing(self.conn, self.ds, shape, ref, params)
                    if opened is not None:
                        warnings.append(opened)
                if ref.parent.name in active:
                    bound = links.bind_waiting(
                        self.conn, self.ds, shape.entity, ref, params, self.sqlite
                    )
                    if bound is not None:
                        warnings.append(bound)
