"""The `local` storage plugin: files in a directory, archive in another.

Writes go to a temp file in `<dir>/.tmp`, are fsynced, then renamed into place, so a
cancelled or crashed export never leaves a partial file under its key.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ferry.config import Strict

if TYPE_CHECKING:
    from ferry.app import App


class LocalStorageSettings(Strict):
    """`plugins.storage.local`: the folders finished files and archived files live in."""

    dir: str = "var/exports"
    archive_dir: str = "var/exports-archive"


class LocalStorage:
    settings_model = LocalStorageSettings

    def __init__(self, app: App) -> None:
        """Storage in plugins.storage.local.dir, archiving to its archive_dir."""
        own: LocalStorageSettings = app.plugin_settings("ferry.storage", "local")
        self._place(app.settings.path(own.dir), app.settings.path(own.archive_dir))

    @classmethod
    def at(cls, root: Path, archive_root: Path) -> LocalStorage:
        """Storage in `root`, archiving to `archive_root`, without an app (tests, tools)."""
        storage = cls.__new__(cls)
        storage._place(root, archive_root)
        return storage

    def _place(self, root: Path, archive_root: Path) -> None:
        self.root = root
        self.archive_root = archive_root
        self._tmp = root / ".tmp"

    def path(self, key: str) -> Path:
        """Where `key` lives; keys are flat names, never paths (no traversal)."""
        if not key or "/" in key or "\\" in key or key.startswith("."):
            raise ValueError(f"bad storage key {key!r}")
        return self.root / key

    @contextlib.contextmanager
    def writer(self, key: str) -> Iterator[IO[bytes]]:
        """A temp file that is renamed to `key` when the block ends cleanly."""
        final = self.path(key)
        self._tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=key + ".", suffix=".part", dir=self._tmp)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb", buffering=1024 * 1024) as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # The rename itself must survive a crash too.
        _fsync_dir(self.root)

    def open(self, key: str) -> IO[bytes]:
        """The file for reading (seekable)."""
        return self.path(key).open("rb")

    def size(self, key: str) -> int | None:
        """Bytes in the file, None when absent."""
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> int:
        """Remove the file; bytes freed (0 when absent)."""
        p = self.path(key)
        try:
            size = p.stat().st_size
            p.unlink()
        except FileNotFoundError:
            return 0
        return size

    def archive(self, key: str) -> int:
        """Move the file into the archive directory; its size (0 when absent)."""
        p = self.path(key)
        size = self.size(key)
        if size is None:
            return 0
        self.archive_root.mkdir(parents=True, exist_ok=True)
        target = self.archive_root / key
        try:
            os.replace(p, target)
        except OSError as e:
            if e.errno != errno.EXDEV:  # the archive may be on another filesystem
                raise
            shutil.copy2(p, target)
            p.unlink()
        return size

    def sweep_temp(self, older_than_seconds: float) -> int:
        """Remove temp files left by a killed process; how many were removed."""
        if not self._tmp.is_dir():
            return 0
        cutoff = time.time() - older_than_seconds
        removed = 0
        for p in self._tmp.iterdir():
            with contextlib.suppress(FileNotFoundError):
                if p.stat().st_mtime < cutoff:
                    p.unlink()
                    removed += 1
        return removed


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
