"""A semester's bundle as a file in a bundle format, produced as <= 1 MiB pieces with
offsets and a final sha256 (what DownloadSession sends)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator, Iterator
from contextlib import closing
from typing import IO, Any, cast

from sqlalchemy.engine import Engine

from ferry import plugins
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Event
from ferry.bundle.formats.common import bundle_filename
from ferry.bundle.pipe import chunks
from ferry.bundle.scan import SessionRequest, check, semester_exists, snapshot
from ferry.datasets.spec import Dataset
from ferry.errors import NotFound
from ferry.rpc.files import CHUNK_BYTES, file_chunks
from ferry.v1 import bundle_pb2

GROUP = "ferry.bundle_formats"
DEFAULT_FORMAT = "json"
EVENT_BATCH = 2000
# Batches of rows fetched ahead of the writer (session_events' read_ahead): the database
# computes the next rows while the format writes the last ones (issue 27).
FETCH_AHEAD = 3


def bundle_format(name: str) -> Any:
    """The bundle format plugin `name` (default json); InvalidArgument lists the known."""
    return plugins.from_request(GROUP, name or DEFAULT_FORMAT, "bundle_format")


def download_session(
    engine: Engine,
    ds: Dataset,
    req: SessionRequest,
    format_name: str = "",
    now: dt.datetime | None = None,
) -> Iterator[bundle_pb2.FileChunk]:
    """The bundle of `req` as a file in `format_name`: pieces of at most 1 MiB, the first
    naming the file, the last carrying the whole file's sha256.

    Raises InvalidArgument (bad request or format) and NotFound (unknown semester) before
    the first piece.
    """
    fmt = bundle_format(format_name)
    check(ds, req)
    with snapshot(engine) as conn:  # an unknown semester is NotFound before any byte
        if not req.whole and not semester_exists(conn, ds, req.semester):
            raise NotFound(f"{ds.scope_name} {req.semester!r} does not exist", field=ds.scope_name)
    now = now or dt.datetime.now(dt.UTC)
    filename = bundle_filename(req.semester or f"{ds.name}-{req.scope}", fmt.extension, now)

    # A writer that takes records encoded by the database gets them so (JsonLines).
    lines = bool(getattr(fmt, "writes_lines", False))

    def write(out: IO[bytes]) -> None:
        # closing(): a stopped download releases its snapshot now, not at collection.
        events = session_events(engine, ds, req, now, FETCH_AHEAD, lines)
        with closing(cast(Generator[Event], events)) as ev:
            fmt.write(ev, out)

    yield from file_chunks(chunks(write, CHUNK_BYTES), filename, fmt.content_type)
