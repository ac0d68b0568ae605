"""Receiving an upload and importing it: the logic behind ImportSession and ImportEntities.

Uploads are spooled to disk under the size limit, then handed to the merge engine. A json
bundle file, read as a pure stream, is imported while it still arrives: a thread receives
it into the spool and the import reads behind it. The servicer (services/import) only
translates gRPC to these functions and back.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import IO, Any, NamedTuple, cast

from ferry.app import App
from ferry.bundle.chunks import chunks_to_events
from ferry.bundle.formats.base import BundleLimits, RawReading
from ferry.bundle.formats.json import JsonBundle
from ferry.datasets.spec import Dataset
from ferry.db import tenant
from ferry.errors import Cancelled, InvalidArgument, PermissionDenied
from ferry.imports import convert, detect
from ferry.imports.backup import before_import
from ferry.imports.spool import FileUpload, Spool
from ferry.imports.tabular import EntityRows, find_entity
from ferry.imports.typed import TypedUpload, replay
from ferry.merge import ArrivingSha, ImportOutcome, MergeOptions, field_rules, run_import
from ferry.merge.model import ChangeLimit
from ferry.merge.planfile import plan_key
from ferry.merge.run import Backup
from ferry.rpc.filters import current_call
from ferry.tabular.base import ReadLimits
from ferry.v1 import import_pb2 as ipb
from ferry.v1 import options_pb2 as opb

UPLOAD_THREAD = "import-upload"  # the name of the thread that receives an arriving upload


def backup_for(app: App, ds: Dataset, requested_by: str) -> Backup:
    """Where an import writes its backup_before: the export storage plugin."""
    return before_import(app.engine, ds, app.storage(), requested_by)


# --- plans and change limits (issue 29) -------------------------------------------
def may_mass_change(allow: bool) -> None:
    """PERMISSION_DENIED for allow_mass_change from a caller below admin."""
    if allow:
        call = current_call()
        if call is not None and call.role and call.role < opb.ROLE_ADMIN:
            raise PermissionDenied(
                "only an admin may set allow_mass_change", field="options.allow_mass_change"
            )


def with_settings(app: App, options: MergeOptions) -> MergeOptions:
    """The options with the server's change limits (imports.change_limits) and
    three-way settings (imports.keep_local_edits, imports.conflicts); an
    allow_mass_change from a caller below admin is PERMISSION_DENIED, before the upload.
    (With auth turned off, on a laptop, the one user may set it.)"""
    may_mass_change(options.allow_mass_change)
    limits = tuple(
        ChangeLimit(c.entity, c.action, c.max_percent, c.scope)
        for c in app.settings.imports.change_limits
    )
    imports = app.settings.imports
    call = current_call()
    return dataclasses.replace(
        options,
        change_limits=limits,
        keep_local_edits=imports.keep_local_edits,
        conflicts=tuple(sorted(imports.conflicts.items())),
        approval_required=imports.approval == "required",
        # Admins (and the one user of a laptop with auth off) need no approval.
        approver=call is None or not call.role or call.role >= opb.ROLE_ADMIN,
        plan_expiry_minutes=imports.plan_expiry_minutes,
    )


# -----------------------------------------------------------------------------------


def plan_sink(app: App) -> Callable[[str], AbstractContextManager[IO[bytes]]]:
    """Where a dry run with plan_records writes every record's decision: the storage
    plugin, under plan_key(import id) (DownloadPlan reads it)."""
    storage = app.storage()
    return lambda import_id: storage.writer(plan_key(import_id))


def upload_limits(app: App) -> BundleLimits:
    """The caps on an uploaded bundle's payload (BundleLimits.for_upload)."""
    return BundleLimits.for_upload(app.settings.imports.max_upload_bytes)


def spool_for(app: App) -> Spool:
    s = app.settings
    folder = s.path(s.imports.spool_dir) if s.imports.spool_dir else None
    return Spool(s.imports.max_upload_bytes, folder)


def import_session(
    app: App, requests: Iterator[ipb.ImportSessionRequest], requested_by: str
) -> ImportOutcome:
    """ImportSession: options first, then a bundle file or typed bundle chunks."""
    requests = iter(requests)
    options = options_first(requests).options
    ds = app.dataset(options.dataset)
    # Bad options fail before the upload, not after it.
    merge_options = with_settings(app, convert.merge_options(options))
    fmt: Any = None
    if options.bundle_format or options.filename:  # None: told by the content, later
        fmt = detect.named_bundle_format(options.bundle_format, options.filename)
    first = next(requests, None)
    if first is not None:
        requests = itertools.chain([first], requests)
    streamed = streamed_json(fmt, first, merge_options)
    if streamed is not None:
        return import_arriving(app, requests, ds, *streamed, requested_by=requested_by)
    return import_spooled(app, requests, ds, fmt, merge_options, requested_by=requested_by)


def import_spooled(
    app: App,
    requests: Iterator[ipb.ImportSessionRequest],
    ds: Dataset,
    fmt: Any,
    merge_options: MergeOptions,
    requested_by: str = "",
) -> ImportOutcome:
    """Receive the whole upload (a file in `fmt`, None when its first chunk names it,
    or typed chunks) into a spool, then import it."""
    with spool_for(app) as spool:
        ended = CallEnd()
        kind, source_sha, filename, marked = receive_bundle(requests, spool)
        ended.stream_ended(marked)
        if kind == "file_chunk":
            if fmt is None:  # the name came with the first chunk, or the content tells
                filename = merge_options.filename or filename
                fmt = detect.bundle_format("", filename, content=spool.rewind())
                merge_options = dataclasses.replace(merge_options, filename=filename)
            if isinstance(fmt, RawReading):  # runs of records go to the database unparsed
                rules = field_rules(ds, app.engine.dialect)
                events = fmt.read_raw(spool.rewind(), upload_limits(app), rules)
            else:
                events = fmt.read(spool.rewind(), upload_limits(app))
        else:
            events = chunks_to_events(replay(spool.rewind()))
        return run_import(
            app.engine,
            ds,
            events,
            merge_options,
            requested_by=requested_by,
            source_sha256=ended.arrived(source_sha),
            backup=backup_for(app, ds, requested_by),
            plan_sink=plan_sink(app),
        )


def import_arriving(
    app: App,
    requests: Iterator[ipb.ImportSessionRequest],
    ds: Dataset,
    fmt: JsonBundle,
    merge_options: MergeOptions,
    requested_by: str = "",
) -> ImportOutcome:
    """Import a json bundle file while it still arrives: a thread spools the upload
    and the import reads the spool behind it. The upload's checks (offsets, size
    limit, sha256) fail the import as they fail a spooled one, and nothing is kept."""
    upload = Arriving(spool_for(app), requests, receive_bundle)
    try:
        rules = field_rules(ds, app.engine.dialect)
        reader = cast(IO[bytes], upload.reader)
        return run_import(
            app.engine,
            ds,
            fmt.read_raw(reader, upload_limits(app), rules),
            merge_options,
            requested_by=requested_by,
            source_sha256=upload.arrived_sha256,
            backup=backup_for(app, ds, requested_by),
            plan_sink=plan_sink(app),
        )
    finally:
        upload.close()


class Received(NamedTuple):
    """An upload that ended: its payload kind, sha256, filename (file chunks), and
    whether it carried its end mark (see CallEnd)."""

    kind: str
    sha256: str
    filename: str
    marked: bool


def receive_bundle(requests: Iterator[ipb.ImportSessionRequest], spool: Spool) -> Received:
    """Spool every file_chunk or bundle_chunk."""
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
        return Received(kind, files.finish(), files.filename, files.marked)
    return Received(kind, typed.finish(), "", True)  # finish() refuses a stream without trailer


def import_entities(
    app: App, requests: Iterator[ipb.ImportEntitiesRequest], requested_by: str
) -> tuple[ImportOutcome, dict[str, str]]:
    """ImportEntities: options, then a csv/xlsx file of one entity. Returns the outcome
    and the file's header mapping (for error messages naming columns)."""
    requests = iter(requests)
    options = options_first(requests).options
    ds = app.dataset()
    entity = find_entity(ds, options.entity)
    may_mass_change(options.allow_mass_change)  # before the upload
    reader: Any = None
    if options.format or options.filename:  # bad options fail before the upload
        reader = detect.tabular_reader(options.format, options.filename)
    with spool_for(app) as spool:
        ended = CallEnd()
        files = FileUpload(spool)
        for req in requests:
            if req.WhichOneof("payload") != "file_chunk":
                raise InvalidArgument(
                    "after options, only file_chunk messages may follow", field="options"
                )
            c = req.file_chunk
            files.add(c.data, c.offset, c.filename, c.sha256)
        source_sha = files.finish()
        ended.stream_ended(files.marked)
        filename = options.filename or files.filename
        if reader is None:
            reader = detect.tabular_reader("", filename)
        merge_options = with_settings(
            app, convert.entity_options(options, reader.name, filename, ds.name)
        )
        rows = reader.read(spool.rewind(), ReadLimits())
        batches = EntityRows(
            entity,
            rows,
            options.column_mapping,
            app.settings.imports.batch_size,
            typed_cells=getattr(reader, "typed_cells", False),
        )
        outcome = run_import(
            app.engine,
            ds,
            batches,
            merge_options,
            requested_by=requested_by,
            source_sha256=ended.arrived(source_sha),
            entity=entity.name,
            backup=backup_for(app, ds, requested_by),
            plan_sink=plan_sink(app),
        )
    return outcome, batches.headers


def streamed_json(
    fmt: Any, first: ipb.ImportSessionRequest | None, options: MergeOptions
) -> tuple[JsonBundle, MergeOptions] | None:
    """(format, options) when the upload can be imported while it arrives: a file of
    the json bundle format (the one read as a pure stream; xlsx and tar.gz need the whole
    file) and no idempotency key (its check needs the file's sha256 first). None
    otherwise, and when the format is not known from the first chunk either."""
    if first is None or first.WhichOneof("payload") != "file_chunk" or options.idempotency_key:
        return None
    if fmt is None:  # the name comes with the first chunk
        filename = first.file_chunk.filename
        if not filename:
            return None
        try:
            fmt = detect.bundle_format("", filename)
        except InvalidArgument:
            return None  # refused once the upload is in, as ever
        options = dataclasses.replace(options, filename=filename)
    return (fmt, options) if isinstance(fmt, JsonBundle) else None


class CallEnd:
    """Tells an upload its client cut off from one that arrived whole, by the call's state.

    A client that cancels can look, for a moment, like one that finished sending: gRPC
    may end the request stream (as for a client that half-closed) before it marks the
    call cancelled (about one cancel in ten on a loaded machine). Two things tell them
    apart, neither a comparison of timestamps:

    - The upload's own end mark. FileChunk.sha256 is set on the last chunk only, and a
      typed bundle stream ends with its trailer: an upload that carried its mark and
      verified is whole, whatever becomes of the call afterwards.
    - The call's state. An upload without the mark whose import failed waits (at most
      SETTLE seconds) for gRPC's termination callback. A call that ended before its
      deadline was cancelled by its client: `check` raises Cancelled and the failed
      import is not recorded. One still active (the client half-closed and awaits the
      answer), or ended by its deadline, is a failed import of what was sent, recorded.
      An unmarked import that is about to commit looks at the call once more, without
      waiting (its stream ended long before): a cut-off csv file can parse whole, and
      a cancelled call commits nothing.

    Imports that succeed never wait; neither do failed ones that carried the mark.
    """

    # How long a failed, unmarked upload waits for gRPC to report the call's end. A
    # cancel shows within milliseconds (50 ms measured on a busy 2-core machine).
    SETTLE = 0.5  # seconds

    def __init__(self) -> None:
        self._over = threading.Event()
        self._stream_ended = False
        self._marked = False
        self._by_deadline = False
        self._context: Any = None
        call = current_call()
        if call is not None:
            self._context = call.context
            if not call.context.add_callback(self._call_ended):
                self._call_ended()  # the call had ended already

    def _call_ended(self) -> None:
        remaining = self._context.time_remaining() if self._context is not None else None
        self._by_deadline = remaining is not None and remaining <= 0
        self._over.set()

    def stream_ended(self, marked: bool) -> None:
        """The request stream ended: the upload seems whole. `marked`: it carried its
        end mark (a verified last-chunk sha256, or a typed bundle's trailer)."""
        self._stream_ended = True
        self._marked = marked

    def check(self, settle: bool = True) -> None:
        """Raise Cancelled if the client cut the upload off (see the class). `settle`:
        wait for the call's end to show (a failed import); without, look at the call as
        it is now (an import about to commit, long after the stream ended)."""
        if not self._stream_ended or self._marked or self._context is None:
            return
        if self._context.is_active() and not (settle and self._over.wait(self.SETTLE)):
            return
        self._over.wait(self.SETTLE)  # is_active() may lead the termination callback
        if not self._by_deadline:
            raise Cancelled("the client cancelled the upload; nothing was imported")

    def arrived(self, sha256: str) -> ArrivingSha:
        """The sha256 of an upload that is in whole, as an ArrivingSha for run_import,
        which asks for it before it commits (wait=True) and after the import failed
        (wait=False): both `check` first."""

        def sha(wait: bool = True) -> str:
            self.check(settle=not wait)
            return sha256

        return sha


class _ImportOver(Exception):
    """The import ended before its upload did: the receiving thread stops."""


class Arriving:
    """A file upload a thread receives into `spool` while the import reads `reader`.

    The thread runs `receive` (which spools the file chunks and checks them), then ends
    the spool: whole, or failed with the error. When the import ends first (a bad
    bundle), the thread stops at the next message; one waiting for a client that sends
    nothing more ends with the RPC. Whichever of the two is done last closes the spool.
    """

    def __init__(
        self,
        spool: Spool,
        requests: Iterator[ipb.ImportSessionRequest],
        receive: Callable[[Iterator[ipb.ImportSessionRequest], Spool], Received],
    ) -> None:
        self.spool = spool
        self.reader = spool.follow()
        self._over = threading.Event()
        self._lock = threading.Lock()
        self._holders = 2  # the thread and the import
        self._ended = CallEnd()
        self.thread = threading.Thread(
            target=tenant.carried(self._run),
            args=(requests, receive),
            name=UPLOAD_THREAD,
            daemon=True,
        )
        self.thread.start()

    def _run(
        self,
        requests: Iterator[ipb.ImportSessionRequest],
        receive: Callable[[Iterator[ipb.ImportSessionRequest], Spool], Received],
    ) -> None:
        try:
            received = receive(self._until_over(requests), self.spool)
        except BaseException as e:  # the import reading the spool raises it
            self.spool.end(e)
        else:
            self._ended.stream_ended(received.marked)
            self.spool.end()
        finally:
            self._release()

    def _until_over(
        self, requests: Iterator[ipb.ImportSessionRequest]
    ) -> Iterator[ipb.ImportSessionRequest]:
        for req in requests:
            if self._over.is_set():
                raise _ImportOver
            yield req
        if self._over.is_set():  # the stream ended with the call, not with the upload
            raise _ImportOver

    def arrived_sha256(self, wait: bool = True) -> str:
        """The upload's sha256 (an ArrivingSha for run_import): see CallEnd.arrived."""
        sha = self.spool.arrived_sha256(wait)
        if sha:  # it arrived "whole": about to commit (wait), or the import failed
            self._ended.check(settle=not wait)
        return sha

    def close(self) -> None:
        """The import is over: stop receiving, and let go of the spool."""
        self._over.set()
        self.reader.close()
        self._release()

    def _release(self) -> None:
        with self._lock:
            self._holders -= 1
            last = self._holders == 0
        if last:
            self.spool.close()


def options_first(requests: Iterator[Any]) -> Any:
    """The first message of an upload stream, which must carry the options."""
    first = next(requests, None)
    if first is None or first.WhichOneof("payload") != "options":
        raise InvalidArgument("first message must be options", field="options")
    return first
