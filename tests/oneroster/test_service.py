"""The oneroster bundle format over the real services: DownloadSession writes a package
the validator accepts; ImportSession with bundle_format oneroster imports one, with the
loss report among the result's warnings; a refused package is INVALID_ARGUMENT naming
file, row and column, and changes nothing."""

from __future__ import annotations

import io
from collections.abc import Callable

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.oneroster.validate import read_package
from ferry.v1 import import_pb2
from tests.conftest import engine_for
from tests.imports.helpers import download, import_file, seed_small, serving
from tests.oneroster.corpus import T, package, replace_row

pytestmark = pytest.mark.postgres


def test_download_and_import_a_oneroster_package(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs, fmt="oneroster")
        pkg = read_package(io.BytesIO(data))
        assert pkg.errors == [] and pkg.warnings == []
        # the same data back: nothing changes, and nothing is lost silently
        again = import_file(stubs, data, "roster.zip", bundle_format="oneroster")
        assert again.errors == [] and again.status == import_pb2.IMPORT_STATUS_COMPLETED
        for s in again.summaries:
            assert s.created == s.updated == s.deleted == 0, (s, again.sample_changes)
        # a package from elsewhere: created, with its loss report
        result = import_file(stubs, package(), "roster.zip", bundle_format="oneroster")
        lost = {(w.kind, w.entity, w.field): w for w in result.warnings}
        assert lost[("not_imported", "users", "")].sample == ["u-g1 (guardian)"]
    engine = engine_for(empty_url)
    try:
        with engine.connect() as conn:
            got = conn.execute(
                sa.text("SELECT teacher FROM courses WHERE course_code = 'MATH-A-2026F'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert got == "Maria Kosta"


def test_a_refused_package_is_invalid_argument_and_changes_nothing(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    bad = replace_row("users.csv", f"u-t1,active,{T}", f"u-t1,,{T}")
    with serving(make_app(empty_url)) as stubs, pytest.raises(grpc.RpcError) as e:
        import_file(
            stubs, package(bad, modes={"users": "delta"}), "r.zip", bundle_format="oneroster"
        )
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "row 4 of users.csv: `status` must be active or tobedeleted, got ''" in str(
        e.value.details()
    )
    engine = engine_for(empty_url)
    try:
        with engine.connect() as conn:
            n = conn.execute(sa.text("SELECT count(*) FROM students")).scalar_one()
    finally:
        engine.dispose()
    assert n == 0
