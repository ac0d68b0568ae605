"""Conflicts left for review on the Export Center page, in a real browser (Debian's
Chromium, headless, Playwright) against a real gateway and services (issue 29): the page
lists each conflict with both values; an operator takes the file's value for one, then,
in Greek, keeps the values here for the rest; each choice is an import in the history;
a conflict decided meanwhile elsewhere is refused in the page's words; a viewer is
refused (403). Every value is checked with plain SQL."""

from __future__ import annotations

import copy
import datetime as dt
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.bundle.formats.base import Batch, Header, Trailer
from ferry.bundle.formats.json import JsonBundle
from ferry.datasets.school import SCHOOL
from ferry.merge import MergeOptions, run_import
from ferry.merge.conflicts import resolve_conflicts
from ferry.users import create_user
from gateway.server import GatewayServer
from tests.conftest import running
from tests.e2e.test_export_center import ARTIFACTS, PASSWORD, STATIC, browser  # noqa: F401
from tests.gateway.conftest import SERVICES, seed_small
from tests.merge.helpers import bundle, rebuild, records

pytestmark = pytest.mark.browser
EN = json.loads((STATIC / "i18n" / "en.json").read_text(encoding="utf-8"))
EL = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))
RULES = (("courses", "review"),)


@pytest.fixture
def review_site(make_app: Callable[..., App], empty_url: str) -> Iterator[tuple[str, App]]:
    seed_small(empty_url)
    app = make_app(
        empty_url,
        FERRY_IMPORTS_KEEP_LOCAL_EDITS="true",
        FERRY_IMPORTS_CONFLICTS="{courses: review}",
        FERRY_IMPORTS_CHANGE_LIMITS="[{entity: highlights, action: delete, max_percent: 10}]",
    )
    create_user(app.engine, "teacher", PASSWORD, "operator")
    create_user(app.engine, "reader", PASSWORD, "viewer")
    with running(app, SERVICES) as server:
        gw = GatewayServer(app, target=f"127.0.0.1:{server.port}", port=0)
        port = gw.start()
        try:
            yield f"http://127.0.0.1:{port}", app
        finally:
            gw.stop()


def _import(app: App, events: Any) -> None:
    run_import(
        app.engine,
        SCHOOL,
        events,
        MergeOptions(keep_local_edits=True, conflicts=RULES),
        requested_by="sync",
        source_sha256="",
    )


def _make_conflicts(app: App, n: int, tag: str = "") -> list[str]:
    """n course titles changed here and at the source, imported: n conflicts listed."""
    events = bundle(app.engine)
    _import(app, events)
    by = copy.deepcopy(records(events))
    live = [c for c in by["courses"] if c["deleted_at"] is None][:n]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    with app.engine.begin() as conn:
        for c in live:
            conn.execute(
                sa.text("UPDATE courses SET title = :t, updated_at = :u WHERE course_code = :c"),
                {"t": f"Here{tag} {c['course_code']}", "u": later, "c": c["course_code"]},
            )
            c["title"] = f"Source{tag} {c['course_code']}"
    _import(app, rebuild(by))
    return [c["course_code"] for c in live]


def _v(stored: Any) -> Any:
    """A conflict's stored value ({"v": ...}; SQLite hands JSON back as text)."""
    return (json.loads(stored) if isinstance(stored, str) else stored)["v"]


def _drop_highlights(app: App, out: Path, share: float) -> int:
    """The 2026-fall bundle without `share` of its live highlights, as a json file (its
    counts told); returns how many were left out."""
    events = bundle(app.engine)
    live = [h for e in events if isinstance(e, Batch) and e.entity == "highlights"
            for h in e.records if h["deleted_at"] is None]  # fmt: skip
    gone = {id(h) for h in live[: int(len(live) * share)]}
    for e in events:
        if isinstance(e, Batch) and e.entity == "highlights":
            e.records = [h for h in e.records if id(h) not in gone]
    counts: dict[str, int] = {}
    for e in events:
        if isinstance(e, Batch):
            counts[e.entity] = counts.get(e.entity, 0) + len(e.records)
    for e in events:
        if isinstance(e, Header):
            e.metadata.counts.clear()
            e.metadata.counts.update(counts)
        if isinstance(e, Trailer):
            e.counts.clear()
            e.counts.update(counts)
    rebuilt = events
    with out.open("wb") as f:
        JsonBundle().write(rebuilt, f)
    return len(gone)


def _sql(app: App, sql: str, **params: Any) -> list[Any]:
    with app.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql), params)]


def test_a_person_decides_review_conflicts_on_the_page_in_english_and_greek(
    browser: Any,  # noqa: F811
    review_site: tuple[str, App],
    backend: str,
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    base, app = review_site
    codes = _make_conflicts(app, 4)
    listed = [
        (i, key, _v(local), _v(source))
        for i, key, local, source in _sql(
            app,
            "SELECT id, natural_key, local_value, source_value FROM import_conflicts "
            "WHERE resolution IS NULL ORDER BY id",
        )
    ]
    assert [r[1] for r in listed] == sorted(codes, key=[r[1] for r in listed].index)
    assert len(listed) == 4
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.set_default_timeout(15_000)
    page.goto(base + "/")
    page.fill("#username", "teacher")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    expect(page.locator("#status")).to_have_text(EN["ready"])

    # Listed with both values, as the database holds them.
    rows = page.locator("#conflicts-table tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#conflicts-count")).to_have_text(EN["conflictsCount"].format(n=4))
    for i, (_cid, key, local, source) in enumerate(listed):
        cells = rows.nth(i).locator("td")
        expect(cells.nth(0)).to_have_text(EN["entity_courses"])
        expect(cells.nth(1)).to_have_text(key)
        expect(cells.nth(2)).to_have_text(EN["field_title"])
        expect(cells.nth(3)).to_have_text(local)
        expect(cells.nth(4)).to_have_text(source)
    page.screenshot(path=str(ARTIFACTS / f"conflicts-{backend}-listed.png"), full_page=True)

    # One conflict: take the file's value.
    first = listed[0][1]
    rows.first.locator("button.conflict-source").click()
    expect(page.locator("#status")).to_have_text(EN["conflictsTookSource"].format(n=1))
    expect(rows).to_have_count(3)
    assert _sql(app, "SELECT title FROM courses WHERE course_code = :c", c=first) == [
        (f"Source {first}",)
    ]
    expect(page.locator("#imports-table tbody tr").first).to_contain_text("conflicts")

    # Decided elsewhere meanwhile: refused in the page's words, and the list is current.
    second_id = listed[1][0]
    resolve_conflicts(app.engine, SCHOOL, [(second_id, "local")], requested_by="someone")
    page.select_option("#lang", "el")
    expect(page.locator("#conflicts-h")).to_have_text(EL["conflictsTitle"])
    rows.nth(0).locator("button.conflict-local").click()
    expect(page.locator("#alert")).to_contain_text(EL["why_CONFLICT_RESOLVED"].format(id=second_id))
    expect(rows).to_have_count(2)

    # The rest, in Greek: keep every value here.
    expect(page.locator("#conflicts-count")).to_have_text(EL["conflictsCount"].format(n=2))
    page.click("#conflicts-all-local")
    expect(page.locator("#status")).to_have_text(EL["conflictsKeptLocal"].format(n=2))
    expect(page.locator("#conflicts")).to_be_hidden()
    assert _sql(app, "SELECT count(*) FROM import_conflicts WHERE resolution IS NULL") == [(0,)]
    for _cid, key, local, _source in listed[2:]:
        assert _sql(app, "SELECT title FROM courses WHERE course_code = :c", c=key) == [(local,)]
    by_teacher = _sql(
        app, "SELECT count(*) FROM imports WHERE requested_by = 'teacher' AND status = 'completed'"
    )
    assert by_teacher == [(2,)]
    page.screenshot(path=str(ARTIFACTS / f"conflicts-{backend}-decided-el.png"), full_page=True)
    # A replace that would soft-delete 40% of the semester's highlights, under a 10%
    # limit: the preview words the limit, the import is refused in words; nothing changes.
    live_before = _sql(
        app,
        "SELECT count(*) FROM highlights h JOIN students s ON s.id = h.student_ref "
        "WHERE h.semester = '2026-fall' AND h.deleted_at IS NULL AND s.deleted_at IS NULL",
    )[0][0]
    removed = _drop_highlights(app, tmp_path / "fall.json", 0.4)
    allowed = live_before * 10 // 100
    page.set_input_files("#import-file", str(tmp_path / "fall.json"))
    page.check("input[value=MERGE_STRATEGY_REPLACE]")
    page.click("#preview-btn")
    expect(page.locator("#import-btn")).to_be_enabled()
    words = {
        "entity": EL["entity_highlights"],
        "verb": EL["limitVerb_delete"],
        "max": "10",
        "where": EL["limitWhereSemester"].format(semester="2026-fall"),
        "allowed": allowed,
        "base": live_before,
        "count": removed,
        "percent": f"{100 * removed / live_before:.1f}",
        "over": removed - allowed,
    }
    expect(page.locator(".change-limits li")).to_have_text(EL["limitOver"].format(**words))
    page.click("#import-btn")
    refusal = EL["why_CHANGE_LIMIT"].format(
        entity="highlights", count=removed, allowed=allowed, base=live_before, max_percent="10",
        over=removed - allowed,
    )  # fmt: skip
    expect(page.locator("#alert")).to_contain_text(refusal)
    live = "SELECT count(*) FROM highlights WHERE semester = '2026-fall' AND deleted_at IS NULL"
    assert _sql(app, live)[0][0] >= live_before  # nothing was soft-deleted
    page.screenshot(path=str(ARTIFACTS / f"limits-{backend}-el.png"), full_page=True)
    # (the browser logs the two refused requests, FAILED_PRECONDITION as HTTP 400)
    assert [e for e in errors if "status of 400" not in e] == [] and len(errors) == 2, errors
    context.close()

    # A viewer sees no choice and may not resolve (403), nothing changes.
    reader = browser.new_context()
    login = reader.request.post(
        base + "/api/v1/auth/login", data={"username": "reader", "password": PASSWORD}
    )
    token = login.json()["token"]
    refused = reader.request.post(
        base + "/api/v1/import-conflicts/resolve",
        data={
            "decisions": [{"conflict_id": str(listed[2][0]), "choice": "CONFLICT_CHOICE_SOURCE"}]
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert refused.status == 403
    unknown = reader.request.get(
        base + "/api/v1/import-conflicts", headers={"Authorization": f"Bearer {token}"}
    )
    assert unknown.status == 200 and unknown.json().get("conflicts", []) == []
    # On the page a viewer sees a new conflict with both values, and no choice.
    _make_conflicts(app, 1, " again")
    page = reader.new_page()
    page.goto(base + "/")
    page.fill("#username", "reader")
    page.fill("#password", PASSWORD)
    page.click("#login-btn")
    expect(page.locator("#conflicts-table tbody tr")).to_have_count(1)
    expect(page.locator("#conflicts-all")).to_be_hidden()
    expect(page.locator("#conflicts-table button")).to_have_count(0)
    reader.close()
