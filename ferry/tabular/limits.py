"""Byte caps on uploaded files, enforced while reading so a huge upload is refused early."""

from __future__ import annotations

import io
from typing import IO

from ferry.errors import ResourceExhausted


class CappedReader(io.RawIOBase):
    """A read-only view of `src` that raises ResourceExhausted after `max_bytes`."""

    def __init__(self, src: IO[bytes], max_bytes: int) -> None:
        self._src = src
        self._left = max_bytes
        self._max = max_bytes

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self._src.read(len(buffer))
        if len(data) > self._left:
            raise ResourceExhausted(
                f"file is larger than the {self._max:,}-byte limit", field="file"
            )
        self._left -= len(data)
        buffer[: len(data)] = data
        return len(data)
