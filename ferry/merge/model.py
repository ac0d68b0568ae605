"""The merge engine's public values: options, per-entity summaries, errors, outcomes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum

from ferry.bundle.formats.base import Note

# At most this many errors are listed in an outcome; `total_errors` is always exact.
MAX_LISTED_ERRORS = 100
# At most this many sample changes per entity.
MAX_SAMPLES_PER_ENTITY = 20


class Strategy(StrEnum):
    """How records that already exist are treated."""

    UPDATE = "update"  # upsert
    SKIP = "skip"  # create new records only
    UPDATE_ONLY = "update_only"  # update existing; unknown keys are unmatched
    REPLACE = "replace"  # upsert, soft-delete in-scope records the bundle lacks


class OnError(StrEnum):
    ABORT = "abort"
    SKIP_INVALID = "skip_invalid"


class Status(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    DRY_RUN = "dry_run"
    UNDONE = "undone"


@dataclass(frozen=True)
class ChangeLimit:
    """At most `max_percent` of the live `entity` records of a scope may be changed by
    `action` (create | update | delete, a soft-delete) in one import. scope `semester`:
    counted among the records of the import's semester (the whole table for an import
    without one); `all`: the whole table."""

    entity: str
    action: str
    max_percent: float
    scope: str = "semester"


@dataclass
class LimitCheck:
    """One change limit measured against an import (a dry run reports them all)."""

    entity: str
    action: str
    scope: str
    max_percent: float
    count: int  # records the import creates, updates or soft-deletes
    base: int  # live records of the scope before the import
    exceeded: bool
    message: str

    @property
    def percent(self) -> float:
        return 100.0 * self.count / self.base if self.base else 0.0


@dataclass(frozen=True)
class MergeOptions:
    strategy: Strategy = Strategy.UPDATE
    dry_run: bool = False
    on_error: OnError = OnError.ABORT
    idempotency_key: str = ""
    filename: str = ""
    bundle_format: str = ""
    dataset: str = "school"
    # Back up what the import touches before merging; None: only for replace.
    backup_before: bool | None = None
    # Apply exactly the plan a dry run returned with this digest, or nothing
    # (FailedPrecondition naming what changed since): ferry.merge.digest.
    plan_digest: str = ""
    # Limits on mass changes (ferry.merge.limits); `allow_mass_change` lets an import
    # exceed them (the service lets only admins set it).
    change_limits: tuple[ChangeLimit, ...] = ()
    allow_mass_change: bool = False
    # Three-way merge of bundle imports (ferry.merge.threeway): fields changed only here
    # are kept; `conflicts` ("entity.field" | "entity" | "*" -> source | local | review)
    # resolves fields changed on both sides (default: source).
    keep_local_edits: bool = False
    conflicts: tuple[tuple[str, str], ...] = ()
    # Approval of plans (ferry.merge.approval): imports by non-admins (`approver` False)
    # need an approved plan; plans expire after `plan_expiry_minutes` (0: never).
    # A dry run writes every record's decision (ferry.merge.planfile) where run_import's
    # plan_sink says (the service: storage, for DownloadPlan).
    plan_records: bool = False
    approval_required: bool = False
    approver: bool = False
    plan_expiry_minutes: int = 0
    # The school the caller named for the import (ImportOptions.school; "" none): see
    # ferry.bundle.schools.import_target.
    school: str = ""

    @property
    def wants_backup(self) -> bool:
        if self.dry_run:
            return False
        if self.backup_before is None:
            return Strategy(self.strategy) is Strategy.REPLACE
        return self.backup_before


@dataclass
class EntitySummary:
    entity: str
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    unmatched: int = 0
    deleted: int = 0
    errors: int = 0
    # Three-way merge (keep_local_edits): records updated from the source that kept a
    # local edit, and records with a field changed on both sides.
    kept_local: int = 0
    conflicts: int = 0
    # Records renamed in place by the bundle's renames (ferry.merge.renames).
    renamed: int = 0


@dataclass
class RecordError:
    entity: str
    natural_key: str  # key fields joined by "/", e.g. "S00012/MATH101-2026F"
    field: str
    reason: str
    position: int  # 1-based position of the record (or csv/xlsx row) within its entity
    # The reason for machines (ferry.merge.reasons.RECORD: MISSING, NOT_NUMBER, ...) and
    # its values: a mail or page words it in its own language. "" for one recorded before
    # reasons were.
    code: str = ""
    details: dict[str, str] = dataclasses.field(default_factory=dict)


@dataclass
class RecordChange:
    entity: str
    natural_key: str
    # create | update | delete; keep_local | conflict (three-way: old is the local
    # value, new the source's); rename (old key -> new key)
    action: str
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (field, old, new)


# Something the caller should know that is not an error, per kind and entity: the readers'
# notes (a bundle format's warnings, a loss report) and the engine's own kinds,
# `pending_links` (optional links whose target exists nowhere yet: kept, and bound when the
# target arrives) and `links_bound` (links waiting from earlier imports that this import's
# records completed). One shape for both: a reader's Note is an ImportWarning as it is.
ImportWarning = Note


@dataclass
class ImportOutcome:
    """What an import did (or, for a dry run, would do); mirrors ferry.v1.ImportResult."""

    id: str
    status: Status
    options: MergeOptions
    entity: str
    requested_by: str
    source_sha256: str
    semester: str
    summaries: list[EntitySummary]
    total_errors: int
    errors: list[RecordError]
    sample_changes: list[RecordChange]
    has_rejected_file: bool
    created_at: dt.datetime
    finished_at: dt.datetime | None
    undone_at: dt.datetime | None
    duration_seconds: float
    error_message: str
    warnings: list[ImportWarning] = field(default_factory=list)
    # Why the run failed, for machines (ferry.merge.reasons.IMPORT: INVALID_RECORDS, a
    # FerryError's reason, INTERNAL, INTERRUPTED) and its values; "" when it did not.
    error_reason: str = ""
    error_details: dict[str, str] = field(default_factory=dict)
    # The storage key of the backup taken before the merge, or "".
    backup_key: str = ""
    # The digest of this run's plan (ferry.merge.digest): what ImportSession's
    # plan_digest names to apply exactly this plan.
    plan_digest: str = ""
    # Per entity (and "scope:<entity>" for a replace's scope) the fingerprint of the rows
    # the plan read: how an apply names what changed since the preview.
    plan_parts: dict[str, str] = field(default_factory=dict)
    limits: list[LimitCheck] = field(default_factory=list)
    # A plan's approval (ferry.merge.approval): state pending | approved | rejected,
    # expires_at, decided_by, decided_at, reason; empty when none is required.
    approval: dict[str, str] = field(default_factory=dict)
    # A dry run that wrote every record's decision (plan_records): DownloadPlan has them.
    plan_records: bool = False
    # When a dry run's plan expires (imports.plan_expiry_minutes after it was made; None:
    # never): it can no longer be applied, and the cleanup (ferry.merge.cleanup) removes
    # it with its file.
    plan_expires_at: dt.datetime | None = None
