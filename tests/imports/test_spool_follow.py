"""Spool.follow: reading an upload while it still arrives (no server, no database)."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ferry.errors import DataLoss, ResourceExhausted
from ferry.imports.spool import FileUpload, Spool, SpoolReader


def _in_thread(work: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run `work` in a thread; its result (or exception) lands in the list."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(work())
        except BaseException as e:
            out.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_reader_blocks_until_data_arrives_and_sees_the_end_only_after_end(
    tmp_path: Path,
) -> None:
    with Spool(1000, tmp_path) as spool:
        reader = spool.follow()
        thread, out = _in_thread(lambda: reader.read(5))
        time.sleep(0.2)
        assert thread.is_alive() and not out  # nothing there yet: it waits
        spool.write(b"hello")
        thread.join(5)
        assert out == [b"hello"]
        # Caught up with an upload that has not ended: it waits, never b"".
        thread, out = _in_thread(lambda: reader.read(10))
        time.sleep(0.2)
        assert thread.is_alive() and not out
        spool.write(b" world")
        thread.join(5)
        assert out == [b" world"]  # less than asked for, after a moment's linger
        thread, out = _in_thread(reader.read)
        time.sleep(0.2)
        assert thread.is_alive() and not out
        spool.end()
        thread.join(5)
        assert out == [b""]
        assert reader.read(10) == b""
        assert spool.arrived_sha256() == hashlib.sha256(b"hello world").hexdigest()


def test_reader_waits_for_a_full_read_until_the_linger_passes(tmp_path: Path) -> None:
    with Spool(1000, tmp_path) as spool:
        reader = spool.follow()
        reader.LINGER = 5.0
        thread, out = _in_thread(lambda: reader.read(6))
        spool.write(b"abc")
        time.sleep(0.2)
        assert thread.is_alive() and not out  # three bytes are there; it waits for six
        spool.write(b"defgh")
        thread.join(5)
        assert out == [b"abcdef"]
        spool.end()
        assert reader.read(100) == b"gh"  # the upload ended: no waiting for more
        assert reader.read(100) == b""


def test_read_all_and_readinto_wait_for_the_end(tmp_path: Path) -> None:
    with Spool(1000, tmp_path) as spool:
        reader = spool.follow()
        spool.write(b"12")
        thread, out = _in_thread(reader.read)
        spool.write(b"34")
        time.sleep(0.2)
        assert thread.is_alive()
        spool.end()
        thread.join(5)
        assert out == [b"1234"]
    with Spool(1000, tmp_path) as spool:
        reader = spool.follow()
        spool.write(b"xyz")
        spool.end()
        buf = bytearray(2)
        assert reader.readinto(buf) == 2 and buf == b"xy"
        assert reader.readall() == b"z"


def test_reader_raises_the_uploads_error_even_with_data_unread(tmp_path: Path) -> None:
    with Spool(10, tmp_path) as spool:
        reader = spool.follow()
        reader.LINGER = 5.0
        spool.write(b"12345")
        thread, out = _in_thread(lambda: reader.read(100))
        time.sleep(0.2)
        with pytest.raises(ResourceExhausted) as e:
            spool.write(b"678901")
        spool.end(e.value)
        thread.join(5)
        assert out == [e.value]  # not the five bytes it was lingering over
        with pytest.raises(ResourceExhausted):
            reader.read(1)
        with pytest.raises(ResourceExhausted):
            spool.arrived_sha256(wait=False)


def test_a_damaged_upload_fails_its_reader_instead_of_ending(tmp_path: Path) -> None:
    with Spool(1000, tmp_path) as spool:
        reader = spool.follow()
        upload = FileUpload(spool)
        upload.add(b"abc", 0, "x.json", sha256="00" * 32)
        assert reader.read(3) == b"abc"
        thread, out = _in_thread(lambda: reader.read(3))
        with pytest.raises(DataLoss) as e:
            upload.finish()
        spool.end(e.value)
        thread.join(5)
        assert out == [e.value]


def test_arrived_sha256_waits_for_the_end_or_is_empty_without_waiting(tmp_path: Path) -> None:
    with Spool(1000, tmp_path) as spool:
        spool.follow()
        spool.write(b"data")
        assert spool.arrived_sha256(wait=False) == ""
        thread, out = _in_thread(spool.arrived_sha256)
        time.sleep(0.2)
        assert thread.is_alive() and not out
        spool.end()
        thread.join(5)
        assert out == [hashlib.sha256(b"data").hexdigest()]


def test_reader_never_moves_the_writers_position(tmp_path: Path) -> None:
    with Spool(10_000, tmp_path) as spool:
        reader: SpoolReader = spool.follow()
        got = bytearray()
        for i in range(100):
            spool.write(bytes([i]) * 10)
            got += reader.read(7)
        spool.end()
        got += reader.read()
        assert bytes(got) == b"".join(bytes([i]) * 10 for i in range(100))
        assert spool.rewind().read() == bytes(got)


def test_a_reader_left_waiting_when_the_spool_closes_raises(tmp_path: Path) -> None:
    spool = Spool(1000, tmp_path)
    reader = spool.follow()
    spool.write(b"abc")
    assert reader.read(3) == b"abc"
    thread, out = _in_thread(lambda: reader.read(3))
    time.sleep(0.2)
    spool.close()
    thread.join(5)
    assert len(out) == 1 and isinstance(out[0], ValueError)
    with pytest.raises(ValueError, match="closed"):
        reader.read(1)
