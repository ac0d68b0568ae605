"""Through the services: pending-link warnings in ImportResult and GetImport and on the
CLI; an undo that later work depends on is FAILED_PRECONDITION; a delta with replace is
INVALID_ARGUMENT (issue 10)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.v1 import export_pb2, import_pb2
from tests.conftest import fresh_database
from tests.imports.helpers import fingerprint, import_file, seed_small, serving
from tests.imports.test_import_cli import _env


def _bundle(stubs, semester: str, **kw) -> bytes:  # type: ignore[no-untyped-def]
    req = export_pb2.DownloadSessionRequest(semester=semester, bundle_format="json", **kw)
    return b"".join(
        m.chunk.data for m in stubs.export.DownloadSession(req, metadata=stubs.md, timeout=60)
    )


def test_warnings_refusals_and_the_cli(
    backend: str, empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as source:
        fall = _bundle(source, "2026-fall")
        spring = _bundle(source, "2026-spring")
        since = export_pb2.DownloadSessionRequest().updated_since
        since.FromDatetime(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
        delta = _bundle(source, "2026-fall", updated_since=since)
    with fresh_database(backend, tmp_path / "t") as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        app = make_app(url)
        with serving(app) as stubs:
            first = import_file(stubs, fall, "fall.json")
            assert first.status == import_pb2.IMPORT_STATUS_COMPLETED
            kinds = {(w.kind, w.entity) for w in first.warnings}
            assert ("pending_links", "students") in kinds or ("pending_links", "courses") in kinds
            shown = stubs.imports.GetImport(
                import_pb2.GetImportRequest(import_id=first.id), metadata=stubs.md, timeout=10
            ).result
            assert list(shown.warnings) == list(first.warnings)
            out = CliRunner().invoke(cli, ["import", "show", first.id], env=_env(app, stubs.port))
            assert out.exit_code == 0, out.output
            assert "note: " in out.output and "not yet in this database" in out.output

            second = import_file(stubs, spring, "spring.json")
            assert any(w.kind == "links_bound" for w in second.warnings), second.warnings
            before = fingerprint(url)
            with pytest.raises(grpc.RpcError) as refused:
                stubs.imports.UndoImport(
                    import_pb2.UndoImportRequest(import_id=first.id, force=True),
                    metadata=stubs.md,
                    timeout=10,
                )
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert second.id in (refused.value.details() or "")
            with pytest.raises(grpc.RpcError) as bad:
                import_file(
                    stubs,
                    delta,
                    "delta.json",
                    strategy=import_pb2.MERGE_STRATEGY_REPLACE,
                )
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "merge_strategy" in (bad.value.details() or "")
            assert "updated_since 2026-01-01T00:00:00Z" in (bad.value.details() or "")
            assert fingerprint(url) == before
