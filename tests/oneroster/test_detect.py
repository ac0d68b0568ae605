"""A OneRoster zip is told by its content (a `manifest.csv`), so `ferry import roster.zip`
needs no `--format` and the page's import box no format choice (issue 28)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from ferry.imports.detect import sniff_bundle_format
from ferry.v1 import import_pb2
from tests.imports.helpers import fingerprint, import_file, serving
from tests.imports.test_import_cli import _env
from tests.oneroster.corpus import package


def _zip(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def test_the_content_tells_a_oneroster_zip_from_others() -> None:
    assert sniff_bundle_format(io.BytesIO(package())) == "oneroster"
    inner = zipfile.ZipFile(io.BytesIO(package()))
    folder = _zip({f"export/{n}": inner.read(n) for n in inner.namelist()})
    assert sniff_bundle_format(io.BytesIO(folder)) == "oneroster"  # a package in one folder
    deep = _zip({f"a/b/{n}": inner.read(n) for n in inner.namelist()})
    assert sniff_bundle_format(io.BytesIO(deep)) == ""
    assert sniff_bundle_format(io.BytesIO(_zip({"xl/workbook.xml": b"<x/>"}))) == "xlsx"
    assert sniff_bundle_format(io.BytesIO(_zip({"notes.txt": b"hi"}))) == ""
    f = io.BytesIO(b'{"metadata": {}}')
    assert sniff_bundle_format(f) == "" and f.tell() == 0


def test_ferry_import_detects_a_oneroster_zip_without_format(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    app = make_app(empty_url)
    target = tmp_path / "roster.zip"
    target.write_bytes(package())
    with serving(app) as stubs:
        got = CliRunner().invoke(
            cli, ["import", str(target), "--dry-run"], env=_env(app, stubs.port)
        )
        assert got.exit_code == 0, got.output
        assert "dry run (nothing changed)" in got.output
        assert "note: users: 1 not imported" in got.output  # the loss report: it was OneRoster
        # A name that tells nothing at all: the content still does.
        result = import_file(stubs, package(), "upload")
        assert result.status == import_pb2.IMPORT_STATUS_COMPLETED, result.errors
        assert result.options.filename == "upload"
        assert {s.entity: s.created for s in result.summaries}["students"] == 2


def test_a_zip_that_is_no_known_bundle_is_refused_and_changes_nothing(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    before = fingerprint(empty_url)
    with serving(make_app(empty_url)) as stubs, pytest.raises(grpc.RpcError) as e:
        import_file(stubs, _zip({"notes.txt": b"hi"}), "other.zip")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot tell the bundle format of 'other.zip'" in (e.value.details() or "")
    assert fingerprint(empty_url) == before
