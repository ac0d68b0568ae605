"""Semester bundle RPCs of the export service: ListSemesters, StreamSession,
DownloadSession."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator, Iterator
from contextlib import closing
from typing import cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ferry.app import App
from ferry.bundle.bundlefile import download_session
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Event
from ferry.bundle.scan import check, semester_exists, snapshot
from ferry.bundle.semesters import list_semesters
from ferry.bundle.stream import SessionRequest, stream_session
from ferry.errors import NotFound
from ferry.oneroster.export import build
from ferry.rpc.errors import handles_errors
from ferry.rpc.filters import caller
from ferry.rpc.wire import nested
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
    def StreamSession(  # type: ignore[override]
        self, request: export_pb2.StreamSessionRequest, context: grpc.ServicerContext
    ) -> Iterator[export_pb2.StreamSessionResponse | bytes]:
        """Header and trailer as messages; record batches as StreamSessionResponse in wire
        form, framed around the bytes the trailer's digest already serialized (the
        handler sends bytes as they are: ExportService.register)."""
        ds = self.app.dataset(request.dataset)
        req = SessionRequest(
            semester=request.semester,
            include_deleted=request.include_deleted,
            batch_size=request.batch_size or self.app.settings.export.stream_batch_size,
            exported_by=caller(),
            updated_since=_since(request),
            scope=request.scope or "semester",
        )
        yield from stream_session(self.app.engine, ds, req, _response, wire=_records_wire)

    @handles_errors
    def DownloadSession(
        self, request: export_pb2.DownloadSessionRequest, context: grpc.ServicerContext
    ) -> Iterator[export_pb2.DownloadSessionResponse]:
        ds = self.app.dataset(request.dataset)
        req = SessionRequest(
            semester=request.semester,
            include_deleted=request.include_deleted,
            batch_size=self.app.settings.export.stream_batch_size,
            exported_by=caller(),
            updated_since=_since(request),
            scope=request.scope or "semester",
        )
        for chunk in download_session(self.app.engine, ds, req, request.bundle_format):
            yield export_pb2.DownloadSessionResponse(chunk=chunk)

    @handles_errors
    def GetOneRosterLoss(
        self, request: export_pb2.GetOneRosterLossRequest, context: grpc.ServicerContext
    ) -> export_pb2.GetOneRosterLossResponse:
        """The loss report of the OneRoster zip DownloadSession writes for this request:
        the same records (session_events), built the same way, without the zip."""
        ds = self.app.dataset()
        req = SessionRequest(
            semester=request.semester,
            include_deleted=request.include_deleted,
            batch_size=self.app.settings.export.stream_batch_size,
            exported_by=caller(),
            updated_since=_since(request),
            scope="semester",
        )
        check(ds, req)
        with snapshot(self.app.engine) as conn:
            if not semester_exists(conn, ds, req.semester):
                raise NotFound(
                    f"{ds.scope_name} {req.semester!r} does not exist", field=ds.scope_name
                )
        events = session_events(self.app.engine, ds, req, dt.datetime.now(dt.UTC))
        with closing(cast(Generator[Event], events)):
            tables, _manifest, loss = build(events)
        out = export_pb2.GetOneRosterLossResponse(rows=sum(len(r) for r in tables.rows.values()))
        for x in loss.items():
            out.losses.add(
                entity=x.entity,
                field=x.field,
                count=x.count,
                sample=x.sample,
                reason=x.code,
                message=x.reason,
            )
        return out


def _since(
    request: export_pb2.StreamSessionRequest
    | export_pb2.DownloadSessionRequest
    | export_pb2.GetOneRosterLossRequest,
) -> dt.datetime | None:
    if not request.HasField("updated_since"):
        return None
    value: Timestamp = request.updated_since
    return value.ToDatetime(dt.UTC)


# StreamSessionResponse.chunk.records: where a record batch's bytes go (_records_wire).
_RECORDS_PATH = (
    export_pb2.StreamSessionResponse.DESCRIPTOR.fields_by_name["chunk"].number,
    bundle_pb2.BundleChunk.DESCRIPTOR.fields_by_name["records"].number,
)


def _records_wire(batch: bytes) -> bytes:
    """StreamSessionResponse{chunk: {records: batch}} in wire form, around a RecordBatch's
    serialization."""
    return nested(_RECORDS_PATH, batch)


def _response() -> tuple[export_pb2.StreamSessionResponse, bundle_pb2.BundleChunk]:
    out = export_pb2.StreamSessionResponse()
    return out, out.chunk
