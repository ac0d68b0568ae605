"""Run a push-style writer (`write(out)`) in a thread and pull its output as chunks.

File formats write into a file-like `out`; an RPC wants to yield chunks. A bounded queue
between them keeps at most a few chunks in memory, so a slow client slows the writer
instead of filling the server's memory.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import IO

CHUNK_BYTES = 1024 * 1024
_DONE = object()


class _Stopped(Exception):
    """The reader went away; the writer thread unwinds with this."""


class _QueueWriter:
    def __init__(self, q: queue.Queue[object], size: int, stop: threading.Event) -> None:
        self.q = q
        self.size = size
        self.stop = stop
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        while len(self.buf) >= self.size:
            self._put(bytes(self.buf[: self.size]))
            del self.buf[: self.size]
        return len(data)

    def flush(self) -> None:
        return None

    def _put(self, item: object) -> None:
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                self.q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue


def chunks(
    write: Callable[[IO[bytes]], None], size: int = CHUNK_BYTES, depth: int = 4
) -> Iterator[bytes]:
    """Yield what `write(out)` writes, in pieces of exactly `size` bytes (the last may be
    shorter). An exception in `write` is raised here; closing this generator early stops
    the writer."""
    q: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()
    out = _QueueWriter(q, size, stop)

    def run() -> None:
        try:
            write(out)  # type: ignore[arg-type]
            if out.buf:
                out._put(bytes(out.buf))
            out._put(_DONE)
        except _Stopped:
            return
        except BaseException as e:  # handed to the reading side, which re-raises it
            try:
                out._put(e)
            except _Stopped:
                return

    thread = threading.Thread(target=run, name="bundle-writer", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        thread.join()
