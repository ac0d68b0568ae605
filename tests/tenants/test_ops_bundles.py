"""Exports across the wall and `--school` on the CLI (docs/tenants.md), on PostgreSQL
with real services and the real CLI: a school's bundle names its school and holds its
rows only; imported without --school into an installation of several schools it is
INVALID_ARGUMENT naming them (exit 2), never silently into the default; --school maps it
to a school (--create-school adds it); an unknown school is an error naming it (exit 2)
and changes nothing; a backup of every school is CLI only and restores into another
installation school by school."""

from __future__ import annotations

import datetime as dt
import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry.app import App
from ferry.auth import parse_role
from ferry.bundle.formats.base import BundleLimits, Event, Header
from ferry.bundle.formats.json import JsonBundle
from ferry.cli.main import cli
from ferry.db import migrate, roles, tenant
from ferry.db.engine import make_engine
from ferry.v1 import export_pb2, export_pb2_grpc
from tests.conftest import fresh_database, make_settings, running
from tests.merge.helpers import comparable, edited, run
from tests.tenants.conftest import Tenancy, app_role, as_role

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]


def url_of(engine: sa.engine.Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def ferry(args: list[str], app_url: str, platform_url: str, key: str, port: int = 0) -> Any:
    env = {
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        "FERRY_DATABASE_URL": app_url,
        "FERRY_DATABASE_PLATFORM_URL": platform_url,
        "FERRY_AUTH_SIGNING_KEY_FILE": key,
        "FERRY_TARGET": f"127.0.0.1:{port}",
    }
    return CliRunner().invoke(cli, args, env=env)


def read_bundle(path: Path) -> list[Event]:
    with path.open("rb") as f:
        return list(JsonBundle().read(f, BundleLimits()))


def state(t: Tenancy) -> dict[str, object]:
    """What an import could change, per school, read by the platform role."""
    with t.platform.connect() as conn:
        return {
            table: sorted(
                conn.execute(sa.text(f"SELECT school_id, count(*) FROM {table} GROUP BY 1")).all()
            )
            for table in ("students", "courses", "grades", "imports")
        } | {"schools": conn.execute(sa.text("SELECT code FROM schools ORDER BY 1")).all()}


@pytest.fixture
def served(
    tenancy: Tenancy, source_events: list[Event], tmp_path: Path
) -> Iterator[tuple[Tenancy, App, int]]:
    """North and south hold their own version of one bundle; export and import serve."""
    for code in ("north", "south"):
        with tenant.acting_for(tenancy.schools[code]):
            run(tenancy.app, edited(source_events, "students", 0, first_name=f"Of {code}"))
    app = App(make_settings(tenancy.app_url, tmp_path))
    try:
        with running(app, ["export", "import"]) as srv:
            yield tenancy, app, srv.port
    finally:
        app.close()


def test_a_school_bundle_crosses_the_wall_only_where_named(
    served: tuple[Tenancy, App, int], tmp_path: Path
) -> None:
    t, app, port = served
    key = app.settings.auth.signing_key_file

    def cli_(*args: str) -> Any:
        return ferry(list(args), t.app_url, url_of(t.platform), key, port)

    north_file = tmp_path / "north.json"
    r = cli_("export", "session", "--scope", "school", "--school", "north", "-o", str(north_file))
    assert r.exit_code == 0, r.output
    north = read_bundle(north_file)
    head = north[0]
    assert isinstance(head, Header)
    assert head.metadata.school == "north" and head.metadata.scope == "school"
    names = {s["first_name"] for e in north if getattr(e, "entity", "") == "students"
             for s in e.records}  # fmt: skip
    assert "Of north" in names and "Of south" not in names
    with t.platform.connect() as conn:
        live = conn.execute(
            sa.text("SELECT count(*) FROM students WHERE school_id = :s"),
            {"s": t.schools["north"]},
        ).scalar_one()
    assert head.metadata.counts["students"] == live and head.metadata.include_deleted

    # Without --school the CLI acts for the default school: refused, naming the schools.
    before = state(t)
    r = cli_("import", str(north_file))
    assert r.exit_code == 2, r.output
    assert "INVALID_ARGUMENT" in r.output and "'north'" in r.output
    assert "one of: default, north, south" in r.output
    assert "Traceback" not in r.output and "SELECT" not in r.output
    assert state(t) == before
    # A dry run is refused alike (the preview must not pretend it would go in).
    r = cli_("import", str(north_file), "--dry-run")
    assert r.exit_code == 2 and "one of: default, north, south" in r.output, r.output

    # An unknown school is named, exit 2, and nothing changes (import, export, report).
    for args in (
        ("import", str(north_file), "--school", "west"),
        ("export", "semesters", "--school", "west"),
        ("export", "session", "--scope", "school", "--school", "west", "-o", str(tmp_path / "x")),
        ("import", "list", "--school", "west"),
    ):
        r = cli_(*args)
        assert r.exit_code == 2, (args, r.output)
        assert "school 'west' not found" in r.output, (args, r.output)
    assert not (tmp_path / "x").exists()
    r = cli_("export", "semesters", "--school", "West/1")
    assert r.exit_code == 2 and "--school" in r.output, r.output
    assert state(t) == before

    # --school takes it into the school named; --create-school adds the school first.
    r = cli_("import", str(north_file), "--school", "west", "--create-school")
    assert r.exit_code == 0, r.output
    west_file = tmp_path / "west.json"
    r = cli_("export", "session", "--scope", "school", "--school", "west", "-o", str(west_file))
    assert r.exit_code == 0, r.output
    west = read_bundle(west_file)
    assert west[0].metadata.school == "west"  # type: ignore[attr-defined]
    assert comparable(west) == comparable(north)
    after = state(t)
    for table in ("students", "courses", "grades"):  # the others' rows are as they were
        assert set(before[table]) <= set(after[table]), table  # type: ignore[arg-type]

    # A school's own bundle goes back into it under its token without naming it, and
    # the school it acts for is the only one it may name.
    r = cli_("import", str(north_file), "--school", "north", "--dry-run")
    assert r.exit_code == 0, r.output
    stub = export_pb2_grpc.ExportServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    made = app.issuer().issue("t", parse_role("admin"), dt.timedelta(minutes=5), school="south")
    md = [("authorization", f"Bearer {made.token}")]
    semesters = stub.ListSemesters(export_pb2.ListSemestersRequest(), metadata=md)
    assert semesters.semesters  # south sees its own


def test_a_backup_of_every_school_is_cli_only_and_restores_school_by_school(
    served: tuple[Tenancy, App, int], tmp_path: Path
) -> None:
    t, app, port = served
    key = app.settings.auth.signing_key_file
    archive = tmp_path / "all.tar.gz"
    r = ferry(["backup", "create", "--all-schools", "-o", str(archive)],
              t.app_url, url_of(t.platform), key)  # fmt: skip
    assert r.exit_code == 0, r.output
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == [
            "manifest.json", "schools/default.json", "schools/north.json", "schools/south.json"
        ]  # fmt: skip
        bundles = {
            code: list(JsonBundle().read(
                io.BytesIO(tar.extractfile(f"schools/{code}.json").read()),  # type: ignore[union-attr]
                BundleLimits(),
            ))
            for code in ("north", "south")
        }  # fmt: skip
    for code, events in bundles.items():
        assert events[0].metadata.school == code  # type: ignore[attr-defined]
        names = {s["first_name"] for e in events if getattr(e, "entity", "") == "students"
                 for s in e.records}  # fmt: skip
        assert f"Of {code}" in names and len({"Of north", "Of south"} & names) == 1

    # Over RPC no scope reaches past the caller's school.
    stub = export_pb2_grpc.ExportServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    made = app.issuer().issue("t", parse_role("admin"), dt.timedelta(minutes=5), school="north")
    md = [("authorization", f"Bearer {made.token}")]
    for scope in ("schools", "all-schools", "platform"):
        request = export_pb2.DownloadSessionRequest(scope=scope)
        with pytest.raises(grpc.RpcError) as e:
            list(stub.DownloadSession(request, metadata=md, timeout=30))
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, scope
    whole = b"".join(
        c.chunk.data
        for c in stub.DownloadSession(
            export_pb2.DownloadSessionRequest(scope="all", include_deleted=True), metadata=md
        )
    )
    over_rpc = list(JsonBundle().read(io.BytesIO(whole), BundleLimits()))
    assert comparable(over_rpc) == comparable(bundles["north"])  # "all" is the school's

    # A backup schedule of every school (the CronJob's): one archive a run, `keep` kept.
    folder = tmp_path / "backups"
    for _ in range(2):
        r = CliRunner().invoke(
            cli,
            ["export", "run", "--schedule", "all-nightly", "--directory", str(folder)],
            env={
                "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
                "FERRY_DATABASE_URL": t.app_url,
                "FERRY_DATABASE_PLATFORM_URL": url_of(t.platform),
                "FERRY_AUTH_SIGNING_KEY_FILE": key,
                "FERRY_EXPORT_SCHEDULES": "{all-nightly: {kind: backup, schools: all, keep: 1}}",
            },
        )
        assert r.exit_code == 0, r.output
    (kept,) = [p for p in folder.iterdir() if not p.name.startswith(".")]
    assert kept.name.startswith("all-nightly--") and kept.name.endswith(".tar.gz")
    with tarfile.open(kept) as tar:
        assert len(tar.getnames()) == 4

    # Into another installation: each school comes back, those missing added.
    with app_role() as role, fresh_database("postgres", tmp_path / "other") as url:
        platform = make_engine(url)
        migrate.upgrade(platform)
        roles.hand_over(platform, role)
        other_app = as_role(url, role)
        try:
            # A damaged archive is refused whole: no school added, nothing imported.
            damaged = tmp_path / "damaged.tar.gz"
            with tarfile.open(archive) as src, tarfile.open(damaged, "w:gz") as dst:
                for m in src.getmembers():
                    data = src.extractfile(m).read()  # type: ignore[union-attr]
                    if m.name == "schools/south.json":
                        data = data.replace(b"Of south", b"Of SOUTH")
                    dst.addfile(m, io.BytesIO(data))
            r = ferry(["backup", "restore", "--all-schools", str(damaged)], other_app, url, key)
            assert r.exit_code == 2 and "'south'" in r.output and "sha256" in r.output, r.output
            with platform.connect() as conn:
                assert conn.execute(sa.text("SELECT count(*) FROM schools")).scalar_one() == 1
                assert conn.execute(sa.text("SELECT count(*) FROM imports")).scalar_one() == 0

            r = ferry(["backup", "restore", "--all-schools", str(archive)], other_app, url, key)
            assert r.exit_code == 0, r.output
            assert "school north (added): completed" in r.output
            again = tmp_path / "again.tar.gz"
            r = ferry(["backup", "create", "--all-schools", "-o", str(again)], other_app, url, key)
            assert r.exit_code == 0, r.output
            with tarfile.open(again) as tar:
                for code, events in bundles.items():
                    data = tar.extractfile(f"schools/{code}.json").read()  # type: ignore[union-attr]
                    back = list(JsonBundle().read(io.BytesIO(data), BundleLimits()))
                    assert comparable(back) == comparable(events), code
                manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
            assert [s["code"] for s in manifest["schools"]] == ["default", "north", "south"]
        finally:
            platform.dispose()


def test_one_school_installation_takes_another_schools_bundle(
    tmp_path: Path, source_events: list[Event]
) -> None:
    """An installation of one school (SQLite, `make run`) takes a school's bundle into
    that school: there is nothing to choose."""
    from ferry.bundle.schools import import_target
    from ferry.errors import NotFound

    engine = make_engine(f"sqlite:///{tmp_path / 'one.db'}")
    migrate.upgrade(engine)
    import_target(engine, "north", "")
    import_target(engine, "north", "default")
    with pytest.raises(NotFound, match="'west'"):
        import_target(engine, "north", "west")
    engine.dispose()
