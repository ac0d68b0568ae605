"""The `tar.gz` bundle: a gzip'd tar with `manifest.json` first, then one JSON-lines file
per entity (`<entity>.jsonl`, one record per line, in bundle order).

manifest.json:
    {"format_version": 1, "metadata": {...}, "members": [{"name": "courses.jsonl",
     "entity": "courses", "records": N, "bytes": B, "sha256": "<sha256 of the member>"}],
     "counts": {...}, "total_records": N, "sha256": "<records checksum>"}

A tar header needs each member's size before its data, so entity files are spooled to
temporary files (memory stays flat, the disk holds one uncompressed copy meanwhile).
Reading is streaming and refuses unsafe archives: paths with "..", absolute paths, links
and devices, unknown members, too many members, oversize or over-compressed data.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from ferry.bundle.formats.base import Batch, BundleLimits, Event, FieldRules
from ferry.bundle.formats.common import DIGEST_OPTS, JSON_OPTS, Encoder, metadata_dict
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
GZIP_LEVEL = 1
# Small archives compress extremely well; the ratio cap applies past this many bytes.
RATIO_FLOOR_BYTES = 8 * 1024 * 1024


class TarGzBundle:
    name = "tar.gz"
    extension = "tar.gz"
    content_type = "application/gzip"

    def __init__(self, app: object = None) -> None:
        """Built as `factory(app)`; it takes no settings from the app."""

    def write(self, events: Iterable[Event], out: IO[bytes]) -> None:
        """Spool each entity's records, then write manifest.json and the members."""
        enc = Encoder()
        it = iter(events)
        header = enc.start(next(it, None))  # type: ignore[arg-type]
        spools: dict[str, tuple[IO[bytes], Any]] = {}
        try:
            for event in it:
                if not isinstance(event, Batch):
                    break
                encoded = [orjson.dumps(r, option=DIGEST_OPTS) for r in event.records]
                enc.batch(event, b",".join(encoded))
                if event.entity not in spools:
                    spools[event.entity] = (
                        tempfile.SpooledTemporaryFile(SPOOL_BYTES),  # noqa: SIM115 closed below
                        hashlib.sha256(),
                    )
                f, h = spools[event.entity]
                data = b"".join(r + b"\n" for r in encoded)
                f.write(data)
                h.update(data)
            members: list[dict[str, Any]] = []
            for entity in enc.order():
                f, h = spools.get(entity) or (io.BytesIO(), hashlib.sha256())
                members.append(
                    {
                        "name": f"{entity}.jsonl",
                        "entity": entity,
                        "records": enc.counts.get(entity, 0),
                        "bytes": f.tell(),
                        "sha256": h.hexdigest(),
                    }
                )
            manifest = {
                "format_version": header.metadata.format_version,
                "metadata": metadata_dict(header),
                "members": members,
                **enc.trailer(),
            }
            mtime = int(header.metadata.exported_at.seconds) or int(time.time())
            with (
                gzip.GzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=mtime) as gz,
                tarfile.open(fileobj=gz, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                body = orjson.dumps(manifest, option=JSON_OPTS | orjson.OPT_INDENT_2)
                _add(tar, MANIFEST, io.BytesIO(body), len(body), mtime)
                for m in members:
                    f = spools[m["entity"]][0] if m["entity"] in spools else io.BytesIO()
                    f.seek(0)
                    _add(tar, m["name"], f, m["bytes"], mtime)
        finally:
            for f, _ in spools.values():
                f.close()

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


def _add(tar: tarfile.TarFile, name: str, f: IO[bytes], size: int, mtime: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = mtime
    info.mode = 0o644
    tar.addfile(info, f)


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
