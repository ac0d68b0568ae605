"""Uploads written to a temporary file while they arrive, counted against a size limit.

Readers of xlsx and tar.gz need seekable input, and nothing may hold a whole upload in
memory, so every upload lands on disk first. The file is anonymous (unlinked at once on
POSIX), so it disappears however the import ends.
"""

from __future__ import annotations

import hashlib
import tempfile
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
    chunk is stored, so an oversized upload is refused while it streams.
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

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise over_limit(self.limit)
        self._sha.update(data)
        self.file.write(data)

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
        self.file.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


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
