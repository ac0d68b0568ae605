"""The gateway's unary routes answer the same bytes as before their fast path: the JSON of
a read-only RPC's response is remembered by the response's wire bytes (a cached report
asked for again skips protobuf's JSON mapping), and never for an RPC with side effects."""

from __future__ import annotations

import grpc
import pytest
from starlette.responses import JSONResponse

from ferry.app import App
from ferry.v1 import reports_pb2 as pb
from ferry.v1 import reports_pb2_grpc
from gateway import handlers
from gateway.handlers import JsonMemo
from gateway.transcode import to_json
from tests.conftest import auth, running
from tests.gateway.conftest import bearer, gateway_for


def test_cached_report_json_is_byte_for_byte_the_json_response(
    reports_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    memo = JsonMemo()
    monkeypatch.setattr(handlers, "_MEMO", memo)
    body = {"student_id": "S1", "semester": "2026-fall"}
    with gateway_for(reports_app, ["reports"]) as client:
        h = bearer(reports_app, "operator")
        first = client.post("/api/v1/reports/student-performance", json=body, headers=h)
        again = [
            client.post("/api/v1/reports/student-performance", json=body, headers=h)
            for _ in range(3)
        ]
    assert first.status_code == 200 and not first.json()["cached"]
    assert all(r.json()["cached"] for r in again)
    assert len({r.content for r in again}) == 1  # remembered: the same bytes each time
    assert len(memo._data) == 2  # the miss and the hit differ in `cached`
    with running(reports_app, ["reports"]) as server, grpc.insecure_channel(
        f"127.0.0.1:{server.port}"
    ) as ch:  # fmt: skip
        direct = reports_pb2_grpc.ReportsServiceStub(ch).GetStudentReport(
            pb.GetStudentReportRequest(**body), metadata=auth(reports_app, "operator")
        )
    assert direct.cached
    expected = JSONResponse(to_json(direct))
    assert again[0].content == expected.body  # exactly what JSONResponse would send
    assert again[0].headers["content-type"] == expected.headers["content-type"]
    assert again[0].headers["content-length"] == expected.headers["content-length"]


def test_side_effect_rpcs_are_never_remembered(
    reports_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    memo = JsonMemo()
    monkeypatch.setattr(handlers, "_MEMO", memo)
    with gateway_for(reports_app, ["reports"]) as client:
        h = bearer(reports_app, "operator")
        for version in ("1", "2"):
            r = client.delete("/api/v1/reports/cache/S1", headers=h)
            assert r.status_code == 200 and r.json() == {"version": version}
        r = client.get("/api/v1/reports/cache/stats", headers=h)  # a read: remembered
        assert r.status_code == 200
    assert [rpc for rpc, _ in memo._data] == ["/ferry.v1.ReportsService/GetCacheStats"]


def test_errors_are_unchanged(reports_app: App) -> None:
    with gateway_for(reports_app, ["reports"]) as client:
        h = bearer(reports_app, "operator")
        r = client.post(
            "/api/v1/reports/student-performance", json={"student_id": "S404"}, headers=h
        )
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
        r = client.post("/api/v1/reports/student-performance", json={"student_id": "S1"})
        assert r.status_code == 401


def test_memo_is_bounded_by_bytes_and_skips_large_values() -> None:
    memo = JsonMemo(max_bytes=100, max_value=40)
    memo.put("m", b"a" * 10, b"A" * 10)
    memo.put("m", b"b" * 10, b"B" * 10)
    assert memo.get("m", b"a" * 10) == b"A" * 10  # now the most recent
    memo.put("m", b"big", b"X" * 50)  # over max_value: not kept
    assert memo.get("m", b"big") is None
    for i in range(5):
        memo.put("m", bytes([i]) * 10, b"v" * 10)
    assert memo._size <= 100
    assert memo.get("m", b"b" * 10) is None  # the least recently used went first
    assert memo.get("other", b"a" * 10) is None  # keyed by RPC too


def test_repeated_requests_are_built_once_and_errors_every_time(
    reports_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    requests = handlers.RequestMemo()
    monkeypatch.setattr(handlers, "_REQUESTS", requests)
    with gateway_for(reports_app, ["reports"]) as client:
        h = bearer(reports_app, "operator")
        url = "/api/v1/reports/student-performance"
        for _ in range(2):
            r = client.post(url, content=b'{"student_id": ', headers=h)  # not JSON
            assert r.status_code == 400 and "not valid JSON" in r.json()["message"]
            r = client.post(url, json={"student_id": "S1", "nope": 1}, headers=h)
            assert r.status_code == 400 and "nope" in r.json()["message"]
        assert len(requests._data) == 0  # failures are never kept
        for _ in range(2):
            assert client.post(url, json={"student_id": "S1"}, headers=h).status_code == 200
        other = client.post(url, json={"student_id": "S2"}, headers=h)
        assert other.status_code == 200 and other.json()["report"]["student_id"] == "S2"
        fall = client.get("/api/v1/reports/semesters/2026-fall", headers=h)
        spring = client.get("/api/v1/reports/semesters/1999-spring", headers=h)
        assert fall.status_code == 200 and fall.json()["report"]["semester"] == "2026-fall"
        assert spring.status_code == 404  # a path parameter of its own: not the fall request
    # S1 once, S2, and each semester (1999-spring built fine; the service said NOT_FOUND)
    built = [str(m) for m in requests._data.values()]
    assert sorted(built) == sorted(
        ['student_id: "S1"\n', 'student_id: "S2"\n', 'semester: "2026-fall"\n',
         'semester: "1999-spring"\n']
    )  # fmt: skip
