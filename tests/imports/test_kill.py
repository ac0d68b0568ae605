"""Killing the import server mid-import leaves nothing half-written: after a SIGKILL at
any moment the target database holds either none of the bundle or all of it."""

from __future__ import annotations

import datetime as dt
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from ferry.auth import TokenIssuer
from ferry.auth.keys import ensure_keys
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch, BundleLimits
from ferry.bundle.formats.json import JsonBundle
from ferry.bundle.stream import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.v1 import import_pb2_grpc, options_pb2
from tests.conftest import fresh_database, migrated_database
from tests.imports.helpers import counts, file_requests

pytestmark = pytest.mark.slow  # starts and kills real server processes

ROOT = Path(__file__).resolve().parents[2]


def bundle_bytes(url: str) -> tuple[bytes, dict[str, int]]:
    """A json bundle of one demo semester, and its records per entity."""
    engine = make_engine(url)
    migrate.upgrade(engine)
    seed(engine, Scale.SMALL, seed=5)
    req = SessionRequest("2025-fall", include_deleted=True, batch_size=500)
    out = io.BytesIO()
    JsonBundle().write(session_events(engine, SCHOOL, req), out)
    engine.dispose()
    sizes = {e.name: 0 for e in SCHOOL.in_order()}
    for event in JsonBundle().read(io.BytesIO(out.getvalue()), BundleLimits()):
        if isinstance(event, Batch):
            sizes[event.entity] += len(event.records)
    return out.getvalue(), sizes


def start_server(url: str, key: Path) -> tuple[subprocess.Popen[str], int]:
    """`ferry serve import` in its own process; returns it and its port."""
    env = {
        **os.environ,
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        "FERRY_DATABASE_URL": url,
        "FERRY_AUTH_SIGNING_KEY_FILE": str(key),
        "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
        "FERRY_METRICS_ENABLED": "false",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferry.cli.main", "serve", "import"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"gRPC\s+\S+:(\d+)", proc.stderr.readline())
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise AssertionError("ferry serve import did not start")


def import_then_kill(url: str, key: Path, data: bytes, delay: float) -> object:
    """Start an import of `data`, SIGKILL the server `delay` seconds in; what the client
    got (a response or a status code)."""
    signing = ensure_keys(key, key.with_name("public-keys.json"))
    ttl = dt.timedelta(minutes=5)
    token = TokenIssuer(signing).issue("t", options_pb2.ROLE_OPERATOR, ttl).token
    proc, port = start_server(url, key)
    outcome: list[object] = []

    def call() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = import_pb2_grpc.ImportServiceStub(ch)
            md = [("authorization", f"Bearer {token}")]
            try:
                outcome.append(
                    stub.ImportSession(file_requests(data, "b.json"), timeout=60, metadata=md)
                )
            except grpc.RpcError as e:
                outcome.append(e.code())

    worker = threading.Thread(target=call)
    worker.start()
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    worker.join(30)
    return outcome[0] if outcome else None


def test_sigkill_at_any_moment_leaves_none_or_all_of_the_bundle(
    backend: str, tmp_path: Path
) -> None:
    with fresh_database(backend, tmp_path) as source:
        data, sizes = bundle_bytes(source)
    interrupted = 0
    for delay in (0.0, 0.15, 0.4):
        with migrated_database(backend, tmp_path) as target:
            got = import_then_kill(target, tmp_path / "signing.key", data, delay)
            interrupted += got == grpc.StatusCode.UNAVAILABLE
            rows = counts(target)
            assert rows in ({name: 0 for name in sizes}, sizes), (delay, rows)
    assert interrupted, "no kill landed before the import finished; the test proved nothing"
