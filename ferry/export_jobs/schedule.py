"""Scheduled exports: when a schedule fires, how a run is keyed, and the in-process scheduler.

A schedule (`export.schedules.<name>`) has a cron expression read in its time zone. Two
things may run it, never both (`export.scheduler.enabled` decides; the Kubernetes manifests
turn it off):

- a Kubernetes CronJob running `ferry export run --schedule NAME` (`ferry k8s cronjobs`);
- `ferry serve` itself, through `Scheduler`, for a laptop.

Both start the run with `start_run`, so a run has one key however it was started: the
schedule's name and the local date (in the schedule's time zone) of the latest time the cron
expression fired. A CronJob retried that day, a CronJob started late, a laptop that woke up
and a second `ferry serve` all attach to the same job instead of exporting twice; a run
that failed or was cancelled is run again under the next attempt's key (`#2`, `#3`, …).

Schools (docs/tenants.md): a schedule runs for the default school, the school it names
(`school: CODE`) or every school (`schools: all`), each school's run a job of that school
(started with a token of the school), keyed alike: idempotency keys are per school. The
schools of `schools: all` are read when the schedule fires, so a school added since runs
too.

Missed runs: a run whose time passed while nothing was running starts late if it is at most
`export.scheduler.starting_deadline_seconds` old (the CronJobs' `startingDeadlineSeconds`
is the same number) and is skipped otherwise; the next run happens at its own time.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import zoneinfo
from collections.abc import Callable
from typing import Any

from croniter import croniter

from ferry.config import SchedulerSettings, ScheduleSettings
from ferry.v1 import export_pb2 as pb

log = logging.getLogger("ferry.export_jobs.schedule")

MAX_RUN_ATTEMPTS = 5
FILTERS = ("status", "search", "semester", "course_code", "date_from", "date_to")
FAILED = (pb.EXPORT_JOB_STATUS_FAILED, pb.EXPORT_JOB_STATUS_CANCELLED)


def last_fire(cron: str, time_zone: str, now: dt.datetime) -> dt.datetime | None:
    """The latest time at or before `now` that `cron` fired (aware, in `time_zone`)."""
    if not cron:
        return None
    local = now.astimezone(zoneinfo.ZoneInfo(time_zone))
    # croniter's get_prev is strict: step a second past `now` so a fire at `now` counts.
    prev: dt.datetime = croniter(cron, local + dt.timedelta(seconds=1)).get_prev(dt.datetime)
    return prev


def run_key(name: str, s: ScheduleSettings, now: dt.datetime) -> str:
    """The idempotency key of the run of schedule `name` that is due at `now`: its name
    and the local date of the latest fire (of `now` for a schedule without cron)."""
    fired = last_fire(s.cron, s.time_zone, now) or now.astimezone(zoneinfo.ZoneInfo(s.time_zone))
    return f"schedule:{name}:{fired.date().isoformat()}"


def request_for(s: ScheduleSettings) -> pb.StartExportRequest:
    """The StartExport request of a schedule; ValueError naming a bad filter."""
    filters = pb.ExportFilters()
    for key, value in s.filters.items():
        if key == "updated_since":
            instant = dt.datetime.fromisoformat(value)
            filters.updated_since.FromDatetime(
                instant if instant.tzinfo else instant.replace(tzinfo=dt.UTC)
            )
        elif key in FILTERS:
            setattr(filters, key, value)
        else:
            known = ", ".join((*FILTERS, "updated_since"))
            raise ValueError(f"unknown filter {key!r}; known: {known}")
    return pb.StartExportRequest(
        export_type=s.type,
        format=s.format,
        filters=filters,
        fields=s.fields,
        limit=s.limit,
        notify=s.notify,
        include_deleted=s.include_deleted,
    )


def targets(s: ScheduleSettings, every_school: Callable[[], list[str]]) -> list[str]:
    """The codes of the schools schedule `s` runs for ("" the default school)."""
    if s.school:
        return [s.school]
    if s.schools == "all":
        return every_school()
    return [""]


def start_run(
    stub: Any, name: str, s: ScheduleSettings, now: dt.datetime
) -> tuple[pb.ExportJob, bool]:
    """Start (or attach to) the run of `name` due at `now`: (job, created)."""
    request = request_for(s)
    base = run_key(name, s, now)
    for attempt in range(1, MAX_RUN_ATTEMPTS + 1):
        request.idempotency_key = base if attempt == 1 else f"{base}#{attempt}"
        resp = stub.StartExport(request)
        if resp.created or resp.job.status not in FAILED:
            break
    return resp.job, resp.created


class Scheduler:
    """Runs due schedules inside `ferry serve`, through the export service's gRPC API."""

    def __init__(
        self,
        schedules: dict[str, ScheduleSettings],
        settings: SchedulerSettings,
        stub: Callable[[], Any],
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        stub_for: Callable[[str], Any] | None = None,
        every_school: Callable[[], list[str]] = lambda: [""],
    ) -> None:
        """`stub()`: the export stub of the default school; `stub_for(code)`: of school
        `code` (schedules naming a school); `every_school()`: the codes `schools: all`
        runs for."""
        self.stub_for = stub_for
        self.every_school = every_school
        # Backups (kind backup) run by `ferry export run --schedule NAME` only.
        self.schedules = {n: s for n, s in schedules.items() if s.cron and s.kind == "export"}
        self.settings = settings
        self.stub = stub
        self.clock = clock
        self.started_at = clock()
        # Per schedule: the fire already handled (started, attached or skipped as missed).
        self.handled: dict[str, dt.datetime] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def tick(self) -> list[tuple[str, pb.ExportJob, bool]]:
        """Start every run that is due now; (schedule, job, created) for each started."""
        now = self.clock()
        deadline = dt.timedelta(seconds=self.settings.starting_deadline_seconds)
        out = []
        for name, s in sorted(self.schedules.items()):
            fired = last_fire(s.cron, s.time_zone, now)
            if fired is None or fired <= self.handled.get(name, self.started_at - deadline):
                continue
            if now - fired > deadline:
                log.warning(
                    "schedule %s: the run of %s was missed by more than %ss; skipped",
                    name,
                    fired.isoformat(),
                    deadline.total_seconds(),
                    extra={"event": "schedule_missed", "schedule": name},
                )
                self.handled[name] = fired
                continue
            started = self._start(name, s, now)
            if started is None:
                continue  # the service is not up yet: try again next tick
            self.handled[name] = fired
            out.extend(started)
        return out

    def _start(
        self, name: str, s: ScheduleSettings, now: dt.datetime
    ) -> list[tuple[str, pb.ExportJob, bool]] | None:
        """Start (or attach to) the run of every school of `s`; None when one could not
        be reached (the next tick tries again; those started are attached to then)."""
        out = []
        try:
            codes = targets(s, self.every_school)
        except Exception as e:
            log.warning("schedule %s: cannot list the schools: %s", name, e,
                        extra={"event": "schedule_error", "schedule": name})  # fmt: skip
            return None
        for code in codes:
            try:
                stub = self.stub_for(code) if code and self.stub_for else self.stub()
                job, created = start_run(stub, name, s, now)
            except Exception as e:
                log.warning(
                    "schedule %s: cannot start%s: %s",
                    name,
                    f" for school {code}" if code else "",
                    e,
                    extra={"event": "schedule_error", "schedule": name, "school": code},
                )
                return None
            log.info(
                "schedule %s: %s job %s%s",
                name,
                "started" if created else "attached to",
                job.id,
                f" of school {code}" if code else "",
                extra={"event": "schedule_run", "schedule": name, "job_id": job.id,
                       "school": code},
            )  # fmt: skip
            out.append((name, job, created))
        return out

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.settings.check_seconds)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def serve_schedules(app: Any, served: list[str], target: str) -> Scheduler | None:
    """The running scheduler of the all-in-one `ferry serve` (`served` is empty when
    services were named: `ferry serve export` is a pod, or a benchmark, and runs none)
    when export.scheduler.enabled, else None. It calls the export service at `target` with
    the process's own token, exactly as `ferry export run` would."""
    from ferry.rpc.client import Clients

    s = app.settings
    if not s.export.scheduler.enabled or "export" not in served:
        return None
    if not any(x.cron for x in s.export.schedules.values()):
        return None
    from ferry.db import schools

    settings = s.client.model_copy(update={"target": target, "services": []})
    clients = Clients(settings, lambda: app.local_token("scheduler"))
    per_school: dict[str, Clients] = {}

    def stub_for(code: str) -> Any:
        if code not in per_school:  # a token of the school: its jobs are that school's
            per_school[code] = Clients(
                settings, lambda: app.local_token("scheduler", school=code)
            )
        return per_school[code].export()

    def every_school() -> list[str]:
        return [x.code for x in schools.all_schools(app.engine)]

    scheduler = Scheduler(
        s.export.schedules,
        s.export.scheduler,
        clients.export,
        stub_for=stub_for,
        every_school=every_school,
    )
    scheduler.start()
    return scheduler
