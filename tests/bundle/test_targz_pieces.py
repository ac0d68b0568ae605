"""The tar.gz writer deflates each member as it comes (on a thread or inline) and stitches
the pieces into one gzip member: the file must be exactly the archive tarfile itself would
write for the same members, readable by any gzip and tar reader, whatever the level, the
bytes per compressor call, and with empty entities among full ones."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import threading
import zlib
from collections.abc import Iterator

import pytest

from ferry.bundle.formats.base import Batch, Event
from ferry.bundle.formats.targz import TarGzBundle, crc32_combine
from tests.bundle.helpers import COURSE, decode, events_of, records_of


def _events(n: int) -> list[Event]:
    courses = [{**COURSE, "course_code": f"C{i}", "title": f"Μάθημα {i} " * (i % 7)}
               for i in range(n)]  # fmt: skip
    students = [
        {"student_id": f"S{i}", "first_name": "Ελένη", "last_name": f"N{i}"} for i in range(n)
    ]
    # enrollments, highlights ... stay empty: members of 0 bytes between full ones
    return events_of({"courses": courses, "students": students})


def _write(events: list[Event], **kw: object) -> bytes:
    buf = io.BytesIO()
    TarGzBundle(None, **kw).write(iter(events), buf)  # type: ignore[arg-type]
    return buf.getvalue()


def _tarfile_copy(archive: bytes) -> bytes:
    """The uncompressed archive tarfile writes itself for the members of `archive`."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as src,
        tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as dst,
    ):
        for member in src.getmembers():
            info = tarfile.TarInfo(member.name)
            info.size, info.mtime, info.mode = member.size, member.mtime, member.mode
            dst.addfile(info, src.extractfile(member))
    return out.getvalue()


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"threaded": False},
        {"level": 6},
        {"feed_bytes": 1},  # one compressor call per batch: many pieces per member
        {"feed_bytes": 1, "threaded": False, "level": 9},
    ],
)
def test_pieces_make_the_archive_tarfile_writes(kw: dict[str, object]) -> None:
    events = _events(400)
    data = _write(events, **kw)
    plain = gzip.decompress(data)  # one gzip member: CRC-32 and length checked here
    assert plain == _tarfile_copy(data)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|gz") as tar:
        names = []
        for member in tar:
            names.append(member.name)
            f = tar.extractfile(member)
            assert f is not None
            body = f.read()
            if member.name == "manifest.json":
                manifest = json.loads(body)
                listed = {m["name"]: m for m in manifest["members"]}
            else:
                assert hashlib.sha256(body).hexdigest() == listed[member.name]["sha256"]
                assert len(body) == listed[member.name]["bytes"]
    assert names[0] == "manifest.json" and "enrollments.jsonl" in names
    assert records_of(decode("tar.gz", data)) == records_of(events)


def test_the_system_gzip_and_tar_read_it(tmp_path: object) -> None:
    if not (shutil.which("gzip") and shutil.which("tar")):
        pytest.skip("no gzip/tar on this machine")
    data = _write(_events(200), feed_bytes=1)
    path = tmp_path / "b.tar.gz"  # type: ignore[operator]
    path.write_bytes(data)
    subprocess.run(["gzip", "-t", str(path)], check=True)
    listing = subprocess.run(["tar", "tzf", str(path)], check=True, capture_output=True)
    assert listing.stdout.decode().split()[:3] == [
        "manifest.json", "courses.jsonl", "students.jsonl"
    ]  # fmt: skip


def test_crc32_combine_matches_zlib() -> None:
    for a, b in [(b"", b"x"), (b"abc", b""), (b"x" * 1000, bytes(range(256)) * 33)]:
        assert crc32_combine(zlib.crc32(a), zlib.crc32(b), len(b)) == zlib.crc32(a + b)


def test_an_error_while_reading_stops_the_deflate_thread() -> None:
    events = _events(50)

    def broken() -> Iterator[Event]:
        for e in events:
            if isinstance(e, Batch) and e.entity == "students":
                raise RuntimeError("the database went away")
            yield e

    before = {t.name for t in threading.enumerate()}
    with pytest.raises(RuntimeError, match="went away"):
        TarGzBundle(None).write(broken(), io.BytesIO())
    assert "targz-deflate" not in {t.name for t in threading.enumerate()} - before
