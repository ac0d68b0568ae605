"""Through the gateway, its links and its mails (docs/tenants.md): a token of school south
gets 404 on every resource of north; X-Ferry-School naming another school than the token's
is 404, as an unknown school is; a platform admin's X-Ferry-School picks the school (400
naming it without one); a link of south to north's job opens nothing, and the link a
north job's completion mail carries is north's and opens north's file."""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from ferry.app import App
from ferry.auth import parse_role
from ferry.bundle.formats.base import Event
from ferry.db import tenant
from tests.conftest import make_settings
from tests.gateway.conftest import gateway_for
from tests.merge.helpers import records, run
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres
MINUTE = dt.timedelta(minutes=5)


@dataclass
class Site:
    client: TestClient
    app: App
    tenancy: Tenancy

    def h(self, role: str, school: str, named: str = "") -> dict[str, str]:
        token = self.app.issuer().issue(f"{school}-{role}", parse_role(role), MINUTE, school=school)
        return {
            "authorization": f"Bearer {token.token}",
            **({"x-ferry-school": named} if named else {}),
        }


@pytest.fixture
def site(tenancy: Tenancy, tmp_path: Path) -> Iterator[Site]:
    app = App(
        make_settings(
            tenancy.app_url,
            tmp_path,
            FERRY_EXPORT_POLL_SECONDS="0.2",
            FERRY_NOTIFY_CHANNELS="[log]",
            FERRY_NOTIFY_POLL_SECONDS="0.05",
        )
    )
    try:
        with gateway_for(app) as client:
            yield Site(client, app, tenancy)
    finally:
        app.close()


def _job(site: Site, school: str, notify: list[str]) -> str:
    c, h = site.client, site.h("operator", school)
    r = c.post(
        "/api/v1/exports",
        json={"export_type": "students", "format": "csv", "notify": notify},
        headers=h,
    )
    assert r.status_code == 200, r.text
    job = str(r.json()["job"]["id"])
    deadline = time.monotonic() + 60
    while c.get(f"/api/v1/exports/{job}", headers=h).json()["job"]["status"] != (
        "EXPORT_JOB_STATUS_COMPLETED"
    ):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return job


def test_a_token_of_south_gets_404_on_every_resource_of_north(
    site: Site, source_events: list[Event]
) -> None:
    t, c = site.tenancy, site.client
    with tenant.acting_for(t.schools["north"]):
        imported = run(t.app, source_events).id
    job = _job(site, "north", [])
    north = site.h("admin", "north")
    note = c.post(
        "/api/v1/notifications",
        json={
            "channels": ["log"],
            "recipients": ["n@school.example"],
            "subject": "North",
            "body": "b",
        },
        headers=north,
    ).json()
    note_id = note["notification"]["id"]
    paths = [
        f"/api/v1/imports/{imported}",
        f"/api/v1/exports/{job}",
        f"/api/v1/exports/{job}/download",
        f"/api/v1/exports/{job}/links",
        f"/api/v1/notifications/{note_id}",
    ]
    for path in paths:  # north sees its own
        assert c.get(path, headers=north).status_code == 200, path
    for h in (
        site.h("admin", "south"),
        site.h("viewer", "south"),
        site.h("platform_admin", "north", named="south"),
        site.h("admin", "south", named="south"),
    ):
        for path in paths:
            r = c.get(path, headers=h)
            assert r.status_code == 404, (path, r.status_code, r.text)
        assert c.get("/api/v1/imports", headers=h).json().get("imports", []) == []
    undo = c.post(f"/api/v1/imports/{imported}/undo", json={}, headers=site.h("admin", "south"))
    assert undo.status_code == 404
    # A south token naming north: 404 as a school that does not exist, word for word.
    named = c.get("/api/v1/imports", headers=site.h("admin", "south", named="north"))
    unknown = c.get("/api/v1/imports", headers=site.h("admin", "south", named="nowhere"))
    assert named.status_code == unknown.status_code == 404
    assert named.json()["message"].replace("north", "X") == unknown.json()["message"].replace(
        "nowhere", "X"
    )
    # A platform admin: the header picks the school; without it, 400 naming it.
    picked = c.get("/api/v1/imports", headers=site.h("platform_admin", "south", named="north"))
    assert [i["id"] for i in picked.json()["imports"]] == [imported]
    bare = c.get("/api/v1/imports", headers=site.h("platform_admin", "south"))
    assert bare.status_code == 400 and bare.json()["metadata"]["field"] == "x-ferry-school", (
        bare.text
    )
    bad = c.get("/api/v1/imports", headers=site.h("platform_admin", "south", named="No/pe"))
    assert bad.status_code == 400 and bad.json()["metadata"]["field"] == "X-Ferry-School", bad.text
    # The report fast path (the gateway's JSON memo of a response's bytes): north's report,
    # asked for until it is cached and remembered, is still 404 for south.
    student = str(records(source_events)["students"][0]["student_id"])
    body = {"student_id": student, "semester": "2026-fall"}
    for _ in range(3):
        r = c.post("/api/v1/reports/student-performance", json=body, headers=north)
        assert r.status_code == 200, r.text
    assert r.json()["cached"]
    for h in (site.h("admin", "south"), site.h("platform_admin", "north", named="south")):
        r = c.post("/api/v1/reports/student-performance", json=body, headers=h)
        assert r.status_code == 404, r.text
        assert "first_name" not in r.text and "courses" not in r.json()
    # The untouched import is still there for north.
    assert c.get(f"/api/v1/imports/{imported}", headers=north).json()["result"]["id"] == imported


def test_links_and_mails_open_their_own_school_only(site: Site) -> None:
    c, t = site.client, site.tenancy
    job = _job(site, "north", ["office@north.example"])
    # The page's links for north's job: north's, opening north's file.
    links = c.get(f"/api/v1/exports/{job}/links", headers=site.h("viewer", "north")).json()
    token = parse_qs(urlparse(links["download_url"]).query)["link"][0]
    assert jwt.decode(token, options={"verify_signature": False})["sch"] == "north"
    assert c.get(urlparse(links["download_url"]).path + "?link=" + token).status_code == 200
    # South may ask for a link to north's path (a link names a path, not a job), but the
    # link is south's: it opens nothing.
    made = c.post(
        "/api/v1/auth/links",
        json={"path": f"/api/v1/exports/{job}/download"},
        headers=site.h("admin", "south"),
    )
    assert made.status_code == 200, made.text
    south_link = made.json()["token"]
    assert jwt.decode(south_link, options={"verify_signature": False})["sch"] == "south"
    r = c.get(f"/api/v1/exports/{job}/download?link={south_link}")
    assert r.status_code == 404, r.text
    # The completion mail's link: made by the worker acting for north, so north's.
    deadline = time.monotonic() + 30
    body = ""
    while not body:
        with t.platform.connect() as conn:
            body = (
                conn.execute(
                    sa.text(
                        "SELECT text_body FROM notifications WHERE school_id = :s "
                        "AND text_body LIKE :p"
                    ),
                    {"s": t.schools["north"], "p": "%link=%"},
                ).scalar()
                or ""
            )
        assert body or time.monotonic() < deadline
        time.sleep(0.2)
    found = re.search(r"(/api/v1/exports/[^?\s]+)\?link=([A-Za-z0-9_.\-]+)", body)
    assert found, body
    assert jwt.decode(found.group(2), options={"verify_signature": False})["sch"] == "north"
    assert c.get(f"{found.group(1)}?link={found.group(2)}").status_code == 200
