"""Reading a finished export back: resumable chunks, and watching a job's progress."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

from sqlalchemy.engine import Engine

from ferry.db.export_models import COMPLETED, TERMINAL, ExportJob
from ferry.errors import DataLoss, FailedPrecondition, InvalidArgument, OutOfRange
from ferry.export_jobs import store
from ferry.rpc.files import blocks, file_chunks
from ferry.storage import Storage
from ferry.v1 import bundle_pb2


def read_export(
    storage: Storage, job: ExportJob, offset: int = 0, content_type: str = ""
) -> Iterator[bundle_pb2.FileChunk]:
    """The job's file from `offset` on as FileChunks (ferry.rpc.files): the first names the
    file, the last carries its sha256. At least one chunk is produced (empty when offset
    equals the size), so the caller always gets the sha256.

    FailedPrecondition when the job has not completed, InvalidArgument for a negative
    offset, OutOfRange for one past the end, DataLoss when the file is gone or changed.
    """
    if job.status != COMPLETED:
        raise FailedPrecondition(
            f"export job {job.id} is {job.status}; only a completed job has a file"
        )
    if offset < 0:
        raise InvalidArgument(f"offset must not be negative, got {offset}", field="offset")
    size = storage.size(job.storage_key)
    if size is None or size != job.file_size_bytes:
        raise DataLoss(f"the file of export job {job.id} is missing or changed in storage")
    if offset > size:
        raise OutOfRange(f"offset {offset} is past the end of the file ({size} bytes)")
    with storage.open(job.storage_key) as f:
        f.seek(offset)
        yield from file_chunks(blocks(f), job.filename, content_type, offset, job.sha256)


def watch(
    engine: Engine,
    job_id: str,
    active: Callable[[], bool],
    interval: float = 0.2,
    sleep: Callable[[float], object] = time.sleep,
) -> Iterator[ExportJob]:
    """The job now, then again whenever its status or progress changes, until it ends or
    `active()` turns false (the caller left or its deadline passed)."""
    last: tuple[object, ...] | None = None
    while True:
        job = store.get_job(engine, job_id)
        state = (job.status, job.progress_percent, job.processed_records, job.total_records)
        if state != last:
            last = state
            yield job
        if job.status in TERMINAL or not active():
            return
        sleep(interval)
