"""DownloadSession over a real server, delta bundles, and `ferry export session`."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry.app import App
from ferry.bundle.formats.base import BundleLimits, Header, Trailer
from ferry.cli.main import cli
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from ferry.v1 import export_pb2, export_pb2_grpc
from tests.bundle.helpers import FORMATS, fmt, records_of
from tests.conftest import auth, running
from tests.integration.test_cli import env_for

MiB = 1024 * 1024


def download(app: App, port: int, **request: Any) -> list[Any]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        req = export_pb2.DownloadSessionRequest(**request)
        return [m.chunk for m in stub.DownloadSession(req, metadata=auth(app), timeout=60)]


def stream_counts(app: App, port: int, **request: Any) -> tuple[dict[str, int], list[Any]]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        stub = export_pb2_grpc.ExportServiceStub(ch)
        req = export_pb2.StreamSessionRequest(**request)
        msgs = [m.chunk for m in stub.StreamSession(req, metadata=auth(app), timeout=60)]
    return dict(msgs[-1].trailer.counts), msgs


def assemble(chunks: list[Any]) -> bytes:
    """The file, after checking offsets, sizes, the first chunk's name and the sha256."""
    offset = 0
    for c in chunks:
        assert c.offset == offset and len(c.data) <= MiB
        offset += len(c.data)
    data = b"".join(c.data for c in chunks)
    assert chunks[-1].sha256 == hashlib.sha256(data).hexdigest()
    assert all(not c.sha256 for c in chunks[:-1])
    assert all(not c.filename for c in chunks[1:])
    return data


@pytest.mark.parametrize("name", FORMATS)
def test_download_session_file_parses_back_with_stream_session_counts(
    seeded_url: str, make_app: Callable[..., App], name: str
) -> None:
    app = make_app(seeded_url)
    with running(app) as srv:
        chunks = download(app, srv.port, semester="2026-fall", bundle_format=name)
        counts, _ = stream_counts(app, srv.port, semester="2026-fall")
    data = assemble(chunks)
    ext = name.replace(".", r"\.")
    assert re.fullmatch(rf"session_2026-fall_\d{{8}}T\d{{6}}Z\.{ext}", chunks[0].filename)
    assert chunks[0].content_type == fmt(name).content_type
    events = list(fmt(name).read(io.BytesIO(data), BundleLimits()))
    head, tail = events[0], events[-1]
    assert isinstance(head, Header) and isinstance(tail, Trailer)
    assert head.metadata.exported_by == "tester" and head.metadata.semester == "2026-fall"
    assert {k: v for k, v in tail.counts.items() if v} == {k: v for k, v in counts.items() if v}
    assert sum(counts.values()) > 0


def test_download_chunks_are_whole_mebibytes_except_the_last(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(seeded_url)
    with running(app) as srv:
        chunks = download(
            app, srv.port, semester="2026-fall", bundle_format="jsonl", include_deleted=True
        )
    data = assemble(chunks)
    assert len(chunks) == -(-len(data) // MiB) and len(chunks) >= 1
    assert all(len(c.data) == MiB for c in chunks[:-1])


def test_unknown_format_lists_the_known_and_unknown_semester_is_not_found(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(seeded_url)
    with running(app) as srv:
        with pytest.raises(grpc.RpcError) as e:
            download(app, srv.port, semester="2026-fall", bundle_format="parquet")
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        known = "json, jsonl, oneroster, sql, tar.gz, xlsx"
        assert f"'parquet'; known: {known}" in str(e.value.details())
        with pytest.raises(grpc.RpcError) as e:
            download(app, srv.port, semester="1999-fall")
        assert e.value.code() == grpc.StatusCode.NOT_FOUND and "1999-fall" in e.value.details()


def test_delta_bundle_carries_changes_and_deletions_since_a_time(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    engine = make_engine(empty_url)
    seed(engine, Scale.SMALL, seed=3)
    since = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)  # after every seeded row
    later = since + dt.timedelta(hours=1)
    with engine.begin() as conn:
        grade = (
            conn.execute(
                sa.text(
                    "SELECT g.id FROM grades g JOIN enrollments e ON e.id = g.enrollment_ref "
                    "JOIN courses c ON c.id = e.course_ref WHERE c.semester = '2026-fall' "
                    "AND g.deleted_at IS NULL ORDER BY g.id LIMIT 2"
                )
            )
            .scalars()
            .all()
        )
        t = sa.table("grades", sa.column("id"), sa.column("score"),
                     sa.column("updated_at", sa.DateTime(timezone=True)),
                     sa.column("deleted_at", sa.DateTime(timezone=True)))  # fmt: skip
        conn.execute(t.update().where(t.c.id == grade[0]).values(score=1.5, updated_at=later))
        conn.execute(t.update().where(t.c.id == grade[1]).values(deleted_at=later))
    engine.dispose()
    app = make_app(empty_url)
    stamp = {"seconds": int(since.timestamp())}
    with running(app) as srv:
        counts, msgs = stream_counts(app, srv.port, semester="2026-fall", updated_since=stamp)
        chunks = download(app, srv.port, semester="2026-fall", updated_since=stamp)
    assert {k: v for k, v in counts.items() if v} == {"grades": 2}
    assert msgs[0].header.metadata.include_deleted
    assert msgs[0].header.metadata.updated_since.ToDatetime(dt.UTC) == since  # marked a delta
    events = list(fmt("json").read(io.BytesIO(assemble(chunks)), BundleLimits()))
    got = records_of(events)
    assert [e for e, _ in got] == ["grades", "grades"]
    by_score = {r["score"]: r for _, r in got}
    assert 1.5 in by_score and by_score[1.5]["deleted_at"] is None
    assert [r["deleted_at"] for _, r in got if r["score"] != 1.5] == [later]
    head = events[0]
    assert isinstance(head, Header) and head.updated_since == since


def test_cli_export_session_writes_a_verified_file(
    seeded_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    app = make_app(seeded_url)
    out = tmp_path / "fall.jsonl"
    with running(app) as srv:
        env = env_for(app, srv.port)
        ok = CliRunner().invoke(
            cli,
            ["export", "session", "--semester", "2026-fall", "--format", "jsonl", "-o", str(out)],
            env=env,
        )
        missing = CliRunner().invoke(
            cli, ["export", "session", "--semester", "1999-fall", "-o", str(out) + "2"], env=env
        )
        bad = CliRunner().invoke(
            cli,
            ["export", "session", "--semester", "2026-fall", "--format", "csv", "-o", str(out)],
            env=env,
        )
    assert ok.exit_code == 0, ok.output
    assert "received" in ok.output and "sha256" in ok.output
    with out.open("rb") as f:
        events = list(fmt("jsonl").read(f, BundleLimits()))
    assert isinstance(events[-1], Trailer) and sum(events[-1].counts.values()) > 0
    assert missing.exit_code == 3 and "NOT_FOUND" in missing.output
    assert not Path(str(out) + "2").exists() and not Path(str(out) + "2.part").exists()
    assert bad.exit_code == 2 and "known: json" in bad.output
