"""NotifyService through the gateway: the routes the proto declares, status codes for bad
input and roles, and the literal /channels route beside /{id}."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

from ferry.app import App
from gateway.app import create_app
from gateway.calls import ServiceChannels
from tests.conftest import running
from tests.gateway.conftest import bearer
from tests.notify.conftest import FAST

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


def test_notifications_over_http(empty_url: str, make_app: Callable[..., App]) -> None:
    app = make_app(empty_url, **FAST)
    with running(app, ["notify"]) as srv:
        asgi = create_app(app, ServiceChannels(app.settings.client, f"127.0.0.1:{srv.port}"))
        with TestClient(asgi, raise_server_exceptions=False) as http:
            op, admin = bearer(app, "operator"), bearer(app, "admin")
            r = http.post(
                "/api/v1/notifications",
                headers=op,
                json={
                    "recipients": ["a@school.example"],
                    "template": "export_failed",
                    "variables": {
                        "export_type": "grades",
                        "format": "pdf",
                        "error": "boom",
                        "job_id": "j1",
                    },
                    "language": "el",
                    "event_id": "rest-1",
                },
            )
            assert r.status_code == 200, r.text
            n = r.json()["notification"]
            assert n["subject"] == "Η εξαγωγή απέτυχε: Βαθμοί (pdf)"  # noqa: RUF001 (Greek)
            again = http.post(
                "/api/v1/notifications",
                headers=op,
                json={
                    "recipients": ["b@school.example"],
                    "subject": "x",
                    "body": "y",
                    "event_id": "rest-1",
                },
            )
            assert again.status_code == 200 and not again.json().get("created", False)
            for _ in range(100):
                got = http.get(f"/api/v1/notifications/{n['id']}", headers=op).json()
                if got["notification"]["status"] == "NOTIFICATION_STATUS_SENT":
                    break
                time.sleep(0.05)
            assert got["notification"]["status"] == "NOTIFICATION_STATUS_SENT"
            chans = http.get("/api/v1/notifications/channels", headers=op)
            assert chans.status_code == 200
            assert [c["name"] for c in chans.json()["channels"]] == ["log"]
            listed = http.get("/api/v1/notifications?status=NOTIFICATION_STATUS_SENT", headers=op)
            assert [x["id"] for x in listed.json()["notifications"]] == [n["id"]]

            bad = http.post(
                "/api/v1/notifications",
                headers=op,
                json={
                    "channels": ["sms"],
                    "recipients": ["a@school.example"],
                    "subject": "s",
                    "body": "b",
                },
            )
            assert bad.status_code == 400
            assert bad.json()["details"][0]["field"] == "channels"
            assert http.get("/api/v1/notifications/nope", headers=op).status_code == 404
            retry = http.post(f"/api/v1/notifications/{n['id']}/retry", headers=op, json={})
            assert retry.status_code == 403
            retry = http.post(f"/api/v1/notifications/{n['id']}/retry", headers=admin, json={})
            assert retry.status_code == 400
            assert retry.json()["code"] == "FAILED_PRECONDITION"
            assert http.get("/api/v1/notifications").status_code == 401
            many = http.post(
                "/api/v1/notifications/bulk",
                headers=op,
                json={
                    "recipients": [f"u{i}@x.example" for i in range(501)],
                    "subject": "s",
                    "body": "b",
                },
            )
            assert many.status_code == 429 and many.json()["code"] == "RESOURCE_EXHAUSTED"


def test_huge_or_odd_template_numbers_are_400_not_500(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    """Issue 23, item 8: size_bytes=1e308 (and its kin) made Babel or timedelta overflow,
    an INTERNAL; each is a 400 naming `variables`, and nothing is queued."""
    import sqlalchemy as sa

    app = make_app(empty_url, **FAST)
    base = {"export_type": "students", "format": "csv", "filename": "f.csv", "job_id": "j1",
            "records": 3, "size_bytes": 100, "duration_seconds": 1.5,
            "download_url": "https://x.example/d",
            "link_expires_at": "2026-12-07T10:00:00+00:00"}  # fmt: skip
    with running(app, ["notify"]) as srv:
        asgi = create_app(app, ServiceChannels(app.settings.client, f"127.0.0.1:{srv.port}"))
        with TestClient(asgi, raise_server_exceptions=False) as http:
            op = bearer(app, "operator")
            for name, value in [("size_bytes", 1e308), ("size_bytes", -1e308),
                                ("records", 1e308), ("records", True),
                                ("duration_seconds", 1e308), ("duration_seconds", -1),
                                ("size_bytes", "1e999"), ("records", [1])]:  # fmt: skip
                r = http.post("/api/v1/notifications", headers=op, json={
                    "recipients": ["a@school.example"], "template": "export_completed",
                    "variables": {**base, name: value}})  # fmt: skip
                assert r.status_code == 400, (name, value, r.text)
                assert r.json()["details"][0]["field"] == "variables", r.text
                assert "needs a number" in r.json()["message"], r.text
            ok = http.post("/api/v1/notifications", headers=op, json={
                "recipients": ["a@school.example"], "template": "export_completed",
                "variables": base})  # fmt: skip
            assert ok.status_code == 200, ok.text
    with app.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM notifications")).scalar_one() == 1
