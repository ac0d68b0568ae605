"""Entity export job RPCs of the export service (StartExport, GetExportJob, …).

Translation only: requests become ferry.export_jobs calls, job rows become ExportJob messages.
The worker pool that runs the jobs is started by the service (service.start).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import grpc

from ferry.app import App
from ferry.db.export_models import ExportJob
from ferry.export_jobs import jobfile, store
from ferry.export_jobs.cleanup import cleanup
from ferry.export_jobs.pool import WorkerPool
from ferry.export_jobs.runner import tabular_format
from ferry.export_jobs.stats import export_stats
from ferry.export_jobs.validate import TEXT_FILTERS, new_job
from ferry.merge.cleanup import cleanup_plans
from ferry.rpc import statuses
from ferry.rpc.errors import handles_errors
from ferry.rpc.filters import caller
from ferry.storage import Storage
from ferry.v1 import export_pb2 as pb

# The stored names <-> the proto enum (ferry.rpc.statuses).
STATUS = statuses.EXPORT_JOB_STATUS_VALUE
STATUS_NAME = statuses.EXPORT_JOB_STATUS


class JobRpcs:
    app: App
    _job_storage: Storage | None = None
    _job_pool: WorkerPool | None = None

    def job_storage(self) -> Storage:
        """The storage for export files (created on first use)."""
        if self._job_storage is None:
            self._job_storage = self.app.storage()
        return self._job_storage

    def start_jobs(self) -> None:
        """Start the worker pool, heartbeat and reaper threads."""
        self._job_pool = WorkerPool(self.app, self.job_storage())
        self._job_pool.start()

    def stop_jobs(self) -> None:
        if self._job_pool is not None:
            self._job_pool.stop(self.app.settings.server.shutdown.grace_seconds)
            self._job_pool = None

    @handles_errors
    def StartExport(
        self, request: pb.StartExportRequest, context: grpc.ServicerContext
    ) -> pb.StartExportResponse:
        new = new_job(self.app, request, caller())
        job, created = store.create_job(self.app.engine, new)
        if created and self._job_pool is not None:
            self._job_pool.wake()
        return pb.StartExportResponse(job=job_message(job), created=created)

    @handles_errors
    def GetExportJob(
        self, request: pb.GetExportJobRequest, context: grpc.ServicerContext
    ) -> pb.GetExportJobResponse:
        return pb.GetExportJobResponse(
            job=job_message(store.get_job(self.app.engine, request.job_id))
        )

    @handles_errors
    def ListExportJobs(
        self, request: pb.ListExportJobsRequest, context: grpc.ServicerContext
    ) -> pb.ListExportJobsResponse:
        page = store.list_jobs(
            self.app.engine,
            request.page_size,
            request.page_token,
            STATUS_NAME.get(request.status, ""),
            request.export_type,
            request.requested_by,
        )
        return pb.ListExportJobsResponse(
            jobs=[job_message(j) for j in page.items],
            next_page_token=page.next_token,
            total_size=page.total,
        )

    @handles_errors
    def WatchExportJob(
        self, request: pb.WatchExportJobRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchExportJobResponse]:
        def active() -> bool:
            left = context.time_remaining()
            return bool(context.is_active()) and (left is None or left > 0.2)

        for job in jobfile.watch(self.app.engine, request.job_id, active):
            yield pb.WatchExportJobResponse(job=job_message(job))

    @handles_errors
    def CancelExportJob(
        self, request: pb.CancelExportJobRequest, context: grpc.ServicerContext
    ) -> pb.CancelExportJobResponse:
        job = store.request_cancel(self.app.engine, request.job_id)
        if self._job_pool is not None:
            self._job_pool.cancel(job.id)
        return pb.CancelExportJobResponse(job=job_message(job))

    @handles_errors
    def DownloadExport(
        self, request: pb.DownloadExportRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.DownloadExportResponse]:
        job = store.get_job(self.app.engine, request.job_id)
        fmt = tabular_format(job.format)
        for c in jobfile.read_export(self.job_storage(), job, request.offset, fmt.content_type):
            yield pb.DownloadExportResponse(chunk=c)

    @handles_errors
    def GetExportStats(
        self, request: pb.GetExportStatsRequest, context: grpc.ServicerContext
    ) -> pb.GetExportStatsResponse:
        s = export_stats(self.app.engine, request.days, request.export_type, request.slowest)
        return pb.GetExportStatsResponse(
            total_jobs=s.total_jobs,
            succeeded=s.succeeded,
            failed=s.failed,
            cancelled=s.cancelled,
            success_rate=s.success_rate,
            average_duration_seconds=s.average_duration_seconds,
            p95_duration_seconds=s.p95_duration_seconds,
            average_records_per_second=s.average_records_per_second,
            slowest_jobs=[job_message(j) for j in s.slowest],
        )

    @handles_errors
    def CleanupExports(
        self, request: pb.CleanupExportsRequest, context: grpc.ServicerContext
    ) -> pb.CleanupExportsResponse:
        r = cleanup(
            self.app.engine,
            self.job_storage(),
            request.older_than_days,
            self.app.settings.export.retention_days,
            archive=request.archive,
            dry_run=request.dry_run,
        )
        # Expired import plans go with the same retention run (ferry.merge.cleanup).
        cleanup_plans(self.app.engine, self.job_storage(), dry_run=request.dry_run)
        return pb.CleanupExportsResponse(
            jobs_removed=r.jobs_removed,
            files_deleted=r.files_deleted,
            files_archived=r.files_archived,
            bytes_freed=r.bytes_freed,
        )


def job_message(job: ExportJob) -> pb.ExportJob:
    """The job row as an ExportJob message."""
    filters = dict(job.filters or {})
    msg = pb.ExportJob(
        id=job.id,
        export_type=job.export_type,
        format=job.format,
        filters=pb.ExportFilters(**{k: v for k, v in filters.items() if k in TEXT_FILTERS}),
        fields=list(job.fields or []),
        limit=job.row_limit,
        status=STATUS.get(job.status, pb.EXPORT_JOB_STATUS_UNSPECIFIED),
        progress_percent=job.progress_percent,
        total_records=job.total_records,
        processed_records=job.processed_records,
        file_size_bytes=job.file_size_bytes,
        duration_seconds=job.duration_seconds,
        records_per_second=job.records_per_second,
        sha256=job.sha256,
        error_message=job.error_message,
        error_reason=job.error_reason or "",
        error_metadata=dict(job.error_metadata or {}),
        requested_by=job.requested_by,
        filename=job.filename,
        idempotency_key=job.idempotency_key or "",
        notify=list(job.notify or []),
        include_deleted=job.include_deleted,
        language=job.language or "",
        notification_id=job.notification_id or "",
    )
    if "updated_since" in filters:
        msg.filters.updated_since.FromDatetime(dt.datetime.fromisoformat(filters["updated_since"]))
    for name in ("created_at", "started_at", "finished_at"):
        value = store.aware(getattr(job, name))
        if value is not None:
            getattr(msg, name).FromDatetime(value)
    return msg
