"""A file as `FileChunk` messages and back, the one way: chunks of at most `CHUNK_BYTES`,
the first naming the file (and its content type), the last carrying the whole file's
sha256; a file that is empty still makes one chunk, so the receiver always gets the sum.

Services send with `file_chunks`; the CLI receives with `save_chunks` (through a `.part`
file beside the target, renamed into place only when offsets and sha256 agree) or
`write_chunks`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ferry.v1 import bundle_pb2

CHUNK_BYTES = 1024 * 1024


def blocks(f: IO[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    """`f` read to its end in blocks of at most `size` bytes."""
    while data := f.read(size):
        yield data


def file_chunks(
    data: Iterable[bytes],
    filename: str = "",
    content_type: str = "",
    offset: int = 0,
    sha256: str | None = None,
) -> Iterator[bundle_pb2.FileChunk]:
    """FileChunks of `data` (blocks of at most CHUNK_BYTES each) starting at `offset`: the
    first names the file, the last carries `sha256` (the sha256 of the blocks when None,
    for a file sent whole; a resumed download passes the whole file's)."""
    digest = hashlib.sha256() if sha256 is None else None
    pos = offset
    previous: bytes | None = None
    first = True
    for block in data:
        if digest is not None:
            digest.update(block)
        if previous is not None:
            yield _chunk(previous, pos, first, filename, content_type, "")
            pos += len(previous)
            first = False
        previous = block
    total = digest.hexdigest() if digest is not None else sha256 or ""
    yield _chunk(previous or b"", pos, first, filename, content_type, total)


def _chunk(
    data: bytes, offset: int, first: bool, filename: str, content_type: str, sha: str
) -> bundle_pb2.FileChunk:
    chunk = bundle_pb2.FileChunk(data=data, offset=offset, sha256=sha)
    if first:
        chunk.filename, chunk.content_type = filename, content_type
    return chunk


class ChunkError(ValueError):
    """The chunks did not make the file they announced (an offset out of order, a sha256
    missing or not matching); the message says which, in the words of a DATA_LOSS status."""


@dataclass(frozen=True)
class Saved:
    filename: str  # what the first chunk named it
    size: int
    sha256: str


def write_chunks(
    chunks: Iterable[bundle_pb2.FileChunk],
    path: Path,
    progress: Callable[[int], object] | None = None,
) -> Saved:
    """Write `chunks` to `path`, checking that offsets follow each other and that the last
    chunk's sha256 matches; ChunkError otherwise. `path` is removed on any failure (never a
    partial file). `progress(bytes so far)` after each chunk."""
    digest = hashlib.sha256()
    size = 0
    filename = sha = ""
    try:
        with path.open("wb") as f:
            for chunk in chunks:
                if chunk.offset != size:
                    raise ChunkError(
                        f"DATA_LOSS: chunk at offset {chunk.offset}, expected {size}"
                    )
                filename = filename or chunk.filename
                f.write(chunk.data)
                digest.update(chunk.data)
                size += len(chunk.data)
                sha = chunk.sha256 or sha
                if progress is not None:
                    progress(size)
        if not sha or sha != digest.hexdigest():
            raise ChunkError(
                f"DATA_LOSS: the file's sha256 is {digest.hexdigest()}, "
                f"the server sent {sha or 'none'}"
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Saved(filename, size, sha)


def save_chunks(
    chunks: Iterable[bundle_pb2.FileChunk],
    target: Path,
    progress: Callable[[int], object] | None = None,
) -> Saved:
    """`write_chunks` into `target.part`, renamed to `target` once it checks out."""
    part = target.with_name(target.name + ".part")
    saved = write_chunks(chunks, part, progress)
    os.replace(part, target)
    return saved
