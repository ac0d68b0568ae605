"""The upload RPCs of the import service: ImportSession (bundles) and ImportEntities
(csv/xlsx of one entity). Uploads are spooled to disk under the size limit, then handed
to the merge engine."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import grpc

from ferry.app import App
from ferry.bundle.chunks import chunks_to_events
from ferry.bundle.formats.base import BundleLimits
from ferry.errors import InvalidArgument
from ferry.formats.base import ReadLimits
from ferry.imports import convert, detect
from ferry.imports.spool import FileUpload, Spool
from ferry.imports.tabular import EntityRows, find_entity
from ferry.imports.typed import TypedUpload, replay
from ferry.merge import ImportOutcome, run_import
from ferry.rpc.errors import handles_errors
from ferry.rpc.filters import current_call
from ferry.v1 import import_pb2 as ipb


def _caller() -> str:
    call = current_call()
    return call.caller if call is not None else ""


class UploadRpcs:
    app: App

    def _spool(self) -> Spool:
        s = self.app.settings
        folder = s.path(s.imports.spool_dir) if s.imports.spool_dir else None
        return Spool(s.imports.max_upload_bytes, folder)

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
        options = _options_first(requests).options
        ds = self.app.dataset(options.dataset)
        # Bad options fail before the upload, not after it.
        merge_options = convert.merge_options(options)
        fmt: Any = None
        if options.bundle_format or options.filename:
            fmt = detect.bundle_format(options.bundle_format, options.filename)
        with self._spool() as spool:
            kind, source_sha, filename = self._receive_bundle(requests, spool)
            if kind == "file_chunk":
                if fmt is None:  # the name came with the first chunk
                    fmt = detect.bundle_format("", filename)
                    merge_options = dataclasses.replace(merge_options, filename=filename)
                events = fmt.read(spool.rewind(), BundleLimits())
            else:
                events = chunks_to_events(replay(spool.rewind()))
            outcome = run_import(
                self.app.engine,
                ds,
                events,
                merge_options,
                requested_by=_caller(),
                source_sha256=source_sha,
            )
        return ipb.ImportSessionResponse(result=self._finish(outcome))

    def _receive_bundle(
        self, requests: Iterator[ipb.ImportSessionRequest], spool: Spool
    ) -> tuple[str, str, str]:
        """Spool every file_chunk or bundle_chunk; (kind, source sha256, filename)."""
        files = FileUpload(spool)
        typed = TypedUpload(spool)
        kind = ""
        for req in requests:
            which = req.WhichOneof("payload")
            if which == "options":
                raise InvalidArgument("options may only be sent once, first", field="options")
            if which is None:
                raise InvalidArgument("an empty message", field="payload")
            if kind and which != kind:
                raise InvalidArgument(
                    "send either file_chunk or bundle_chunk messages, never both", field=which
                )
            kind = which
            if which == "file_chunk":
                c = req.file_chunk
                files.add(c.data, c.offset, c.filename, c.sha256)
            else:
                typed.add(req.bundle_chunk)
        if not kind:
            raise InvalidArgument(
                "no bundle was sent: after options, send file_chunk or bundle_chunk messages",
                field="file_chunk",
            )
        if kind == "file_chunk":
            return kind, files.finish(), files.filename
        return kind, typed.finish(), ""

    @handles_errors
    def ImportEntities(
        self, request_iterator: Iterator[ipb.ImportEntitiesRequest], context: grpc.ServicerContext
    ) -> ipb.ImportEntitiesResponse:
        requests = iter(request_iterator)
        options = _options_first(requests).options
        ds = self.app.dataset()
        entity = find_entity(ds, options.entity)
        reader: Any = None
        if options.format or options.filename:  # bad options fail before the upload
            reader = detect.tabular_reader(options.format, options.filename)
        with self._spool() as spool:
            files = FileUpload(spool)
            for req in requests:
                if req.WhichOneof("payload") != "file_chunk":
                    raise InvalidArgument(
                        "after options, only file_chunk messages may follow", field="options"
                    )
                c = req.file_chunk
                files.add(c.data, c.offset, c.filename, c.sha256)
            source_sha = files.finish()
            filename = options.filename or files.filename
            if reader is None:
                reader = detect.tabular_reader("", filename)
            merge_options = convert.entity_options(options, reader.name, filename, ds.name)
            rows = reader.read(spool.rewind(), ReadLimits())
            batches = EntityRows(
                entity, rows, options.column_mapping, self.app.settings.imports.batch_size
            )
            outcome = run_import(
                self.app.engine,
                ds,
                batches,
                merge_options,
                requested_by=_caller(),
                source_sha256=source_sha,
                entity=entity.name,
            )
        return ipb.ImportEntitiesResponse(result=self._finish(outcome, batches.headers))


def _options_first(requests: Iterator[Any]) -> Any:
    """The first message of an upload stream, which must carry the options."""
    first = next(requests, None)
    if first is None or first.WhichOneof("payload") != "options":
        raise InvalidArgument("first message must be options", field="options")
    return first
