"""What checking a token costs on every call: EdDSA (today's auth filter) vs HS256 (the
filter it replaced), measured in the same run.

Two rows:
- token verification alone, in this process: `TokenVerifier.verify` (EdDSA, kid lookup,
  pinned algorithm, issuer and audience) vs `jwt.decode` HS256 with the same checks;
- a viewer `ListSemesters` over gRPC to three `ferry serve export` processes on one
  migrated, empty PostgreSQL database (with data, the call's count queries take 60 to
  100 ms and drown the difference), called in turn so load on the machine hits all
  alike: no auth filter, the EdDSA filter (with the revocation check), and an HS256
  filter like the old one. The row
  gives p50/p99 of each and the p50 added by each filter over no auth (goal <= 0.2 ms).
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import jwt

from bench.common import Row
from bench.imports import scratch_database, scratch_name
from bench.server import FerryServer
from ferry.auth import KeySet, Principal, TokenIssuer, TokenVerifier, bearer, parse_role
from ferry.auth.keys import SigningKey
from ferry.errors import Unauthenticated
from ferry.rpc.filters import Filter, FilterPlugin, RpcCall
from ferry.v1 import export_pb2, export_pb2_grpc, options_pb2

if TYPE_CHECKING:
    from ferry.app import App

HS256_KEY_ENV = "BENCH_HS256_KEY"
CALLS = 2000


class Hs256AuthFilter(Filter):
    """The auth filter as it was before EdDSA (HS256 with a shared key), for comparison
    only: `server.filters: [..., "bench.auth:Hs256AuthPlugin"]`."""

    def __init__(self, app: App) -> None:
        self.key = os.environ[HS256_KEY_ENV].encode()
        self.issuer, self.audience = app.settings.auth.issuer, app.settings.auth.audience

    def start(self, call: RpcCall) -> None:
        if call.method.min_role == 0:
            return
        try:
            claims = jwt.decode(bearer(call.metadata), self.key, algorithms=["HS256"],
                                issuer=self.issuer, audience=self.audience,
                                options={"require": ["exp", "sub", "role"]})  # fmt: skip
        except jwt.InvalidTokenError as e:
            raise Unauthenticated(f"invalid token: {e}") from None
        p = Principal(str(claims["sub"]), parse_role(str(claims["role"])))
        call.caller, call.role = p.subject, p.role
        p.require(call.method.min_role, call.method.name)


class Hs256AuthPlugin(FilterPlugin):
    """Hs256AuthFilter as a `ferry.filters` plugin (server half only)."""

    server_half = Hs256AuthFilter


def _hs256_token(key: bytes, role: str) -> str:
    now = dt.datetime.now(dt.UTC)
    claims = {"sub": "bench", "role": role, "iss": "ferry", "aud": "ferry", "iat": now,
              "exp": now + dt.timedelta(hours=1), "jti": secrets.token_hex(16)}  # fmt: skip
    return jwt.encode(claims, key, algorithm="HS256")


def _per_second(fn: Callable[[], object], n: int, repeat: int) -> float:
    rates = []
    for _ in range(max(3, repeat)):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        rates.append(n / (time.perf_counter() - t))
    return statistics.median(rates)


def _verify_row(repeat: int) -> Row:
    key = SigningKey.generate()
    ks = KeySet()
    ks.add(key.public_key())
    verifier = TokenVerifier(ks, cache_size=0)  # every call checks the signature
    remembering = TokenVerifier(ks)
    eddsa = TokenIssuer(key).issue("bench", options_pb2.ROLE_VIEWER, dt.timedelta(hours=1)).token
    hs_key = secrets.token_hex(32).encode()
    hs = _hs256_token(hs_key, "viewer")

    def hs256() -> object:
        return jwt.decode(hs, hs_key, algorithms=["HS256"], issuer="ferry", audience="ferry",
                          options={"require": ["exp", "sub", "role"]})  # fmt: skip

    ed_rate = _per_second(lambda: verifier.verify(eddsa), CALLS, repeat)
    hs_rate = _per_second(hs256, CALLS, repeat)
    seen_rate = _per_second(lambda: remembering.verify(eddsa), CALLS * 10, repeat)
    note = (
        f"EdDSA {1e6 / ed_rate:.1f} µs/token, HS256 {1e6 / hs_rate:.1f} µs/token; "
        f"a token seen before (remembered) {1e6 / seen_rate:.2f} µs; in-process, no RPC"
    )
    return Row("token verification, EdDSA, first sight", CALLS, ed_rate, "HS256 jwt.decode",
               hs_rate, 0.0, note)  # fmt: skip


def _filter_row(workdir: Path, repeat: int) -> Row:
    """AuthFilter.start per call (the cost the filter chain adds to every RPC) with a real
    App: EdDSA verification, role check and the revocation lookup, vs the HS256 filter."""
    from ferry import config
    from ferry.app import App
    from ferry.db import migrate
    from ferry.rpc.filters.auth import AuthFilter
    from ferry.rpc.methods import lookup

    url = f"sqlite:///{workdir / 'filter.db'}"
    env = {"FERRY_DATABASE_URL": url, "FERRY_AUTH_SIGNING_KEY_FILE": str(workdir / "f.pem"),
           "FERRY_METRICS_ENABLED": "false"}  # fmt: skip
    app = App(config.load(Path(__file__).resolve().parents[1] / "ferry.yaml", env))
    migrate.upgrade(app.engine)
    hs_key = secrets.token_hex(32)
    os.environ[HS256_KEY_ENV] = hs_key
    try:
        eddsa, hs = AuthFilter(app), Hs256AuthFilter(app)
        method = lookup("/ferry.v1.ExportService/ListSemesters")
        tok = app.issuer().issue("bench", options_pb2.ROLE_VIEWER, dt.timedelta(hours=1)).token
        md_e = {"authorization": f"Bearer {tok}"}
        md_h = {"authorization": f"Bearer {_hs256_token(hs_key.encode(), 'viewer')}"}
        ctx: Any = None

        def with_eddsa() -> None:
            eddsa.start(RpcCall(method, ctx, md_e, ""))

        def with_hs256() -> None:
            hs.start(RpcCall(method, ctx, md_h, ""))

        def bare() -> None:
            RpcCall(method, ctx, md_e, "")

        e_rate = _per_second(with_eddsa, CALLS * 5, repeat)
        h_rate = _per_second(with_hs256, CALLS * 5, repeat)
        b_rate = _per_second(bare, CALLS * 5, repeat)
    finally:
        os.environ.pop(HS256_KEY_ENV, None)
        app.close()
    added_e = (1 / e_rate - 1 / b_rate) * 1e3
    added_h = (1 / h_rate - 1 / b_rate) * 1e3
    note = (f"added per call: EdDSA filter {added_e:.4f} ms (token seen before, revocation "
            f"lookup included), HS256 filter {added_h:.4f} ms (goal <= 0.2 ms)")  # fmt: skip
    return Row("auth filter start(), EdDSA", CALLS * 5, e_rate, "HS256 filter start()", h_rate,
               0.0, note)  # fmt: skip


def _pct(times: list[float], p: float) -> float:
    return times[min(len(times) - 1, int(p * len(times)))] * 1000


def run(url: str, dsn: str, workdir: Path, repeat: int) -> list[Row]:
    rows = [_verify_row(repeat), _filter_row(workdir, repeat)]
    # A migrated, empty database of its own: ListSemesters then costs one query, so the row
    # measures the filter chain. With data it counts records per semester (about 100 ms a
    # call on the bench scale, 60 ms on the small demo data), which drowns a 0.2 ms goal.
    url = scratch_database(scratch_name("auth"))
    hs_key = secrets.token_hex(32)
    base = {"FERRY_EXPORT_WORKERS": "0", HS256_KEY_ENV: hs_key}
    chains = {
        "none": {"FERRY_AUTH_ENABLED": "false"},
        "eddsa": {},
        # The server always adds Ferry's own auth filter (off only by auth.enabled: false),
        # so the HS256 server turns it off and checks tokens with the old filter alone.
        "hs256": {
            "FERRY_AUTH_ENABLED": "false",
            "FERRY_SERVER_FILTERS": "[logging, metrics, deadline, bench.auth:Hs256AuthPlugin]",
        },
    }
    servers: dict[str, FerryServer] = {}
    try:
        for name, env in chains.items():
            (workdir / name).mkdir()
            servers[name] = FerryServer(url, workdir / name, services=("export",),
                                        env={**base, **env})  # fmt: skip
        tokens = {
            "none": "",
            "eddsa": servers["eddsa"].token(options_pb2.ROLE_VIEWER),
            "hs256": _hs256_token(hs_key.encode(), "viewer"),
        }
        channels = {n: grpc.insecure_channel(f"127.0.0.1:{s.port}") for n, s in servers.items()}
        stubs = {n: export_pb2_grpc.ExportServiceStub(ch) for n, ch in channels.items()}
        req = export_pb2.ListSemestersRequest()
        md = {n: (("authorization", f"Bearer {t}"),) if t else () for n, t in tokens.items()}
        for n in servers:  # warm up: connections, caches, the first revocation refresh
            for _ in range(30):
                stubs[n].ListSemesters(req, metadata=md[n], timeout=30)
        times: dict[str, list[float]] = {n: [] for n in servers}
        n_calls = max(300, 200 * repeat)
        for _ in range(n_calls):
            for n in servers:  # interleaved
                t = time.perf_counter()
                stubs[n].ListSemesters(req, metadata=md[n], timeout=30)
                times[n].append(time.perf_counter() - t)
        for ch in channels.values():
            ch.close()
    finally:
        for s in servers.values():
            s.stop()
    for v in times.values():
        v.sort()
    p50 = {n: _pct(v, 0.5) for n, v in times.items()}
    p99 = {n: _pct(v, 0.99) for n, v in times.items()}
    note = (
        f"p50/p99 ms: no auth {p50['none']:.3f}/{p99['none']:.3f}, EdDSA "
        f"{p50['eddsa']:.3f}/{p99['eddsa']:.3f}, HS256 {p50['hs256']:.3f}/{p99['hs256']:.3f}; "
        f"added p50: EdDSA {p50['eddsa'] - p50['none']:+.3f} ms, HS256 "
        f"{p50['hs256'] - p50['none']:+.3f} ms (goal <= 0.2 ms); interleaved, sequential"
    )
    rows.append(Row("viewer ListSemesters, EdDSA auth filter", n_calls,
                    1 / statistics.median(times["eddsa"]), "same, no auth filter",
                    1 / statistics.median(times["none"]), 0.0, note))  # fmt: skip
    return rows
