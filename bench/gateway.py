"""The gateway's cost: GET /api/v1/sessions/semesters through HTTP vs the same
ListSemesters called directly over gRPC, against one `ferry serve` process (services and
gateway together), measured in the same run.

A bounded, sequential load loop on keep-alive connections: requests/s, p50 and p99, and the
gateway's p50 overhead over the direct call. (The issue's target route, a cached student
report, needs the reports service, which does not exist yet.)
"""

from __future__ import annotations

import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx

from bench.common import Row, vm_hwm_mb
from ferry.auth import TokenSigner, load_or_create_key
from ferry.v1 import export_pb2, export_pb2_grpc, options_pb2

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 300


def _serve(url: str, workdir: Path) -> tuple[subprocess.Popen[str], int, int]:
    env = {
        **os.environ,
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        "FERRY_DATABASE_URL": url,
        "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
        "FERRY_METRICS_ENABLED": "false",
        "FERRY_GATEWAY_PORT": "0",
        "FERRY_EXPORT_WORKERS": "0",
        "FERRY_AUTH_SIGNING_KEY_FILE": str(workdir / "signing.key"),
        "FERRY_LOG_LEVEL": "WARNING",
        "FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS": "0",
    }
    proc = subprocess.Popen([sys.executable, "-m", "ferry.cli.main", "serve"], env=env,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stderr is not None
    grpc_port = web_port = 0
    deadline = time.monotonic() + 60
    while not web_port and time.monotonic() < deadline:
        line = proc.stderr.readline()
        if m := re.search(r"gRPC\s+\S+:(\d+)", line):
            grpc_port = int(m.group(1))
        if m := re.search(r"web\s+http://\S+:(\d+)/", line):
            web_port = int(m.group(1))
    if not (grpc_port and web_port):
        proc.kill()
        raise RuntimeError("ferry serve did not start with the gateway")
    return proc, grpc_port, web_port


def _latencies(call: Callable[[], object], n: int) -> tuple[float, list[float]]:
    """(requests/s, sorted per-request seconds) of `n` sequential calls after a warm-up."""
    for _ in range(min(20, n)):
        call()
    times = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return n / (time.perf_counter() - start), sorted(times)


def _pct(sorted_times: list[float], p: float) -> float:
    return sorted_times[min(len(sorted_times) - 1, int(p * len(sorted_times)))] * 1000


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    """One row: gateway requests/s vs direct gRPC, with p50/p99 and the p50 overhead."""
    key = load_or_create_key(workdir / "signing.key")
    tok = TokenSigner(key).issue("bench", options_pb2.ROLE_VIEWER, dt.timedelta(hours=1))
    proc, grpc_port, web_port = _serve(url, workdir)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = export_pb2_grpc.ExportServiceStub(channel)
        md = (("authorization", f"Bearer {tok}"),)
        http = httpx.Client(base_url=f"http://127.0.0.1:{web_port}",
                            headers={"authorization": f"Bearer {tok}"})  # fmt: skip

        def via_grpc() -> object:
            return stub.ListSemesters(export_pb2.ListSemestersRequest(), metadata=md, timeout=30)

        def via_gateway() -> object:
            r = http.get("/api/v1/sessions/semesters")
            r.raise_for_status()
            return r.content

        n = REQUESTS * max(1, repeat) // 3
        runs = [(_latencies(via_gateway, n), _latencies(via_grpc, n)) for _ in range(repeat)]
        gw_rate = statistics.median(g[0] for g, _ in runs)
        rpc_rate = statistics.median(d[0] for _, d in runs)
        gw_times = sorted(t for g, _ in runs for t in g[1])
        rpc_times = sorted(t for _, d in runs for t in d[1])
        overhead = _pct(gw_times, 0.5) - _pct(rpc_times, 0.5)
        note = (
            f"gateway p50 {_pct(gw_times, 0.5):.2f} ms p99 {_pct(gw_times, 0.99):.2f} ms; "
            f"gRPC p50 {_pct(rpc_times, 0.5):.2f} ms p99 {_pct(rpc_times, 0.99):.2f} ms; "
            f"p50 overhead {overhead:.2f} ms; sequential, keep-alive"
        )
        http.close()
        channel.close()
        rss = vm_hwm_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return [
        Row(
            "gateway GET /api/v1/sessions/semesters",
            n * repeat,
            gw_rate,
            "direct gRPC ListSemesters",
            rpc_rate,
            rss,
            note,
        )
    ]
