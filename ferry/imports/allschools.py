"""A backup of every school of an installation (docs/tenants.md, "Exports across the wall").

Platform work, from the CLI only (`ferry backup create|restore --all-schools`), never an
RPC: a service acts for one school. The file is a tar.gz holding `manifest.json` (the
schools, each with its settings, its bundle's member name, size and sha256) and one
school bundle per school (`schools/<code>.<extension>`, scope `school`, soft-deleted
records included) in a bundle format. Each school's bundle is read acting for that school
(`tenant.acting_for`), through the bundle reader's application scope, so the platform
role (which row-level security does not bind) reads each school's rows and no other's;
each bundle is one consistent snapshot of its school.

Restoring goes school by school on the app role (`database.url`, which row-level
security binds), acting for the school of the same code (added first, as the platform
role, when missing): an import with strategy replace of the school's whole bundle, in
one transaction per school, so each school comes back as it was and whatever it holds
beyond is soft-deleted. Schools the installation has and the file lacks are left alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Generator, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from sqlalchemy.engine import Engine

from ferry.bundle.bundlefile import bundle_format
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import BundleLimits, Event
from ferry.bundle.scan import SCOPE_SCHOOL, SessionRequest
from ferry.datasets.spec import Dataset
from ferry.db import schools, tenant
from ferry.errors import AlreadyExists, InvalidArgument, NotFound
from ferry.merge import ImportOutcome, MergeOptions, Strategy, run_import

KIND = "ferry.all-schools-backup"
MANIFEST = "manifest.json"
VERSION = 1
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Written:
    code: str
    member: str
    size: int
    sha256: str


def write_all(
    engine: Engine, ds: Dataset, format_name: str, target: Path, exported_by: str = ""
) -> list[Written]:
    """Write every school's bundle into the archive `target` (via `target.part`)."""
    fmt = bundle_format(format_name)
    now = dt.datetime.now(dt.UTC)
    found = schools.all_schools(engine)
    written: list[Written] = []
    part = target.with_name(target.name + ".part")
    # Beside the target (a backups volume), not in /tmp: each school's whole bundle.
    with tempfile.TemporaryDirectory(prefix=".ferry-all-schools-", dir=target.parent) as tmp:
        files: list[Path] = []
        for school in found:
            member = f"schools/{school.code}.{fmt.extension}"
            path = Path(tmp) / f"{school.code}.{fmt.extension}"
            req = SessionRequest(
                "", include_deleted=True, scope=SCOPE_SCHOOL, exported_by=exported_by
            )
            with tenant.acting_for(school.id), path.open("wb") as out:
                events = session_events(engine, ds, req, now)
                with closing(cast(Generator[Event], events)):
                    fmt.write(events, out)
            written.append(Written(school.code, member, path.stat().st_size, sha256_of(path)))
            files.append(path)
        manifest = {
            "kind": KIND,
            "version": VERSION,
            "exported_at": now.isoformat().replace("+00:00", "Z"),
            "dataset": ds.name,
            "bundle_format": format_name,
            "schools": [
                {
                    "code": s.code,
                    "name": s.name,
                    "language": s.language,
                    "time_zone": s.time_zone,
                    "sender": s.sender,
                    "file": w.member,
                    "size": w.size,
                    "sha256": w.sha256,
                }
                for s, w in zip(found, written, strict=True)
            ],
        }
        data = json.dumps(manifest, indent=2, sort_keys=True).encode()
        with tarfile.open(part, "w:gz") as tar:
            info = tarfile.TarInfo(MANIFEST)
            info.size = len(data)
            info.mtime = int(now.timestamp())
            tar.addfile(info, io.BytesIO(data))
            for w, path in zip(written, files, strict=True):
                tar.add(path, arcname=w.member, recursive=False)
    part.replace(target)
    return written


@dataclass(frozen=True)
class Restored:
    code: str
    created: bool  # the school was added by the restore (a dry run: would be)
    outcome: ImportOutcome | None  # None: a dry run of a school not here yet


def restore_all(
    app_engine: Engine,
    platform_engine: Engine,
    ds: Dataset,
    source: Path,
    dry_run: bool = False,
    requested_by: str = "",
) -> list[Restored]:
    """Restore every school of the archive `source` (see the module doc). The archive is
    checked whole (manifest, members, sizes, sha256) before any school changes:
    InvalidArgument naming what is wrong."""
    with tarfile.open(source, "r:gz") as tar:
        manifest = _manifest(tar)
        fmt = bundle_format(str(manifest["bundle_format"]))
        entries = manifest["schools"]
        with tempfile.TemporaryDirectory(prefix="ferry-all-schools-") as tmp:
            paths = [_extract(tar, e, Path(tmp) / f"{i}") for i, e in enumerate(entries)]
            out: list[Restored] = []
            for entry, path in zip(entries, paths, strict=True):
                code = entry["code"]
                try:
                    school = schools.find(platform_engine, code, field="schools")
                    created = False
                except NotFound:
                    if dry_run:  # it would be added, with every record of its bundle
                        out.append(Restored(code, True, None))
                        continue
                    school = _add_school(platform_engine, entry)
                    created = True
                with tenant.acting_for(school.id), path.open("rb") as f:
                    outcome = run_import(
                        app_engine,
                        ds,
                        fmt.read(f, BundleLimits.own_backup()),
                        MergeOptions(
                            strategy=Strategy.REPLACE, dry_run=dry_run, school=school.code
                        ),
                        requested_by=requested_by,
                        source_sha256=str(entry["sha256"]),
                    )
                out.append(Restored(code, created, outcome))
    return out


def _manifest(tar: tarfile.TarFile) -> dict[str, Any]:
    try:
        member = tar.getmember(MANIFEST)
    except KeyError:
        raise InvalidArgument(f"not a backup of all schools: no {MANIFEST}", field="file") from None
    if not member.isfile() or member.size > MAX_MANIFEST_BYTES:
        raise InvalidArgument(f"{MANIFEST} is not a small file", field="file")
    f = tar.extractfile(member)
    assert f is not None
    try:
        manifest = json.loads(f.read())
    except ValueError:
        raise InvalidArgument(f"{MANIFEST} is not JSON", field=MANIFEST) from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise InvalidArgument(f"{MANIFEST}: kind is not {KIND!r}", field=f"{MANIFEST}.kind")
    if manifest.get("version") != VERSION:
        raise InvalidArgument(
            f"{MANIFEST}: version {manifest.get('version')!r} is unknown; known: {VERSION}",
            field=f"{MANIFEST}.version",
        )
    entries = manifest.get("schools")
    if not isinstance(entries, list) or not entries:
        raise InvalidArgument(f"{MANIFEST}: schools is empty", field=f"{MANIFEST}.schools")
    seen: set[str] = set()
    for i, e in enumerate(entries):
        where = f"{MANIFEST}.schools[{i}]"
        if not isinstance(e, dict):
            raise InvalidArgument(f"{where} is not an object", field=where)
        schools.check_code(e.get("code", ""), f"{where}.code")
        if e["code"] in seen:
            raise InvalidArgument(f"{where}: school {e['code']!r} twice", field=f"{where}.code")
        seen.add(e["code"])
        for key in ("file", "sha256"):
            if not isinstance(e.get(key), str):
                raise InvalidArgument(f"{where}.{key} is missing", field=f"{where}.{key}")
    return manifest


def _extract(tar: tarfile.TarFile, entry: dict[str, Any], path: Path) -> Path:
    """The member `entry` names, copied to `path` and checked against its sha256."""
    try:
        member = tar.getmember(entry["file"])
    except KeyError:
        raise InvalidArgument(
            f"school {entry['code']!r}: the archive lacks its bundle", field="file"
        ) from None
    f = tar.extractfile(member) if member.isfile() else None
    if f is None:
        raise InvalidArgument(f"school {entry['code']!r}: its bundle is not a file", field="file")
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != entry["sha256"]:
        raise InvalidArgument(
            f"school {entry['code']!r}: its bundle does not match its sha256 (damaged)",
            field="file",
        )
    return path


def _add_school(engine: Engine, entry: dict[str, Any]) -> schools.SchoolInfo:
    """Add the school of `entry` (another process may just have: then that one)."""
    try:
        return schools.add(
            engine,
            entry["code"],
            str(entry.get("name", "")),
            str(entry.get("language", "")),
            str(entry.get("time_zone", "")),
            str(entry.get("sender", "")),
        )
    except AlreadyExists:
        return schools.find(engine, entry["code"], field="schools")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def members(source: Path) -> Iterator[str]:
    """The member names of an archive (for tests and `--dry-run` listings)."""
    with tarfile.open(source, "r:gz") as tar:
        yield from tar.getnames()
