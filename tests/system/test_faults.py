"""What an operator meets: processes killed at the worst moment, the database going away,
a rolling update, a client retrying after a timeout. Each test states its pass criterion.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import psycopg
import pytest
import sqlalchemy as sa
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferry.v1 import export_pb2, export_pb2_grpc, import_pb2, import_pb2_grpc
from tests.imports.helpers import file_requests
from tests.system.harness import SCRATCH, Cluster, TcpProxy, checksums, cluster

FAST_JOBS = {
    "FERRY_EXPORT_HEARTBEAT_SECONDS": "0.3",
    "FERRY_EXPORT_HEARTBEAT_TIMEOUT_SECONDS": "2",
    "FERRY_EXPORT_REAPER_SECONDS": "0.5",
    "FERRY_EXPORT_POLL_SECONDS": "0.2",
}


def _md(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def _export(port: int) -> tuple[grpc.Channel, Any]:
    # No BDP probing: the flow-control window stays small, so a download is really in
    # flight (not already buffered whole in this client) when the server dies.
    ch = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.http2.bdp_probe", 0)])
    return ch, export_pb2_grpc.ExportServiceStub(ch)


def _download(stub: Any, md: list[tuple[str, str]], semester: str = "2026-fall") -> Iterator[Any]:
    req = export_pb2.DownloadSessionRequest(semester=semester, bundle_format="json")
    return stub.DownloadSession(req, metadata=md, timeout=60)


def test_export_killed_mid_download_never_yields_a_file_that_verifies(system: Cluster) -> None:
    """Pass: the client gets an error, never a clean end; after a restart the same
    download completes and its bytes match the sha256 of its last chunk."""
    md = _md(system.token("operator"))
    a = system.serve("export")
    ch, stub = _export(a.port)
    received = bytearray()
    stream = _download(stub, md)
    first = next(stream)
    received += first.chunk.data
    a.kill()
    with pytest.raises(grpc.RpcError) as e:
        for m in stream:
            received += m.chunk.data
            assert not m.chunk.sha256, "a checksum arrived from a killed server"
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    ch.close()

    b = system.serve("export")
    ch, stub = _export(b.port)
    whole, sha = bytearray(), ""
    for m in _download(stub, md):
        whole += m.chunk.data
        sha = m.chunk.sha256 or sha
    ch.close()
    assert sha == hashlib.sha256(whole).hexdigest()
    assert len(received) < len(whole)


def _until(check: Any, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return True
        time.sleep(0.2)
    return False


def _health(port: int, service: str) -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        req = health_pb2.HealthCheckRequest(service=service)
        return int(stub.Check(req, timeout=5).status)


def _job_status(stub: Any, md: list[tuple[str, str]], job_id: str) -> Any:
    return stub.GetExportJob(export_pb2.GetExportJobRequest(job_id=job_id), metadata=md).job


def test_export_worker_killed_mid_job_is_failed_by_the_reaper_and_a_new_job_succeeds(
    system: Cluster,
) -> None:
    """Pass: the job the dead worker held ends FAILED within the reaper's bound, naming
    why, and leaves no file; a replica runs the next job to COMPLETED."""
    md = _md(system.token("operator"))
    a = system.serve("export", **FAST_JOBS)
    ch, stub = _export(a.port)
    req = export_pb2.StartExportRequest(export_type="attendance", format="pdf", limit=150_000)
    job = stub.StartExport(req, metadata=md, timeout=10).job
    deadline = time.monotonic() + 30
    while _job_status(stub, md, job.id).status != export_pb2.EXPORT_JOB_STATUS_RUNNING:
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)
    a.kill()
    ch.close()

    b = system.serve("export", **FAST_JOBS)
    ch, stub = _export(b.port)
    deadline = time.monotonic() + 30
    while (got := _job_status(stub, md, job.id)).status != export_pb2.EXPORT_JOB_STATUS_FAILED:
        assert time.monotonic() < deadline, f"the dead worker's job is still {got.status}"
        time.sleep(0.2)
    assert "stopped responding" in got.error_message
    assert not list((system.folder / "exports").glob(f"*{job.id}*"))

    small = export_pb2.StartExportRequest(export_type="courses", format="csv")
    job2 = stub.StartExport(small, metadata=md, timeout=10).job
    deadline = time.monotonic() + 30
    while (got := _job_status(stub, md, job2.id)).status != export_pb2.EXPORT_JOB_STATUS_COMPLETED:
        assert got.status != export_pb2.EXPORT_JOB_STATUS_FAILED, got.error_message
        assert time.monotonic() < deadline
        time.sleep(0.1)
    ch.close()


def test_database_unreachable_then_back_fails_clearly_changes_nothing_and_recovers(
    seeded_pg: str, tmp_path: Any
) -> None:
    """Pass: with PostgreSQL unreachable, export and import answer UNAVAILABLE saying the
    database is unavailable (no SQL), every table is unchanged, and once it is back the
    same processes serve again without a restart."""
    url = sa.make_url(seeded_pg)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    via_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    before = checksums(seeded_pg)
    env = {"FERRY_DATABASE_POOL_SIZE": "2", "FERRY_SERVER_DATABASE_CHECK_SECONDS": "0.3"}
    with cluster(via_proxy, tmp_path, **env) as system:
        md = _md(system.token("operator"))
        exp = system.serve("export")
        imp = system.serve("import")
        gw = system.gateway({"export": f"127.0.0.1:{exp.port}", "import": f"127.0.0.1:{imp.port}"})
        readyz = f"http://127.0.0.1:{gw.port}/readyz"
        assert _until(lambda: httpx.get(readyz, timeout=5).status_code == 200)
        ch, stub = _export(exp.port)
        ich = grpc.insecure_channel(f"127.0.0.1:{imp.port}")
        imports = import_pb2_grpc.ImportServiceStub(ich)
        bundle = b"".join(m.chunk.data for m in _download(stub, md, "2026-fall"))
        assert stub.ListSemesters(export_pb2.ListSemestersRequest(), metadata=md, timeout=10)

        proxy.drop()
        for call in (
            lambda: stub.ListSemesters(export_pb2.ListSemestersRequest(), metadata=md, timeout=20),
            lambda: imports.ImportSession(
                file_requests(bundle, "b.json", strategy=import_pb2.MERGE_STRATEGY_REPLACE),
                metadata=md, timeout=30,
            ),
        ):  # fmt: skip
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value.details()
            details = str(e.value.details()).lower()
            assert "database" in details and "select" not in details
        assert checksums(seeded_pg) == before
        # Readiness follows the database; the process itself stays alive ("" SERVING).
        assert _until(lambda: httpx.get(readyz, timeout=5).status_code == 503)
        body = httpx.get(readyz, timeout=5).json()
        assert body["services"] == {"export": "NOT_SERVING", "import": "NOT_SERVING"}
        assert _health(exp.port, "") == health_pb2.HealthCheckResponse.SERVING

        proxy.restore()
        assert _until(lambda: httpx.get(readyz, timeout=5).status_code == 200)
        deadline = time.monotonic() + 30
        while True:
            try:
                stub.ListSemesters(export_pb2.ListSemestersRequest(), metadata=md, timeout=5)
                break
            except grpc.RpcError:
                assert time.monotonic() < deadline, "no recovery after the database came back"
                time.sleep(0.5)
        result = imports.ImportSession(
            file_requests(bundle, "b.json", dry_run=True), metadata=md, timeout=60
        ).result
        assert result.status == import_pb2.IMPORT_STATUS_DRY_RUN
        ch.close()
        ich.close()
    proxy.close()


def test_sigterm_lets_an_in_flight_stream_finish_while_a_second_replica_serves(
    system: Cluster,
) -> None:
    """Pass (a rolling update): a stream in flight on the stopping replica finishes whole
    and verifies; new calls to it are refused; the other replica keeps serving."""
    md = _md(system.token("operator"))
    a = system.serve("export", FERRY_SERVER_SHUTDOWN_GRACE_SECONDS="30")
    b = system.serve("export")
    ch_a, stub_a = _export(a.port)
    ch_b, stub_b = _export(b.port)
    stream = _download(stub_a, md)
    whole = bytearray(next(stream).chunk.data)
    a.signal(15)  # SIGTERM
    time.sleep(0.5)  # health NOT_SERVING, then draining
    with grpc.insecure_channel(f"127.0.0.1:{a.port}") as fresh:
        with pytest.raises(grpc.RpcError) as e:
            export_pb2_grpc.ExportServiceStub(fresh).ListSemesters(
                export_pb2.ListSemestersRequest(), metadata=md, timeout=5
            )
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert stub_b.ListSemesters(export_pb2.ListSemestersRequest(), metadata=md, timeout=10)
    sha = ""
    for m in stream:
        whole += m.chunk.data
        sha = m.chunk.sha256 or sha
    assert sha == hashlib.sha256(whole).hexdigest()
    assert a.popen.wait(40) == 0
    ch_a.close()
    ch_b.close()


def test_a_retried_import_with_the_same_key_after_a_client_timeout_has_one_effect(
    system: Cluster,
) -> None:
    """Pass: a client that timed out and retried with the same idempotency key gets one
    committed import, and the data equals that of a single import."""
    md = _md(system.token("operator"))
    exp = system.serve("export")
    imp = system.serve("import")
    ch, stub = _export(exp.port)
    bundle = b"".join(m.chunk.data for m in _download(stub, md, "2026-fall"))
    ich = grpc.insecure_channel(f"127.0.0.1:{imp.port}")
    imports = import_pb2_grpc.ImportServiceStub(ich)
    key = "nightly-2026-spring"
    replace = import_pb2.MERGE_STRATEGY_REPLACE

    def upload(timeout: float) -> Any:
        reqs = file_requests(bundle, "b.json", strategy=replace, idempotency_key=key)
        return imports.ImportSession(reqs, metadata=md, timeout=timeout).result

    outcomes: list[object] = []
    for timeout in (0.05, 0.3):
        try:
            outcomes.append(upload(timeout).status)
        except grpc.RpcError as e:
            outcomes.append(e.code())
    first = upload(60)
    again = upload(60)
    assert again.id == first.id
    with psycopg.connect(system.url.replace("+psycopg", "")) as conn:
        committed = conn.execute(
            "SELECT count(*) FROM imports WHERE idempotency_key = %s AND status = 'completed'",
            (key,),
        ).fetchone()
    assert committed == (1,), outcomes
    ch.close()
    ich.close()


def test_harness_proxy_delays_and_passes(seeded_pg: str) -> None:
    """The slow mode of the proxy really slows a round trip (guards the tool itself)."""
    url = sa.make_url(seeded_pg)
    proxy = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    try:
        dsn = url.set(drivername="postgresql", host="127.0.0.1", port=proxy.port)
        conninfo = dsn.render_as_string(hide_password=False)
        with psycopg.connect(conninfo) as conn:
            conn.execute("SELECT 1")
            proxy.slow(0.2)
            t = time.monotonic()
            conn.execute("SELECT 1")
            assert time.monotonic() - t >= 0.2
    finally:
        proxy.close()


def _counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url)
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            return {
                name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
                for name, t in meta.tables.items()
                if name != "alembic_version" and not name.startswith(SCRATCH)
            }
    finally:
        engine.dispose()


# One moment in make test (CI); every moment in make test-system and make test-long.
@pytest.mark.parametrize(
    "delay",
    [
        pytest.param(0.3, marks=pytest.mark.long),
        1.0,
        pytest.param(2.0, marks=pytest.mark.long),
        pytest.param(4.0, marks=pytest.mark.long),
    ],
)
def test_import_killed_at_any_moment_leaves_all_or_nothing(
    system: Cluster, tmp_path: Any, delay: float
) -> None:
    """Pass: after SIGKILL of the import process `delay` seconds into importing a ~100k
    record semester into an empty database, every table's checksum equals the one before,
    or the import completed and every table holds exactly what a whole import holds."""
    from ferry.db import migrate
    from ferry.db.engine import make_engine
    from tests.conftest import fresh_database

    md = _md(system.token("operator"))
    exp = system.serve("export")
    ch, stub = _export(exp.port)
    bundle = b"".join(m.chunk.data for m in _download(stub, md))
    ch.close()
    with fresh_database("postgres", tmp_path) as target:
        engine = make_engine(target)
        migrate.upgrade(engine)
        engine.dispose()
        before = checksums(target)
        with cluster(target, tmp_path / "t", FERRY_AUTH_SIGNING_KEY_FILE=system.env[
            "FERRY_AUTH_SIGNING_KEY_FILE"
        ]) as other:  # fmt: skip
            imp = other.serve("import")
            outcome: list[object] = []

            def upload() -> None:
                with grpc.insecure_channel(f"127.0.0.1:{imp.port}") as ich:
                    stub_i = import_pb2_grpc.ImportServiceStub(ich)
                    try:
                        reqs = file_requests(bundle, "b.json")
                        outcome.append(stub_i.ImportSession(reqs, metadata=md, timeout=120))
                    except grpc.RpcError as e:
                        outcome.append(e.code())

            worker = threading.Thread(target=upload)
            worker.start()
            time.sleep(delay)
            imp.kill()
            worker.join(60)
        after = checksums(target)
        if after != before:
            counts = _counts(target)
            assert counts["imports"] == 1, f"half an import after {delay}s: {counts}"
            with fresh_database("postgres", tmp_path / "ref") as ref:
                engine = make_engine(ref)
                migrate.upgrade(engine)
                engine.dispose()
                with cluster(ref, tmp_path / "r", FERRY_AUTH_SIGNING_KEY_FILE=system.env[
                    "FERRY_AUTH_SIGNING_KEY_FILE"
                ]) as refc:  # fmt: skip
                    rimp = refc.serve("import")
                    with grpc.insecure_channel(f"127.0.0.1:{rimp.port}") as ich:
                        import_pb2_grpc.ImportServiceStub(ich).ImportSession(
                            file_requests(bundle, "b.json"), metadata=md, timeout=120
                        )
                expected = _counts(ref)
            assert {k: v for k, v in counts.items() if not k.startswith("import")} == {
                k: v for k, v in expected.items() if not k.startswith("import")
            }
