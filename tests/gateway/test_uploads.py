"""Uploads: a bundle file previewed, imported, listed and undone over HTTP; uploads over
the limit are refused while they are read."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import httpx
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from ferry.app import App
from ferry.v1 import import_pb2, import_pb2_grpc
from gateway.app import create_app
from gateway.calls import ServiceChannels
from gateway.server import GatewayServer
from tests.conftest import running
from tests.gateway.conftest import SERVICES, bearer, seed_small

Gateway = Callable[..., Any]


def _bundle(client: Any, app: App, fmt: str = "json") -> bytes:
    r = client.post(f"/api/v1/sessions/export?semester=2026-fall&format={fmt}",
                    headers=bearer(app, "operator"))  # fmt: skip
    assert r.status_code == 200, r.text
    return bytes(r.content)


def _semesters(client: Any, app: App) -> list[str]:
    r = client.get("/api/v1/sessions/semesters", headers=bearer(app))
    return [s["name"] for s in r.json()["semesters"]]


def _titles(app: App) -> set[str]:
    with app.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT title FROM courses WHERE semester = '2026-fall'"))
        return {r[0] for r in rows}


def _rename_courses(app: App, title: str) -> None:
    with app.engine.begin() as conn:
        conn.execute(sa.text("UPDATE courses SET title = :t WHERE semester = '2026-fall'"),
                     {"t": title})  # fmt: skip


@pytest.mark.parametrize("fmt", ["json", "tar.gz"])
def test_preview_import_list_and_undo_a_bundle(gateway: Gateway, empty_url: str, fmt: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    data = _bundle(client, app, fmt)
    original = _titles(app)
    _rename_courses(app, "Renamed since the export")
    h = bearer(app, "operator")
    files = {"file": (f"session_2026-fall.{fmt}", data, "application/octet-stream")}
    r = client.post("/api/v1/sessions/import?merge_strategy=update&dry_run=true",
                    files=files, headers=h)  # fmt: skip
    assert r.status_code == 200, r.text
    preview = r.json()["result"]
    assert preview["status"] == "IMPORT_STATUS_DRY_RUN"
    updated = {s["entity"]: int(s["updated"]) for s in preview["summaries"]}
    assert updated["courses"] == len(original) > 0
    assert any(c["action"] == "update" for c in preview["sample_changes"])
    assert _titles(app) == {"Renamed since the export"}  # a preview changes nothing

    r = client.post("/api/v1/sessions/import?merge_strategy=MERGE_STRATEGY_UPDATE",
                    files=files, headers=h)  # fmt: skip
    assert r.status_code == 200, r.text
    done = r.json()["result"]
    assert done["status"] == "IMPORT_STATUS_COMPLETED"
    assert {s["entity"]: int(s["updated"]) for s in done["summaries"]} == updated
    assert _titles(app) == original

    listed = client.get("/api/v1/imports", headers=h).json()["imports"]
    assert done["id"] in [i["id"] for i in listed]
    r = client.post(f"/api/v1/imports/{done['id']}/undo", json={}, headers=h)
    assert r.status_code == 200 and r.json()["result"]["status"] == "IMPORT_STATUS_UNDONE"
    assert _titles(app) == {"Renamed since the export"}


def test_raw_body_upload_and_bad_strategy(gateway: Gateway, empty_url: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    data = _bundle(client, app)
    h = bearer(app, "operator")
    r = client.post("/api/v1/sessions/import?dry_run=true&filename=s.json", content=data,
                    headers={**h, "content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["result"]["status"] == "IMPORT_STATUS_DRY_RUN"
    r = client.post("/api/v1/sessions/import?merge_strategy=sideways", content=data, headers=h)
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "merge_strategy"
    r = client.post("/api/v1/sessions/import", content=b"", headers=h)
    assert r.status_code == 400
    r = client.post("/api/v1/sessions/import", content=data)
    assert r.status_code == 401


def _body(total: int, piece: int = 256 * 1024) -> Iterator[bytes]:
    """`total` bytes made on the fly (never held whole)."""
    block = b"x" * piece
    sent = 0
    while sent < total:
        yield block
        sent += piece


def test_upload_over_the_limit_is_413_while_reading_and_imports_nothing(
    make_app: Callable[..., App], empty_url: str
) -> None:
    limit = 4 * 1024 * 1024
    app = make_app(empty_url, FERRY_GATEWAY_MAX_UPLOAD_BYTES=limit)
    with running(app, SERVICES) as server:
        gw = GatewayServer(app, target=f"127.0.0.1:{server.port}", port=0)
        port = gw.start()
        try:
            base = f"http://127.0.0.1:{port}"
            h = bearer(app, "operator")
            tracemalloc.start()
            try:
                r = httpx.post(f"{base}/api/v1/sessions/import?filename=big.json",
                               content=_body(10 * limit), headers=h, timeout=30)  # fmt: skip
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert r.status_code == 413
            assert r.json()["code"] == "RESOURCE_EXHAUSTED"
            # Gateway, client and services share this process: reading the whole 40 MiB
            # body would show here. What is held is a few 1 MiB chunks in flight on each
            # side (the gateway's one-chunk lookahead for the sha256, gRPC's buffers, the
            # service's receive and spool): about 10 MiB, once 228 bytes over the 2.5x
            # limit this test had, so the bound is 3x.
            assert peak < 3 * limit, f"peak {peak} bytes while uploading"
            listed = httpx.get(f"{base}/api/v1/imports", headers=h).json()
            assert all(i["status"] != "IMPORT_STATUS_COMPLETED" for i in listed["imports"])
            assert httpx.get(f"{base}/api/v1/sessions/semesters", headers=h).json() == {
                "semesters": []
            }
        finally:
            gw.stop()


def test_entity_csv_upload_previews_through_import_entities(
    gateway: Gateway, empty_url: str
) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    h = bearer(app, "operator")
    r = client.post("/api/v1/exports", json={"export_type": "courses", "format": "csv"},
                    headers=h)  # fmt: skip
    job_id = r.json()["job"]["id"]
    client.get(f"/api/v1/exports/{job_id}/events", headers=h)  # until it ends
    data = client.get(f"/api/v1/exports/{job_id}/download", headers=h).content
    files = {"file": ("courses.csv", data, "text/csv")}
    r = client.post("/api/v1/imports/entities?entity=courses&dry_run=true", files=files,
                    headers=h)  # fmt: skip
    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result["status"] == "IMPORT_STATUS_DRY_RUN" and result["entity"] == "courses"
    courses = next(s for s in result["summaries"] if s["entity"] == "courses")
    assert int(courses["unchanged"]) > 0 and int(courses["created"]) == 0


def test_json_body_over_4_mib_is_413(gateway: Gateway, empty_url: str) -> None:
    client, app = gateway(empty_url)
    body = b'{"export_type": "' + b"x" * (5 * 1024 * 1024) + b'"}'
    r = client.post("/api/v1/exports", content=body, headers=bearer(app, "operator"))
    assert r.status_code == 413 and r.json()["code"] == "RESOURCE_EXHAUSTED"


def test_the_last_chunk_carries_the_files_sha256(
    make_app: Callable[..., App], tmp_path: Any
) -> None:
    """The gateway marks an upload whole the way the CLI does: the file's sha256 on the
    last FileChunk only, so the service can tell it from one a cancel cut off."""
    seen: list[Any] = []

    class Recording(import_pb2_grpc.ImportServiceServicer):
        def ImportEntities(self, request_iterator: Any, context: Any) -> Any:
            seen.extend(r.file_chunk for r in request_iterator if r.HasField("file_chunk"))
            return import_pb2.ImportEntitiesResponse()

    server = grpc.server(futures.ThreadPoolExecutor(2))
    import_pb2_grpc.add_ImportServiceServicer_to_server(Recording(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    data = b"student_id,first_name\n" + b"".join(b"S%06d,Name\n" % i for i in range(300_000))
    app = make_app(f"sqlite:///{tmp_path / 'g.db'}")
    try:
        asgi = create_app(app, ServiceChannels(app.settings.client, f"127.0.0.1:{port}"))
        with TestClient(asgi) as client:
            r = client.post(
                "/api/v1/imports/entities?entity=students&filename=s.csv",
                content=data,
                headers={**bearer(app, "operator"), "content-type": "text/csv"},
            )
        assert r.status_code == 200, r.text
    finally:
        server.stop(None)
    assert len(seen) > 1 and b"".join(c.data for c in seen) == data
    assert [bool(c.sha256) for c in seen] == [False] * (len(seen) - 1) + [True]
    assert seen[-1].sha256 == hashlib.sha256(data).hexdigest()
