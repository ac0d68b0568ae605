"""Calling the export job RPCs of a running server in tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc

from ferry.app import App
from ferry.rpc.server import Server
from ferry.v1 import export_pb2 as pb
from ferry.v1 import export_pb2_grpc
from tests.conftest import auth

TERMINAL = {
    pb.EXPORT_JOB_STATUS_COMPLETED,
    pb.EXPORT_JOB_STATUS_FAILED,
    pb.EXPORT_JOB_STATUS_CANCELLED,
}


class Jobs:
    """A stub with an admin token; each method returns what the RPC returned."""

    def __init__(self, app: App, channel: grpc.Channel) -> None:
        self.stub = export_pb2_grpc.ExportServiceStub(channel)
        self.md = auth(app, "admin")

    def start(self, **kw: Any) -> pb.StartExportResponse:
        filters = kw.pop("filters", None)
        req = pb.StartExportRequest(**kw)
        if filters:
            req.filters.CopyFrom(pb.ExportFilters(**filters))
        return self.stub.StartExport(req, metadata=self.md, timeout=10)

    def get(self, job_id: str) -> pb.ExportJob:
        return self.stub.GetExportJob(
            pb.GetExportJobRequest(job_id=job_id), metadata=self.md, timeout=10
        ).job

    def watch(self, job_id: str, timeout: float = 30) -> list[pb.ExportJob]:
        return [
            r.job
            for r in self.stub.WatchExportJob(
                pb.WatchExportJobRequest(job_id=job_id), metadata=self.md, timeout=timeout
            )
        ]

    def wait(self, job_id: str) -> pb.ExportJob:
        return self.watch(job_id)[-1]

    def chunks(self, job_id: str, offset: int = 0) -> list[pb.DownloadExportResponse]:
        return list(
            self.stub.DownloadExport(
                pb.DownloadExportRequest(job_id=job_id, offset=offset),
                metadata=self.md,
                timeout=10,
            )
        )

    def download(self, job_id: str, offset: int = 0) -> bytes:
        return b"".join(c.chunk.data for c in self.chunks(job_id, offset))

    def cancel(self, job_id: str) -> pb.ExportJob:
        return self.stub.CancelExportJob(
            pb.CancelExportJobRequest(job_id=job_id), metadata=self.md, timeout=10
        ).job


@contextmanager
def jobs_client(app: App, srv: Server) -> Iterator[Jobs]:
    with grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
        yield Jobs(app, ch)
