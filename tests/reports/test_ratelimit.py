"""The ratelimit filter on BulkStudentReports: RESOURCE_EXHAUSTED with a retry-after
trailer over gRPC, 429 with Retry-After through the gateway; in-process and on Redis."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import grpc
import pytest

from ferry.app import App
from ferry.v1 import reports_pb2 as pb
from ferry.v1 import reports_pb2_grpc
from tests.conftest import running, token
from tests.gateway.conftest import gateway_for
from tests.reports.conftest import REDIS_URL, require_redis

LIMITS = '{"reports/BulkStudentReports": {limit: 2, window_seconds: 60}}'


def _bulk(stub: reports_pb2_grpc.ReportsServiceStub, md: list[tuple[str, str]]) -> bytes:
    req = pb.BulkStudentReportsRequest(student_ids=["S1"], output="json")
    return b"".join(c.chunk.data for c in stub.BulkStudentReports(req, metadata=md))


@pytest.mark.parametrize("shared", [False, pytest.param(True, marks=pytest.mark.redis)])
def test_over_the_limit_is_resource_exhausted(
    school_url: str, make_app: Callable[..., App], shared: bool
) -> None:
    env = {"FERRY_PLUGINS_FILTERS_RATELIMIT_LIMITS": LIMITS}
    if shared:
        require_redis()
        env["FERRY_REDIS_URL"] = REDIS_URL
    app = make_app(school_url, **env)
    who = f"limited-{uuid.uuid4().hex[:8]}"
    md = [("authorization", f"Bearer {token(app, 'operator', subject=who)}")]
    other = [("authorization", f"Bearer {token(app, 'operator', subject=who + 'x')}")]
    with (
        running(app, ["reports"]) as server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch,
    ):
        stub = reports_pb2_grpc.ReportsServiceStub(ch)
        assert _bulk(stub, md) and _bulk(stub, md)
        with pytest.raises(grpc.RpcError) as e:
            _bulk(stub, md)
        assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 2 BulkStudentReports" in e.value.details()
        trailers = dict(e.value.trailing_metadata())
        assert 1 <= int(trailers["retry-after"]) <= 60
        assert _bulk(stub, other)  # per caller
        # Other methods of the service are not limited.
        for _ in range(4):
            stub.GetStudentReport(pb.GetStudentReportRequest(student_id="S1"), metadata=md)


def test_gateway_turns_it_into_429(school_url: str, make_app: Callable[..., App]) -> None:
    app = make_app(school_url, FERRY_PLUGINS_FILTERS_RATELIMIT_LIMITS=LIMITS)
    h = {"authorization": f"Bearer {token(app, 'operator', subject=uuid.uuid4().hex)}"}
    body = {"student_ids": ["S1"], "output": "csv"}
    with gateway_for(app, ["reports"]) as client:
        for _ in range(2):
            assert (
                client.post(
                    "/api/v1/reports/bulk/student-performance", json=body, headers=h
                ).status_code
                == 200
            )
        r = client.post("/api/v1/reports/bulk/student-performance", json=body, headers=h)
        assert r.status_code == 429 and r.json()["code"] == "RESOURCE_EXHAUSTED"
        assert 1 <= int(r.headers["retry-after"]) <= 60


def test_without_auth_the_client_address_is_the_key() -> None:
    from ferry.rpc.filters.ratelimit import _host

    assert _host("ipv4:10.0.0.7:51234") == "ipv4:10.0.0.7"
    assert _host("ipv6:[::1]:5") == "ipv6:[::1]"
    assert _host("unix:/tmp/s") == "unix:/tmp/s"
