"""The REST API through the ASGI app against real export/import services, on SQLite and
PostgreSQL."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from gateway.routes import all_routes
from tests.gateway.conftest import bearer, seed_small

Gateway = Callable[..., Any]


def test_semesters_list_needs_a_token_and_returns_json(gateway: Gateway, empty_url: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    assert client.get("/api/v1/sessions/semesters").status_code == 401
    r = client.get("/api/v1/sessions/semesters", headers=bearer(app, "viewer"))
    assert r.status_code == 200
    semesters = r.json()["semesters"]
    assert semesters and {"name", "course_count", "student_count"} <= set(semesters[0])


def test_empty_database_lists_no_semesters(gateway: Gateway, empty_url: str) -> None:
    client, app = gateway(empty_url)
    r = client.get("/api/v1/sessions/semesters", headers=bearer(app))
    assert r.status_code == 200 and r.json() == {"semesters": []}


def test_role_below_the_rpcs_min_role_is_403(gateway: Gateway, empty_url: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    r = client.get("/api/v1/sessions/2026-fall/records", headers=bearer(app, "viewer"))
    assert r.status_code == 403 and r.json()["code"] == "PERMISSION_DENIED"


def test_unknown_query_parameter_is_400_naming_it(gateway: Gateway, empty_url: str) -> None:
    client, app = gateway(empty_url)
    r = client.get("/api/v1/sessions/semesters?colour=red", headers=bearer(app))
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "colour"


def test_unknown_body_field_and_bad_json_are_400(gateway: Gateway, empty_url: str) -> None:
    client, app = gateway(empty_url)
    r = client.post("/api/v1/exports", json={"export_type": "students", "colour": 1},
                    headers=bearer(app))  # fmt: skip
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "colour"
    r = client.post("/api/v1/exports", content=b"{not json", headers=bearer(app))
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "body"


def test_literal_path_wins_over_a_template(gateway: Gateway, empty_url: str) -> None:
    client, app = gateway(empty_url)
    r = client.get("/api/v1/exports/stats", headers=bearer(app))
    assert r.status_code == 200 and "success_rate" in r.json()


def test_rpc_procedure_calls_any_unary_method(gateway: Gateway, empty_url: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    r = client.post("/rpc/ExportService.ListSemesters", json={}, headers=bearer(app))
    assert r.status_code == 200 and r.json()["semesters"]
    assert client.post("/rpc/ExportService.ListSemesters", json={}).status_code == 401
    assert client.post("/rpc/ExportService.Nope", json={}, headers=bearer(app)).status_code == 404
    r = client.post("/rpc/ExportService.StreamSession", json={}, headers=bearer(app))
    assert r.status_code == 400


def test_record_stream_is_ndjson_from_header_to_trailer(gateway: Gateway, empty_url: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    r = client.get("/api/v1/sessions/2026-fall/records?batch_size=500", headers=bearer(app))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in r.text.splitlines()]
    assert "header" in lines[0]["chunk"] and "trailer" in lines[-1]["chunk"]
    r = client.get("/api/v1/sessions/1999-spring/records", headers=bearer(app))
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"


def test_the_whole_database_streams_as_ndjson_without_a_semester(
    gateway: Gateway, empty_url: str
) -> None:
    """StreamSession scope=all has its own path: a backup names no semester."""
    seed_small(empty_url)
    client, app = gateway(empty_url)
    query = "scope=all&include_deleted=true&batch_size=500"
    r = client.get(f"/api/v1/sessions/records?{query}", headers=bearer(app))
    assert r.status_code == 200, r.text
    chunks = [json.loads(line)["chunk"] for line in r.text.splitlines()]
    assert "header" in chunks[0] and "trailer" in chunks[-1]
    students = sum(len(c["records"]["students"]) for c in chunks if "records" in c)
    assert students == int(chunks[-1]["trailer"]["counts"]["students"])
    with app.engine.connect() as conn:
        assert students == conn.execute(sa.text("SELECT count(*) FROM students")).scalar()
    r = client.get("/api/v1/sessions/records", headers=bearer(app))
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "semester"


@pytest.mark.parametrize("fmt", ["json", "xlsx"])
def test_semester_export_downloads_a_named_file(gateway: Gateway, empty_url: str, fmt: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    r = client.post(f"/api/v1/sessions/export?semester=2026-fall&format={fmt}",
                    headers=bearer(app, "operator"))  # fmt: skip
    assert r.status_code == 200
    disposition = r.headers["content-disposition"]
    assert re.search(rf'filename="session_2026-fall_\w+\.{fmt}"', disposition)
    if fmt == "json":
        assert json.loads(r.content)["metadata"]["semester"] == "2026-fall"
    else:
        import openpyxl

        assert openpyxl.load_workbook(io.BytesIO(r.content), read_only=True).sheetnames


def test_client_timeout_header_shortens_the_deadline(gateway: Gateway, empty_url: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    h = bearer(app)
    r = client.get("/api/v1/sessions/2026-fall/records", headers={**h, "Grpc-Timeout": "1n"})
    assert r.status_code == 504 and r.json()["code"] == "DEADLINE_EXCEEDED"
    r = client.get("/api/v1/sessions/semesters", headers={**h, "X-Request-Timeout": "soon"})
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "X-Request-Timeout"


def test_every_annotated_rpc_has_a_route_and_an_openapi_operation(
    gateway: Gateway, empty_url: str
) -> None:
    client, _ = gateway(empty_url)
    doc = client.get("/openapi.json").json()
    for route in all_routes():
        assert route.verb.lower() in doc["paths"][route.path], route.path
    assert "/api/v1/auth/login" in doc["paths"]
    semesters = doc["paths"]["/api/v1/sessions/semesters"]["get"]["responses"]["200"]
    ref = semesters["content"]["application/json"]["schema"]["$ref"]
    assert ref.endswith("ferry.v1.ListSemestersResponse")
    params = {p["name"] for p in doc["paths"]["/api/v1/sessions/export"]["post"]["parameters"]}
    assert {"semester", "format"} <= params
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text


def test_pages_carry_security_headers_and_no_inline_script(
    gateway: Gateway, empty_url: str
) -> None:
    client, _ = gateway(empty_url)
    r = client.get("/")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)", r.text)
    assert not re.search(r"\son[a-z]+\s*=", r.text)
    assert client.get("/static/app.js").status_code == 200


def test_health_ready_and_metrics(gateway: Gateway, empty_url: str) -> None:
    client, _ = gateway(empty_url)
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200 and r.json()["services"]["export"] == "SERVING"
    client.get("/api/v1/sessions/semesters")
    metrics = client.get("/metrics").text
    assert 'ferry_gateway_requests_total{method="GET",route="/api/v1/sessions/semesters"' in metrics


def test_cors_allows_only_configured_origins(gateway: Gateway, empty_url: str) -> None:
    client, _ = gateway(empty_url, FERRY_GATEWAY_CORS_ORIGINS='["https://school.example"]')
    pre = {"Access-Control-Request-Method": "GET"}
    ok = client.options("/api/v1/sessions/semesters",
                        headers={**pre, "Origin": "https://school.example"})  # fmt: skip
    assert ok.headers["access-control-allow-origin"] == "https://school.example"
    other = client.options("/api/v1/sessions/semesters",
                           headers={**pre, "Origin": "https://evil.example"})  # fmt: skip
    assert "access-control-allow-origin" not in other.headers


def test_unknown_import_rejected_file_is_404(gateway: Gateway, empty_url: str) -> None:
    client, app = gateway(empty_url)
    r = client.get("/api/v1/imports/00000000-0000-0000-0000-000000000000/rejected",
                   headers=bearer(app))  # fmt: skip
    assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"


def test_absurd_stats_window_is_a_400_not_a_500(gateway: Gateway, empty_url: str) -> None:
    client, app = gateway(empty_url)
    r = client.get("/api/v1/exports/stats?days=352447077", headers=bearer(app))
    assert r.status_code == 400
    assert r.json()["details"][0]["field"] == "days"
