"""Conflicts left for review, through a real server on both backends: ListConflicts shows
both values, ResolveConflicts (operators and admins only) applies a choice as an import of
its own, audited and undoable; wrong ids are named. Checked with plain SQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.db.engine import make_engine
from ferry.v1 import import_pb2 as ipb
from tests.conftest import auth
from tests.imports.helpers import download, fingerprint, import_file, rewrite, seed_small, serving

REVIEW = {"FERRY_IMPORTS_KEEP_LOCAL_EDITS": "true", "FERRY_IMPORTS_CONFLICTS": "{courses: review}"}


def _sql(url: str, sql: str, **params: Any) -> Any:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            result = conn.execute(sa.text(sql), params)
            return result.all() if result.returns_rows else None
    finally:
        engine.dispose()


def _retitle(codes: list[str]) -> Callable[[Any], None]:
    """A bundle edit: the first two live courses get a new title at the source."""

    def edit(batch: Any) -> None:
        if batch.entity != "courses" or codes:
            return
        for record in batch.records:
            if record.get("deleted_at") is None and len(codes) < 2:
                record["title"] = f"Source {record['course_code']}"
                codes.append(record["course_code"])

    return edit


def test_review_conflicts_are_decided_over_the_wire(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url, **REVIEW)
    with serving(app) as stubs:
        codes: list[str] = []
        data = download(stubs)
        import_file(stubs, data, "fall.json")  # imported once: the rows are their own base
        changed = rewrite(data, _retitle(codes))
        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        for code in codes:  # a local edit of each, after the import
            _sql(
                empty_url,
                "UPDATE courses SET title = :t, updated_at = :u WHERE course_code = :c",
                t=f"Here {code}",
                u=later,
                c=code,
            )
        listed_by = import_file(stubs, changed, "fall.json")
        assert listed_by.status == ipb.IMPORT_STATUS_COMPLETED
        viewer = auth(app, "viewer")
        page = stubs.imports.ListConflicts(ipb.ListConflictsRequest(), metadata=viewer, timeout=30)
        open_sql = _sql(
            empty_url,
            "SELECT id, natural_key, field FROM import_conflicts WHERE resolution IS NULL "
            "ORDER BY id",
        )
        assert page.total == len(open_sql) == 2
        assert [(c.id, c.natural_key, c.field) for c in page.conflicts] == [
            tuple(r) for r in open_sql
        ]
        by_key = {c.natural_key: c for c in page.conflicts}
        a, b = codes
        assert (by_key[a].local_value, by_key[a].source_value) == (f"Here {a}", f"Source {a}")
        assert by_key[a].import_id == listed_by.id

        def resolve(md: Any, *decisions: tuple[int, int]) -> Any:
            request = ipb.ResolveConflictsRequest(
                decisions=[ipb.ConflictDecision(conflict_id=i, choice=c) for i, c in decisions]
            )
            return stubs.imports.ResolveConflicts(request, metadata=md, timeout=30).result

        before = fingerprint(empty_url)
        with pytest.raises(grpc.RpcError) as denied:
            resolve(viewer, (by_key[a].id, ipb.CONFLICT_CHOICE_SOURCE))
        assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(grpc.RpcError) as unknown:
            resolve(stubs.md, (by_key[a].id, ipb.CONFLICT_CHOICE_SOURCE), (987654, 1))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
        assert "987654" in (unknown.value.details() or "")
        with pytest.raises(grpc.RpcError) as unchosen:
            resolve(stubs.md, (by_key[a].id, ipb.CONFLICT_CHOICE_UNSPECIFIED))
        assert unchosen.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fingerprint(empty_url) == before

        done = resolve(
            stubs.md,
            (by_key[a].id, ipb.CONFLICT_CHOICE_SOURCE),
            (by_key[b].id, ipb.CONFLICT_CHOICE_LOCAL),
        )
        assert done.status == ipb.IMPORT_STATUS_COMPLETED and done.requested_by == "tester"
        titles = dict(
            _sql(
                empty_url,
                "SELECT course_code, title FROM courses WHERE course_code IN (:a, :b)",
                a=a,
                b=b,
            )
        )
        assert titles == {a: f"Source {a}", b: f"Here {b}"}
        left = stubs.imports.ListConflicts(ipb.ListConflictsRequest(), metadata=viewer, timeout=30)
        assert left.total == 0 and not left.conflicts
        with pytest.raises(grpc.RpcError) as again:
            resolve(stubs.md, (by_key[b].id, ipb.CONFLICT_CHOICE_SOURCE))
        assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert str(by_key[b].id) in (again.value.details() or "")
        # In the history, and undone like any import: the conflicts are open again.
        got = stubs.imports.GetImport(ipb.GetImportRequest(import_id=done.id), metadata=viewer)
        assert got.result.options.filename.startswith("conflicts")
        stubs.imports.UndoImport(ipb.UndoImportRequest(import_id=done.id), metadata=stubs.md)
        assert _sql(empty_url, "SELECT title FROM courses WHERE course_code = :a", a=a) == [
            (f"Here {a}",)
        ]
        reopened = stubs.imports.ListConflicts(
            ipb.ListConflictsRequest(entity="courses"), metadata=viewer, timeout=30
        )
        assert reopened.total == 2
