"""`ferry backup create|restore` against real services, and backup_before (issue 10)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry.app import App
from ferry.bundle.formats.base import Batch
from ferry.cli.main import cli
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.v1 import import_pb2
from tests.conftest import fresh_database
from tests.imports.helpers import (
    download,
    fingerprint,
    import_file,
    rewrite,
    seed_small,
    serving,
)
from tests.imports.test_import_cli import _env


def test_backup_of_the_demo_database_restores_into_an_empty_one(
    backend: str, empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    seed_small(empty_url)
    source = make_app(empty_url)
    runner = CliRunner()
    out = tmp_path / "all.json"
    with serving(source) as stubs:
        made = runner.invoke(
            cli, ["backup", "create", "-o", str(out)], env=_env(source, stubs.port)
        )
        assert made.exit_code == 0, made.output
        assert re.search(r"sha256 [0-9a-f]{64}", made.output)
    with fresh_database(backend, tmp_path / "t") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        target = make_app(url)
        with serving(target, role="admin") as stubs:
            env = _env(target, stubs.port)
            # A real restore first: on PostgreSQL a dry run would use up id sequence
            # values (sequences never roll back), and the ids would no longer match.
            real = runner.invoke(cli, ["backup", "restore", str(out)], env=env)
            assert real.exit_code == 0, real.output
            assert ": completed" in real.output
            assert fingerprint(url) == fingerprint(empty_url)
            dry = runner.invoke(cli, ["backup", "restore", str(out), "--dry-run"], env=env)
            assert dry.exit_code == 0, dry.output
            assert "dry run (nothing changed)" in dry.output
            assert re.search(r"students\s+0\s+0\s+\d+", dry.output), dry.output
        assert fingerprint(url) == fingerprint(empty_url)


def test_backup_before_a_replace_is_named_and_restores(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url, FERRY_PLUGINS_STORAGE_LOCAL_DIR=str(tmp_path / "storage"))
    with serving(app, role="admin") as stubs:
        bundle = download(stubs)
        before = fingerprint(empty_url)
        before_rows = _attendance(empty_url)

        def mark(batch: Batch) -> None:
            if batch.entity == "attendance":
                for r in batch.records:
                    r["status"] = "excused"

        replaced = import_file(
            stubs, rewrite(bundle, mark), "fall.json", strategy=import_pb2.MERGE_STRATEGY_REPLACE
        )
        assert replaced.backup_key.startswith("backup-before-import-"), replaced
        assert (tmp_path / "storage" / replaced.backup_key).is_file()
        assert fingerprint(empty_url) != before
        # Off when asked, and never for a dry run or by default for update.
        plain = import_file(stubs, bundle, "fall.json", dry_run=True)
        assert plain.backup_key == ""
        off = import_file(
            stubs,
            bundle,
            "fall.json",
            strategy=import_pb2.MERGE_STRATEGY_REPLACE,
            dry_run=True,
            backup_before=False,
        )
        assert off.backup_key == ""
        env = _env(app, stubs.port)
        restored = CliRunner().invoke(
            cli, ["backup", "restore", "--from-import", replaced.id], env=env
        )
        assert restored.exit_code == 0, restored.output
        # The attendance rows are back as they were; updated_at says when (a restore
        # over existing rows is an update like any other, and undo can take it back).
        assert _attendance(empty_url) == before_rows
        with pytest.raises(grpc.RpcError) as none:
            stubs.imports.RestoreBackup(
                import_pb2.RestoreBackupRequest(import_id=plain.id), metadata=stubs.md, timeout=10
            )
        assert none.value.code() == grpc.StatusCode.NOT_FOUND


def _attendance(url: str) -> list[tuple[object, ...]]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT id, enrollment_ref, date, status, note, created_at, deleted_at "
                "FROM attendance ORDER BY id"
            )
        ).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_a_backup_schedule_writes_a_backup_and_keeps_the_newest(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url)
    folder = tmp_path / "backups"
    schedules = (
        f"{{nightly-backup: {{kind: backup, bundle_format: jsonl, directory: '{folder}', "
        "keep: 2}}"
    )
    with serving(app) as stubs:
        env = {**_env(app, stubs.port), "FERRY_EXPORT_SCHEDULES": schedules}
        for _ in range(3):
            ran = CliRunner().invoke(
                cli, ["export", "run", "--schedule", "nightly-backup"], env=env
            )
            assert ran.exit_code == 0, ran.output
            assert "schedule nightly-backup: backup" in ran.output
        kept = sorted(p.name for p in folder.iterdir())
        # A CronJob writes onto its volume instead (--directory), with the same retention.
        volume = tmp_path / "volume"
        for _ in range(2):
            args = ["export", "run", "--schedule", "nightly-backup", "--directory", str(volume)]
            ran = CliRunner().invoke(cli, args, env=env)
            assert ran.exit_code == 0, ran.output
        on_volume = sorted(p.name for p in volume.iterdir())
        export_only = CliRunner().invoke(
            cli,
            ["export", "run", "--schedule", "students", "--directory", str(volume)],
            env={**env, "FERRY_EXPORT_SCHEDULES": "{students: {type: students}}"},
        )
    assert len(kept) == 2 and all(n.startswith("nightly-backup--") for n in kept), kept
    assert all(n.endswith(".jsonl") for n in kept)
    assert len(on_volume) == 2 and sorted(p.name for p in folder.iterdir()) == kept
    assert (
        export_only.exit_code == 2 and "--directory is for backup schedules" in export_only.output
    )
    # A backup schedule names no entity; an export schedule must.
    bad = CliRunner().invoke(
        cli,
        ["export", "run", "--schedule", "x"],
        env={**_env(app, 1), "FERRY_EXPORT_SCHEDULES": "{x: {kind: backup, type: students}}"},
    )
    assert bad.exit_code != 0 and "leave out `type`" in bad.output, bad.output
