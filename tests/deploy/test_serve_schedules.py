"""`ferry serve` (laptop mode) runs due schedules itself, keyed as `ferry export run` keys
them; with export.scheduler.enabled false (as the Kubernetes manifests set it) it runs none."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry.cli.main import cli
from ferry.db.engine import make_engine
from tests.deploy.serving import ferry_serve


def just_passed() -> tuple[str, str]:
    """A daily cron expression that fired a minute ago, and that run's key date."""
    t = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    return f"{t.minute} {t.hour} * * *", t.date().isoformat()


def keys(tmp: Path) -> list[str]:
    engine = make_engine(f"sqlite:///{tmp / 'ferry.db'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT idempotency_key FROM export_jobs")).scalars()
            return sorted(str(k) for k in rows)
    finally:
        engine.dispose()


@pytest.mark.slow
def test_serve_runs_a_due_schedule_once_and_the_cli_attaches(tmp_path: Path) -> None:
    cron, day = just_passed()
    schedules = f"{{nightly: {{type: students, format: csv, cron: '{cron}'}}}}"
    with ferry_serve(tmp_path, FERRY_EXPORT_SCHEDULES=schedules) as served:
        deadline = time.monotonic() + 30
        while keys(tmp_path) == [] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert keys(tmp_path) == [f"schedule:nightly:{day}"], served.output()
        env = {k: v for k, v in served.env.items() if k.startswith("FERRY_")}
        env["FERRY_TARGET"] = f"127.0.0.1:{served.grpc_port}"
        result = CliRunner().invoke(cli, ["export", "run", "--schedule", "nightly"], env=env)
        assert result.exit_code == 0, result.output
        assert "attached to job" in result.output
    assert keys(tmp_path) == [f"schedule:nightly:{day}"]
    assert "schedules nightly (in this process)" in served.output()


@pytest.mark.slow
def test_with_the_scheduler_off_serve_runs_no_schedule(tmp_path: Path) -> None:
    cron, _ = just_passed()
    schedules = f"{{nightly: {{type: students, cron: '{cron}'}}}}"
    with ferry_serve(
        tmp_path, FERRY_EXPORT_SCHEDULES=schedules, FERRY_EXPORT_SCHEDULER_ENABLED="false",
        FERRY_EXPORT_SCHEDULER_CHECK_SECONDS="0.2",
    ) as served:  # fmt: skip
        time.sleep(2)
        assert keys(tmp_path) == []
    assert "(in this process)" not in served.output()
