"""ExportService driven directly by grpc-testing (no network, no filters)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import grpc_testing
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.bundle.scan import FORMAT_VERSION
from ferry.bundle.stream import batch_digest
from ferry.v1 import export_pb2
from services.export.service import ExportService

SERVICE = export_pb2.DESCRIPTOR.services_by_name["ExportService"]


@pytest.fixture
def server(seeded_url: str, make_app: Callable[..., App]) -> Any:
    app = make_app(seeded_url)
    return grpc_testing.server_from_dictionary(
        {SERVICE: ExportService(app)}, grpc_testing.strict_real_time()
    )


def stream(
    server: Any, request: export_pb2.StreamSessionRequest
) -> tuple[list[Any], grpc.StatusCode, str]:
    rpc = server.invoke_unary_stream(SERVICE.methods_by_name["StreamSession"], (), request, None)
    out = []
    while True:
        try:
            response = rpc.take_response()
        except ValueError:  # grpc-testing: no more responses
            break
        # Record batches come in wire form (ExportService.register sends them as they
        # are); grpc-testing skips serializers, so read them as a client would.
        if isinstance(response, bytes):
            response = export_pb2.StreamSessionResponse.FromString(response)
        out.append(response)
    _, code, details = rpc.termination()
    return out, code, details


def test_list_semesters_newest_first_with_counts(server: Any, seeded_url: str) -> None:
    rpc = server.invoke_unary_unary(
        SERVICE.methods_by_name["ListSemesters"], (), export_pb2.ListSemestersRequest(), None
    )
    response, _, code, _ = rpc.termination()
    assert code == grpc.StatusCode.OK
    names = [s.name for s in response.semesters]
    assert names == ["2026-fall", "2026-spring", "2025-fall"]
    engine = sa.create_engine(seeded_url)
    with engine.connect() as conn:
        courses = conn.execute(
            sa.text(
                "SELECT count(*) FROM courses WHERE semester = '2026-fall' AND deleted_at IS NULL"
            )
        ).scalar_one()
    engine.dispose()
    assert response.semesters[0].course_count == courses
    assert all(s.student_count > 0 and s.enrollment_count > 0 for s in response.semesters)


def test_stream_session_sends_header_batches_trailer(server: Any) -> None:
    messages, code, _ = stream(
        server, export_pb2.StreamSessionRequest(semester="2025-fall", batch_size=50)
    )
    assert code == grpc.StatusCode.OK
    kinds = [m.chunk.WhichOneof("chunk") for m in messages]
    assert kinds[0] == "header" and kinds[-1] == "trailer"
    assert set(kinds[1:-1]) == {"records"}
    header, trailer = messages[0].chunk.header.metadata, messages[-1].chunk.trailer
    assert (
        header.semester == "2025-fall"
        and header.format_version == FORMAT_VERSION
        and header.dataset == "school"
    )
    assert dict(header.counts) == dict(trailer.counts)
    assert trailer.total_records == sum(trailer.counts.values()) > 0
    batches = [m.chunk.records for m in messages[1:-1]]
    assert all(sum(len(getattr(b, f.name)) for f in b.DESCRIPTOR.fields) <= 50 for b in batches)
    assert batch_digest(iter(batches)) == trailer.sha256


def test_unknown_semester_is_not_found_naming_it(server: Any) -> None:
    _, code, details = stream(server, export_pb2.StreamSessionRequest(semester="1999-fall"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert "1999-fall" in details


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (export_pb2.StreamSessionRequest(semester=""), "semester"),
        (export_pb2.StreamSessionRequest(semester="2025-fall", batch_size=50_000), "batch_size"),
        (export_pb2.StreamSessionRequest(semester="2025-fall", dataset="library"), "dataset"),
    ],
)
def test_bad_request_is_invalid_argument_naming_the_field(
    server: Any, request_: export_pb2.StreamSessionRequest, field: str
) -> None:
    _, code, details = stream(server, request_)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in details
