"""One table from gRPC status to HTTP, pinned over every code, end to end through the
gateway against a gRPC server that fails with the code it is asked for."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ferry.app import App
from ferry.v1 import export_pb2
from gateway.app import create_app
from gateway.calls import ServiceChannels
from gateway.errors import HTTP_STATUS, http_status
from tests.conftest import make_settings
from tests.gateway.conftest import TestClient

EXPECTED = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 416,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


def test_every_grpc_code_has_its_pinned_http_status() -> None:
    assert {c.name for c in grpc.StatusCode} == set(EXPECTED)
    assert {c.name: http_status(c) for c in grpc.StatusCode} == EXPECTED
    assert set(HTTP_STATUS) == set(grpc.StatusCode)


def _failing_semesters(request: Any, context: grpc.ServicerContext) -> Any:
    """ListSemesters that fails with the code named by the request's `dataset`."""
    code = grpc.StatusCode[request.dataset]
    status = status_pb2.Status(code=code.value[0], message=f"failed with {code.name}")
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        detail = error_details_pb2.BadRequest(
            field_violations=[{"field": "dataset", "description": "no such dataset"}]
        )
        status.details.add().Pack(detail)
    if code == grpc.StatusCode.INTERNAL:
        status.message = "psycopg.errors.UndefinedTable: SELECT * FROM secrets"
    context.abort_with_status(rpc_status.to_status(status))


@pytest.fixture
def failing_client(tmp_path: Path) -> Iterator[TestClient]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.unary_unary_rpc_method_handler(
        _failing_semesters,
        request_deserializer=export_pb2.ListSemestersRequest.FromString,
        response_serializer=export_pb2.ListSemestersResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("ferry.v1.ExportService",
                                              {"ListSemesters": handler})]
    )  # fmt: skip
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    app = App(make_settings("sqlite:///" + str(tmp_path / "x.db"), tmp_path))
    asgi = create_app(app, ServiceChannels(app.settings.client, f"127.0.0.1:{port}"))
    try:
        with TestClient(asgi) as client:
            yield client
    finally:
        server.stop(0)
        app.close()


@pytest.mark.parametrize("code", [c for c in grpc.StatusCode if c != grpc.StatusCode.OK])
def test_service_failures_become_the_mapped_http_status_and_json_error(
    failing_client: TestClient, code: grpc.StatusCode
) -> None:
    r = failing_client.get(f"/api/v1/sessions/semesters?dataset={code.name}")
    assert r.status_code == EXPECTED[code.name]
    body = r.json()
    assert set(body) == {"code", "reason", "metadata", "message", "details"}
    assert body["code"] == code.name
    # No ErrorInfo from this service: the reason is the code's name.
    assert body["reason"] == code.name
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN):
        assert "SELECT" not in body["message"] and "psycopg" not in body["message"]
    elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        assert int(r.headers["Retry-After"]) > 0
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert body["details"] == [
            {"type": "field_violation", "field": "dataset", "description": "no such dataset"}
        ]
    assert code_pb2.Code.Name(code.value[0]) == code.name
