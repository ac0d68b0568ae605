"""The gateway's cost against one `ferry serve` process (services and gateway together),
each route beside the same RPC called directly over gRPC in the same run:

- GET /api/v1/sessions/semesters vs ListSemesters: a bounded, sequential load loop on
  keep-alive connections: requests/s, p50 and p99, and the gateway's p50 overhead.
- The issue's target route, a cached student report (POST
  /api/v1/reports/student-performance vs GetStudentReport, Redis cache, near cache on):
  the p50 overhead from a sequential loop alternating the two, then 4 clients in a bounded
  concurrent loop for requests/s, and the serving process's CPU per request of each
  (/proc, in alternating blocks of 50 calls; the gateway's share is the difference).
  bench/reports.py measures the same row among the report figures; this one runs alone,
  in a minute, for the gateway's own work.

  Its HTTP clients are the standard library's keep-alive `http.client` (`KeepAlive`), the
  plain counterpart of the gRPC side's client: httpx spent ~480 us of the client's CPU per
  request against ~100 us for http.client and ~110 us for a sync gRPC call (a do-nothing
  uvicorn app: httpx p50 0.54 ms, http.client 0.15 ms), so with httpx about 0.4 ms of
  the "gateway overhead" was the client library's, and on a 2-core machine its CPU took a
  core's share from the server it measured. The note still gives the httpx figures
  (sequential p50 and 4-client rate) beside them, so both are seen in one run.

`FERRY_BENCH_PYSPY=FILE.svg` (FILE.txt: collapsed stacks) records a py-spy flame graph of
the serving process (every thread, native frames off) during the 4-client gateway loop.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import httpx

from bench.common import Row
from bench.cpu_calls import cpu_seconds
from bench.reports import (
    SEMESTER,
    _alternating,
    _load,
    _load_avg,
    _ms,
    _p,
    _per_s,
    _students,
    redis_cache_env,
)
from bench.server import FerryServer
from ferry.v1 import export_pb2, export_pb2_grpc, options_pb2, reports_pb2_grpc
from ferry.v1 import reports_pb2 as rpb

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
    """ListSemesters and the cached report, each through the gateway vs direct gRPC."""
    return [*list_semesters(url, workdir, repeat), cached_report(url, dsn, workdir, repeat)]


def list_semesters(url: str, workdir: Path, repeat: int) -> list[Row]:
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


def _py_spy(pid: int) -> subprocess.Popen[bytes] | None:
    """py-spy recording `pid` into $FERRY_BENCH_PYSPY until it is interrupted (None when
    unset or py-spy is not installed)."""
    out = os.environ.get("FERRY_BENCH_PYSPY", "")
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not out or not Path(spy).exists():
        return None
    fmt = "raw" if out.endswith(".txt") else "flamegraph"  # .txt: collapsed stacks
    args = ["--pid", str(pid), "--output", out, "--rate", "250", "--nonblocking"]
    return subprocess.Popen(
        [spy, "record", *args, "--format", fmt],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def cpu_per_call(pid: int, calls: list[Callable[[int], object]], n: int,
                 block: int = 50) -> list[float]:  # fmt: skip
    """Process `pid`'s CPU microseconds per call of each of `calls`, `n` calls each, run in
    alternating blocks of `block`: on a shared machine the load moves within seconds, and
    two long runs one after the other saw different moments of it."""
    spent = [0.0] * len(calls)
    for first in range(0, n, block):
        for k, call in enumerate(calls):
            before = cpu_seconds(pid)
            for i in range(first, min(n, first + block)):
                call(i)
            spent[k] += cpu_seconds(pid) - before
    return [s / n * 1e6 for s in spent]


class KeepAlive:
    """A keep-alive HTTP/1.1 connection (the standard library's http.client) posting JSON
    with a bearer token; RuntimeError on any status but 2xx."""

    def __init__(self, port: int, token: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    def post(self, path: str, body: bytes) -> bytes:
        self.conn.request("POST", path, body, self.headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if not 200 <= resp.status < 300:
            raise RuntimeError(f"POST {path}: HTTP {resp.status} {data[:200]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


def cached_report(url: str, dsn: str, workdir: Path, repeat: int) -> Row:
    """The issue's gateway row: a cached student report through the gateway, 4 clients,
    beside the same GetStudentReport called over gRPC (same server, same run)."""
    sid = _students(dsn, 1)[0]
    server = FerryServer(url, workdir, services=(), env=redis_cache_env())
    tok = server.token(options_pb2.ROLE_OPERATOR)
    md = (("authorization", f"Bearer {tok}"),)
    req = rpb.GetStudentReportRequest(student_id=sid, semester=SEMESTER)
    body = {"student_id": sid, "semester": SEMESTER}
    base = f"http://127.0.0.1:{server.web_port}"
    path = "/api/v1/reports/student-performance"
    raw_body = json.dumps(body).encode()
    opened: list[grpc.Channel] = []
    kept: list[KeepAlive | httpx.Client] = []
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        opened.append(channel)
        stub = reports_pb2_grpc.ReportsServiceStub(channel)
        stub.GetStudentReport(req, metadata=md, timeout=30)  # fills the cache
        kept.append(KeepAlive(server.web_port, tok))
        http = kept[-1]
        assert isinstance(http, KeepAlive)
        kept.append(httpx.Client(base_url=base, headers={"authorization": f"Bearer {tok}"}))
        hx = kept[-1]
        assert isinstance(hx, httpx.Client)

        def via_gw(_: int) -> bytes:
            return http.post(path, raw_body)

        def via_grpc(_: int) -> object:
            return stub.GetStudentReport(req, metadata=md, timeout=30)

        def via_httpx(_: int) -> bytes:
            resp = hx.post(path, json=body)
            resp.raise_for_status()
            return resp.content

        n = 500 * repeat
        gw, direct, gw_hx = _alternating([via_gw, via_grpc, via_httpx], n, warm=20)
        gw_cpu, rpc_cpu = cpu_per_call(server.proc.pid, [via_gw, via_grpc], n)

        def gw_client() -> Callable[[], object]:
            kept.append(KeepAlive(server.web_port, tok))
            return functools.partial(kept[-1].post, path, raw_body)

        def httpx_client() -> Callable[[], object]:
            c = httpx.Client(base_url=base, headers={"authorization": f"Bearer {tok}"})
            kept.append(c)
            return lambda: c.post(path, json=body).raise_for_status()

        def grpc_client() -> Callable[[], object]:
            opened.append(grpc.insecure_channel(f"127.0.0.1:{server.port}"))
            s = reports_pb2_grpc.ReportsServiceStub(opened[-1])
            return lambda: s.GetStudentReport(req, metadata=md, timeout=30)

        threads, total = 4, 1000 * repeat
        spy = _py_spy(server.proc.pid)
        gw_rate, gw_failed = _load(gw_client, threads, total, 60)
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        rpc_rate, rpc_failed = _load(grpc_client, threads, total, 60)
        hx_rate, hx_failed = _load(httpx_client, threads, total, 60)
        rss = server.rss_mb()
    finally:
        for c in kept:
            c.close()
        for ch in opened:
            ch.close()
        server.stop()
    over = _p(gw, 0.5) - _p(direct, 0.5)
    over_hx = _p(gw_hx, 0.5) - _p(direct, 0.5)
    failed = gw_failed + rpc_failed + hx_failed
    return Row(
        f"gateway POST /api/v1/reports/student-performance (cached), {threads} clients",
        total, gw_rate, f"direct gRPC GetStudentReport (cached), {threads} clients",
        rpc_rate, rss,
        f"bounded loop ({total} requests, at most 60 s; {failed} failed); http.client "
        f"keep-alive clients; sequential: gateway {_ms(gw)} ({_per_s(gw):.0f}/s), gRPC "
        f"{_ms(direct)}, p50 overhead {over:.2f} ms; server CPU {gw_cpu:.0f} us/request "
        f"through the gateway, {rpc_cpu:.0f} us direct (the gateway's share "
        f"{gw_cpu - rpc_cpu:.0f} us); with httpx clients instead: {hx_rate:.0f} req/s, "
        f"p50 {_p(gw_hx, 0.5):.2f} ms, overhead {over_hx:.2f} ms; load {_load_avg()}; "
        "bench/gateway.py",
        {"overhead_p50_ms": over, "gateway_p50_ms": _p(gw, 0.5), "gateway_cpu_us": gw_cpu,
         "grpc_cpu_us": rpc_cpu, "httpx_req_per_s": hx_rate, "httpx_overhead_p50_ms": over_hx},
    )  # fmt: skip
