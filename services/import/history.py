"""The import record RPCs: GetImport, ListImports, UndoImport, DownloadRejected."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator

import grpc

from ferry.app import App
from ferry.errors import InvalidArgument, NotFound
from ferry.imports import convert, detect
from ferry.imports.backup import restore_import_backup
from ferry.merge import ImportOutcome, get_import, list_imports, rejected_events, undo_import
from ferry.merge.approval import decide as decide_plan
from ferry.merge.conflicts import as_text, list_conflicts, resolve_conflicts
from ferry.merge.planfile import plan_key
from ferry.merge.renames import rename_key
from ferry.rpc.errors import handles_errors
from ferry.rpc.filters import caller
from ferry.v1 import import_pb2 as ipb

CHUNK_BYTES = 1024 * 1024


def _import_id(value: str) -> str:
    if not value.strip():
        raise InvalidArgument("import_id is required", field="import_id")
    return value.strip()


class HistoryRpcs:
    app: App

    @handles_errors
    def GetImport(
        self, request: ipb.GetImportRequest, context: grpc.ServicerContext
    ) -> ipb.GetImportResponse:
        outcome = get_import(self.app.engine, _import_id(request.import_id))
        return ipb.GetImportResponse(result=convert.result_proto(outcome))

    @handles_errors
    def ListImports(
        self, request: ipb.ListImportsRequest, context: grpc.ServicerContext
    ) -> ipb.ListImportsResponse:
        page = list_imports(self.app.engine, request.page_size, request.page_token)
        return ipb.ListImportsResponse(
            imports=[convert.result_proto(o) for o in page.items], next_page_token=page.next_token
        )

    @handles_errors
    def UndoImport(
        self, request: ipb.UndoImportRequest, context: grpc.ServicerContext
    ) -> ipb.UndoImportResponse:
        outcome = undo_import(
            self.app.engine,
            self.app.dataset(),
            _import_id(request.import_id),
            force=request.force,
            requested_by=caller(),
        )
        return ipb.UndoImportResponse(result=convert.result_proto(outcome))

    @handles_errors
    def RenameRecord(
        self, request: ipb.RenameRecordRequest, context: grpc.ServicerContext
    ) -> ipb.RenameRecordResponse:
        outcome = rename_key(
            self.app.engine,
            self.app.dataset(),
            request.entity.strip(),
            request.old_key,
            request.new_key,
            requested_by=caller(),
            dry_run=request.dry_run,
        )
        failed = convert.failure(outcome)
        if failed is not None:
            raise failed
        return ipb.RenameRecordResponse(result=convert.result_proto(outcome))

    @handles_errors
    def ApprovePlan(
        self, request: ipb.ApprovePlanRequest, context: grpc.ServicerContext
    ) -> ipb.ApprovePlanResponse:
        outcome = self._decide(request.import_id, request.reason, approve=True)
        return ipb.ApprovePlanResponse(result=convert.result_proto(outcome))

    @handles_errors
    def RejectPlan(
        self, request: ipb.RejectPlanRequest, context: grpc.ServicerContext
    ) -> ipb.RejectPlanResponse:
        import_id = _import_id(request.import_id)
        if not request.reason.strip():
            raise InvalidArgument("say why the plan is rejected", field="reason")
        outcome = self._decide(import_id, request.reason, approve=False)
        return ipb.RejectPlanResponse(result=convert.result_proto(outcome))

    def _decide(self, import_id: str, reason: str, approve: bool) -> ImportOutcome:
        return decide_plan(
            self.app.engine,
            _import_id(import_id),
            approve,
            caller(),
            reason.strip(),
        )

    @handles_errors
    def ListConflicts(
        self, request: ipb.ListConflictsRequest, context: grpc.ServicerContext
    ) -> ipb.ListConflictsResponse:
        page = list_conflicts(
            self.app.engine,
            self.app.dataset(),
            request.entity.strip(),
            request.page_size,
            request.page_token,
        )
        out = ipb.ListConflictsResponse(next_page_token=page.next_token, total=page.total)
        for c in page.items:
            item = out.conflicts.add(
                id=c.id,
                import_id=c.import_id,
                entity=c.entity,
                natural_key=c.natural_key,
                field=c.field,
                local_value=as_text(c.local_value),
                source_value=as_text(c.source_value),
            )
            item.created_at.FromDatetime(c.created_at)
        return out

    @handles_errors
    def ResolveConflicts(
        self, request: ipb.ResolveConflictsRequest, context: grpc.ServicerContext
    ) -> ipb.ResolveConflictsResponse:
        choices = {ipb.CONFLICT_CHOICE_LOCAL: "local", ipb.CONFLICT_CHOICE_SOURCE: "source"}
        outcome = resolve_conflicts(
            self.app.engine,
            self.app.dataset(),
            [(d.conflict_id, choices.get(d.choice, "")) for d in request.decisions],
            requested_by=caller(),
        )
        return ipb.ResolveConflictsResponse(result=convert.result_proto(outcome))

    @handles_errors
    def RestoreBackup(
        self, request: ipb.RestoreBackupRequest, context: grpc.ServicerContext
    ) -> ipb.RestoreBackupResponse:
        outcome = restore_import_backup(
            self.app.engine,
            self.app.dataset(),
            self.app.storage(),
            _import_id(request.import_id),
            dry_run=request.dry_run,
            requested_by=caller(),
        )
        failed = convert.failure(outcome)
        if failed is not None:
            raise failed
        return ipb.RestoreBackupResponse(result=convert.result_proto(outcome))

    @handles_errors
    def DownloadPlan(
        self, request: ipb.DownloadPlanRequest, context: grpc.ServicerContext
    ) -> Iterator[ipb.DownloadPlanResponse]:
        import_id = _import_id(request.import_id)
        outcome = get_import(self.app.engine, import_id)
        storage = self.app.storage()
        key = plan_key(outcome.id)
        if not outcome.plan_records or storage.size(key) is None:
            raise NotFound(
                f"import {import_id} kept no plan records: preview (dry run) with "
                "plan_records to keep every record's decision",
                field="import_id",
            )
        with storage.open(key) as f:
            digest = hashlib.sha256()
            offset = 0
            first = True
            while True:
                data = f.read(CHUNK_BYTES)
                digest.update(data)
                out = ipb.DownloadPlanResponse()
                chunk = out.chunk
                chunk.data = data
                chunk.offset = offset
                if first:
                    chunk.filename = f"plan-{import_id}.jsonl"
                    chunk.content_type = "application/jsonl"
                    first = False
                offset += len(data)
                if not data:
                    chunk.sha256 = digest.hexdigest()
                    yield out
                    return
                yield out

    @handles_errors
    def DownloadRejected(
        self, request: ipb.DownloadRejectedRequest, context: grpc.ServicerContext
    ) -> Iterator[ipb.DownloadRejectedResponse]:
        import_id = _import_id(request.import_id)
        outcome = get_import(self.app.engine, import_id)
        ds = self.app.dataset(outcome.options.dataset)
        fmt = detect.bundle_format("json", "")
        s = self.app.settings
        folder = s.path(s.imports.spool_dir) if s.imports.spool_dir else None
        # The writer pushes bytes; a temp file turns that into chunks we can pull.
        with tempfile.TemporaryFile(prefix="ferry-rejected-", dir=folder) as f:
            fmt.write(rejected_events(self.app.engine, ds, import_id), f)
            size = f.tell()
            f.seek(0)
            digest = hashlib.sha256()
            offset = 0
            while True:
                data = f.read(CHUNK_BYTES)
                digest.update(data)
                out = ipb.DownloadRejectedResponse()
                chunk = out.chunk
                chunk.data = data
                chunk.offset = offset
                if offset == 0:
                    chunk.filename = f"rejected-{import_id}.{fmt.extension}"
                    chunk.content_type = fmt.content_type
                offset += len(data)
                if offset >= size:
                    chunk.sha256 = digest.hexdigest()
                    yield out
                    return
                yield out
