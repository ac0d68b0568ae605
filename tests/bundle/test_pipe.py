"""The writer-thread pipe behind DownloadSession: fixed-size pieces, errors, early stop."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import IO

import pytest

from ferry.bundle.pipe import ahead, chunks, produced


def test_pieces_have_the_asked_size_and_keep_every_byte() -> None:
    def write(out: IO[bytes]) -> None:
        for i in range(100):
            out.write(bytes([i % 256]) * 7)

    pieces = list(chunks(write, size=64))
    assert all(len(p) == 64 for p in pieces[:-1]) and 0 < len(pieces[-1]) <= 64
    assert b"".join(pieces) == b"".join(bytes([i]) * 7 for i in range(100))


def test_a_writer_error_reaches_the_reader() -> None:
    def write(out: IO[bytes]) -> None:
        out.write(b"x" * 10)
        raise LookupError("no such semester")

    with pytest.raises(LookupError, match="no such semester"):
        list(chunks(write, size=4))


def test_closing_the_reader_early_stops_the_writer_thread() -> None:
    stopped = threading.Event()

    def write(out: IO[bytes]) -> None:
        try:
            while True:
                out.write(b"y" * 1000)
        finally:
            stopped.set()

    pieces = chunks(write, size=100, depth=2)
    assert next(pieces) == b"y" * 100
    pieces.close()
    assert stopped.wait(5)


def test_ahead_yields_everything_in_order_and_passes_errors_on() -> None:
    assert list(ahead(iter(range(1000)), depth=3)) == list(range(1000))

    def failing() -> Iterator[int]:
        yield 1
        raise LookupError("broken bundle")

    got = []
    with pytest.raises(LookupError, match="broken bundle"):
        for item in ahead(failing()):
            got.append(item)
    assert got == [1]


def test_closing_ahead_early_stops_its_thread() -> None:
    produced = []

    def endless() -> Iterator[int]:
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    before = threading.active_count()
    stream = ahead(endless(), depth=2)
    assert next(stream) == 0
    stream.close()
    assert threading.active_count() == before
    assert len(produced) <= 5  # only a few ahead of what was taken


def test_closing_produced_early_unwinds_the_producer_in_its_thread() -> None:
    unwound: list[str] = []

    def produce(put: Callable[[int], None]) -> None:
        try:
            for i in range(1_000_000):
                put(i)
        finally:
            unwound.append(threading.current_thread().name)

    stream = produced(produce, depth=2, name="test-producer")
    assert next(stream) == 0
    stream.close()  # returns once the producer's thread has ended
    assert unwound == ["test-producer"]
    assert "test-producer" not in {t.name for t in threading.enumerate()}


def test_a_producer_error_reaches_the_consumer_after_what_it_put() -> None:
    def produce(put: Callable[[int], None]) -> None:
        put(1)
        put(2)
        raise LookupError("the database went away")

    got = []
    with pytest.raises(LookupError, match="went away"):
        for item in produced(produce, name="test-failing"):
            got.append(item)
    assert got == [1, 2]
    assert "test-failing" not in {t.name for t in threading.enumerate()}
