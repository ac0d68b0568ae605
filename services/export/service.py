"""ExportService: the gRPC face of the export core. Nothing but translation lives here;
each group of RPCs is a mixin in its own module."""

from __future__ import annotations

import grpc

from ferry.app import App
from ferry.rpc.wire import CaughtHandlers
from ferry.v1 import export_pb2, export_pb2_grpc
from services.export.jobs import JobRpcs
from services.export.sessions import SessionRpcs


# SessionRpcs.StreamSession may yield wire-form bytes (see register): mypy's [misc].
class ExportService(  # type: ignore[misc]
    SessionRpcs, JobRpcs, export_pb2_grpc.ExportServiceServicer
):
    full_name = export_pb2.DESCRIPTOR.services_by_name["ExportService"].full_name

    def __init__(self, app: App) -> None:
        self.app = app

    def register(self, server: grpc.Server) -> None:
        # StreamSession yields its record batches in wire form (SessionRpcs.StreamSession).
        caught = CaughtHandlers()
        export_pb2_grpc.add_ExportServiceServicer_to_server(self, caught)  # type: ignore[arg-type]
        caught.register(server, self.full_name, ("StreamSession",))

    def start(self) -> None:
        """Start the entity export job workers, their heartbeat and the reaper."""
        self.start_jobs()

    def stop(self) -> None:
        """Stop the job threads; jobs still running go back to the queue."""
        self.stop_jobs()
