"""ImportSession through a real server on both backends: bundle files, typed chunks,
dry runs, limits and bad input."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import orjson
import pytest

from ferry.app import App
from ferry.v1 import bundle_pb2, import_pb2
from tests.imports.helpers import (
    counts,
    download,
    edit_first,
    fingerprint,
    import_file,
    rewrite,
    seed_small,
    serving,
    stream_chunks,
    summary,
)


def test_downloaded_bundle_imports_into_an_empty_database_with_equal_counts(
    seeded_url: str, empty_url: str, make_app: Callable[..., App]
) -> None:
    # seeded_url (read-only source) x empty_url covers SQLite -> PostgreSQL too.
    with serving(make_app(seeded_url)) as source:
        data = download(source)
        sent = dict(stream_chunks(source)[-1].trailer.counts)
    with serving(make_app(empty_url)) as target:
        result = import_file(target, data, "fall.json")
    assert result.status == import_pb2.IMPORT_STATUS_COMPLETED
    assert result.semester == "2026-fall" and result.requested_by == "tester"
    assert {e: s.get("created", 0) for e, s in summary(result).items()} == sent
    assert counts(empty_url) == sent
    assert len(result.source_sha256) == 64


def test_dry_run_reports_the_creates_and_changes_nothing(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
        before = fingerprint(empty_url)
        edited = rewrite(data, edit_first("students", _rename))
        result = import_file(stubs, edited, "edited.json", dry_run=True)
    assert result.status == import_pb2.IMPORT_STATUS_DRY_RUN
    assert summary(result)["students"].get("updated") == 1
    change = next(c for c in result.sample_changes if c.entity == "students")
    assert [(f.field, f.new_value) for f in change.changes] == [("first_name", "Changed")]
    assert fingerprint(empty_url) == before


def test_typed_chunks_from_stream_session_import_into_another_server(
    seeded_url: str, empty_url: str, make_app: Callable[..., App]
) -> None:
    with serving(make_app(seeded_url)) as source:
        chunks = stream_chunks(source, "2025-fall")
    requests = [import_pb2.ImportSessionRequest(options=import_pb2.ImportOptions())]
    requests += [import_pb2.ImportSessionRequest(bundle_chunk=c) for c in chunks]
    with serving(make_app(empty_url)) as target:
        result = target.imports.ImportSession(iter(requests), metadata=target.md).result
        assert result.status == import_pb2.IMPORT_STATUS_COMPLETED
        assert result.source_sha256 == chunks[-1].trailer.sha256
        assert counts(empty_url) == dict(chunks[-1].trailer.counts)
        # A record changed on the way: the trailer no longer matches -> DATA_LOSS.
        chunks[1].records.ListFields()[0][1][0].Clear()
        bad = [requests[0]] + [import_pb2.ImportSessionRequest(bundle_chunk=c) for c in chunks]
        before = fingerprint(empty_url)
        with pytest.raises(grpc.RpcError) as e:
            target.imports.ImportSession(iter(bad), metadata=target.md)
    assert e.value.code() == grpc.StatusCode.DATA_LOSS
    assert fingerprint(empty_url) == before


def test_upload_over_the_limit_is_resource_exhausted_and_changes_nothing(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url, FERRY_IMPORTS_MAX_UPLOAD_BYTES=100_000)) as stubs:
        data = download(stubs)
        assert len(data) > 100_000
        before = fingerprint(empty_url)
        with pytest.raises(grpc.RpcError) as e:
            import_file(stubs, data, "big.json")
        listed = stubs.imports.ListImports(import_pb2.ListImportsRequest(), metadata=stubs.md)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "100,000 bytes" in (e.value.details() or "")
    assert fingerprint(empty_url) == before and not listed.imports


def _call(stubs: Any, requests: list[import_pb2.ImportSessionRequest]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        stubs.imports.ImportSession(iter(requests), metadata=stubs.md)
    return e.value


def test_stream_protocol_mistakes_are_invalid_argument(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    chunk = import_pb2.ImportSessionRequest(file_chunk=bundle_pb2.FileChunk(data=b"{}"))
    options = import_pb2.ImportSessionRequest(options=import_pb2.ImportOptions(filename="a.json"))
    typed = import_pb2.ImportSessionRequest(bundle_chunk=bundle_pb2.BundleChunk())
    with serving(make_app(empty_url)) as stubs:
        cases = {
            "first message must be options": [chunk, options],
            "no bundle was sent": [options],
            "never both": [options, chunk, typed],
            "options may only be sent once": [options, options],
        }
        for message, requests in cases.items():
            err = _call(stubs, requests)
            assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, message
            assert message in (err.details() or ""), err.details()
        err = _call(
            stubs, [import_pb2.ImportSessionRequest(options=import_pb2.ImportOptions()), chunk]
        )
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "bundle_format" in (err.details() or "")


def test_malformed_json_newer_version_and_bad_checksum_are_refused(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    seed_small(empty_url)
    with serving(make_app(empty_url)) as stubs:
        data = download(stubs)
        before = fingerprint(empty_url)
        doc = orjson.loads(data)
        newer = {**doc, "metadata": {**doc["metadata"], "format_version": 99}}
        tampered = {**doc, "trailer": {**doc["trailer"], "sha256": "0" * 64}}
        errors = {}
        for name, payload in {
            "truncated": data[: len(data) // 2],
            "newer": orjson.dumps(newer),
            "tampered": orjson.dumps(tampered),
        }.items():
            with pytest.raises(grpc.RpcError) as e:
                import_file(stubs, payload, "x.json")
            errors[name] = e.value
    assert errors["truncated"].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors["newer"].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "99" in (errors["newer"].details() or "")
    assert errors["tampered"].code() == grpc.StatusCode.DATA_LOSS
    assert fingerprint(empty_url) == before


def test_viewer_cannot_import_but_can_list(empty_url: str, make_app: Callable[..., App]) -> None:
    app = make_app(empty_url)
    with serving(app, role="viewer") as stubs:
        with pytest.raises(grpc.RpcError) as e:
            import_file(stubs, b"{}", "x.json")
        listed = stubs.imports.ListImports(import_pb2.ListImportsRequest(), metadata=stubs.md)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert list(listed.imports) == []


def _rename(record: dict[str, Any]) -> None:
    record["first_name"] = "Changed"
