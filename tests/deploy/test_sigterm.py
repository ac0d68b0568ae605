"""What a pod does when Kubernetes stops it: SIGTERM turns health NOT_SERVING at once (the
readiness probe fails, endpoints drop the pod), new calls are refused once the deregister
wait is over, and a semester stream already in flight finishes, complete and verified,
within the grace period; then the process exits 0."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ferry.app import App
from ferry.bundle.stream import batch_digest
from ferry.cli.main import cli
from ferry.db import migrate
from ferry.rpc.server import Server
from ferry.v1 import export_pb2, export_pb2_grpc
from tests.conftest import token_from_key_file
from tests.deploy.serving import ferry_serve, serve_env

# Long enough that a loaded machine (two test workers on two cores) still sees the health
# status flip inside it: the fresh-check of f82fd50 saw SERVING for all of a 3 s wait.
DEREGISTER = 8.0
GRACE = 30


@pytest.mark.slow
def test_sigterm_drains_a_stream_in_flight_and_refuses_new_calls(tmp_path: Path) -> None:
    env = {k: v for k, v in serve_env(tmp_path).items() if k.startswith("FERRY_")}
    seeded = CliRunner().invoke(cli, ["demo", "seed", "--scale", "small"], env=env)
    assert seeded.exit_code == 0, seeded.output
    token = token_from_key_file(tmp_path / "signing.key", "operator", "sigterm-test")
    auth = [("authorization", f"Bearer {token}")]
    with ferry_serve(
        tmp_path, "export",
        FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS=str(DEREGISTER),
        FERRY_SERVER_SHUTDOWN_GRACE_SECONDS=str(GRACE),
    ) as served:  # fmt: skip
        target = f"127.0.0.1:{served.grpc_port}"
        # A small flow-control window, as a slow client over a real network has: the server
        # cannot run ahead of the reader, so the stream is truly in flight at SIGTERM.
        window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)]
        with grpc.insecure_channel(target, options=window) as streaming:
            stream = export_pb2_grpc.ExportServiceStub(streaming).StreamSession(
                export_pb2.StreamSessionRequest(semester="2026-fall", batch_size=20),
                metadata=auth, timeout=120,
            )  # fmt: skip
            messages = [next(stream)]  # the header: the call is in flight
            served.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            with grpc.insecure_channel(target) as other:
                health = health_pb2_grpc.HealthStub(other)
                status = None
                while time.monotonic() - signalled < DEREGISTER:
                    status = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
                    if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                        break
                    time.sleep(0.05)
                assert status == health_pb2.HealthCheckResponse.NOT_SERVING
                time.sleep(max(0.0, DEREGISTER + 0.5 - (time.monotonic() - signalled)))
            # After the deregister wait the server takes no new calls...
            with grpc.insecure_channel(target) as late, pytest.raises(grpc.RpcError) as refused:
                export_pb2_grpc.ExportServiceStub(late).ListSemesters(
                    export_pb2.ListSemestersRequest(), metadata=auth, timeout=3
                )
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert served.proc.poll() is None  # ...but is still draining the stream
            for m in stream:
                messages.append(m)
                time.sleep(0.001)  # a slow reader
        trailer = messages[-1].chunk.trailer
        batches = [m.chunk.records for m in messages[1:-1]]
        assert trailer.sha256 and batch_digest(iter(batches)) == trailer.sha256
        assert sum(trailer.counts.values()) > 0
        assert served.proc.wait(timeout=GRACE) == 0
        assert time.monotonic() - signalled < DEREGISTER + GRACE
    assert '"event": "stopped"' in served.output()


def test_sigterm_taken_by_another_thread_still_stops_the_server(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    """The kernel hands a process's SIGTERM to any of its threads that does not block it
    (gRPC runs several). CPython runs the handler only when the main thread runs Python
    code again, so a main thread blocked in one untimed wait never stopped the server.
    Here the signal is sent to another thread of this process while the main thread
    waits in Server.wait(): it returns (the handler ran and the graceful stop finished)."""
    app = make_app(
        f"sqlite:///{tmp_path / 'ferry.db'}",
        FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS="0",
        FERRY_SERVER_SHUTDOWN_GRACE_SECONDS="0",
    )
    migrate.upgrade(app.engine)
    server = Server(app, ["export"])
    server.start()
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.stop_on_signals()
        ready = threading.Event()

        def other() -> None:  # a thread that takes the signal, then sleeps on
            ready.wait(30)
            signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
            time.sleep(1)

        threading.Thread(target=other, daemon=True).start()
        watchdog = threading.Timer(60, lambda: server.stop(grace=0, deregister_wait=0))
        watchdog.start()  # the test fails rather than hangs without the fix
        ready.set()
        started = time.monotonic()
        server.wait()
        took = time.monotonic() - started
        watchdog.cancel()
        assert took < 50, f"the server stopped only by the test's watchdog ({took:.0f} s)"
    finally:
        for s, h in before.items():
            signal.signal(s, h)
        server.stop(grace=0, deregister_wait=0)
