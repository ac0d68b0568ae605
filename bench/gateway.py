"""The gateway's cost: GET /api/v1/sessions/semesters through HTTP vs the same
ListSemesters called directly over gRPC, against one `ferry serve` process (services and
gateway together), measured in the same run.

A bounded, sequential load loop on keep-alive connections: requests/s, p50 and p99, and the
gateway's p50 overhead over the direct call. The issue's target route, a cached student
report through the gateway, is measured by bench/reports.py.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx

from bench.common import Row
from bench.server import FerryServer
from ferry.v1 import export_pb2, export_pb2_grpc, options_pb2

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 300


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
    server = FerryServer(url, workdir, services=(), env={"FERRY_EXPORT_WORKERS": "0"})
    tok = server.token(options_pb2.ROLE_VIEWER)
    grpc_port, web_port = server.port, server.web_port
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
        rss = server.rss_mb()
    finally:
        server.stop()
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
