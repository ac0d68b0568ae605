"""Approval of plans (imports.approval: required): a non-admin's import needs a plan an
admin approved, not rejected and not expired; each plan is decided once."""

from __future__ import annotations

import copy
import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.db.import_models import Import
from ferry.errors import FailedPrecondition, NotFound
from ferry.merge import Status
from ferry.merge.approval import decide
from tests.merge.helpers import checksum, rebuild, records, run

REQUIRED = {"approval_required": True, "plan_expiry_minutes": 60}


def _changed(events: list[Event]) -> list[Event]:
    by = copy.deepcopy(records(events))
    by["courses"][0]["title"] = "Changed at the source"
    return rebuild(by)


def test_an_operators_import_needs_an_approved_plan(events: list[Event], target: Engine) -> None:
    run(target, events)
    changed = _changed(events)
    before = checksum(target)
    with pytest.raises(FailedPrecondition, match="admin's approval"):
        run(target, changed, **REQUIRED)
    preview = run(target, changed, dry_run=True, **REQUIRED)
    assert preview.approval["state"] == "pending" and preview.approval["expires_at"]
    with pytest.raises(FailedPrecondition, match="still awaits an admin's approval"):
        run(target, changed, plan_digest=preview.plan_digest, **REQUIRED)
    assert checksum(target) == before
    approved = decide(target, preview.id, True, "the-admin")
    assert approved.approval["state"] == "approved"
    assert approved.approval["decided_by"] == "the-admin"
    with pytest.raises(FailedPrecondition, match="approved already"):
        decide(target, preview.id, False, "another-admin")
    done = run(target, changed, plan_digest=preview.plan_digest, **REQUIRED)
    assert done.status is Status.COMPLETED


def test_a_rejected_or_expired_plan_is_refused(events: list[Event], target: Engine) -> None:
    run(target, events)
    changed = _changed(events)
    rejected = run(target, changed, dry_run=True, **REQUIRED)
    decide(target, rejected.id, False, "the-admin", "not this week")
    with pytest.raises(FailedPrecondition, match="was rejected \\(not this week\\)"):
        run(target, changed, plan_digest=rejected.plan_digest, **REQUIRED)
    late = run(target, changed, dry_run=True, **REQUIRED)
    table = Import.__table__
    with target.begin() as conn:
        plan = dict(conn.execute(sa.select(table.c.plan).where(table.c.id == late.id)).scalar_one())
        past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
        plan["approval"] = {**plan["approval"], "expires_at": past.isoformat()}
        conn.execute(table.update().where(table.c.id == late.id).values(plan=plan))
    with pytest.raises(FailedPrecondition, match="expired"):
        decide(target, late.id, True, "the-admin")
    with pytest.raises(FailedPrecondition, match="expired"):
        run(target, changed, plan_digest=late.plan_digest, approver=True, **REQUIRED)


def test_an_admin_imports_without_approval_and_bad_ids_are_named(
    events: list[Event], target: Engine
) -> None:
    done = run(target, events, approver=True, **REQUIRED)
    assert done.status is Status.COMPLETED
    with pytest.raises(NotFound):
        decide(target, "no-such-import", True, "the-admin")
    with pytest.raises(FailedPrecondition, match="no plan awaiting approval"):
        decide(target, done.id, True, "the-admin")
