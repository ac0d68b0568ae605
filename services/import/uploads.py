"""The upload RPCs of the import service: ImportSession (bundles) and ImportEntities
(csv/xlsx of one entity). Receiving and importing live in ferry.imports.upload; this
module translates gRPC to it and back."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import nullcontext

import grpc

from ferry import addresses
from ferry.app import App
from ferry.imports import convert, upload
from ferry.merge import ImportOutcome
from ferry.merge.announce import announcing
from ferry.notify import import_announcement as notify_client
from ferry.notify.plan_announcement import both, plan_announcement
from ferry.rpc.errors import handles_errors
from ferry.rpc.filters import caller
from ferry.v1 import import_pb2 as ipb


class UploadRpcs:
    app: App

    def _finish(
        self, outcome: ImportOutcome, headers: dict[str, str] | None = None
    ) -> ipb.ImportResult:
        failed = convert.failure(outcome, headers)
        if failed is not None:
            raise failed
        return convert.result_proto(outcome)

    @handles_errors
    def ImportSession(
        self, request_iterator: Iterator[ipb.ImportSessionRequest], context: grpc.ServicerContext
    ) -> ipb.ImportSessionResponse:
        requests = iter(request_iterator)
        first = next(requests, None)
        options = first.options if first is not None and first.HasField("options") else None
        # Bad recipients fail before the upload, like every other bad option.
        notify = (
            addresses.check_recipients(list(options.notify), "options.notify") if options else []
        )
        chained = itertools.chain([first] if first is not None else [], requests)
        # The announcement is an outbox row written in the transaction that records the
        # import (ferry.merge.announce): it commits with the import or not at all.
        # A plan awaiting an admin's approval is announced to imports.approvers too.
        approving = plan_announcement(self.app) if self.app.settings.imports.approvers else None
        write = both(notify_client.import_announcement(self.app, notify) if notify else None,
                     approving)  # fmt: skip
        with announcing(write) if write is not None else nullcontext():
            outcome = upload.import_session(self.app, chained, caller())
        return ipb.ImportSessionResponse(result=self._finish(outcome))

    @handles_errors
    def ImportEntities(
        self, request_iterator: Iterator[ipb.ImportEntitiesRequest], context: grpc.ServicerContext
    ) -> ipb.ImportEntitiesResponse:
        approving = plan_announcement(self.app) if self.app.settings.imports.approvers else None
        with announcing(approving) if approving is not None else nullcontext():
            outcome, headers = upload.import_entities(self.app, request_iterator, caller())
        return ipb.ImportEntitiesResponse(result=self._finish(outcome, headers))
