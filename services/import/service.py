"""ImportService: the gRPC face of the merge engine. Nothing but translation lives here;
each group of RPCs is a mixin in its own module."""

from __future__ import annotations

import grpc

from ferry.app import App
from ferry.v1 import import_pb2, import_pb2_grpc

from .history import HistoryRpcs
from .uploads import UploadRpcs


class ImportService(UploadRpcs, HistoryRpcs, import_pb2_grpc.ImportServiceServicer):
    full_name = import_pb2.DESCRIPTOR.services_by_name["ImportService"].full_name

    def __init__(self, app: App) -> None:
        self.app = app

    def register(self, server: grpc.Server) -> None:
        import_pb2_grpc.add_ImportServiceServicer_to_server(self, server)

    def start(self) -> None:
        """Nothing runs in the background: every import happens inside its call."""
        return None

    def stop(self) -> None:
        return None
