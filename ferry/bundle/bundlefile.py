"""A semester's bundle as a file in a bundle format, produced as <= 1 MiB pieces with
offsets and a final sha256 (what DownloadSession sends)."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import IO, Any, cast

from sqlalchemy.engine import Engine

from ferry import plugins
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Event
from ferry.bundle.formats.common import bundle_filename
from ferry.bundle.pipe import CHUNK_BYTES, chunks
from ferry.bundle.scan import SessionRequest, check, semester_exists, snapshot
from ferry.datasets.spec import Dataset
from ferry.errors import NotFound

GROUP = "ferry.bundle_formats"
DEFAULT_FORMAT = "json"
EVENT_BATCH = 2000


@dataclass(frozen=True)
class FilePiece:
    data: bytes
    offset: int
    filename: str = ""  # first piece only
    content_type: str = ""  # first piece only
    sha256: str = ""  # last piece only


def bundle_format(name: str) -> Any:
    """The bundle format plugin `name` (default json); InvalidArgument lists the known."""
    return plugins.from_request(GROUP, name or DEFAULT_FORMAT, "bundle_format")


def download_session(
    engine: Engine,
    ds: Dataset,
    req: SessionRequest,
    format_name: str = "",
    now: dt.datetime | None = None,
) -> Iterator[FilePiece]:
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

    def write(out: IO[bytes]) -> None:
        # closing(): a stopped download releases its snapshot now, not at collection.
        with closing(cast(Generator[Event], session_events(engine, ds, req, now))) as events:
            fmt.write(events, out)

    digest = hashlib.sha256()
    offset = 0
    previous: bytes | None = None
    for data in chunks(write, CHUNK_BYTES):
        if previous is not None:
            yield _piece(previous, offset, filename, fmt.content_type)
            offset += len(previous)
        digest.update(data)
        previous = data
    last = previous or b""
    yield _piece(last, offset, filename, fmt.content_type, digest.hexdigest())


def _piece(data: bytes, offset: int, filename: str, ctype: str, sha: str = "") -> FilePiece:
    first = offset == 0
    return FilePiece(data, offset, filename if first else "", ctype if first else "", sha)
