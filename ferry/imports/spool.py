"""Uploads written to a temporary file while they arrive, counted against a size limit.

Readers of xlsx and tar.gz need seekable input, and nothing may hold a whole upload in
memory, so every upload lands on disk first. The file is anonymous (unlinked at once on
POSIX), so it disappears however the import ends.

A json bundle is read as a pure stream, so its import may read the spool while the upload
still arrives (`Spool.follow`): the reader waits for what has not arrived yet, and sees the
end of the file only once the whole upload has arrived and passed its checks.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from ferry.errors import DataLoss, InvalidArgument, ResourceExhausted


def over_limit(limit: int) -> ResourceExhausted:
    """The error for an upload larger than `limit` bytes."""
    return ResourceExhausted(
        f"the upload is larger than the limit of {limit:,} bytes "
        "(imports.max_upload_bytes, FERRY_IMPORTS_MAX_UPLOAD_BYTES)"
    )


class Spool:
    """A temporary file that counts and hashes what is written to it.

    `write` raises ResourceExhausted as soon as the total passes `limit`, before the
    chunk is stored, so an oversized upload is refused while it streams. The writer says
    when the upload has ended (`end`), so readers that `follow` it know when to stop.
    """

    def __init__(self, limit: int, folder: Path | None = None) -> None:
        self.limit = limit
        self.size = 0
        self._sha = hashlib.sha256()
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
        # Closed by close()/__exit__; the file is anonymous, so nothing outlives it.
        self.file: IO[bytes] = tempfile.TemporaryFile(  # noqa: SIM115
            prefix="ferry-import-", dir=folder
        )
        self._arrival = threading.Condition()
        self._stored = 0  # bytes written through to the file (what followers may read)
        self._followed = False
        self._ended = False
        self._error: BaseException | None = None

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise over_limit(self.limit)
        self._sha.update(data)
        self.file.write(data)
        with self._arrival:
            if self._followed:
                self.file.flush()  # followers read the file itself, beneath its buffer
            self._stored += len(data)
            self._arrival.notify_all()

    def end(self, error: BaseException | None = None) -> None:
        """Nothing more will be written: the upload arrived whole (and passed its checks),
        or it failed with `error`. Followers then read to the end, or raise `error`."""
        with self._arrival:
            self._ended = True
            self._error = error
            self._arrival.notify_all()

    def arrived_sha256(self, wait: bool = True) -> str:
        """The hex sha256 of the whole upload once it has ended, waiting for that; with
        wait=False, "" while it still arrives. Raises the upload's error if it failed."""
        with self._arrival:
            while wait and not self._ended:
                self._arrival.wait()
            if self._error is not None:
                raise self._error
            return self.sha256 if self._ended else ""

    def follow(self) -> SpoolReader:
        """A reader of the file from its start that keeps up with the writer."""
        with self._arrival:
            self._followed = True
            self.file.flush()
        return SpoolReader(self)

    def _read_at(self, pos: int, size: int, linger: float) -> bytes:
        """Up to `size` bytes from `pos` (all, when size < 0) for a follower: waits until
        they are stored or the upload ended; with some there, takes what there is after
        `linger` seconds. b"" only at the end of a whole upload; raises the error of a
        failed one."""
        deadline: float | None = None
        with self._arrival:
            while True:
                if self._error is not None:
                    raise self._error
                if self.file.closed:
                    raise ValueError("read from a closed upload spool")
                there = self._stored - pos
                if self._ended or (0 <= size <= there):
                    break
                if there <= 0 or size < 0 or linger <= 0:
                    self._arrival.wait()
                    continue
                now = time.monotonic()
                if deadline is None:
                    deadline = now + linger
                elif now >= deadline:
                    break
                self._arrival.wait(deadline - now)
            # pread leaves the writer's file position alone; under the lock, so the file
            # cannot close meanwhile.
            n = there if size < 0 else min(size, there)
            parts = []
            while n > 0:
                data = os.pread(self.file.fileno(), n, pos)
                if not data:  # cannot happen: what was counted was written through
                    raise OSError(f"the upload's spool file ends at {pos}")
                parts.append(data)
                pos += len(data)
                n -= len(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    @property
    def sha256(self) -> str:
        """Hex sha256 of everything written so far."""
        return self._sha.hexdigest()

    def rewind(self) -> IO[bytes]:
        """The file, flushed and positioned at its start, for a reader."""
        self.file.flush()
        self.file.seek(0)
        return self.file

    def close(self) -> None:
        with self._arrival:  # not while a follower reads
            self.file.close()
            self._arrival.notify_all()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class SpoolReader(io.RawIOBase):
    """Reads a Spool from its start while it is still being written (Spool.follow).

    `read(n)` returns data as it arrives: n bytes once they are there, or after LINGER
    seconds what there is (at least one byte), so a reader that caught up neither spins
    on tiny pieces nor waits on a sender that paused. It returns b"" only at the end of an
    upload that ended whole, and raises the upload's error once it failed, so a truncated
    upload never looks like a complete file. It reads with os.pread, so it never moves
    the writer's file position.
    """

    LINGER = 0.05

    def __init__(self, spool: Spool) -> None:
        super().__init__()
        self._spool = spool
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data = self._spool._read_at(self._pos, -1 if size is None else size, self.LINGER)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


class FileUpload:
    """FileChunk messages in order -> a Spool; checks offsets and the final sha256."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.filename = ""
        self._claimed_sha = ""

    def add(self, data: bytes, offset: int, filename: str = "", sha256: str = "") -> None:
        """Append one chunk. A non-zero offset must equal the bytes received so far."""
        if offset and offset != self.spool.size:
            raise InvalidArgument(
                f"file_chunk.offset is {offset} but {self.spool.size} bytes were received "
                "before it (chunks lost or out of order)",
                field="file_chunk.offset",
            )
        if filename and not self.filename:
            self.filename = filename
        self.spool.write(data)
        if sha256:
            self._claimed_sha = sha256.lower()

    def finish(self) -> str:
        """The upload's hex sha256; DataLoss when the sender's sha256 disagrees."""
        actual = self.spool.sha256
        if self._claimed_sha and self._claimed_sha != actual:
            raise DataLoss(
                f"the uploaded file's sha256 is {actual} but the sender's last chunk says "
                f"{self._claimed_sha}: the file was damaged on the way",
                field="file_chunk.sha256",
            )
        if self.spool.size == 0:
            raise InvalidArgument("the uploaded file is empty", field="file_chunk")
        return actual

    @property
    def marked(self) -> bool:
        """Whether the sender's last chunk carried the file's sha256 (checked by finish):
        the mark that the upload ended because it was whole."""
        return bool(self._claimed_sha)
