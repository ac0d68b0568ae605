"""Schedules: when a run is due, how it is keyed, and the in-process scheduler of `ferry
serve`, which keys runs exactly as `ferry export run --schedule` does, so a run started by
one is attached to by the other and never doubled."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry import config
from ferry.app import App
from ferry.cli.main import cli
from ferry.config import SchedulerSettings, ScheduleSettings
from ferry.export_jobs import schedule
from ferry.rpc.client import Clients
from tests.conftest import running, token
from tests.integration.test_cli import env_for

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_run_key_is_the_local_date_of_the_latest_cron_time() -> None:
    s = ScheduleSettings(type="students", cron="30 2 * * *")
    assert schedule.run_key("n", s, at("2026-03-10T02:30:00")) == "schedule:n:2026-03-10"
    assert schedule.run_key("n", s, at("2026-03-10T23:59:00")) == "schedule:n:2026-03-10"
    # Before today's time, the run that is due is yesterday's.
    assert schedule.run_key("n", s, at("2026-03-11T01:00:00")) == "schedule:n:2026-03-10"
    manual = ScheduleSettings(type="students")
    assert schedule.run_key("n", manual, at("2026-03-11T01:00:00")) == "schedule:n:2026-03-11"


def test_a_time_zone_with_summer_time_still_runs_once_each_local_day() -> None:
    """02:30 in Athens is 00:30 UTC in winter and 23:30 UTC the day before in summer; keyed
    by UTC date, the day after the change would attach to the day before. Local dates
    keep one run per day across the change."""
    s = ScheduleSettings(type="students", cron="30 2 * * *", time_zone="Europe/Athens")
    before = schedule.last_fire(s.cron, s.time_zone, at("2026-03-29T00:45:00"))
    after = schedule.last_fire(s.cron, s.time_zone, at("2026-03-29T23:45:00"))
    assert before is not None and after is not None
    assert before.astimezone(UTC) == at("2026-03-29T00:30:00")  # winter time, UTC+2
    assert after.astimezone(UTC) == at("2026-03-29T23:30:00")  # summer time, UTC+3
    keys = {
        schedule.run_key("n", s, t) for t in (at("2026-03-29T00:45:00"), at("2026-03-29T23:45:00"))
    }
    assert keys == {"schedule:n:2026-03-29", "schedule:n:2026-03-30"}


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 */6 * * *", "fires more than once a day"),
        ("30 2 * *", "not a 5-field cron expression"),
        ("61 2 * * *", "not a 5-field cron expression"),
        ("@daily hourly", "not a 5-field cron expression"),
    ],
)
def test_bad_cron_expressions_stop_start_up_naming_the_schedule(
    cron: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "ferry.yaml"
    path.write_text(f"export:\n  schedules:\n    nightly: {{type: students, cron: '{cron}'}}\n")
    with pytest.raises(config.ConfigError, match=rf"export\.schedules\.nightly\.cron: .*{message}"):
        config.load(path, {})
    path.write_text("export:\n  schedules:\n    nightly: {type: students, time_zone: Atlantis}\n")
    with pytest.raises(config.ConfigError, match=r"nightly\.time_zone: .*unknown time zone"):
        config.load(path, {})


SCHEDULES = (
    "{nightly: {type: students, format: csv, filters: {status: active}, cron: '30 2 * * *'}}"
)


def jobs(app: App) -> list[tuple[str, str]]:
    with app.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT idempotency_key, status FROM export_jobs")).all()
    return [(str(k), str(s)) for k, s in rows]


def test_the_scheduler_starts_a_due_run_once_and_the_cli_attaches_to_it(
    job_app: Callable[..., App],
) -> None:
    app = job_app(FERRY_EXPORT_SCHEDULES=SCHEDULES)
    now = [at("2026-05-04T02:30:05")]
    with running(app) as srv:
        target = f"127.0.0.1:{srv.port}"
        clients = Clients(app.settings.client.model_copy(update={"target": target}),
                          lambda: token(app, "operator"))  # fmt: skip
        sched = schedule.Scheduler(
            app.settings.export.schedules, SchedulerSettings(), clients.export, lambda: now[0]
        )
        started = sched.tick()
        assert [(n, created) for n, _, created in started] == [("nightly", True)]
        now[0] = at("2026-05-04T09:00:00")
        assert sched.tick() == []  # the same run: nothing new
        # `ferry export run` during the same day attaches to the scheduler's job. It keys by
        # the real clock, so give the schedule a cron time that has just passed.
        real = dt.datetime.now(UTC) - dt.timedelta(minutes=1)
        cron = f"{real.minute} {real.hour} * * *"
        sched2 = schedule.Scheduler(
            {"nightly": ScheduleSettings(type="students", cron=cron)},
            SchedulerSettings(), clients.export,
        )  # fmt: skip
        ((_, job, created),) = sched2.tick()
        assert created
        env = env_for(
            app, srv.port, FERRY_EXPORT_SCHEDULES=f"{{nightly: {{type: students, cron: '{cron}'}}}}"
        )
        env.update({k: str(v) for k, v in {
            "FERRY_PLUGINS_STORAGE_LOCAL_DIR": app.settings.plugins["storage"]["local"]["dir"],
            "FERRY_PLUGINS_STORAGE_LOCAL_ARCHIVE_DIR":
                app.settings.plugins["storage"]["local"]["archive_dir"],
        }.items()})  # fmt: skip
        result = CliRunner().invoke(cli, ["export", "run", "--schedule", "nightly"], env=env)
        assert result.exit_code == 0, result.output
        assert f"attached to job {job.id}" in result.output
        clients.close()
    keys = sorted(k for k, _ in jobs(app))
    today = real.date().isoformat()
    assert keys == sorted(["schedule:nightly:2026-05-04", f"schedule:nightly:{today}"])


def test_a_run_missed_by_more_than_the_starting_deadline_is_skipped(
    job_app: Callable[..., App],
) -> None:
    app = job_app(FERRY_EXPORT_SCHEDULES=SCHEDULES, FERRY_EXPORT_WORKERS="0")
    # The process comes up at 04:00; the 02:30 run is 90 minutes old, the deadline is 1 h.
    now = [at("2026-05-04T04:00:00")]
    with running(app) as srv:
        target = f"127.0.0.1:{srv.port}"
        clients = Clients(app.settings.client.model_copy(update={"target": target}),
                          lambda: token(app, "operator"))  # fmt: skip
        sched = schedule.Scheduler(
            app.settings.export.schedules,
            SchedulerSettings(starting_deadline_seconds=3600),
            clients.export,
            lambda: now[0],
        )
        assert sched.tick() == []
        assert jobs(app) == []
        # The next day's run starts at its time, a little late within the deadline.
        now[0] = at("2026-05-05T02:50:00")
        ((name, _, created),) = sched.tick()
        assert name == "nightly" and created
        # A run missed while it was down, but within the deadline, starts late.
        now[0] = at("2026-05-06T03:10:00")
        assert [n for n, _, _ in sched.tick()] == ["nightly"]
        clients.close()
    assert sorted(k for k, _ in jobs(app)) == [
        "schedule:nightly:2026-05-05",
        "schedule:nightly:2026-05-06",
    ]


def test_an_unreachable_service_is_retried_on_the_next_tick(job_app: Callable[..., App]) -> None:
    app = job_app(FERRY_EXPORT_SCHEDULES=SCHEDULES, FERRY_EXPORT_WORKERS="0")
    now = at("2026-05-04T02:31:00")
    down = Clients(
        app.settings.client.model_copy(
            update={"target": "127.0.0.1:9", "max_attempts": 1, "timeout_seconds": 1}
        )
    )
    sched = schedule.Scheduler(app.settings.export.schedules, SchedulerSettings(), down.export,
                               lambda: now)  # fmt: skip
    assert sched.tick() == []
    with running(app) as srv:
        up = Clients(app.settings.client.model_copy(update={"target": f"127.0.0.1:{srv.port}"}),
                     lambda: token(app, "operator"))  # fmt: skip
        sched.stub = up.export
        assert [n for n, _, _ in sched.tick()] == ["nightly"]
        up.close()
    down.close()
    assert [k for k, _ in jobs(app)] == ["schedule:nightly:2026-05-04"]


def test_export_run_against_an_unreachable_service_exits_5_with_one_line(tmp_path: Path) -> None:
    """What makes a CronJob's status true when the export service is down."""
    env = {
        "FERRY_TARGET": "127.0.0.1:9",
        "FERRY_CLIENT_TIMEOUT_SECONDS": "2",
        "FERRY_CLIENT_MAX_ATTEMPTS": "1",
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "absent.key"),
        "FERRY_TOKEN": "x",
        "FERRY_EXPORT_SCHEDULES": SCHEDULES,
    }
    result = CliRunner().invoke(cli, ["export", "run", "--schedule", "nightly"], env=env)
    assert result.exit_code == 5
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: UNAVAILABLE: ")
