"""ImportSession of a json bundle file while it still arrives, on both backends: the
upload's own failures (sha256, size limit, a cancelled call) still import nothing and are
not recorded, a bad bundle is refused before the upload is over, and the import's record
carries the sha256 of the whole file."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import grpc
import orjson
import pytest

from ferry.app import App
from ferry.errors import Cancelled, FerryError, InvalidArgument
from ferry.imports import convert, detect, upload
from ferry.rpc.filters import RpcCall, _current
from ferry.v1 import bundle_pb2, import_pb2
from tests.imports.helpers import CHUNK, download, fingerprint, import_file, seed_small, serving

UPLOAD_THREAD = upload.UPLOAD_THREAD


def _requests(
    data: bytes,
    filename: str = "b.json",
    sha256: str = "",
    hold_at: int | None = None,
    held: threading.Event | None = None,
    release: threading.Event | None = None,
) -> Iterator[import_pb2.ImportSessionRequest]:
    """Options, then `data` in chunks (filename on the first, `sha256` on the last).
    From offset `hold_at` on, the sender sets `held` and waits for `release` first."""
    yield import_pb2.ImportSessionRequest(options=import_pb2.ImportOptions())
    for offset in range(0, len(data), CHUNK):
        if hold_at is not None and offset >= hold_at:
            assert held is not None and release is not None
            held.set()
            release.wait(30)
            hold_at = None
        chunk = bundle_pb2.FileChunk(data=data[offset : offset + CHUNK], offset=offset)
        if offset == 0:
            chunk.filename = filename
        if offset + CHUNK >= len(data) and sha256:
            chunk.sha256 = sha256
        yield import_pb2.ImportSessionRequest(file_chunk=chunk)


def _listed(stubs: Any) -> list[Any]:
    req = import_pb2.ListImportsRequest()
    return list(stubs.imports.ListImports(req, metadata=stubs.md).imports)


def _upload_threads_ended(timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(t.name == UPLOAD_THREAD for t in threading.enumerate()):
            return True
        time.sleep(0.05)
    return False


def test_imported_record_carries_the_sha256_of_the_whole_file(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
        sha = hashlib.sha256(data).hexdigest()
        dry = import_file(stubs, data, "fall.json", dry_run=True)
        done = stubs.imports.ImportSession(
            _requests(data, "fall.json", sha256=sha), metadata=stubs.md, timeout=60
        ).result
        got = {
            r.id: stubs.imports.GetImport(
                import_pb2.GetImportRequest(import_id=r.id), metadata=stubs.md
            ).result
            for r in (dry, done)
        }
    assert dry.status == import_pb2.IMPORT_STATUS_DRY_RUN
    assert done.status == import_pb2.IMPORT_STATUS_COMPLETED
    assert dry.source_sha256 == done.source_sha256 == sha
    assert [r.source_sha256 for r in got.values()] == [sha, sha]
    assert _upload_threads_ended()


def test_wrong_sha256_of_a_valid_bundle_is_data_loss_and_imports_nothing(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
        # A complete, valid bundle into an empty database would import: only the
        # upload's own check can refuse it.
        doc = orjson.loads(data)
        assert doc["trailer"]["total_records"] > 0
        before = fingerprint(empty_url)
        wrong = hashlib.sha256(b"another file").hexdigest()
        with pytest.raises(grpc.RpcError) as e:
            stubs.imports.ImportSession(
                _requests(data, sha256=wrong), metadata=stubs.md, timeout=60
            )
        listed = _listed(stubs)
    assert e.value.code() == grpc.StatusCode.DATA_LOSS
    assert "damaged" in (e.value.details() or "")
    assert fingerprint(empty_url) == before and listed == []
    assert _upload_threads_ended()


def test_upload_passing_the_limit_late_is_resource_exhausted_and_imports_nothing(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
    limit = len(data) - 10  # the import has read nearly all of it when the limit passes
    with serving(make_app(empty_url, FERRY_IMPORTS_MAX_UPLOAD_BYTES=limit)) as stubs:
        before = fingerprint(empty_url)
        with pytest.raises(grpc.RpcError) as e:
            import_file(stubs, data, "big.json")
        listed = _listed(stubs)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"{limit:,} bytes" in (e.value.details() or "")
    assert fingerprint(empty_url) == before and listed == []
    assert _upload_threads_ended()


def test_client_cancelling_mid_upload_imports_nothing_and_the_server_goes_on(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    held, release = threading.Event(), threading.Event()
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
        before = fingerprint(empty_url)
        call = stubs.imports.ImportSession.future(
            _requests(data, hold_at=len(data) // 2, held=held, release=release),
            metadata=stubs.md,
            timeout=60,
        )
        try:
            assert held.wait(30)
            time.sleep(0.5)  # the server has the first half and reads it
            call.cancel()
        finally:
            release.set()
        with pytest.raises(grpc.FutureCancelledError):
            call.result()
        assert _upload_threads_ended()
        listed = _listed(stubs)
        assert fingerprint(empty_url) == before and listed == []
        again = import_file(stubs, data, "again.json")
    assert again.status == import_pb2.IMPORT_STATUS_COMPLETED


def _refused_while_sending(stubs: Any, data: bytes, hold_at: int) -> tuple[grpc.RpcError, float]:
    """The error of uploading `data` whose sender pauses at `hold_at` until the call has
    ended and the server's receiving thread with it (at most 30 s), and how long the call
    took."""
    held, release = threading.Event(), threading.Event()
    clock = time.monotonic()
    try:
        with pytest.raises(grpc.RpcError) as e:
            stubs.imports.ImportSession(
                _requests(data, hold_at=hold_at, held=held, release=release),
                metadata=stubs.md,
                timeout=60,
            )
        took = time.monotonic() - clock
        assert held.is_set() and not release.is_set()  # the upload was not over
        # The server stopped receiving, though its client neither sent nor closed.
        assert _upload_threads_ended()
    finally:
        release.set()
    return e.value, took


def test_bad_bundle_is_refused_while_the_client_is_still_sending(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
        before = fingerprint(empty_url)
        doc = orjson.loads(data)
        # Indented documents go to the precise parser, which reads them as they come (the
        # fast one takes a megabyte, or the end, before it judges the metadata).
        # A newer format version: refused from the metadata, before the import starts.
        newer = orjson.dumps(
            {**doc, "metadata": {**doc["metadata"], "format_version": 99}},
            option=orjson.OPT_INDENT_2,
        )
        err, took = _refused_while_sending(stubs, newer, hold_at=2 * CHUNK)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert "99" in (err.details() or "") and took < 10
        assert _listed(stubs) == []
        # A broken record deep in the document: refused once the parser reaches it,
        # though the rest never arrives.
        doc["students"][3] = 42
        broken = orjson.dumps(doc, option=orjson.OPT_INDENT_2)
        at = broken.index(b"42", broken.index(b'"students"'))
        hold_at = (at // CHUNK + 2) * CHUNK
        assert hold_at < len(broken)
        err, took = _refused_while_sending(stubs, broken, hold_at=hold_at)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert "students record 3 must be an object" in (err.details() or "") and took < 10
        listed = _listed(stubs)
    # A failed import is recorded as ever; its file never arrived whole, so no sha256.
    assert [(r.status, r.source_sha256) for r in listed] == [(import_pb2.IMPORT_STATUS_FAILED, "")]
    assert fingerprint(empty_url) == before


def test_truncated_file_whose_client_finished_sending_is_refused_and_recorded(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
        before = fingerprint(empty_url)
        half = data[: len(data) // 2]
        with pytest.raises(grpc.RpcError) as e:
            stubs.imports.ImportSession(_requests(half), metadata=stubs.md, timeout=60)
        listed = _listed(stubs)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert "truncated" in (e.value.details() or "")
    # The client ended its stream: a failed import of what it sent, recorded as ever.
    sha = hashlib.sha256(half).hexdigest()
    assert [(r.status, r.source_sha256) for r in listed] == [(import_pb2.IMPORT_STATUS_FAILED, sha)]
    assert fingerprint(empty_url) == before


class _CallEndsAfterTheStream:
    """The part of a grpc.ServicerContext the upload uses, for a call that ends `delay`
    seconds after its request stream (None: never; the client half-closed and waits),
    cancelled by its client or by its deadline. 0.05 plays a cancel where gRPC ends the
    request stream first and marks the call cancelled a moment later (about one real
    cancel in ten)."""

    def __init__(self, delay: float | None, by_deadline: bool) -> None:
        self.delay = delay
        self.by_deadline = by_deadline
        self.ended = threading.Event()
        self.callbacks: list[Callable[[], None]] = []

    def add_callback(self, callback: Callable[[], None]) -> bool:
        self.callbacks.append(callback)
        return True

    def is_active(self) -> bool:
        return not self.ended.is_set()

    def time_remaining(self) -> float | None:
        if self.by_deadline:
            return 0.0 if self.ended.is_set() else 30.0
        return None

    def _end(self) -> None:
        self.ended.set()
        for callback in self.callbacks:
            callback()

    def requests(self, data: bytes) -> Iterator[import_pb2.ImportSessionRequest]:
        for offset in range(0, len(data), CHUNK):
            chunk = bundle_pb2.FileChunk(data=data[offset : offset + CHUNK], offset=offset)
            yield import_pb2.ImportSessionRequest(file_chunk=chunk)
        if self.delay is not None:
            threading.Timer(self.delay, self._end).start()


@pytest.mark.parametrize("filename", ["b.json", "b.jsonl"])  # read as it arrives; spooled
@pytest.mark.parametrize(
    ("delay", "by_deadline", "cancelled"),
    [(0.05, False, True), (0.05, True, False), (None, False, False)],
    ids=["cancelled", "deadline", "half-closed"],
)
def test_a_call_ending_with_its_upload_is_a_cancel_and_not_recorded(
    empty_url: str,
    make_app: Callable[..., App],
    filename: str,
    delay: float | None,
    by_deadline: bool,
    cancelled: bool,
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url)
    with serving(app) as stubs:
        data = download(stubs, fmt=filename.rpartition(".")[2])
        before = fingerprint(empty_url)
        context = _CallEndsAfterTheStream(delay, by_deadline)
        call = RpcCall(cast(Any, None), cast(grpc.ServicerContext, context), {}, "test")
        options = convert.merge_options(import_pb2.ImportOptions(filename=filename))
        fmt = detect.bundle_format("", filename)
        run = upload.import_arriving if filename.endswith(".json") else upload.import_spooled
        token = _current.set(call)
        try:
            with pytest.raises(FerryError) as e:
                run(app, context.requests(data[: len(data) // 2]), app.dataset(), fmt, options)
        finally:
            _current.reset(token)
        listed = _listed(stubs)
    assert fingerprint(empty_url) == before
    if cancelled:
        assert isinstance(e.value, Cancelled) and "cancelled the upload" in e.value.message
        assert listed == []
    else:  # the client finished sending (its deadline ended the call): recorded
        assert isinstance(e.value, InvalidArgument) and "truncated" in e.value.message
        assert [r.status for r in listed] == [import_pb2.IMPORT_STATUS_FAILED]
    assert _upload_threads_ended()


def _entity_requests(
    rows: list[str], context: _CallEndsAfterTheStream, sha256: str = ""
) -> Iterator[import_pb2.ImportEntitiesRequest]:
    yield import_pb2.ImportEntitiesRequest(
        options=import_pb2.ImportEntitiesOptions(entity="students", filename="students.csv")
    )
    data = "".join(rows).encode()
    chunk = bundle_pb2.FileChunk(data=data, offset=0, filename="students.csv", sha256=sha256)
    yield import_pb2.ImportEntitiesRequest(file_chunk=chunk)
    if context.delay is not None:
        threading.Timer(context.delay, context._end).start()


@pytest.mark.parametrize("marked", [False, True], ids=["unmarked", "sha256-on-last-chunk"])
def test_a_csv_cut_off_at_a_line_by_a_cancel_commits_nothing(
    empty_url: str, make_app: Callable[..., App], marked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A csv file cut off between two lines parses whole. When its client cancelled
    (gRPC ended the stream a moment before the call), the import commits nothing; an
    upload whose last chunk carried the file's sha256 was whole and is imported."""
    seed_small(empty_url)
    app = make_app(empty_url)
    rows = [
        "student_id,first_name,last_name,email,year_level,status\n",
        "CUT1,Ελένη,Παππά,eleni@example.org,2,active\n",
        "CUT2,Νίκος,Ρήγας,nikos@example.org,3,active\n",
    ]
    sha = hashlib.sha256("".join(rows).encode()).hexdigest() if marked else ""
    context = _CallEndsAfterTheStream(0.05, by_deadline=False)
    run_import = upload.run_import

    def import_while_the_cancel_shows(*args: Any, **kwargs: Any) -> Any:
        assert context.ended.wait(10)
        return run_import(*args, **kwargs)

    monkeypatch.setattr(upload, "run_import", import_while_the_cancel_shows)
    with serving(app) as stubs:
        before = fingerprint(empty_url)
        call = RpcCall(cast(Any, None), cast(grpc.ServicerContext, context), {}, "test")
        token = _current.set(call)
        try:
            if marked:
                outcome, _ = upload.import_entities(app, _entity_requests(rows, context, sha), "t")
                assert outcome.status.name == "COMPLETED", outcome.errors
            else:
                with pytest.raises(Cancelled):
                    upload.import_entities(app, _entity_requests(rows, context), "t")
        finally:
            _current.reset(token)
        listed = _listed(stubs)
    if marked:
        assert [r.status for r in listed] == [import_pb2.IMPORT_STATUS_COMPLETED]
        assert fingerprint(empty_url) != before
    else:
        assert fingerprint(empty_url) == before and listed == []
