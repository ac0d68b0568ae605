"""Notification delivery from the outbox, through real `ferry serve notify` processes.

- smtp: 2,000 Sends over gRPC to a notify process whose workers deliver to an aiosmtpd
  server in this process; mails/s from the first Send to the last mail received. Baseline:
  smtplib sending the same 2,000 messages over one connection to the same aiosmtpd (the
  floor underneath). A paced run (100 Sends/s) gives Send-to-accepted latency (from the
  Send call to the relay's 250), p50/p95/p99.
- log: rows bulk-inserted into the outbox, delivered by the log channel; rows/s until all
  are sent. Baseline: the same number of JSON log lines written by a bare logging loop.
- replicas: 2,000 mails from one PostgreSQL outbox by one notify process, then by two;
  the ratio of two to one (Ferry against itself) and the duplicates the relay saw, with
  the CPU each part spent per mail (notify processes, the relay, PostgreSQL). Beside it,
  the relay alone, fed by 8 smtplib processes: the ceiling of every SMTP row here, since
  the relay is one asyncio thread sharing the machine with what it measures. And one
  and two replicas again with a relay that takes 20 ms to accept each mail (a remote
  one): waiting instead of CPU, which shows what a second replica adds by itself.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import resource
import smtplib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa

from bench.common import Row, fresh_database
from bench.server import FerryServer
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.db.models import utcnow
from ferry.db.notify_models import Notification, OutboxRow
from ferry.v1 import notify_pb2 as pb
from ferry.v1 import notify_pb2_grpc

MESSAGE_ID = re.compile(rb"^Message-ID: *(<[^>\r\n]*>)", re.M | re.I)
EVENT = re.compile(rb"^X-Ferry-Event: *([^\r\n]+)", re.M | re.I)
MAILS = 2000
LOG_ROWS = 20000
PACED = 500
PACE_PER_S = 100
# Batches of 20 (ferry.yaml's default), not 50: a worker holds its whole batch, so at the
# end of a run the others wait for the last ones; with two replicas that tail was a
# quarter of the run (2,000 mails, 8 workers).
WORKER_ENV = {
    "FERRY_NOTIFY_WORKERS": "4",
    "FERRY_NOTIFY_BATCH_SIZE": "20",
    "FERRY_NOTIFY_POLL_SECONDS": "0.05",
}


class Relay:
    """aiosmtpd accepting everything, noting when each event's mail arrived."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.arrived: dict[str, float] = {}
        self.count = 0
        # Seconds before the 250 to DATA: a remote relay's latency (waiting, not CPU).
        self.delay = 0.0
        self.ids: list[str] = []
        self.lock = threading.Lock()
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            import asyncio

            await asyncio.sleep(self.delay)
        now = time.perf_counter()
        # Two headers found by a regex, not a parser: the relay shares the machine's two
        # cores with what it measures and must stay cheap beside it.
        content = envelope.content
        head = content[: content.find(b"\r\n\r\n")]
        mid = MESSAGE_ID.search(head)
        event = EVENT.search(head)
        with self.lock:
            self.count += 1
            self.ids.append(mid.group(1).decode() if mid else "")
            if event:
                self.arrived.setdefault(event.group(1).decode(), now)
        return "250 OK"

    def wait(self, n: int, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while self.count < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self.count} of {n} mails arrived")
            time.sleep(0.005)
        return time.perf_counter()

    def reset(self) -> None:
        with self.lock:
            self.arrived.clear()
            self.ids.clear()
            self.count = 0

    def stop(self) -> None:
        self.controller.stop()


# Each row's own outbox database, named after FERRY_BENCH_DB so runs side by side on one
# server never drop each other's.
PREFIX = os.environ.get("FERRY_BENCH_DB", "ferry_bench")


def _fresh(name: str) -> str:
    url = fresh_database(name.replace("ferry_bench", PREFIX, 1))
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    return url


@contextmanager
def _servers(url: str, workdir: Path, n: int, env: dict[str, str]) -> Iterator[list[FerryServer]]:
    with ExitStack() as stack:
        servers = []
        for _ in range(n):
            s = FerryServer(url, workdir, ("notify",), {**WORKER_ENV, **env})
            stack.callback(s.stop)
            servers.append(s)
        yield servers


def _smtp_env(relay: Relay) -> dict[str, str]:
    return {
        "FERRY_NOTIFY_CHANNELS": "[smtp]",
        "FERRY_NOTIFY_DEFAULT_CHANNELS": "[smtp]",
        "FERRY_PLUGINS_CHANNELS_SMTP_PORT": str(relay.port),
        "FERRY_PLUGINS_CHANNELS_SMTP_FROM_ADDRESS": "ferry@school.example",
    }


def _send_all(server: FerryServer, n: int, prefix: str, pace: float = 0.0) -> dict[str, float]:
    """Send n notifications (8 client threads, or paced at `pace`/s); event id -> start."""
    started: dict[str, float] = {}
    md = [("authorization", f"Bearer {server.token()}")]
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        stub = notify_pb2_grpc.NotifyServiceStub(ch)

        def one(i: int) -> None:
            event = f"{prefix}-{i}"
            started[event] = time.perf_counter()
            stub.Send(
                pb.SendRequest(
                    recipients=[f"user{i}@school.example"],
                    subject=f"Mail {i}",
                    body="Your export is ready.",
                    event_id=event,
                ),
                metadata=md,
                timeout=30,
            )

        if pace:
            t0 = time.perf_counter()
            for i in range(n):
                delay = t0 + i / pace - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                one(i)
        else:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(one, range(n)))
    return started


def _raw_smtp(relay: Relay, n: int, latencies: list[float] | None = None) -> float:
    """Mails/s of bare smtplib over one connection to the same relay (each send's time in
    ms appended to `latencies`)."""
    relay.reset()
    t = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10) as s:
        for i in range(n):
            start = time.perf_counter()
            m = EmailMessage()
            m["Subject"] = f"Mail {i}"
            m["From"] = "ferry@school.example"
            m["To"] = f"user{i}@school.example"
            m["Message-ID"] = f"<raw{i}@school.example>"
            m.set_content("Your export is ready.")
            s.send_message(m)
            if latencies is not None:
                latencies.append((time.perf_counter() - start) * 1000)
    return n / (time.perf_counter() - t)


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def smtp_rows(workdir: Path) -> list[Row]:
    relay = Relay()
    try:
        raw_lat: list[float] = []
        raw = _raw_smtp(relay, MAILS, raw_lat)
        url = _fresh("ferry_bench_notify_smtp")
        with _servers(url, workdir, 1, _smtp_env(relay)) as (server,):
            relay.reset()
            t = time.perf_counter()
            _send_all(server, MAILS, "burst")
            end = relay.wait(MAILS)
            burst = MAILS / (end - t)
            rss = server.rss_mb()
            relay.reset()
            started = _send_all(server, PACED, "paced", pace=PACE_PER_S)
            relay.wait(PACED)
            lat = [(relay.arrived[e] - s) * 1000 for e, s in started.items()]
        return [
            Row(
                f"outbox -> aiosmtpd, {MAILS:,} mails (gRPC Send, 4 workers)",
                MAILS,
                burst,
                "smtplib, one connection, same relay",
                raw,
                rss,
            ),
            Row(
                f"Send -> relay 250, {PACED} mails paced {PACE_PER_S}/s (p50 latency as 1/s)",
                PACED,
                1000 / _pct(lat, 0.5),
                "one smtplib send to the same relay (p50 as 1/s)",
                1000 / _pct(raw_lat, 0.5),
                0.0,
                f"Ferry p50 {_pct(lat, 0.5):.0f} ms, p95 {_pct(lat, 0.95):.0f} ms, "
                f"p99 {_pct(lat, 0.99):.0f} ms; smtplib p50 {_pct(raw_lat, 0.5):.1f} ms, "
                f"p99 {_pct(raw_lat, 0.99):.1f} ms (1 run)",
            ),
        ]
    finally:
        relay.stop()


def _bulk_queue(url: str, n: int, channel: str) -> None:
    """n notifications with one outbox row each, inserted in bulk."""
    engine = make_engine(url)
    now = utcnow()
    ids = [str(uuid.uuid4()) for _ in range(n)]
    with engine.begin() as conn:
        conn.execute(
            sa.insert(Notification.__table__),
            [
                dict(
                    id=nid,
                    event_id=f"bulk-{i}",
                    channels=[channel],
                    recipients=[f"u{i}@x.org"],
                    template="",
                    language="en",
                    variables={},
                    subject=f"S {i}",
                    text_body="T",
                    html_body="",
                    status="pending",
                    requested_by="bench",
                    created_at=now,
                    updated_at=now,
                )
                for i, nid in enumerate(ids)
            ],
        )
        conn.execute(
            sa.insert(OutboxRow.__table__),
            [
                dict(
                    notification_id=nid,
                    channel=channel,
                    recipient=f"u{i}@x.org",
                    status="pending",
                    attempts=0,
                    next_attempt_at=now,
                    last_error="",
                    created_at=now,
                )
                for i, nid in enumerate(ids)
            ],
        )
    engine.dispose()


def _sent(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return int(
                c.execute(
                    sa.select(sa.func.count())
                    .select_from(OutboxRow)
                    .where(OutboxRow.status == "sent")
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _raw_log(n: int) -> float:
    out = logging.getLogger("bench.raw")
    out.propagate = False
    h = logging.StreamHandler(io.StringIO())
    out.addHandler(h)
    out.setLevel(logging.INFO)
    t = time.perf_counter()
    for i in range(n):
        out.info(
            json.dumps({"event": "notification", "recipient": f"u{i}@x.org", "subject": f"S {i}"})
        )
    out.removeHandler(h)
    return n / (time.perf_counter() - t)


def log_rows(workdir: Path) -> list[Row]:
    url = _fresh("ferry_bench_notify_log")
    env = {
        "FERRY_NOTIFY_CHANNELS": "[log]",
        "FERRY_LOG_LEVEL": "INFO",
        "FERRY_NOTIFY_BATCH_SIZE": "200",
    }
    with _servers(url, workdir, 1, env) as (server,):
        t = time.perf_counter()
        _bulk_queue(url, LOG_ROWS, "log")
        while _sent(url) < LOG_ROWS:
            time.sleep(0.05)
        ferry = LOG_ROWS / (time.perf_counter() - t)
        rss = server.rss_mb()
    return [
        Row(
            f"outbox -> log channel, {LOG_ROWS:,} rows (1 process)",
            LOG_ROWS,
            ferry,
            "bare logging loop, JSON lines",
            _raw_log(LOG_ROWS),
            rss,
            "(1 run)",
        )
    ]


SINK_CONNECTIONS = 8  # as many as two replicas of 4 workers open
REMOTE_DELAY = 0.02
# notify.sends_per_worker values tried with the remote relay (1 replica): the default is
# chosen from these (ferry/notify/README.md).
WIDTHS = (1, 2, 4, 8)


def _sink_client(port: int, n: int, k: int, ready: Any, go: Any) -> None:
    """One process, one connection: n small prebuilt mails as fast as the relay takes them."""
    mails = [
        f"Subject: S {i}\r\nFrom: f@school.example\r\nTo: u{i}@school.example\r\n"
        f"Message-ID: <sink{k}.{i}@school.example>\r\nX-Ferry-Event: sink-{k}-{i}\r\n\r\n"
        "Your export is ready.\r\n".encode()
        for i in range(n)
    ]
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        s.ehlo()
        ready.put(k)
        go.wait()
        for i, m in enumerate(mails):
            s.sendmail("f@school.example", [f"u{i}@school.example"], m)


def _sink_alone(relay: Relay, n: int, connections: int = SINK_CONNECTIONS) -> float:
    """Mails/s the relay takes from `connections` smtplib processes with nothing else
    running: the ceiling of any SMTP row on this machine (the relay is one asyncio thread
    in this process)."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    relay.reset()
    ready, go = ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(target=_sink_client, args=(relay.port, n // connections, k, ready, go))
        for k in range(connections)
    ]
    for p in procs:
        p.start()
    for _ in procs:  # every one connected and waiting
        ready.get(timeout=120)
    t = time.perf_counter()
    go.set()
    end = relay.wait(n // connections * connections)
    for p in procs:
        p.join(30)
    return (n // connections * connections) / (end - t)


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _backends(url: str) -> list[int]:
    """The PostgreSQL backend pids serving `url`'s database (same machine)."""
    engine = make_engine(url)
    try:
        with engine.connect() as c:
            return [
                int(r[0])
                for r in c.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()"
                    )
                )
            ]
    finally:
        engine.dispose()


def _cpu_of(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        with suppress(OSError):  # gone
            out[pid] = _proc_cpu(pid)
    return out


def _machine() -> tuple[int, int]:
    """(idle, total) jiffies of the whole machine so far (/proc/stat, every core)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user .. steal


def _idle_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


def replica_rows(workdir: Path) -> list[Row]:
    relay = Relay()
    try:
        rates: dict[int, float] = {}
        dupes: dict[int, int] = {}
        cpu: dict[int, str] = {}
        for n in (1, 2):
            url = _fresh(f"ferry_bench_notify_replicas_{n}")
            with _servers(url, workdir, n, _smtp_env(relay)) as servers:
                relay.reset()
                time.sleep(0.5)
                pg = _cpu_of(_backends(url))
                mine = _cpu_of([s.proc.pid for s in servers])
                me = resource.getrusage(resource.RUSAGE_SELF)
                t = time.perf_counter()
                queued = resource.getrusage(resource.RUSAGE_THREAD)
                _bulk_queue(url, MAILS, "smtp")
                done = resource.getrusage(resource.RUSAGE_THREAD)
                end = relay.wait(MAILS)
                rates[n] = MAILS / (end - t)
                # CPU per mail of each part, to say which one is the limit: the notify
                # processes, the relay (this process less the thread queuing the rows),
                # and PostgreSQL's backends for this database.
                me_end = resource.getrusage(resource.RUSAGE_SELF)
                insert = (done.ru_utime + done.ru_stime) - (queued.ru_utime + queued.ru_stime)
                relay_cpu = (me_end.ru_utime + me_end.ru_stime) - (me.ru_utime + me.ru_stime)
                relay_cpu -= insert
                mine_end = _cpu_of(list(mine))
                pg_end = _cpu_of(list(pg))
                notify_ms = [1000 * (mine_end[p] - mine[p]) / MAILS for p in mine_end]
                pg_ms = 1000 * sum(pg_end[p] - pg[p] for p in pg_end) / MAILS
                cpu[n] = (
                    f"notify {' + '.join(f'{x:.2f}' for x in notify_ms)}, relay "
                    f"{1000 * relay_cpu / MAILS:.2f}, PostgreSQL {pg_ms:.2f}"
                )
                time.sleep(1.0)  # a doubled send would arrive now
                dupes[n] = relay.count - len(set(relay.ids))
        sink = _sink_alone(relay, MAILS)
        load = os.getloadavg()[0]
        # The same with a relay that takes REMOTE_DELAY to accept each mail, as one across
        # a network does: the workers wait instead of the machine's two cores, so what
        # the second replica adds shows apart from the CPU all parts share here.
        relay.delay = REMOTE_DELAY
        remote: dict[int, float] = {}
        remote_dupes: dict[int, int] = {}
        remote_cpu: dict[int, str] = {}

        def remote_run(n: int, env: dict[str, str]) -> tuple[float, int, str]:
            url = _fresh(f"ferry_bench_notify_replicas_{n}")
            with _servers(url, workdir, n, {**_smtp_env(relay), **env}) as servers:
                relay.reset()
                time.sleep(0.5)
                mine = _cpu_of([s.proc.pid for s in servers])
                pg = _cpu_of(_backends(url))
                me = resource.getrusage(resource.RUSAGE_SELF)
                machine = _machine()
                t = time.perf_counter()
                queued = resource.getrusage(resource.RUSAGE_THREAD)
                _bulk_queue(url, MAILS, "smtp")
                done = resource.getrusage(resource.RUSAGE_THREAD)
                end = relay.wait(MAILS)
                got = MAILS / (end - t)
                idle = _idle_share(machine, _machine())
                mine_end, pg_end = _cpu_of(list(mine)), _cpu_of(list(pg))
                me_end = resource.getrusage(resource.RUSAGE_SELF)
                time.sleep(1.0)
                notify_ms = [1000 * (mine_end[p] - mine[p]) / MAILS for p in mine_end]
                pg_ms = 1000 * sum(pg_end[p] - pg[p] for p in pg_end) / MAILS
                # The relay: this process less the thread that queued the rows.
                insert = (done.ru_utime + done.ru_stime) - (queued.ru_utime + queued.ru_stime)
                relay_s = (me_end.ru_utime + me_end.ru_stime) - (me.ru_utime + me.ru_stime)
                relay_ms = 1000 * (relay_s - insert) / MAILS
                # What the run needed of the machine, in cores (CPU-seconds per second), and
                # how much of the machine stood idle meanwhile (/proc/stat): near 0% idle,
                # every part waited for a core, whatever the replicas could do.
                cores = got * (sum(notify_ms) + pg_ms + relay_ms) / 1000
                spent = (
                    f"notify {' + '.join(f'{x:.2f}' for x in notify_ms)}, PG {pg_ms:.2f}, "
                    f"relay {relay_ms:.2f}: {cores:.2f} cores at {got:,.0f}/s, machine "
                    f"{100 * idle:.0f}% idle"
                )
                return got, relay.count - len(set(relay.ids)), spent

        # The width sweep first (1 replica), then 1 and 2 replicas at the default width.
        widths: dict[int, float] = {}
        for w in WIDTHS:
            widths[w], _, _ = remote_run(1, {"FERRY_NOTIFY_SENDS_PER_WORKER": str(w)})
        for n in (1, 2):
            remote[n], remote_dupes[n], remote_cpu[n] = remote_run(n, {})
        relay.delay = 0.0
        load = os.getloadavg()[0]
        return [
            Row(
                f"2 notify replicas on one PostgreSQL outbox vs 1 (Ferry vs itself), {MAILS:,} "
                "mails",
                MAILS,
                rates[2],
                "1 notify replica, same outbox",
                rates[1],
                0.0,
                f"duplicates: {dupes[2]} (2 replicas), {dupes[1]} (1); CPU ms per mail: "
                f"{cpu[1]} (1 replica); {cpu[2]} (2); load average {load:.1f} on "
                f"{os.cpu_count()} cores (1 run)",
            ),
            Row(
                f"2 notify replicas vs the relay alone ({SINK_CONNECTIONS} smtplib processes, "
                "prebuilt mails)",
                MAILS,
                rates[2],
                "aiosmtpd relay of this bench, nothing else sending",
                sink,
                0.0,
                "the ceiling of the SMTP rows on this machine (1 run)",
            ),
            Row(
                f"2 notify replicas vs 1, relay accepting each mail after "
                f"{REMOTE_DELAY * 1000:.0f} ms (a remote relay), {MAILS:,} mails",
                MAILS,
                remote[2],
                "1 notify replica, same outbox and relay",
                remote[1],
                0.0,
                f"{remote[1]:,.0f}/s with 1 replica; duplicates: {remote_dupes[2]} (2 replicas), "
                f"{remote_dupes[1]} (1); CPU ms per mail: {remote_cpu[1]} (1 replica); "
                f"{remote_cpu[2]} (2); load average {load:.1f} on {os.cpu_count()} cores (1 run)",
            ),
            Row(
                f"1 notify replica, {REMOTE_DELAY * 1000:.0f} ms relay, notify.sends_per_worker "
                f"{max(WIDTHS)} vs 1, {MAILS:,} mails",
                MAILS,
                widths[max(WIDTHS)],
                "sends_per_worker 1 (one mail at a time per worker)",
                widths[1],
                0.0,
                "mails/s by sends_per_worker: "
                + ", ".join(f"{w}: {v:,.0f}" for w, v in widths.items())
                + " (4 workers, 1 run each)",
            ),
        ]
    finally:
        relay.stop()


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """Every notify row (the bench dataset in `url` is not used: each row has its own
    fresh outbox database)."""
    return [*smtp_rows(workdir), *log_rows(workdir), *replica_rows(workdir)]
