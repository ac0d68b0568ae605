"""Schedules act for their schools (docs/tenants.md): `school: CODE` runs for that school,
`schools: all` for every school, each run a job of its school holding that school's rows
only; `ferry export run` attaches to the same jobs school by school; a schedule of an
unknown shape stops start-up naming it."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry import config
from ferry.app import App
from ferry.bundle.formats.base import Event
from ferry.cli.main import cli
from ferry.db import tenant
from ferry.export_jobs import schedule
from tests.conftest import make_settings, running
from tests.merge.helpers import edited, run
from tests.tenants.conftest import Tenancy

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("school: North", r"nightly\.school: .*not a school code"),
        ("school: [north]", r"nightly\.school: .*valid string"),
        ("schools: some", r"nightly\.schools: .*'all'"),
        ("schools: [north, south]", r"nightly\.schools: "),
        ("school: north, schools: all", r"nightly: .*either `school: CODE` or `schools: all`"),
        ("school_code: north", r"nightly\.school_code: unknown key"),
    ],
)
def test_a_schedule_of_an_unknown_shape_stops_start_up(
    entry: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "ferry.yaml"
    path.write_text(f"export:\n  schedules:\n    nightly: {{type: students, {entry}}}\n")
    with pytest.raises(config.ConfigError, match=message):
        config.load(path, {})


@pytest.mark.postgres
def test_schedules_run_for_their_schools(
    tenancy: Tenancy, source_events: list[Event], tmp_path: Path
) -> None:
    t = tenancy
    for code in ("north", "south"):
        with tenant.acting_for(t.schools[code]):
            run(t.app, edited(source_events, "students", 0, first_name=f"Of {code}"))
    fired = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    cron = f"{fired.minute} {fired.hour} * * *"
    schedules = (
        f"{{every: {{type: students, format: csv, cron: '{cron}', schools: all}},"
        f" one: {{type: students, format: csv, cron: '{cron}', school: south}}}}"
    )
    app = App(make_settings(t.app_url, tmp_path, FERRY_EXPORT_SCHEDULES=schedules,
                            FERRY_EXPORT_POLL_SECONDS="0.2"))  # fmt: skip
    try:
        with running(app, ["export"]) as srv:
            scheduler = schedule.serve_schedules(app, ["export"], f"127.0.0.1:{srv.port}")
            assert scheduler is not None
            try:
                jobs = wait_for_jobs(t, 4)
            finally:
                scheduler.stop()
            codes = {v: k for k, v in t.schools.items()}
            by_run = sorted((key.split(":")[1], codes[school]) for key, school, _, _ in jobs)
            assert by_run == [("every", "default"), ("every", "north"), ("every", "south"),
                              ("one", "south")]  # fmt: skip
            storage = app.storage()
            for key, school, status, storage_key in jobs:
                assert status == "completed", key
                assert storage_key.startswith(f"{codes[school]}--")
                with storage.open(storage_key) as f:
                    rows = list(csv.DictReader(io.StringIO(f.read().decode("utf-8-sig"))))
                seen = {r["first_name"] for r in rows} & {"Of north", "Of south"}
                assert seen == ({f"Of {codes[school]}"} if school != 1 else set()), key

            env = {
                "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
                "FERRY_DATABASE_URL": t.app_url,
                "FERRY_AUTH_SIGNING_KEY_FILE": app.settings.auth.signing_key_file,
                "FERRY_TARGET": f"127.0.0.1:{srv.port}",
                "FERRY_EXPORT_SCHEDULES": schedules,
            }
            r = CliRunner().invoke(cli, ["export", "run", "--schedule", "every"], env=env)
            assert r.exit_code == 0, r.output
            assert r.output.count("attached to job") == 3, r.output
            r = CliRunner().invoke(
                cli, ["export", "run", "--schedule", "one", "--school", "north"], env=env
            )
            assert r.exit_code == 2 and "of school south, not north" in r.output, r.output
            assert len(wait_for_jobs(t, 4)) == 4  # nothing more was started
    finally:
        app.close()


def wait_for_jobs(t: Tenancy, n: int) -> list[tuple[str, int, str, str]]:
    """The export jobs (key, school, status, storage key) once `n` of them have ended."""
    deadline = time.monotonic() + 90
    while True:
        with t.platform.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT idempotency_key, school_id, status, storage_key FROM export_jobs "
                    "ORDER BY idempotency_key, school_id"
                )
            ).all()
        ended = [r for r in rows if r[2] in ("completed", "failed", "cancelled")]
        if len(ended) >= n or time.monotonic() > deadline:
            return [(str(a), int(b), str(c), str(d)) for a, b, c, d in rows]
        time.sleep(0.3)


def test_cronjobs_give_the_database_only_to_those_that_read_it(tmp_path: Path) -> None:
    """`ferry k8s cronjobs`: a backup of every school gets the platform role's Secret and
    no token; an export of every school its token and the app role's URL (to list the
    schools); one school's export its token alone; the retention the app role."""
    import yaml

    from ferry.cli.k8s import cronjobs_yaml

    path = tmp_path / "ferry.yaml"
    path.write_text(
        "export:\n  schedules:\n"
        "    all-backup: {kind: backup, schools: all, cron: '0 1 * * *'}\n"
        "    all-export: {type: students, schools: all, cron: '0 2 * * *'}\n"
        "    one-export: {type: students, school: north, cron: '0 3 * * *'}\n"
    )
    docs = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all(cronjobs_yaml(config.load(path, {})))
    }

    def secrets(name: str) -> dict[str, str]:
        pod = docs[name]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return {
            e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in pod["containers"][0]["env"]
        }

    assert secrets("ferry-export-all-backup") == {
        "FERRY_DATABASE_PLATFORM_URL": "ferry-database-platform"
    }
    assert secrets("ferry-export-all-export") == {
        "FERRY_TOKEN": "ferry-cron-token",
        "FERRY_DATABASE_URL": "ferry-database",
    }
    assert secrets("ferry-export-one-export") == {"FERRY_TOKEN": "ferry-cron-token"}
    assert secrets("ferry-export-cleanup") == {"FERRY_DATABASE_URL": "ferry-database"}
    cleanup = docs["ferry-export-cleanup"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert cleanup["containers"][0]["args"][:3] == ["export", "cleanup", "--all-schools"]
    for name in ("ferry-export-all-backup", "ferry-export-all-export", "ferry-export-cleanup"):
        assert docs[name]["metadata"]["labels"]["ferry.io/database"] == "direct"
    assert "ferry.io/database" not in docs["ferry-export-one-export"]["metadata"]["labels"]
