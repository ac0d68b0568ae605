"""Approval of plans (`imports.approval: required`).

A dry run then records its plan as `pending`, expiring `imports.plan_expiry_minutes`
after it was made. An import by a caller below admin must name a plan (plan_digest)
that an admin approved and that has not expired; an admin's import needs no approval.
ApprovePlan / RejectPlan (admins) decide a pending plan once; the decision, who made it
and when are kept with the plan (`imports.plan` -> approval). A plan applies exactly as
approved: the plan digest still refuses an import whose data changed since.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.db.import_models import Import
from ferry.errors import FailedPrecondition, InvalidArgument, NotFound
from ferry.merge import store
from ferry.merge.model import ImportOutcome, MergeOptions

T: sa.Table = Import.__table__  # type: ignore[assignment]
PENDING, APPROVED, REJECTED = "pending", "approved", "rejected"


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).isoformat()


def expires(approval: dict[str, Any]) -> dt.datetime | None:
    text = approval.get("expires_at")
    return dt.datetime.fromisoformat(text) if text else None


def propose(outcome: ImportOutcome, options: MergeOptions) -> None:
    """A dry run's plan expires `plan_expiry_minutes` after it was made (every plan: the
    cleanup then removes it and its file, ferry.merge.cleanup), and waits for an admin's
    approval when approval is required."""
    until: dt.datetime | None = None
    if options.plan_expiry_minutes and outcome.plan_digest:
        until = outcome.created_at + dt.timedelta(minutes=options.plan_expiry_minutes)
        outcome.plan_expires_at = until.astimezone(dt.UTC)
    if not options.approval_required:
        return
    approval: dict[str, Any] = {"state": PENDING}
    if until is not None:
        approval["expires_at"] = _iso(until)
    outcome.approval = approval


def check_apply(
    options: MergeOptions,
    approval: dict[str, Any] | None,
    preview_id: str,
    until: dt.datetime | None = None,
) -> None:
    """FailedPrecondition unless the named plan may be applied: not expired (`until`, or
    its approval's expiry) and approved (when approval is required and the caller is no
    admin)."""
    approval = approval or {}
    found = [t for t in (until, expires(approval)) if t is not None]
    until = min(found) if found else None
    if until is not None and until < dt.datetime.now(dt.UTC):
        raise FailedPrecondition(
            f"the plan of preview {preview_id} expired at {until:%Y-%m-%d %H:%M:%S}Z; "
            "preview again; nothing was imported",
            field="options.plan_digest",
        )
    if not options.approval_required or options.approver:
        return
    state = approval.get("state", "")
    if state != APPROVED:
        said = {PENDING: "still awaits an admin's approval", REJECTED: "was rejected"}.get(
            state, "was made before approval was required"
        )
        reason = f" ({approval['reason']})" if approval.get("reason") else ""
        raise FailedPrecondition(
            f"the plan of preview {preview_id} {said}{reason}; nothing was imported",
            field="options.plan_digest",
        )


def require_plan(options: MergeOptions) -> None:
    """An import by a caller below admin needs a plan when approval is required."""
    needs = options.approval_required and not options.approver and not options.dry_run
    if needs and not options.plan_digest:
        raise FailedPrecondition(
            "imports need an admin's approval here: preview the file (dry run), have "
            "an admin approve its plan, then import with its plan_digest; nothing was "
            "imported",
            field="options.plan_digest",
        )


def decide(
    engine: Engine, import_id: str, approve: bool, decided_by: str, reason: str = ""
) -> ImportOutcome:
    """Approve or reject the pending plan of dry run `import_id` (once). NotFound for an
    unknown id; FailedPrecondition for a run that is no plan awaiting approval or whose
    plan expired."""
    if len(reason) > 1000:
        raise InvalidArgument("reason is longer than 1000 characters", field="reason")
    with engine.begin() as conn:
        row = conn.execute(
            sa.select(T).where(store.mine(), T.c.id == import_id).with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"import {import_id!r} does not exist", field="import_id")
        plan = dict(row.plan or {})
        approval = dict(plan.get("approval") or {})
        if row.status != "dry_run" or not approval:
            raise FailedPrecondition(
                f"import {import_id} is no plan awaiting approval (only previews made while "
                "approval is required are)",
                field="import_id",
            )
        if approval.get("state") != PENDING:
            raise FailedPrecondition(
                f"the plan of {import_id} was {approval.get('state')} already by "
                f"{approval.get('decided_by', '?')}",
                field="import_id",
            )
        until = store.expiry(plan)
        now = dt.datetime.now(dt.UTC)
        if until is not None and until < now:
            raise FailedPrecondition(
                f"the plan of {import_id} expired at {until:%Y-%m-%d %H:%M:%S}Z",
                field="import_id",
            )
        approval.update(
            state=APPROVED if approve else REJECTED,
            decided_by=decided_by,
            decided_at=_iso(now),
            reason=reason,
        )
        plan["approval"] = approval
        conn.execute(T.update().where(store.mine(), T.c.id == import_id).values(plan=plan))
        found = store.load(conn, import_id)
    assert found is not None
    return found
