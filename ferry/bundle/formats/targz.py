"""The `tar.gz` bundle: a gzip'd tar with `manifest.json` first, then one JSON-lines file
per entity (`<entity>.jsonl`, one record per line, in bundle order).

manifest.json:
    {"format_version": 2, "metadata": {...}, "members": [{"name": "courses.jsonl",
     "entity": "courses", "records": N, "bytes": B, "sha256": "<sha256 of the member>"}],
     "counts": {...}, "total_records": N, "sha256": "<records checksum>"}

A tar header needs each member's size before its data, and manifest.json (first) needs
every member's size and sha256, so nothing can be sent before the last record is read.
Each entity's JSON lines are therefore deflated as they come, on a thread of their own
(zlib and hashlib let go of the GIL, so compression overlaps the database read and the
encoding), into a temporary file holding the compressed copy only (memory stays flat).
At the end the archive is assembled from those pieces: the tar headers and padding are
deflated here and the members' deflate streams copied between them. Each piece ends with a
sync flush (byte-aligned, not final), so the pieces make one deflate stream and the file
is one ordinary gzip member (CRC-32 of the whole combined from the pieces'); any gzip and
tar reader reads it.
Reading is streaming and refuses unsafe archives: paths with "..", absolute paths, links
and devices, unknown members, too many members, oversize or over-compressed data.

Choices, measured by bench/bundle.py (`targz_variants`: the writer in-process on the bench
semester, 929,406 records, the way DownloadSession drives it, each beside a raw cursor read
of the same rows run just before it; `FERRY_BENCH_DB=ferry_bench_issue27 python -m bench
--only bundle --reuse --repeat 3`, one run of each on a 2-core machine shared with four
other sessions, load average 13 to 14; ratios to the raw read):

| writer | records/s | ratio | file |
|---|---|---|---|
| level 1, deflate on a thread, 1 MiB per call (chosen) | 13,621 | 0.57 | 30 MB |
| level 1, thread, 4 MiB per call | 18,238 | 0.57 | 30 MB |
| level 1, thread, 64 KiB per call | 15,788 | 0.45 | 30 MB |
| level 1, inline (one thread) | 16,279 | 0.49 | 30 MB |
| level 6, thread | 13,114 | 0.39 | 23 MB |
| level 6, inline | 11,978 | 0.41 | 23 MB |
| before: spool all, then gzip 1 after the read | 15,611 | 0.35 | 30 MB |
| before, gzip 6 | 16,982 | 0.42 | 23 MB |

The raw read itself moved between 24,000 and 44,000/s from one variant to the next, so
only the ratios are compared, and only coarsely: level 1 over 6 (as before: the file is a
third larger, 8.6:1 against 11.2:1 of 262 MB of JSON lines), the thread over inline and
over the previous spool-then-gzip, 1 MiB per call (4 MiB did no better and holds four
times the memory in the queue). The thread pays only when a core is free: on this
machine, with every core taken by other sessions, the DownloadSession tar.gz row stayed
at 0.45 of the raw read (0.50 in the previous closing note, also loaded), short of 0.75.
The jsonl writer of the same lines without compression ran 22,833/s in the same run.
"""

from __future__ import annotations

import hashlib
import queue
import struct
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from ferry.bundle.formats.base import Batch, BundleLimits, Event, FieldRules, JsonLines
from ferry.bundle.formats.common import JSON_OPTS, Encoder, metadata_dict, record_lines
from ferry.bundle.formats.decode import Decoder
from ferry.bundle.formats.lineruns import LineRuns
from ferry.errors import DataLoss, InvalidArgument, ResourceExhausted

MANIFEST = "manifest.json"
SPOOL_BYTES = 4 * 1024 * 1024
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
# Measured on 60 MB of the bench semester's JSON lines (one run, a loaded 2-core machine):
# level 1 37 MB/s at 7.9:1, level 3 33 MB/s at 8.6:1, level 6 12 MB/s at 10.4:1 (tarfile's
# 9 is slower still). Level 1: three times the speed for a file a third larger, and gzip
# was over half of a tar.gz DownloadSession's time at level 6 (0.39 of the raw read).
# Re-measured in issue 27's third pass: see the module docstring.
GZIP_LEVEL = 1
# Deflate on a thread of its own while the records are read (True) or in the writer's
# thread (False); and the uncompressed bytes gathered per compressor call.
DEFLATE_IN_THREAD = True
FEED_BYTES = 1024 * 1024
# Small archives compress extremely well; the ratio cap applies past this many bytes.
RATIO_FLOOR_BYTES = 8 * 1024 * 1024
_RAW = -zlib.MAX_WBITS  # a raw deflate stream: the gzip header and trailer are written here
_ENCODING = "utf-8"  # tarfile's for names (the file system's on every platform Ferry runs)


class _Member:
    """One entity's JSON lines, deflated as they come into a temporary file, with the
    uncompressed size, CRC-32 and sha256."""

    def __init__(self, level: int) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(SPOOL_BYTES)  # noqa: SIM115
        self.z = zlib.compressobj(level, zlib.DEFLATED, _RAW)
        self.size = 0
        self.crc = 0
        self.sha = hashlib.sha256()

    def add(self, data: bytes) -> None:
        self.size += len(data)
        self.crc = zlib.crc32(data, self.crc)
        self.sha.update(data)
        self.file.write(self.z.compress(data))

    def end(self) -> None:
        self.file.write(self.z.flush(zlib.Z_SYNC_FLUSH))  # byte-aligned, not final


_END = object()


class _Deflater:
    """Hands (member, bytes) to the members, on a thread (bounded queue: the reader waits
    for a slow compressor, memory stays flat) or at once."""

    def __init__(self, threaded: bool) -> None:
        self.q: queue.Queue[Any] | None = queue.Queue(4) if threaded else None
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None
        if self.q is not None:
            self.thread = threading.Thread(target=self._run, name="targz-deflate", daemon=True)
            self.thread.start()

    def _run(self) -> None:
        assert self.q is not None
        while (item := self.q.get()) is not _END:
            if self.error is None:  # after an error, drain so the writer never blocks
                try:
                    member, data = item
                    member.add(data) if data is not None else member.end()
                except BaseException as e:  # raised in the writer's thread by close()
                    self.error = e

    def put(self, member: _Member, data: bytes | None) -> None:
        """Deflate `data` into `member` (None: end the member)."""
        if self.q is None:
            member.add(data) if data is not None else member.end()
            return
        if self.error is not None:
            raise self.error
        self.q.put((member, data))

    def close(self) -> None:
        """Wait for every byte handed over; raise what the thread raised."""
        if self.q is not None and self.thread is not None:
            self.q.put(_END)
            self.thread.join()
        if self.error is not None:
            raise self.error


def crc32_combine(crc1: int, crc2: int, len2: int) -> int:
    """The CRC-32 of A + B from crc1 = crc32(A), crc2 = crc32(B), len2 = len(B) (zlib's
    crc32_combine, which Python's zlib does not offer)."""
    if len2 <= 0:
        return crc1

    def times(mat: list[int], vec: int) -> int:
        total, i = 0, 0
        while vec:
            if vec & 1:
                total ^= mat[i]
            vec >>= 1
            i += 1
        return total

    def square(mat: list[int]) -> list[int]:
        return [times(mat, mat[n]) for n in range(32)]

    odd = [0xEDB88320] + [1 << n for n in range(31)]  # the operator for one zero bit
    even = square(odd)  # two zero bits
    odd = square(even)  # four
    while True:
        even = square(odd)
        if len2 & 1:
            crc1 = times(even, crc1)
        len2 >>= 1
        if not len2:
            break
        odd = square(even)
        if len2 & 1:
            crc1 = times(odd, crc1)
        len2 >>= 1
        if not len2:
            break
    return crc1 ^ crc2


class _GzipOut:
    """One gzip member written from deflated pieces: `glue` deflates small bytes here
    (headers, padding), `member` copies a member's pieces; `finish` ends the stream."""

    def __init__(self, out: IO[bytes], level: int, mtime: int) -> None:
        self.out = out
        self.level = level
        self.crc = 0
        self.size = 0
        xfl = 4 if level == 1 else 2 if level == 9 else 0  # as gzip.GzipFile writes it
        out.write(b"\x1f\x8b\x08\x00" + struct.pack("<I", mtime) + bytes([xfl, 255]))

    def glue(self, data: bytes, last: bool = False) -> None:
        z = zlib.compressobj(self.level, zlib.DEFLATED, _RAW)
        self.out.write(z.compress(data) + z.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH))
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)

    def member(self, m: _Member) -> None:
        m.file.seek(0)
        while piece := m.file.read(FEED_BYTES):
            self.out.write(piece)
        self.crc = crc32_combine(self.crc, m.crc, m.size)
        self.size += m.size

    def finish(self) -> None:
        self.out.write(struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))


def _header(name: str, size: int, mtime: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    return info.tobuf(tarfile.PAX_FORMAT, _ENCODING, "surrogateescape")


def _pad(size: int) -> bytes:
    return b"\0" * (-size % tarfile.BLOCKSIZE)


class TarGzBundle:
    name = "tar.gz"
    extension = "tar.gz"
    content_type = "application/gzip"
    # Takes JsonLines events (records the database encoded: ferry.bundle.pgjson).
    writes_lines = True

    def __init__(
        self,
        app: object = None,
        level: int = GZIP_LEVEL,
        threaded: bool = DEFLATE_IN_THREAD,
        feed_bytes: int = FEED_BYTES,
    ) -> None:
        """Built as `factory(app)`; it takes no settings from the app (the other
        arguments are for measuring: bench/bundle.py)."""
        self.level = level
        self.threaded = threaded
        self.feed_bytes = feed_bytes

    def write(self, events: Iterable[Event], out: IO[bytes]) -> None:
        """Deflate each entity's records as they come, then write the archive: gzip of
        manifest.json and the members (see the module docstring)."""
        enc = Encoder()
        it = iter(events)
        header = enc.start(next(it, None))  # type: ignore[arg-type]
        members: dict[str, _Member] = {}
        deflater = _Deflater(self.threaded)
        pending: list[bytes] = []
        held = 0
        current: _Member | None = None
        try:
            try:
                for event in it:
                    if isinstance(event, JsonLines):
                        enc.lines(event)
                        lines = event.lines  # a member's lines as they are
                    elif isinstance(event, Batch):
                        body, lines = record_lines(event.records)
                        enc.batch(event, body)
                    else:
                        break
                    member = members.get(event.entity)
                    if member is None:
                        member = members[event.entity] = _Member(self.level)
                    if member is not current:  # entities come as contiguous sections
                        if current is not None:
                            if pending:
                                deflater.put(current, b"".join(pending))
                                pending, held = [], 0
                            deflater.put(current, None)
                        current = member
                    if lines:
                        pending.append(lines)
                        held += len(lines)
                    if held >= self.feed_bytes:
                        deflater.put(member, b"".join(pending))
                        pending, held = [], 0
                if current is not None:
                    if pending:
                        deflater.put(current, b"".join(pending))
                    deflater.put(current, None)
            finally:
                deflater.close()
            listed: list[dict[str, Any]] = []
            for entity in enc.order():
                m = members.get(entity)
                listed.append(
                    {
                        "name": f"{entity}.jsonl",
                        "entity": entity,
                        "records": enc.counts.get(entity, 0),
                        "bytes": m.size if m else 0,
                        "sha256": (m.sha if m else hashlib.sha256()).hexdigest(),
                    }
                )
            manifest = {
                "format_version": header.metadata.format_version,
                "metadata": metadata_dict(header),
                "members": listed,
                **enc.trailer(),
            }
            mtime = int(header.metadata.exported_at.seconds) or int(time.time())
            gz = _GzipOut(out, self.level, mtime)
            body = orjson.dumps(manifest, option=JSON_OPTS | orjson.OPT_INDENT_2)
            glue = _header(MANIFEST, len(body), mtime) + body + _pad(len(body))
            offset = len(glue)
            for item in listed:
                m = members.get(item["entity"])
                head = _header(item["name"], item["bytes"], mtime)
                glue += head
                offset += len(head)
                if m is not None and m.size:
                    gz.glue(glue)
                    gz.member(m)
                    glue = _pad(m.size)
                    offset += m.size + len(glue)
            # The end of the archive: two zero blocks, then zeros to a whole record, as
            # tarfile writes them.
            end = tarfile.BLOCKSIZE * 2
            end += -(offset + end) % tarfile.RECORDSIZE
            gz.glue(glue + b"\0" * end, last=True)
            gz.finish()
        finally:
            for m in members.values():
                m.file.close()

    def read(self, src: IO[bytes], limits: BundleLimits) -> Iterator[Event]:
        """Parse a tar.gz bundle member by member; see the module docstring for what is
        refused. A member whose sha256 differs from the manifest is DataLoss."""
        return self._read(src, limits, None)

    def read_raw(self, src: IO[bytes], limits: BundleLimits, rules: FieldRules) -> Iterator[Event]:
        """Like read, but runs of record lines that pass `rules` come as RawBatches,
        their JSON left unparsed (see ferry.bundle.formats.lineruns)."""
        return self._read(src, limits, rules)

    def _read(
        self, src: IO[bytes], limits: BundleLimits, rules: FieldRules | None
    ) -> Iterator[Event]:
        counted = _Counting(src)
        dec = Decoder(limits)
        try:
            tar = tarfile.open(fileobj=counted, mode="r|gz")  # type: ignore[call-overload]  # noqa: SIM115
        except (tarfile.TarError, OSError, EOFError) as e:
            raise InvalidArgument(f"not a tar.gz bundle: {e}", field="archive") from None
        manifest: dict[str, Any] | None = None
        expected: dict[str, dict[str, Any]] = {}
        seen = 0
        total = 0
        try:
            for member in tar:
                seen += 1
                if seen > limits.max_entries:
                    raise ResourceExhausted(f"archive has more than {limits.max_entries} members")
                _check_member(member)
                total += member.size
                if total > limits.max_bytes:
                    raise ResourceExhausted(
                        f"archive holds more than {limits.max_bytes} bytes", field=member.name
                    )
                f = tar.extractfile(member)
                assert f is not None  # a regular file, checked above
                if manifest is None:
                    if member.name != MANIFEST:
                        raise InvalidArgument(
                            f"the archive must start with {MANIFEST}, not {member.name!r}",
                            field=member.name,
                        )
                    if member.size > MAX_MANIFEST_BYTES:
                        raise ResourceExhausted(f"{MANIFEST} is too large", field=MANIFEST)
                    manifest = _manifest(f.read())
                    expected = {
                        str(m.get("name")): m
                        for m in manifest.get("members", [])
                        if isinstance(m, dict)
                    }
                    yield dec.start(manifest.get("metadata"))
                    continue
                spec = expected.pop(member.name, None)
                if spec is None:
                    raise InvalidArgument(
                        f"member {member.name!r} is not in {MANIFEST}", field=member.name
                    )
                yield from _read_member(f, member.name, spec, dec, limits, counted, rules)
        except (tarfile.TarError, EOFError, OSError) as e:
            raise InvalidArgument(f"truncated or corrupt archive: {e}", field="archive") from None
        if manifest is None:
            raise InvalidArgument(f"the archive has no {MANIFEST}", field=MANIFEST)
        if expected:
            missing = ", ".join(sorted(expected))
            raise DataLoss(f"members listed in {MANIFEST} are missing: {missing}", field=missing)
        yield from dec.finish(manifest, MANIFEST)


def _check_member(member: tarfile.TarInfo) -> None:
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        raise InvalidArgument(f"unsafe path {name!r} in archive", field=name)
    if not member.isreg():
        raise InvalidArgument(
            f"member {name!r} is not a regular file (links and devices are refused)", field=name
        )
    if "/" in name:
        raise InvalidArgument(f"unexpected folder in member {name!r}", field=name)


def _manifest(body: bytes) -> dict[str, Any]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidArgument(f"{MANIFEST} is not valid JSON: {e}", field=MANIFEST) from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"{MANIFEST} must be an object", field=MANIFEST)
    return doc


def _read_member(
    f: IO[bytes],
    name: str,
    spec: dict[str, Any],
    dec: Decoder,
    limits: BundleLimits,
    counted: _Counting,
    rules: FieldRules | None,
) -> Iterator[Event]:
    entity = spec.get("entity")
    if not isinstance(entity, str) or name != f"{entity}.jsonl":
        raise InvalidArgument(f"{MANIFEST} entry for {name!r} is malformed", field=name)
    digest = hashlib.sha256()
    max_line = limits.max_string_chars * 6 + 64 * 1024

    def line(number: int, raw: bytes) -> Iterator[Event]:
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise InvalidArgument(
                f"{name} line {number}: malformed JSON: {e}", field=f"{name}:{number}"
            ) from None
        if isinstance(record, dict):
            for key, value in record.items():
                if isinstance(value, dict | list):
                    raise InvalidArgument(
                        f"{entity} record {number - 1}, field {key!r}: must be a single value",
                        field=f"{entity}[{number - 1}].{key}",
                    )
        yield from dec.record(entity, record)

    runs = None if rules is None else LineRuns(dec, limits, rules, line)
    number = 0
    while raw := f.readline(max_line + 1):
        number += 1
        digest.update(raw)
        fits = len(raw) <= max_line and raw.endswith(b"}\n")
        # (counted only when it fits; a line over a limit is refused below, in order)
        if runs is not None and fits and counted.within_uncompressed(len(raw), limits):
            yield from runs.add(entity, number, raw, raw[:-1])
            continue
        if runs is not None:
            yield from runs.flush()
        if len(raw) > max_line:
            raise ResourceExhausted(f"{name} line {number} is too long", field=name)
        counted.add_uncompressed(len(raw), limits)
        yield from line(number, raw)
    if runs is not None:
        yield from runs.flush()
    if digest.hexdigest() != spec.get("sha256"):
        raise DataLoss(
            f"member {name} is damaged: its sha256 is {digest.hexdigest()}, {MANIFEST} says "
            f"{spec.get('sha256')}",
            field=name,
        )


class _Counting:
    """Counts compressed bytes read, to cap the compression ratio (gzip bombs)."""

    def __init__(self, src: IO[bytes]) -> None:
        self.src = src
        self.read_bytes = 0
        self.out_bytes = 0  # uncompressed member bytes read so far

    def read(self, n: int = -1) -> bytes:
        data = self.src.read(n)
        self.read_bytes += len(data)
        return data

    def add_uncompressed(self, n: int, limits: BundleLimits) -> None:
        """Count `n` more uncompressed bytes; ResourceExhausted past the ratio cap."""
        if not self.within_uncompressed(n, limits):
            raise ResourceExhausted(
                f"archive expands more than {limits.max_ratio:g} times: refusing a "
                "compression bomb",
                field="archive",
            )

    def within_uncompressed(self, n: int, limits: BundleLimits) -> bool:
        """Count `n` more uncompressed bytes if that stays within the ratio cap (True);
        False, counting nothing, if it would not."""
        out = self.out_bytes + n
        if out > RATIO_FLOOR_BYTES and out > limits.max_ratio * max(self.read_bytes, 1):
            return False
        self.out_bytes = out
        return True
