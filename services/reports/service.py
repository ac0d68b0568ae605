"""ReportsService: the gRPC face of ferry.reports. Translation only: requests become core
calls, files become FileChunk streams, FerryErrors become statuses (handles_errors)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import ClassVar

import grpc

from ferry.app import App
from ferry.reports.bulk import bulk
from ferry.reports.engine import File, ReportEngine
from ferry.reports.settings import ReportSettings
from ferry.rpc.errors import handles_errors
from ferry.rpc.filters import current_call
from ferry.v1 import bundle_pb2, reports_pb2, reports_pb2_grpc

CHUNK = 1024 * 1024


def _role() -> int:
    call = current_call()
    return call.role if call is not None else 0


def chunks(f: File) -> Iterator[bundle_pb2.FileChunk]:
    """The file in chunks of at most 1 MiB: the first names it, the last has its sha256."""
    digest = hashlib.sha256(f.data).hexdigest()
    n = max(1, -(-len(f.data) // CHUNK))
    for i in range(n):
        piece = f.data[i * CHUNK : (i + 1) * CHUNK]
        yield bundle_pb2.FileChunk(
            data=piece,
            offset=i * CHUNK,
            filename=f.filename if i == 0 else "",
            content_type=f.content_type if i == 0 else "",
            sha256=digest if i == n - 1 else "",
        )


class ReportsService(reports_pb2_grpc.ReportsServiceServicer):
    full_name = reports_pb2.DESCRIPTOR.services_by_name["ReportsService"].full_name
    # plugins.services.reports: grading scale, thresholds, cache backend and TTL.
    settings_model: ClassVar[type[ReportSettings]] = ReportSettings

    def __init__(self, app: App) -> None:
        self.app = app
        self._engine: ReportEngine | None = None

    @property
    def engine(self) -> ReportEngine:
        if self._engine is None:
            self._engine = ReportEngine.from_app(self.app)
        return self._engine

    def register(self, server: grpc.Server) -> None:
        reports_pb2_grpc.add_ReportsServiceServicer_to_server(self, server)

    def start(self) -> None:
        """Resolve the cache backend now, so a bad `cache.backend` stops start-up."""
        _ = self.engine

    def stop(self) -> None:
        return None

    @handles_errors
    def GetStudentReport(
        self, request: reports_pb2.GetStudentReportRequest, context: grpc.ServicerContext
    ) -> reports_pb2.GetStudentReportResponse:
        report, cached = self.engine.student_from(request, _role())
        return reports_pb2.GetStudentReportResponse(report=report, cached=cached)

    @handles_errors
    def RenderStudentReport(
        self, request: reports_pb2.RenderStudentReportRequest, context: grpc.ServicerContext
    ) -> Iterator[reports_pb2.RenderStudentReportResponse]:
        f, _ = self.engine.render_student(request.report, request.format, _role())
        for c in chunks(f):
            yield reports_pb2.RenderStudentReportResponse(chunk=c)

    @handles_errors
    def GetSemesterReport(
        self, request: reports_pb2.GetSemesterReportRequest, context: grpc.ServicerContext
    ) -> reports_pb2.GetSemesterReportResponse:
        report, cached = self.engine.semester(request.semester, _role())
        return reports_pb2.GetSemesterReportResponse(report=report, cached=cached)

    @handles_errors
    def RenderSemesterReport(
        self, request: reports_pb2.RenderSemesterReportRequest, context: grpc.ServicerContext
    ) -> Iterator[reports_pb2.RenderSemesterReportResponse]:
        f, _ = self.engine.render_semester(request.semester, request.format, _role())
        for c in chunks(f):
            yield reports_pb2.RenderSemesterReportResponse(chunk=c)

    @handles_errors
    def BulkStudentReports(
        self, request: reports_pb2.BulkStudentReportsRequest, context: grpc.ServicerContext
    ) -> Iterator[reports_pb2.BulkStudentReportsResponse]:
        f = bulk(self.engine, request, _role())
        for c in chunks(f):
            yield reports_pb2.BulkStudentReportsResponse(chunk=c)

    @handles_errors
    def InvalidateCache(
        self, request: reports_pb2.InvalidateCacheRequest, context: grpc.ServicerContext
    ) -> reports_pb2.InvalidateCacheResponse:
        return reports_pb2.InvalidateCacheResponse(
            version=self.engine.invalidate(request.student_id)
        )

    @handles_errors
    def SearchStudents(
        self, request: reports_pb2.SearchStudentsRequest, context: grpc.ServicerContext
    ) -> reports_pb2.SearchStudentsResponse:
        found = self.engine.search(request.query, request.limit)
        return reports_pb2.SearchStudentsResponse(students=found)

    @handles_errors
    def GetCacheStats(
        self, request: reports_pb2.GetCacheStatsRequest, context: grpc.ServicerContext
    ) -> reports_pb2.GetCacheStatsResponse:
        return self.engine.stats()
