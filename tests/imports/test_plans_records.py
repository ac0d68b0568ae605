"""A dry run's plan holds every record's decision (issue 29): `ferry import FILE --dry-run
--plan-out plan.json` writes a header line, one line per record, and an end line; the
record list equals what the import then does, as an independent plain-SQL oracle sees it
(rows before and after, compared key by key). On both backends, through a real server."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry.app import App
from ferry.bundle.formats.base import Batch, BundleLimits, Header, Trailer
from ferry.bundle.formats.json import JsonBundle
from ferry.cli.main import cli
from ferry.db.engine import make_engine
from tests.imports.helpers import download, seed_small, serving

ROOT = Path(__file__).resolve().parents[2]
ENR = (
    "JOIN enrollments e ON e.id = t.enrollment_ref JOIN students s ON s.id = e.student_ref "
    "JOIN courses c ON c.id = e.course_ref"
)
# Per entity: the natural key as SQL pieces and the join that reaches them (plain SQL,
# written from the schema, not from the merge engine).
KEYS = {
    "courses": (["t.course_code"], ""),
    "students": (["t.student_id"], ""),
    "enrollments": (
        ["s.student_id", "c.course_code"],
        "JOIN students s ON s.id = t.student_ref JOIN courses c ON c.id = t.course_ref",
    ),
    "grades": (["s.student_id", "c.course_code", "t.assessment"], ENR),
    "attendance": (["s.student_id", "c.course_code", "t.date"], ENR),
    "daily_performance": (["s.student_id", "c.course_code", "t.date", "t.category"], ENR),
    "highlights": (
        ["s.student_id", "t.semester", "t.title"],
        "JOIN students s ON s.id = t.student_ref",
    ),
}
SKIP = {"id", "created_at", "updated_at", "student_ref", "course_ref", "enrollment_ref"}
SKIP |= {"prerequisite_id", "mentor_id"}  # late links: bound after the records


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        value = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat()
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)


def _snapshot(url: str) -> dict[str, dict[str, dict[str, str]]]:
    """entity -> natural key -> column -> value as text, by plain SQL."""
    engine = make_engine(url)
    out: dict[str, dict[str, dict[str, str]]] = {}
    try:
        with engine.connect() as conn:
            for entity, (keys, join) in KEYS.items():
                cols = [
                    r[0]
                    for r in conn.execute(
                        sa.text(f"SELECT * FROM {entity} LIMIT 0")
                    ).cursor.description
                ]
                own = [c for c in cols if c not in SKIP]
                rows = conn.execute(
                    sa.text(
                        f"SELECT {', '.join(keys)}, {', '.join('t.' + c for c in own)} "
                        f"FROM {entity} t {join}"
                    )
                ).all()
                out[entity] = {
                    "/".join(_text(v) for v in r[: len(keys)]): dict(
                        zip(own, (_text(v) for v in r[len(keys) :]), strict=True)
                    )
                    for r in rows
                }
    finally:
        engine.dispose()
    return out


def _edit(batch: Batch) -> None:
    """At the source: two course titles, three scores, a grade soft-deleted, a new
    student, two highlights gone (the replace soft-deletes them)."""
    live = [r for r in batch.records if r.get("deleted_at") is None]
    if batch.entity == "courses":
        for r in live[:2]:
            r["title"] = f"New title of {r['course_code']}"
    elif batch.entity == "grades":
        for r in live[:3]:
            r["score"] = float(r["score"]) / 2 + 1
        live[3]["deleted_at"] = "2026-11-30T10:00:00Z"
    elif batch.entity == "students":
        new = copy.deepcopy(live[0])
        new.update(student_id="S-NEW-1", first_name="New", mentor_student_id=None)
        batch.records.append(new)
    elif batch.entity == "highlights":
        for r in live[:2]:
            batch.records.remove(r)


def _rewrite(data: bytes) -> bytes:
    """The bundle after `_edit`, its counts told (the checksum is recomputed on write)."""
    import io

    fmt = JsonBundle()
    events = []
    for event in fmt.read(io.BytesIO(data), BundleLimits()):
        if isinstance(event, Batch):
            _edit(event)
        events.append(event)
    counts = {b.entity: len(b.records) for b in events if isinstance(b, Batch)}
    for event in events:
        if isinstance(event, Header):
            event.metadata.counts.update(counts)
        if isinstance(event, Trailer):
            event.counts.update(counts)
    out = io.BytesIO()
    fmt.write(events, out)
    return out.getvalue()


def _oracle(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    created, deleted, updated = set(), set(), {}
    for entity, rows in after.items():
        for key, now in rows.items():
            was = before[entity].get(key)
            if was is None:
                created.add((entity, key))
            elif not was["deleted_at"] and now["deleted_at"]:
                deleted.add((entity, key))
            elif was != now:
                updated[(entity, key)] = {f: (was[f], now[f]) for f in now if was[f] != now[f]}
    return {"create": created, "delete": deleted, "update": updated}


def _plan(records: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "create": {(r["entity"], r["key"]) for r in records if r["action"] == "create"},
        "delete": {(r["entity"], r["key"]) for r in records if r["action"] == "delete"},
        "update": {
            (r["entity"], r["key"]): {c["field"]: (c["before"], c["after"]) for c in r["changes"]}
            for r in records
            if r["action"] == "update"
        },
    }


def test_the_plans_records_are_exactly_what_the_import_then_does(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url)
    with serving(app) as stubs:
        bundle = tmp_path / "fall.json"
        data = _rewrite(download(stubs))
        bundle.write_bytes(data)
        total = sum(
            len(v) for k, v in json.loads(data).items() if isinstance(v, list) and k != "renames"
        )
        env = {
            "FERRY_DATABASE_URL": app.settings.database.url,
            "FERRY_AUTH_SIGNING_KEY_FILE": app.settings.auth.signing_key_file,
            "FERRY_TARGET": f"127.0.0.1:{stubs.port}",
            "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        }
        runner = CliRunner()
        plan = tmp_path / "plan.jsonl"
        args = ["import", str(bundle), "--strategy", "replace"]
        dry = runner.invoke(cli, [*args, "--dry-run", "--plan-out", str(plan)], env=env)
        assert dry.exit_code == 0, dry.output
        lines = [json.loads(line) for line in plan.read_text(encoding="utf-8").splitlines()]
        header, records, end = lines[0], lines[1:-1], lines[-1]
        assert header["kind"] == "ferry.import-plan" and header["strategy"] == "replace"
        assert end["kind"] == "ferry.import-plan-end" and end["records"] == len(records)
        assert end["plan_digest"] == header["plan_digest"]
        # Every record of the file has its line, and the counts are the header's.
        in_file = [r for r in records if r["position"] is not None]
        assert len(in_file) == total
        for s in header["summaries"]:
            mine = [r for r in records if r["entity"] == s["entity"]]
            assert sum(r["action"] == "create" for r in mine) == s["created"]
            assert sum(r["action"] == "unchanged" for r in mine) == s["unchanged"]
            assert sum(r["action"] == "delete" for r in mine) == s["deleted"]
            assert sum(r["action"] == "update" for r in mine) == s["updated"]
        before = _snapshot(empty_url)
        applied = runner.invoke(cli, [*args, "--plan", str(plan)], env=env)
        assert applied.exit_code == 0 and ": completed" in applied.output, applied.output
        after = _snapshot(empty_url)
        expected = _oracle(before, after)
        got = _plan(records)
        assert got["create"] == expected["create"] and ("students", "S-NEW-1") in got["create"]
        assert got["delete"] == expected["delete"] and len(got["delete"]) == 3
        assert got["update"] == expected["update"] and len(got["update"]) == 5
        # Unchanged, as the oracle sees it.
        for r in records:
            if r["action"] in ("unchanged", "skip"):
                assert before[r["entity"]][r["key"]] == after[r["entity"]][r["key"]], r

        # A cut or edited plan is refused before anything is sent.
        cut = tmp_path / "cut.jsonl"
        cut.write_text("\n".join(plan.read_text().splitlines()[:-2]) + "\n")
        refused = runner.invoke(cli, [*args, "--plan", str(cut)], env=env)
        assert refused.exit_code == 2 and "cut short or was edited" in refused.output


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_plan_without_records_is_not_found_for_download(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    import grpc

    from ferry.v1 import import_pb2 as ipb
    from tests.imports.helpers import import_file

    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        preview = import_file(stubs, download(stubs), "fall.json", dry_run=True)
        assert not preview.has_plan_records
        with pytest.raises(grpc.RpcError) as e:
            list(
                stubs.imports.DownloadPlan(
                    ipb.DownloadPlanRequest(import_id=preview.id), metadata=stubs.md, timeout=30
                )
            )
        assert e.value.code() == grpc.StatusCode.NOT_FOUND
        assert preview.id in (e.value.details() or "")
