"""A rolling update seen from a client of the gateway: one gateway process balancing
(`client.load_balancing_policy: round_robin`) over two replicas of the export service,
steady unary calls, whole-semester downloads and export jobs through it, while one replica
gets SIGTERM and is started again on its port, then, once the gateway sends calls to the
new one (a rollout's readiness wait), the other.

Each replica is stopped while a download is in flight on it (its /metrics says so).
Pass: no 5xx (and no other error) at the gateway, every download that started finishes
and parses whole with the reference's record count, every job request made one job (one
row per idempotency key), and every job ends COMPLETED.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from tests.system.harness import Cluster, Proc, free_ports

FAST_JOBS = {
    "FERRY_EXPORT_HEARTBEAT_SECONDS": "0.3",
    "FERRY_EXPORT_HEARTBEAT_TIMEOUT_SECONDS": "5",
    "FERRY_EXPORT_REAPER_SECONDS": "0.5",
    "FERRY_EXPORT_POLL_SECONDS": "0.2",
    "FERRY_EXPORT_WORKERS": "1",
    # Long enough for a whole-semester download in flight to finish under load.
    "FERRY_SERVER_SHUTDOWN_GRACE_SECONDS": "40",
    # Balancers (here: the gateway's round_robin) stop picking a stopping replica once its
    # GOAWAY arrives; the wait only has to cover the health probe of a real balancer.
    "FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS": "0.3",
}
PER_KEY = (
    "SELECT idempotency_key, count(*) FROM export_jobs "
    "WHERE idempotency_key LIKE 'rolling-%' GROUP BY idempotency_key"
)
PER_STATUS = (
    "SELECT status, count(*) FROM export_jobs "
    "WHERE idempotency_key LIKE 'rolling-%' GROUP BY status"
)


def _downloads_in_flight(metrics_port: int) -> float:
    """DownloadSession calls started but not yet handled on one replica (its /metrics)."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    started = handled = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("grpc_method") != "DownloadSession":
                continue
            if sample.name == "ferry_rpc_server_started_total":
                started += sample.value
            elif sample.name == "ferry_rpc_server_handled_total":
                handled += sample.value
    return started - handled


def _calls_started(metrics_port: int) -> float:
    """Calls a replica has started (its /metrics): the gateway has reconnected to it."""
    text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "ferry_rpc_server_started_total"
    )


def _records(body: bytes) -> int:
    """How many records a json bundle holds (raises on a truncated or broken one)."""
    doc = json.loads(body)
    assert "trailer" in doc, "a bundle without its trailer"
    return sum(len(v) for v in doc.values() if isinstance(v, list))


@dataclass
class Traffic:
    name: str
    ok: int = 0
    errors: list[str] = field(default_factory=list)


# A minute or more: `make test-system` runs it, `make test` (CI) does not.
@pytest.mark.slow
@pytest.mark.long
def test_rolling_update_behind_the_gateway_has_no_5xx_and_no_duplicated_job(
    system: Cluster,
) -> None:
    pa, pb, ma, mb = free_ports(4)
    metrics = {pa: ma, pb: mb}  # each replica's /metrics: a download in flight?

    def replica(port: int) -> Proc:
        return system.serve(
            "export", port=port, FERRY_METRICS_ENABLED="true",
            FERRY_METRICS_PORT=str(metrics[port]), **FAST_JOBS,
        )  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(replica, (pa, pb))
    gw = system.gateway(
        {"export": f"ipv4:127.0.0.1:{pa},127.0.0.1:{pb}"},
        FERRY_CLIENT_LOAD_BALANCING_POLICY="round_robin",
    )
    viewer = {"authorization": f"Bearer {system.token('viewer')}"}
    operator = {"authorization": f"Bearer {system.token('operator')}"}
    base = f"http://127.0.0.1:{gw.port}"
    download = "/api/v1/sessions/export?semester=2026-fall&format=json"
    with httpx.Client(base_url=base, timeout=120) as c:
        got = c.post(download, headers=operator)
        assert got.status_code == 200, got.text[:300]
        want_records = _records(got.content)
    assert want_records > 10_000

    stop = threading.Event()
    unary, downloads, jobs = Traffic("unary"), Traffic("download"), Traffic("job")
    job_keys: dict[str, str] = {}  # idempotency key -> job id

    def loop(t: Traffic, step: Callable[[httpx.Client], None], pause: float) -> None:
        with httpx.Client(base_url=base, timeout=120) as c:
            while not stop.is_set():
                try:
                    step(c)
                    t.ok += 1
                except AssertionError as e:
                    t.errors.append(str(e)[:300])
                except httpx.HTTPError as e:
                    t.errors.append(f"{type(e).__name__}: {e}"[:300])
                stop.wait(pause)

    def list_semesters(c: httpx.Client) -> None:
        r = c.get("/api/v1/sessions/semesters", headers=viewer)
        assert r.status_code == 200, f"{r.status_code} {r.text[:200]}"

    def whole_download(c: httpx.Client) -> None:
        r = c.post(download, headers=operator)
        assert r.status_code == 200, f"{r.status_code} {r.text[:200]}"
        n = _records(r.content)
        assert n == want_records, f"download held {n} records, want {want_records}"

    def start_job(c: httpx.Client) -> None:
        key = f"rolling-{uuid.uuid4()}"
        body = {"export_type": "courses", "format": "csv", "idempotency_key": key}
        r = c.post("/api/v1/exports", headers=operator, json=body)
        assert r.status_code == 200, f"{r.status_code} {r.text[:200]}"
        job_keys[key] = r.json()["job"]["id"]

    threads = [
        threading.Thread(target=loop, args=(unary, list_semesters, 0.1)),
        threading.Thread(target=loop, args=(downloads, whole_download, 0.0)),
        threading.Thread(target=loop, args=(jobs, start_job, 1.0)),
    ]
    for t in threads:
        t.start()

    def restart(old: Proc, port: int) -> Proc:
        # The stop matters only with a download in flight on this very replica: wait for
        # one (the balancer alternates replicas, so one comes within a few downloads).
        deadline = time.monotonic() + 60
        while _downloads_in_flight(metrics[port]) < 1:
            assert time.monotonic() < deadline, "no download was ever in flight on it"
            time.sleep(0.05)
        old.signal(signal.SIGTERM)
        assert old.popen.wait(60) == 0, "".join(old.log)[-2000:]
        system.procs.remove(old)
        return replica(port)

    try:
        deadline = time.monotonic() + 30
        while downloads.ok < 1 or unary.ok < 5:
            assert time.monotonic() < deadline, "no traffic got through before the update"
            time.sleep(0.1)
        a = restart(a, pa)
        # Before the second stop, the gateway must be sending calls to the new replica,
        # as a rollout waits for a new pod to be ready: its reconnect backoff is capped
        # (client.max_reconnect_backoff_seconds, 5 s) so this comes within seconds.
        deadline = time.monotonic() + 30
        while _calls_started(metrics[pa]) < 3:
            assert time.monotonic() < deadline, "the gateway never reconnected to the new one"
            time.sleep(0.1)
        b = restart(b, pb)
        done_at = downloads.ok + 1
        deadline = time.monotonic() + 40
        while downloads.ok < done_at and time.monotonic() < deadline:
            time.sleep(0.1)  # one more whole download after the update
    finally:
        stop.set()
        for t in threads:
            t.join(150)

    print(f"\nrolling update: {unary.ok} unary, {downloads.ok} downloads, {jobs.ok} jobs")
    for t in (unary, downloads, jobs):
        assert not t.errors, f"{t.name}: {len(t.errors)} errors, first: {t.errors[:3]}"
        assert t.ok, f"no {t.name} succeeded"
    assert downloads.ok >= 3, downloads

    # One job per key; each job ends COMPLETED (a stopping replica hands its running jobs
    # back to the queue, the other runs them).
    engine = sa.create_engine(system.url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(PER_KEY)).all()
        assert {k: n for k, n in rows if n != 1} == {}
        assert {k for k, _ in rows} == set(job_keys)
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as conn:
                statuses = dict(conn.execute(sa.text(PER_STATUS)).all())
            if set(statuses) == {"completed"}:
                break
            assert "failed" not in statuses and "cancelled" not in statuses, statuses
            assert time.monotonic() < deadline, f"jobs not all done: {statuses}"
            time.sleep(0.3)
    finally:
        engine.dispose()
    with contextlib.suppress(Exception):
        a.terminate(10)
        b.terminate(10)
