"""The writer-thread pipe behind DownloadSession: fixed-size pieces, errors, early stop."""

from __future__ import annotations

import threading
from typing import IO

import pytest

from ferry.bundle.pipe import chunks


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
