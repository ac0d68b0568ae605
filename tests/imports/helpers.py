"""Shared helpers for the import service tests: servers, uploads, table fingerprints."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import sqlalchemy as sa

from ferry.app import App
from ferry.bundle.formats.base import Batch, BundleLimits
from ferry.bundle.formats.json import JsonBundle
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.v1 import bundle_pb2, export_pb2, export_pb2_grpc, import_pb2, import_pb2_grpc
from tests.conftest import auth, running

CHUNK = 64 * 1024


class Stubs:
    def __init__(self, app: App, port: int, role: str = "operator") -> None:
        self.port = port
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.imports = import_pb2_grpc.ImportServiceStub(self.channel)
        self.export = export_pb2_grpc.ExportServiceStub(self.channel)
        self.md = auth(app, role)


@contextmanager
def serving(app: App, role: str = "operator") -> Iterator[Stubs]:
    """The export and import services of `app` on a real server, with stubs for `role`."""
    with running(app, ["export", "import"]) as srv:
        stubs = Stubs(app, srv.port, role)
        try:
            yield stubs
        finally:
            stubs.channel.close()


def seed_small(url: str) -> None:
    """Demo data in a test's own fresh database (never the shared seeded one)."""
    engine = make_engine(url)
    seed(engine, Scale.SMALL, seed=3)
    engine.dispose()


# Bundles include soft-deleted records so imports carry deletions too.
def download(stubs: Stubs, semester: str = "2026-fall", fmt: str = "json") -> bytes:
    """The semester's bundle file (soft-deleted records included) from DownloadSession."""
    req = export_pb2.DownloadSessionRequest(
        semester=semester, bundle_format=fmt, include_deleted=True
    )
    return b"".join(
        m.chunk.data for m in stubs.export.DownloadSession(req, metadata=stubs.md, timeout=60)
    )


def stream_chunks(stubs: Stubs, semester: str = "2026-fall") -> list[bundle_pb2.BundleChunk]:
    req = export_pb2.StreamSessionRequest(semester=semester, include_deleted=True)
    return [m.chunk for m in stubs.export.StreamSession(req, metadata=stubs.md, timeout=60)]


def file_requests(
    data: bytes, filename: str, **options: Any
) -> Iterator[import_pb2.ImportSessionRequest]:
    yield import_pb2.ImportSessionRequest(
        options=import_pb2.ImportOptions(filename=filename, **options)
    )
    for offset in range(0, len(data), CHUNK):
        yield import_pb2.ImportSessionRequest(
            file_chunk=bundle_pb2.FileChunk(data=data[offset : offset + CHUNK], offset=offset)
        )


def import_file(stubs: Stubs, data: bytes, filename: str = "b.json", **options: Any) -> Any:
    """The ImportResult of uploading `data` with ImportSession."""
    return stubs.imports.ImportSession(
        file_requests(data, filename, **options), metadata=stubs.md, timeout=60
    ).result


def entity_requests(
    data: bytes, filename: str, **options: Any
) -> Iterator[import_pb2.ImportEntitiesRequest]:
    yield import_pb2.ImportEntitiesRequest(
        options=import_pb2.ImportEntitiesOptions(filename=filename, **options)
    )
    yield import_pb2.ImportEntitiesRequest(file_chunk=bundle_pb2.FileChunk(data=data))


def rewrite(data: bytes, edit: Callable[[Batch], None]) -> bytes:
    """A json bundle re-written after `edit` changed its batches (checksum kept valid)."""
    fmt = JsonBundle()
    events = []
    for event in fmt.read(io.BytesIO(data), BundleLimits()):
        if isinstance(event, Batch):
            edit(event)
        events.append(event)
    out = io.BytesIO()
    fmt.write(events, out)
    return out.getvalue()


def edit_first(entity: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Batch], None]:
    """An edit for `rewrite` applying `change` to the first record of `entity` only."""
    done: list[bool] = []

    def edit(batch: Batch) -> None:
        if batch.entity == entity and batch.records and not done:
            change(batch.records[0])
            done.append(True)

    return edit


def counts(url: str) -> dict[str, int]:
    """Rows per entity (soft-deleted ones included)."""
    engine = make_engine(url)
    with engine.connect() as conn:
        out = {
            e.name: conn.execute(sa.select(sa.func.count()).select_from(e.table)).scalar_one()
            for e in SCHOOL.in_order()
        }
    engine.dispose()
    return out


def fingerprint(url: str, tables: Iterable[str] | None = None) -> dict[str, str]:
    """A sha256 per entity table over every row and column (ids included), in id order."""
    engine = make_engine(url)
    out = {}
    with engine.connect() as conn:
        for e in SCHOOL.in_order():
            if tables is not None and e.name not in tables:
                continue
            h = hashlib.sha256()
            for row in conn.execute(sa.select(e.table).order_by(*e.table.primary_key.columns)):
                h.update(repr(tuple(row)).encode())
            out[e.name] = h.hexdigest()
    engine.dispose()
    return out


def summary(result: Any) -> dict[str, dict[str, int]]:
    return {
        s.entity: {
            k: getattr(s, k)
            for k in (
                "created",
                "updated",
                "unchanged",
                "skipped",
                "unmatched",
                "deleted",
                "errors",
            )
            if getattr(s, k)
        }
        for s in result.summaries
    }
