"""Plans expire (imports.plan_expiry_minutes) and the cleanup removes expired ones with
their files (ferry.merge.cleanup): an expired plan's file and row are gone, an unexpired
one's stay, and applying an expired plan is FailedPrecondition naming the expiry, before
the cleanup and after it."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc_testing
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.app import App
from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.db.import_models import Import
from ferry.errors import FailedPrecondition
from ferry.merge import MergeOptions, Status, run_import
from ferry.merge.cleanup import cleanup_plans
from ferry.merge.planfile import plan_key
from ferry.storage.local import LocalStorage
from ferry.v1 import export_pb2
from services.export.service import ExportService
from tests.merge.helpers import checksum, rebuild, records, run

T: Any = Import.__table__
SERVICE = export_pb2.DESCRIPTOR.services_by_name["ExportService"]
EXPIRY = {"plan_expiry_minutes": 60}


def _changed(events: list[Event], title: str = "Changed at the source") -> list[Event]:
    by = copy.deepcopy(records(events))
    by["courses"][0]["title"] = title
    return rebuild(by)


def _preview(target: Engine, events: list[Event], storage: Any, sha: str) -> Any:
    out = run_import(
        target,
        SCHOOL,
        events,
        MergeOptions(dry_run=True, plan_records=True, **EXPIRY),
        requested_by="tester",
        source_sha256=sha,
        plan_sink=lambda i: storage.writer(plan_key(i)),
    )
    assert out.status is Status.DRY_RUN and out.plan_records
    return out


def _expire(target: Engine, import_id: str) -> dt.datetime:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    with target.begin() as conn:
        plan = dict(conn.execute(sa.select(T.c.plan).where(T.c.id == import_id)).scalar_one())
        plan["expires_at"] = past.isoformat()
        conn.execute(T.update().where(T.c.id == import_id).values(plan=plan))
    return past


def _row(target: Engine, import_id: str) -> Any:
    with target.connect() as conn:
        return conn.execute(sa.select(T.c.id).where(T.c.id == import_id)).first()


def test_expired_plans_go_with_their_files_and_cannot_be_applied(
    events: list[Event], target: Engine, tmp_path: Path
) -> None:
    storage = LocalStorage.at(tmp_path / "files", tmp_path / "archive")
    run(target, events)
    kept = _preview(target, _changed(events), storage, "sha-of-one")
    changed = _changed(events, "Changed again")  # another file: another plan and digest
    late = _preview(target, changed, storage, "sha-of-another")
    # Every plan expires after the configured time, approval or not.
    assert late.plan_expires_at is not None and not late.approval
    assert late.plan_expires_at - late.created_at == dt.timedelta(minutes=60)
    past = _expire(target, late.id)
    before = checksum(target)
    with pytest.raises(FailedPrecondition, match=f"expired at {past:%Y-%m-%d %H:%M}"):
        run(target, changed, plan_digest=late.plan_digest, sha="sha-of-another", **EXPIRY)
    assert checksum(target) == before

    assert cleanup_plans(target, storage, dry_run=True).plans_removed == 1
    assert storage.size(plan_key(late.id)) is not None  # a dry run of the cleanup: nothing

    done = cleanup_plans(target, storage)
    assert (done.plans_removed, done.files_deleted) == (1, 1) and done.bytes_freed > 0
    assert storage.size(plan_key(late.id)) is None and _row(target, late.id) is None
    assert storage.size(plan_key(kept.id)) is not None and _row(target, kept.id) is not None
    with pytest.raises(FailedPrecondition, match="expired and the cleanup removed it"):
        run(target, changed, plan_digest=late.plan_digest, sha="sha-of-another", **EXPIRY)
    assert checksum(target) == before
    assert cleanup_plans(target, storage).plans_removed == 0  # nothing left to remove
    applied = run(
        target, _changed(events), plan_digest=kept.plan_digest, sha="sha-of-one", **EXPIRY
    )
    assert applied.status is Status.COMPLETED


def test_a_plan_without_expiry_stays(events: list[Event], target: Engine) -> None:
    preview = run(target, _changed(events), dry_run=True, plan_expiry_minutes=0)
    assert preview.plan_expires_at is None
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=365 * 100)
    storage = LocalStorage.at(Path("/nonexistent-ferry"), Path("/nonexistent-ferry-archive"))
    assert cleanup_plans(target, storage, now=far).plans_removed == 0
    assert _row(target, preview.id) is not None


def test_the_retention_cleanup_removes_expired_plans(
    events: list[Event], empty_url: str, make_app: Callable[..., App]
) -> None:
    """CleanupExports (`ferry export cleanup`, the CronJob) runs the plan cleanup too."""
    app = make_app(empty_url)
    storage = app.storage()
    late = _preview(app.engine, events, storage, "sha-of-one")
    kept = _preview(app.engine, _changed(events), storage, "sha-of-another")
    _expire(app.engine, late.id)
    server = grpc_testing.server_from_dictionary(
        {SERVICE: ExportService(app)}, grpc_testing.strict_real_time()
    )
    rpc = server.invoke_unary_unary(
        SERVICE.methods_by_name["CleanupExports"], (), export_pb2.CleanupExportsRequest(), None
    )
    _, _, code, _ = rpc.termination()
    assert code == grpc.StatusCode.OK
    assert storage.size(plan_key(late.id)) is None and _row(app.engine, late.id) is None
    assert storage.size(plan_key(kept.id)) is not None and _row(app.engine, kept.id) is not None
