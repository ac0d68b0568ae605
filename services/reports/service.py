"""ReportsService: the gRPC face of ferry.reports. Translation only: requests become core
calls, files become FileChunk streams, FerryErrors become statuses (handles_errors)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import grpc

from ferry.app import App
from ferry.reports.bulk import bulk
from ferry.reports.engine import File, ReportEngine
from ferry.reports.settings import ReportSettings
from ferry.rpc.errors import handles_errors
from ferry.rpc.files import CHUNK_BYTES, file_chunks
from ferry.rpc.filters import current_call
from ferry.rpc.wire import CaughtHandlers
from ferry.v1 import bundle_pb2, reports_pb2, reports_pb2_grpc


def _role() -> int:
    call = current_call()
    return call.role if call is not None else 0


# Served as wire bytes built around the cached bytes (ReportEngine.*_response): a cache hit
# never parses the report, copies it into a response and serializes it again.
_PREBUILT = ("GetStudentReport", "GetSemesterReport")


def chunks(f: File) -> Iterator[bundle_pb2.FileChunk]:
    """The file in chunks of at most 1 MiB: the first names it, the last has its sha256."""
    pieces = (f.data[i : i + CHUNK_BYTES] for i in range(0, len(f.data), CHUNK_BYTES))
    return file_chunks(pieces, f.filename, f.content_type)


class ReportsService(reports_pb2_grpc.ReportsServiceServicer):
    full_name = reports_pb2.DESCRIPTOR.services_by_name["ReportsService"].full_name
    # plugins.services.reports: grading scale, thresholds, cache backend and TTL.
    settings_model: ClassVar[type[ReportSettings]] = ReportSettings

    def __init__(self, app: App) -> None:
        self.app = app
        self._reports: ReportEngine | None = None

    @property
    def reports(self) -> ReportEngine:
        if self._reports is None:
            self._reports = ReportEngine.from_app(self.app)
        return self._reports

    def register(self, server: grpc.Server) -> None:
        caught = CaughtHandlers()
        reports_pb2_grpc.add_ReportsServiceServicer_to_server(self, caught)  # type: ignore[arg-type]
        caught.register(server, self.full_name, _PREBUILT)

    def start(self) -> None:
        """Resolve the cache backend now, so a bad `cache.backend` stops start-up."""
        _ = self.reports

    def stop(self) -> None:
        if self._reports is not None:
            self._reports.close()

    @handles_errors
    def GetStudentReport(  # type: ignore[override]
        self, request: reports_pb2.GetStudentReportRequest, context: grpc.ServicerContext
    ) -> bytes:
        """GetStudentReportResponse, in wire form (see _PREBUILT)."""
        return self.reports.student_response(request, _role())

    @handles_errors
    def RenderStudentReport(
        self, request: reports_pb2.RenderStudentReportRequest, context: grpc.ServicerContext
    ) -> Iterator[reports_pb2.RenderStudentReportResponse]:
        f, _ = self.reports.render_student(request.report, request.format, _role())
        for c in chunks(f):
            yield reports_pb2.RenderStudentReportResponse(chunk=c)

    @handles_errors
    def GetSemesterReport(  # type: ignore[override]
        self, request: reports_pb2.GetSemesterReportRequest, context: grpc.ServicerContext
    ) -> bytes:
        """GetSemesterReportResponse, in wire form (see _PREBUILT)."""
        return self.reports.semester_response(request.semester, _role(), request.language)

    @handles_errors
    def RenderSemesterReport(
        self, request: reports_pb2.RenderSemesterReportRequest, context: grpc.ServicerContext
    ) -> Iterator[reports_pb2.RenderSemesterReportResponse]:
        f, _ = self.reports.render_semester(
            request.semester, request.format, _role(), request.language
        )
        for c in chunks(f):
            yield reports_pb2.RenderSemesterReportResponse(chunk=c)

    @handles_errors
    def BulkStudentReports(
        self, request: reports_pb2.BulkStudentReportsRequest, context: grpc.ServicerContext
    ) -> Iterator[reports_pb2.BulkStudentReportsResponse]:
        f = bulk(self.reports, request, _role())
        for c in chunks(f):
            yield reports_pb2.BulkStudentReportsResponse(chunk=c)

    @handles_errors
    def InvalidateCache(
        self, request: reports_pb2.InvalidateCacheRequest, context: grpc.ServicerContext
    ) -> reports_pb2.InvalidateCacheResponse:
        return reports_pb2.InvalidateCacheResponse(
            version=self.reports.invalidate(request.student_id)
        )

    @handles_errors
    def SearchStudents(
        self, request: reports_pb2.SearchStudentsRequest, context: grpc.ServicerContext
    ) -> reports_pb2.SearchStudentsResponse:
        found = self.reports.search(request.query, request.limit)
        return reports_pb2.SearchStudentsResponse(students=found)

    @handles_errors
    def GetCacheStats(
        self, request: reports_pb2.GetCacheStatsRequest, context: grpc.ServicerContext
    ) -> reports_pb2.GetCacheStatsResponse:
        return self.reports.stats()
