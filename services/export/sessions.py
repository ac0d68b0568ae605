"""Semester bundle RPCs of the export service: ListSemesters, StreamSession."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from ferry.app import App
from ferry.bundle.semesters import list_semesters
from ferry.bundle.stream import SessionRequest, stream_session
from ferry.rpc.errors import handles_errors
from ferry.rpc.filters import current_call
from ferry.v1 import bundle_pb2, export_pb2


class SessionRpcs:
    app: App

    @handles_errors
    def ListSemesters(
        self, request: export_pb2.ListSemestersRequest, context: grpc.ServicerContext
    ) -> export_pb2.ListSemestersResponse:
        ds = self.app.dataset(request.dataset)
        found = list_semesters(self.app.engine, ds, ("courses", "students", "enrollments"))
        return export_pb2.ListSemestersResponse(
            semesters=[
                export_pb2.Semester(
                    name=s.name,
                    course_count=s.counts["courses"],
                    student_count=s.counts["students"],
                    enrollment_count=s.counts["enrollments"],
                )
                for s in found
            ]
        )

    @handles_errors
    def StreamSession(
        self, request: export_pb2.StreamSessionRequest, context: grpc.ServicerContext
    ) -> Iterator[export_pb2.StreamSessionResponse]:
        ds = self.app.dataset(request.dataset)
        call = current_call()
        req = SessionRequest(
            semester=request.semester,
            include_deleted=request.include_deleted,
            batch_size=request.batch_size or self.app.settings.export.stream_batch_size,
            exported_by=call.caller if call is not None else "",
        )
        yield from stream_session(self.app.engine, ds, req, _response)


def _response() -> tuple[export_pb2.StreamSessionResponse, bundle_pb2.BundleChunk]:
    out = export_pb2.StreamSessionResponse()
    return out, out.chunk
