"""ImportSession with a dry run's plan_digest, change limits and allow_mass_change through a
real server (the engine's own tests: tests/merge/test_plans.py)."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry.app import App
from ferry.bundle.formats.base import Batch, BundleLimits, Header, Trailer
from ferry.bundle.formats.json import JsonBundle
from ferry.cli.main import cli
from ferry.db.engine import make_engine
from ferry.v1 import import_pb2
from tests.imports.helpers import (
    download,
    edit_first,
    fingerprint,
    import_file,
    rewrite,
    seed_small,
    serving,
)

ROOT = Path(__file__).resolve().parents[2]
UNDER = ("enrollments", "grades", "attendance", "daily_performance")
LIMITS = "[{entity: enrollments, action: delete, max_percent: 10}]"


def _title(record: dict[str, Any]) -> None:
    record["title"] = "Changed at the source"


def test_import_applies_the_previewed_plan_or_names_what_changed(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = rewrite(download(stubs), edit_first("courses", _title))
        preview = import_file(stubs, data, "fall.json", dry_run=True)
        assert preview.status == import_pb2.IMPORT_STATUS_DRY_RUN
        assert len(preview.plan_digest) == 64
        # Someone edits a course of the semester after the preview.
        engine = make_engine(empty_url)
        with engine.begin() as conn:
            code = conn.execute(
                sa.text(
                    "SELECT course_code FROM courses WHERE semester = '2026-fall' "
                    "AND deleted_at IS NULL ORDER BY id DESC LIMIT 1"
                )
            ).scalar_one()
            conn.execute(
                sa.text(
                    "UPDATE courses SET title = 'Edited', updated_at = :t WHERE course_code = :c"
                ),
                {"t": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1), "c": code},
            )
        engine.dispose()
        before = fingerprint(empty_url)
        with pytest.raises(grpc.RpcError) as e:
            import_file(stubs, data, "fall.json", plan_digest=preview.plan_digest)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert code in (e.value.details() or "") and preview.id in (e.value.details() or "")
        assert fingerprint(empty_url) == before
        # Previewed again, the new plan applies.
        again = import_file(stubs, data, "fall.json", dry_run=True)
        done = import_file(stubs, data, "fall.json", plan_digest=again.plan_digest)
        assert done.status == import_pb2.IMPORT_STATUS_COMPLETED
        assert done.plan_digest == again.plan_digest


def _without_most_enrollments(data: bytes) -> bytes:
    """The bundle keeping only the enrolments (and their records) of its first course."""
    fmt = JsonBundle()
    events: list[Any] = []
    keep = ""
    for event in fmt.read(io.BytesIO(data), BundleLimits()):
        if isinstance(event, Batch) and event.entity == "courses":
            keep = event.records[0]["course_code"]
        if isinstance(event, Batch) and event.entity in UNDER:
            event.records[:] = [r for r in event.records if r["course_code"] == keep]
        events.append(event)
    held = {e.entity: len(e.records) for e in events if isinstance(e, Batch)}
    for event in events:
        if isinstance(event, Header):
            event.metadata.counts.clear()
            event.metadata.counts.update(held)
        if isinstance(event, Trailer):
            event.counts, event.sha256 = held, ""
    out = io.BytesIO()
    fmt.write(events, out)
    return out.getvalue()


def test_change_limits_stop_a_mass_change_unless_an_admin_allows_it(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url, FERRY_IMPORTS_CHANGE_LIMITS=LIMITS)
    replace = import_pb2.MERGE_STRATEGY_REPLACE
    with serving(app) as stubs:
        data = _without_most_enrollments(download(stubs))
        before = fingerprint(empty_url)
        preview = import_file(stubs, data, "fall.json", dry_run=True, strategy=replace)
        (check,) = preview.limits
        assert check.entity == "enrollments" and check.exceeded and check.base > 0
        with pytest.raises(grpc.RpcError) as e:
            import_file(stubs, data, "fall.json", strategy=replace)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "over the limit" in (e.value.details() or "")
        with pytest.raises(grpc.RpcError) as denied:
            import_file(stubs, data, "fall.json", strategy=replace, allow_mass_change=True)
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert fingerprint(empty_url) == before
    with serving(app, role="admin") as admin:
        done = import_file(admin, data, "fall.json", strategy=replace, allow_mass_change=True)
        assert done.status == import_pb2.IMPORT_STATUS_COMPLETED
        assert done.limits[0].exceeded


def test_cli_writes_a_plan_and_applies_exactly_it(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url)
    with serving(app) as stubs:
        bundle = tmp_path / "fall.json"
        bundle.write_bytes(rewrite(download(stubs), edit_first("courses", _title)))
        env = {
            "FERRY_DATABASE_URL": app.settings.database.url,
            "FERRY_AUTH_SIGNING_KEY_FILE": app.settings.auth.signing_key_file,
            "FERRY_TARGET": f"127.0.0.1:{stubs.port}",
            "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        }
        runner = CliRunner()
        plan = tmp_path / "plan.json"
        dry = runner.invoke(
            cli, ["import", str(bundle), "--dry-run", "--plan-out", str(plan)], env=env
        )
        assert dry.exit_code == 0, dry.output
        written = json.loads(plan.read_text().splitlines()[0])  # the header line
        assert len(written["plan_digest"]) == 64 and written["strategy"] == "update"
        change = next(c for c in written["sample_changes"] if c["entity"] == "courses")
        assert {"field": "title", "after": "Changed at the source"}.items() <= change["changes"][
            0
        ].items()
        bad = tmp_path / "bad.json"
        bad.write_text('{"kind": "something else"}')
        refused = runner.invoke(cli, ["import", str(bundle), "--plan", str(bad)], env=env)
        assert refused.exit_code == 2 and "not a plan file" in refused.output
        misuse = runner.invoke(cli, ["import", str(bundle), "--plan-out", str(plan)], env=env)
        assert misuse.exit_code == 2 and "--dry-run" in misuse.output
        applied = runner.invoke(cli, ["import", str(bundle), "--plan", str(plan)], env=env)
        assert applied.exit_code == 0 and ": completed" in applied.output, applied.output
        # The plan was applied: applying it again reads other data (the titles changed).
        again = runner.invoke(cli, ["import", str(bundle), "--plan", str(plan)], env=env)
        assert again.exit_code != 0 and "FAILED_PRECONDITION" in again.output, again.output


def test_rename_record_over_the_wire_and_from_the_cli(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url)
    engine = make_engine(empty_url)
    with engine.connect() as conn:
        first, second = (
            r[0]
            for r in conn.execute(sa.text("SELECT student_id FROM students ORDER BY id LIMIT 2"))
        )
    with serving(app) as stubs:
        before = fingerprint(empty_url)
        with pytest.raises(grpc.RpcError) as e:
            stubs.imports.RenameRecord(
                import_pb2.RenameRecordRequest(entity="students", old_key=first, new_key=second),
                metadata=stubs.md,
                timeout=30,
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "exists already" in (e.value.details() or "")
        with pytest.raises(grpc.RpcError) as e:
            stubs.imports.RenameRecord(
                import_pb2.RenameRecordRequest(entity="grades", old_key="a", new_key="b"),
                metadata=stubs.md,
                timeout=30,
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fingerprint(empty_url) == before
        env = {
            "FERRY_DATABASE_URL": app.settings.database.url,
            "FERRY_AUTH_SIGNING_KEY_FILE": app.settings.auth.signing_key_file,
            "FERRY_TARGET": f"127.0.0.1:{stubs.port}",
            "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        }
        done = CliRunner().invoke(cli, ["import", "rename", "students", first, "S-NEW-ID"], env=env)
        assert done.exit_code == 0 and ": completed" in done.output, done.output
    with engine.connect() as conn:
        ids = {r[0] for r in conn.execute(sa.text("SELECT student_id FROM students"))}
    engine.dispose()
    assert "S-NEW-ID" in ids and first not in ids


def test_an_operators_plan_waits_for_an_admins_approval(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    app = make_app(
        empty_url,
        FERRY_IMPORTS_APPROVAL="required",
        FERRY_IMPORTS_APPROVERS='["head@school.example"]',
    )
    with serving(app) as operator, serving(app, role="admin") as admin:
        data = rewrite(download(operator), edit_first("courses", _title))
        before = fingerprint(empty_url)
        with pytest.raises(grpc.RpcError) as e:
            import_file(operator, data, "fall.json")
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "approval" in (e.value.details() or "")
        preview = import_file(operator, data, "fall.json", dry_run=True)
        assert preview.approval.state == "pending" and preview.approval.expires_at.seconds
        with pytest.raises(grpc.RpcError) as e:
            import_file(operator, data, "fall.json", plan_digest=preview.plan_digest)
        assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert fingerprint(empty_url) == before
        # The plan was announced to the approvers through the outbox.
        engine = make_engine(empty_url)
        with engine.connect() as conn:
            subject = conn.execute(
                sa.text("SELECT subject FROM notifications WHERE event_id = :e"),
                {"e": f"plan:{preview.id}"},
            ).scalar_one()
        engine.dispose()
        assert "awaits your approval" in subject
        with pytest.raises(grpc.RpcError) as e:
            operator.imports.ApprovePlan(
                import_pb2.ApprovePlanRequest(import_id=preview.id), metadata=operator.md
            )
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as e:
            admin.imports.RejectPlan(
                import_pb2.RejectPlanRequest(import_id=preview.id), metadata=admin.md
            )
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        approved = admin.imports.ApprovePlan(
            import_pb2.ApprovePlanRequest(import_id=preview.id), metadata=admin.md
        ).result
        assert approved.approval.state == "approved" and approved.approval.decided_by
        done = import_file(operator, data, "fall.json", plan_digest=preview.plan_digest)
        assert done.status == import_pb2.IMPORT_STATUS_COMPLETED
