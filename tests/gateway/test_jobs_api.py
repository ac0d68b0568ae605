"""Entity export jobs over HTTP: start, Server-Sent Events to completion, signed links,
downloads with ETag and Range."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from typing import Any

from ferry.auth import TokenIssuer
from ferry.auth import links as link_rules
from tests.gateway.conftest import bearer, seed_small

Gateway = Callable[..., Any]


def link_issuer(app: Any) -> TokenIssuer:
    base = app.issuer()
    return TokenIssuer(base.key, base.issuer, link_rules.audience(base.audience))


def _events(text: str) -> list[tuple[str, Any]]:
    out = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((fields.get("event", "message"), json.loads(fields["data"])))
    return out


def _finished_job(client: Any, h: dict[str, str]) -> dict[str, Any]:
    r = client.post("/api/v1/exports", headers=h,
                    json={"export_type": "students", "format": "csv"})  # fmt: skip
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    events = _events(client.get(f"/api/v1/exports/{job['id']}/events", headers=h).text)
    assert events[-1][0] == "end"
    last = events[-2][1]["job"]
    assert last["status"] == "EXPORT_JOB_STATUS_COMPLETED", last
    return dict(last)


def test_job_progress_streams_as_server_sent_events(gateway: Gateway, empty_url: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    job = _finished_job(client, bearer(app, "operator"))
    assert int(job["processed_records"]) > 0 and job["sha256"]
    r = client.get(f"/api/v1/exports/{job['id']}", headers=bearer(app, "viewer"))
    assert r.json()["job"]["status"] == "EXPORT_JOB_STATUS_COMPLETED"
    listed = client.get("/api/v1/exports?page_size=5", headers=bearer(app, "viewer")).json()
    assert [j["id"] for j in listed["jobs"]] == [job["id"]]


def test_job_download_has_etag_and_honours_range(gateway: Gateway, empty_url: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    h = bearer(app, "viewer")
    job = _finished_job(client, bearer(app, "operator"))
    url = f"/api/v1/exports/{job['id']}/download"
    whole = client.get(url, headers=h)
    assert whole.status_code == 200
    assert whole.headers["etag"] == f'"{job["sha256"]}"'
    assert job["filename"] in whole.headers["content-disposition"]
    assert len(whole.content) == int(job["file_size_bytes"])
    part = client.get(url, headers={**h, "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole.content[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(whole.content)}"
    tail = client.get(url, headers={**h, "Range": "bytes=100-"})
    assert tail.status_code == 206 and tail.content == whole.content[100:]
    past = client.get(url, headers={**h, "Range": f"bytes={len(whole.content)}-"})
    assert past.status_code == 416


def test_signed_links_work_without_a_header_and_expire(gateway: Gateway, empty_url: str) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    job = _finished_job(client, bearer(app, "operator"))
    assert client.get(f"/api/v1/exports/{job['id']}/links").status_code == 401
    links = client.get(f"/api/v1/exports/{job['id']}/links", headers=bearer(app, "viewer")).json()
    r = client.get(links["download_url"])
    assert r.status_code == 200 and len(r.content) == int(job["file_size_bytes"])
    assert _events(client.get(links["events_url"]).text)[-1][0] == "end"
    path, _, query = links["download_url"].partition("?")
    tampered = f"{path}?{query[:-3]}{'AAA' if not query.endswith('AAA') else 'BBB'}"
    assert client.get(tampered).status_code == 401
    other = links["download_url"].replace(job["id"], "another-job")
    assert client.get(other).status_code == 401
    swapped = links["events_url"].partition("?")[0] + "?" + query  # download's token
    assert client.get(swapped).status_code == 401
    claims = link_rules.claims_for(link_rules.target(path), path)
    dead = link_issuer(app).issue("x", 1, dt.timedelta(seconds=-30), extra=claims)
    # A genuine link whose time is up is 403 saying it expired (a mail's old link).
    r = client.get(f"{path}?link={dead.token}")
    assert r.status_code == 403 and "expired" in r.json()["message"]
    expired = f"/api/v1/exports/{job['id']}/download?exp={int(time.time()) - 1}&sig=00"
    assert client.get(expired).status_code == 401  # the old HMAC link form opens nothing


def test_a_link_is_only_a_link(gateway: Gateway, empty_url: str) -> None:
    """A link token (issue 23, item 1) opens its one GET and nothing else: not as a Bearer
    header (not even on its own path), not on the job's other routes or /rpc, not with
    another method, and it cannot mint links."""
    seed_small(empty_url)
    client, app = gateway(empty_url)
    job = _finished_job(client, bearer(app, "operator"))
    links_ = client.get(f"/api/v1/exports/{job['id']}/links", headers=bearer(app, "viewer")).json()
    path, _, query = links_["download_url"].partition("?")
    token = query.removeprefix("link=")
    as_bearer = {"Authorization": f"Bearer {token}"}
    assert client.get(path, headers=as_bearer).status_code == 401
    assert client.get(f"/api/v1/exports/{job['id']}", headers=as_bearer).status_code == 401
    assert client.get("/api/v1/auth/whoami", headers=as_bearer).status_code == 401
    for url in (f"/api/v1/exports/{job['id']}", f"/api/v1/exports/{job['id']}/links",
                "/api/v1/auth/whoami", "/api/v1/exports?page_size=5"):  # fmt: skip
        assert client.get(f"{url}{'&' if '?' in url else '?'}{query}").status_code == 401, url
    rpc = client.post(f"/rpc/ExportService.GetExportJob?{query}", json={"job_id": job["id"]})
    assert rpc.status_code == 401
    mint = client.post(f"/api/v1/auth/links?{query}", json={"path": path})
    assert mint.status_code == 401
    assert client.delete(f"{path}?{query}").status_code in (401, 405)
    r = client.get(f"{path}?{query}")  # and its own GET still works
    assert r.status_code == 200 and len(r.content) == int(job["file_size_bytes"])


def test_unknown_job_is_404_and_cancel_of_a_finished_job_is_400(
    gateway: Gateway, empty_url: str
) -> None:
    seed_small(empty_url)
    client, app = gateway(empty_url)
    h = bearer(app, "operator")
    assert client.get("/api/v1/exports/no-such-job", headers=h).status_code == 404
    job = _finished_job(client, h)
    r = client.delete(f"/api/v1/exports/{job['id']}", headers=h)
    assert r.status_code == 400 and r.json()["code"] == "FAILED_PRECONDITION"
