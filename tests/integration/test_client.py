"""The typed client factory: deadlines, tokens, retries only where the contract allows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ferry.config import ClientSettings
from ferry.rpc.client import Clients, connection_options, retry_service_config
from ferry.rpc.filters import RpcCall, _current
from ferry.rpc.methods import lookup
from ferry.v1 import export_pb2


class FlakyExport:
    """A stand-in ExportService that fails with UNAVAILABLE `failures` times first."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[dict[str, Any]] = []

    def list_semesters(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append(
            {"metadata": dict(context.invocation_metadata()), "remaining": context.time_remaining()}
        )
        if len(self.calls) <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        return export_pb2.ListSemestersResponse(semesters=[export_pb2.Semester(name="2026-fall")])


@pytest.fixture
def flaky() -> Iterator[tuple[FlakyExport, str]]:
    fake = FlakyExport(failures=2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "ferry.v1.ExportService",
        {
            "ListSemesters": grpc.unary_unary_rpc_method_handler(
                fake.list_semesters,
                request_deserializer=export_pb2.ListSemestersRequest.FromString,
                response_serializer=export_pb2.ListSemestersResponse.SerializeToString,
            )
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield fake, f"127.0.0.1:{port}"
    server.stop(0)


def test_idempotent_call_is_retried_on_unavailable_with_token_and_deadline(
    flaky: tuple[FlakyExport, str],
) -> None:
    fake, target = flaky
    clients = Clients(ClientSettings(target=target, timeout_seconds=7), lambda: "tok")
    resp = clients.export().ListSemesters(export_pb2.ListSemestersRequest())
    clients.close()
    assert [s.name for s in resp.semesters] == ["2026-fall"]
    assert len(fake.calls) == 3
    assert fake.calls[0]["metadata"]["authorization"] == "Bearer tok"
    assert 0 < fake.calls[0]["remaining"] <= 7.1  # the clock ticks between client and server


def test_retries_stop_at_max_attempts(flaky: tuple[FlakyExport, str]) -> None:
    fake, target = flaky
    fake.failures = 10
    clients = Clients(ClientSettings(target=target, max_attempts=2))
    with pytest.raises(grpc.RpcError) as e:
        clients.export().ListSemesters(export_pb2.ListSemestersRequest())
    clients.close()
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(fake.calls) == 2


def test_retry_policy_only_names_idempotent_methods() -> None:
    config = json.loads(
        retry_service_config(["ferry.v1.ExportService", "grpc.health.v1.Health"], 3)
    )
    (method_config,) = config["methodConfig"]
    named = {(n["service"], n["method"]) for n in method_config["name"]}
    assert ("ferry.v1.ExportService", "ListSemesters") in named
    assert ("ferry.v1.ExportService", "StreamSession") in named
    assert ("ferry.v1.ExportService", "StartExport") not in named  # has side effects
    assert method_config["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert json.loads(retry_service_config(["grpc.health.v1.Health"], 3)) == {"methodConfig": []}


def test_outgoing_deadline_never_outlives_the_call_being_served(
    flaky: tuple[FlakyExport, str],
) -> None:
    fake, target = flaky
    fake.failures = 0
    served = RpcCall(lookup("/ferry.v1.ExportService/ListSemesters"), None, {}, "peer")  # type: ignore[arg-type]
    served.deadline = time.monotonic() + 1.5
    token = _current.set(served)
    try:
        clients = Clients(ClientSettings(target=target, timeout_seconds=30))
        clients.export().ListSemesters(export_pb2.ListSemestersRequest())
        clients.close()
    finally:
        _current.reset(token)
    assert fake.calls[0]["remaining"] <= 1.6


def test_a_replica_back_on_its_address_gets_calls_within_the_reconnect_cap() -> None:
    """Round robin over two replicas, one down for 10 s while the other serves: gRPC's
    own reconnect backoff grows towards 120 s meanwhile, so the one that is back would
    wait seconds to minutes for calls. Ferry caps the backoff
    (client.max_reconnect_backoff_seconds), as a rolling update needs."""

    def start(port: int, name: str) -> tuple[grpc.Server, int]:
        server = grpc.server(futures.ThreadPoolExecutor(2))
        servicer = health.HealthServicer()
        # One call tells the replicas apart: "who" is SERVING on a, NOT_SERVING on b.
        status = health_pb2.HealthCheckResponse
        servicer.set("who", status.SERVING if name == "a" else status.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        return server, bound

    def who(stub: Any) -> str:
        reply = stub.Check(health_pb2.HealthCheckRequest(service="who"), timeout=2)
        return "a" if reply.status == health_pb2.HealthCheckResponse.SERVING else "b"

    a, port_a = start(0, "a")
    b, port_b = start(0, "b")
    settings = ClientSettings(load_balancing_policy="round_robin", max_reconnect_backoff_seconds=1)
    target = f"ipv4:127.0.0.1:{port_a},127.0.0.1:{port_b}"
    try:
        with grpc.insecure_channel(target, options=connection_options(settings)) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            assert {who(stub) for _ in range(20)} == {"a", "b"}
            b.stop(None).wait()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # a serves every call meanwhile
                assert who(stub) == "a"
                time.sleep(0.2)
            b, _ = start(port_b, "b")
            seen: set[str] = set()
            deadline = time.monotonic() + 4  # the cap (1 s) and then some
            while "b" not in seen and time.monotonic() < deadline:
                seen.add(who(stub))
                time.sleep(0.05)
            assert "b" in seen, "the replica that came back got no call within 4 s"
    finally:
        a.stop(None)
        b.stop(None)
