"""The contract of a storage plugin (`ferry.storage`)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import IO, TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ferry.config import Settings


class Storage(Protocol):
    """Files by key. Writes are atomic: a key holds a whole file or nothing."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Storage:
        """The storage configured in `settings` (its plugins.storage.<name> section)."""
        ...

    def writer(self, key: str) -> AbstractContextManager[IO[bytes]]:
        """A file to write `key` into. It becomes visible under `key` only when the block
        ends without an exception; otherwise it is removed (no partial file ever)."""
        ...

    def open(self, key: str) -> IO[bytes]:
        """The file at `key` for reading, seekable (ranged reads). FileNotFoundError if absent."""
        ...

    def size(self, key: str) -> int | None:
        """Size of the file at `key` in bytes, or None when there is none."""
        ...

    def delete(self, key: str) -> int:
        """Remove the file at `key`; returns the bytes freed (0 when it was absent)."""
        ...

    def archive(self, key: str) -> int:
        """Move the file at `key` to the archive; returns its size (0 when absent)."""
        ...

    def sweep_temp(self, older_than_seconds: float) -> int:
        """Remove temp files a killed process left behind; returns how many."""
        ...
