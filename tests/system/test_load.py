"""Sustained load, bounded: concurrent reads, cached report reads, semester exports, export
jobs (start, wait, download) and import previews through a real gateway process for a fixed
time. Pass: no request fails, and no process's memory
grows by 64 MB or more from the first to the last tenth of the run after warm-up (every
kind completed twice). The figures (throughput, p50/p99,
errors and error rate per kind, memory) are printed and written to tests/system/results/load.json.

FERRY_SYSTEM_LOAD_SECONDS sets the duration (default 20, what CI runs).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.system.harness import Cluster, Proc

SECONDS = float(os.environ.get("FERRY_SYSTEM_LOAD_SECONDS", "20"))
RESULTS = Path(__file__).parent / "results"
GROWTH_LIMIT_MB = 64.0


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Kind:
    name: str
    workers: int
    call: Callable[[httpx.Client], httpx.Response]
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    warm_at: float = float("inf")  # seconds into the run of the second completion


@pytest.mark.long
def test_sustained_load_has_no_errors_and_flat_memory(system: Cluster) -> None:
    exp = system.serve("export", FERRY_EXPORT_WORKERS="1", FERRY_EXPORT_POLL_SECONDS="0.2")
    imp = system.serve("import")
    rep = system.serve("reports")
    gw = system.gateway({
        "export": f"127.0.0.1:{exp.port}", "import": f"127.0.0.1:{imp.port}",
        "reports": f"127.0.0.1:{rep.port}",
    })  # fmt: skip
    viewer = {"authorization": f"Bearer {system.token('viewer')}"}
    operator = {"authorization": f"Bearer {system.token('operator')}"}
    base = f"http://127.0.0.1:{gw.port}"
    with httpx.Client(base_url=base, timeout=120) as c:
        got = c.post("/api/v1/sessions/export?semester=2026-fall&format=json", headers=operator)
        assert got.status_code == 200
        bundle = got.content
        # The report cache (memory in the one reports process) holds the semester report
        # from here on: the load reads it cached.
        warm = c.get("/api/v1/reports/semesters/2026-fall", headers=viewer)
        assert warm.status_code == 200, warm.text[:300]

    def cached_report(c: httpx.Client) -> httpx.Response:
        r = c.get("/api/v1/reports/semesters/2026-fall", headers=viewer)
        if r.status_code == 200 and not r.json()["cached"]:
            return httpx.Response(599, text="a semester report read was not served cached")
        return r

    def export_job(c: httpx.Client) -> httpx.Response:
        """Start an entity export job, wait for it to end, download its file."""
        body = {"export_type": "students", "format": "csv"}
        r = c.post("/api/v1/exports", json=body, headers=operator)
        if r.status_code != 200:
            return r
        job_id = r.json()["job"]["id"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            r = c.get(f"/api/v1/exports/{job_id}", headers=operator)
            if r.status_code != 200:
                return r
            status = r.json()["job"]["status"]
            if status == "EXPORT_JOB_STATUS_COMPLETED":
                return c.get(f"/api/v1/exports/{job_id}/download", headers=operator)
            if status in ("EXPORT_JOB_STATUS_FAILED", "EXPORT_JOB_STATUS_CANCELLED"):
                return httpx.Response(599, text=f"job {status}: {r.text[:200]}")
            time.sleep(0.1)
        return httpx.Response(599, text=f"job {job_id} did not end within 120 s")

    kinds = [
        Kind("list semesters", 3, lambda c: c.get("/api/v1/sessions/semesters", headers=viewer)),
        Kind("cached semester report read", 2, cached_report),
        Kind("export job (2,000 students, csv: start, wait, download)", 1, export_job),
        Kind(
            "semester bundle download (~100k records)",
            1,
            lambda c: c.post(
                "/api/v1/sessions/export?semester=2026-fall&format=json", headers=operator
            ),
        ),
        Kind(
            "import preview (dry run, ~100k records)",
            1,
            lambda c: c.post(
                "/api/v1/sessions/import?dry_run=true&filename=b.json",
                headers=operator,
                content=bundle,
            ),
        ),
    ]
    procs: list[Proc] = [exp, imp, rep, gw]
    samples: list[tuple[float, dict[str, float]]] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while not stop.wait(0.5):
            samples.append(
                (time.monotonic() - started, {p.name: rss_mb(p.popen.pid) for p in procs})
            )

    def work(kind: Kind) -> None:
        with httpx.Client(base_url=base, timeout=120) as c:
            while not stop.is_set():
                t = time.perf_counter()
                try:
                    r = kind.call(c)
                    if r.status_code >= 400:
                        kind.errors.append(f"{r.status_code} {r.text[:120]}")
                    else:
                        kind.latencies.append(time.perf_counter() - t)
                        if len(kind.latencies) == 2:
                            kind.warm_at = time.monotonic() - started
                except httpx.HTTPError as e:
                    kind.errors.append(type(e).__name__)

    threads = [threading.Thread(target=sample)]
    threads += [threading.Thread(target=work, args=(k,)) for k in kinds for _ in range(k.workers)]
    for t in threads:
        t.start()
    time.sleep(SECONDS)
    stop.set()
    for t in threads:
        t.join(180)
    elapsed = time.monotonic() - started

    # Warm-up ends once every kind has completed twice (first imports fill caches, the
    # allocator grows its arenas); memory is compared from there to the end.
    warm_end = min(max(k.warm_at for k in kinds), elapsed / 2)
    steady = [s for s in samples if s[0] >= warm_end] or samples
    tenth = max(1, len(steady) // 10)
    first, last = steady[:tenth], steady[-tenth:]
    memory = {
        p.name: (
            statistics.mean(s[p.name] for _, s in first),
            statistics.mean(s[p.name] for _, s in last),
        )
        for p in procs
    }
    rows = []
    for k in kinds:
        lat = sorted(k.latencies)
        p50 = lat[len(lat) // 2] * 1000 if lat else float("nan")
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else float("nan")
        rows.append({
            "kind": k.name, "workers": k.workers, "ok": len(lat), "errors": len(k.errors),
            "per_second": round(len(lat) / elapsed, 1), "p50_ms": round(p50, 1),
            "p99_ms": round(p99, 1),
            "error_rate": round(len(k.errors) / max(1, len(lat) + len(k.errors)), 4),
        })  # fmt: skip
    report = {
        "seconds": round(elapsed, 1),
        "warm_up_seconds": round(warm_end, 1),
        "kinds": rows,
        "rss_mb_first_last_tenth": {n: [round(a, 1), round(b, 1)] for n, (a, b) in memory.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "load.json").write_text(json.dumps(report, indent=2))
    print(
        "\n| kind | workers | ok | errors | error rate | /s | p50 ms | p99 ms |"
        "\n|---|---|---|---|---|---|---|---|"
    )
    for r in rows:
        print(f"| {r['kind']} | {r['workers']} | {r['ok']} | {r['errors']} | {r['error_rate']} "
              f"| {r['per_second']} "
              f"| {r['p50_ms']} | {r['p99_ms']} |")  # fmt: skip
    print("memory (MB, first tenth -> last tenth):", report["rss_mb_first_last_tenth"])

    for k in kinds:
        assert not k.errors, f"{k.name}: {k.errors[:3]}"
        assert k.latencies, f"{k.name}: nothing completed in {SECONDS}s"
    for name, (a, b) in memory.items():
        assert b - a < GROWTH_LIMIT_MB, f"{name} grew from {a:.0f} MB to {b:.0f} MB"
