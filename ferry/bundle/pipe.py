"""Threads between producers and consumers of a stream, with bounded queues.

`chunks`: run a push-style writer (`write(out)`) in a thread and pull its output as chunks.

File formats write into a file-like `out`; an RPC wants to yield chunks. A bounded queue
between them keeps at most a few chunks in memory, so a slow client slows the writer
instead of filling the server's memory. `ahead`: run an iterator a few items ahead of
its consumer in a thread (parsing overlaps with the database's work); `produced`: the
same for a push-style producer (`produce(put)`), which unwinds in its own thread when
the consumer stops (DownloadSession's fetch: its cursors close there).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import IO, TypeVar

from ferry.db import tenant
from ferry.rpc.files import CHUNK_BYTES

_DONE = object()
T = TypeVar("T")


class _Stopped(Exception):
    """The reader went away; the writer thread unwinds with this."""


class _QueueWriter:
    """Cuts what is written into pieces of exactly `size` bytes (`_put` each): the
    writes are held as they are until a piece is full, then joined once and cut (two
    copies of each byte, where appending to a bytearray and cutting it took four)."""

    def __init__(self, q: queue.Queue[object], size: int, stop: threading.Event) -> None:
        self.q = q
        self.size = size
        self.stop = stop
        self.parts: list[bytes] = []
        self.held = 0

    def write(self, data: bytes) -> int:
        # A writer may reuse a mutable buffer: hold only bytes.
        piece = data if data.__class__ is bytes else bytes(data)
        n = len(piece)
        if not n:
            return 0
        self.parts.append(piece)
        self.held += n
        if self.held >= self.size:
            joined = b"".join(self.parts)
            view = memoryview(joined)
            cut = 0
            while len(joined) - cut >= self.size:
                self._put(bytes(view[cut : cut + self.size]))
                cut += self.size
            self.parts = [joined[cut:]] if cut < len(joined) else []
            self.held = len(joined) - cut
        return n

    def rest(self) -> bytes:
        """What was written and not yet put (less than a piece)."""
        return b"".join(self.parts)

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

    def body() -> None:
        write(out)  # type: ignore[arg-type]
        if rest := out.rest():
            out._put(rest)

    pipe = _pipe(q, stop, body, out._put, "bundle-writer")
    try:
        for item in pipe:
            assert isinstance(item, bytes)
            yield item
    finally:
        pipe.close()


def _pipe(
    q: queue.Queue[object],
    stop: threading.Event,
    body: Callable[[], None],
    put: Callable[[object], None],
    name: str,
) -> Generator[object, None, None]:
    """Run `body` (which `put`s items into `q`) in a thread and yield the items; its
    exception is raised here; closing this generator stops it (`put` raises _Stopped)."""

    def run() -> None:
        try:
            body()
            put(_DONE)
        except _Stopped:
            return
        except BaseException as e:  # handed to the consuming side, which re-raises it
            try:
                put(e)
            except _Stopped:
                return

    thread = threading.Thread(target=tenant.carried(run), name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def ahead(items: Iterable[T], depth: int = 2) -> Generator[T, None, None]:
    """Yield what `items` yields, produced in a thread up to `depth` items ahead: a reader
    parses the next run of records while the database stores the last one. An exception
    in `items` is raised here; closing this generator early stops the thread."""

    def produce(put: Callable[[T], None]) -> None:
        for item in items:
            put(item)

    return produced(produce, depth, "read-ahead")


def produced(
    produce: Callable[[Callable[[T], None]], None], depth: int = 2, name: str = "produce"
) -> Generator[T, None, None]:
    """Yield what `produce(put)` puts, produced in a thread up to `depth` items ahead (a
    bounded queue: memory stays flat, a slow consumer slows the producer). An exception
    in `produce` is raised here. Closing this generator early makes the producer's next
    (or current, waiting) `put` raise, so `produce` unwinds in its own thread (its
    `finally` blocks run there), and the close returns once that thread has ended."""
    q: queue.Queue[object] = queue.Queue(depth)
    stop = threading.Event()

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Stopped

    def body() -> None:
        produce(lambda item: put((item,)))

    pipe = _pipe(q, stop, body, put, name)
    try:
        for item in pipe:
            yield item[0]  # type: ignore[index]
    finally:
        pipe.close()
