"""Issue 22: the page's semester drop-downs count what `ferry export semesters` counts, on
the same data, after a student of the semester is soft-deleted (who then counts nowhere),
and both equal plain SQL over live rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from ferry.datasets.school import SCHOOL
from ferry.imports.tabular import row_batches
from ferry.merge import Status
from ferry.users import create_user
from gateway.server import GatewayServer
from tests.conftest import running
from tests.e2e.test_export_center import PASSWORD, browser  # noqa: F401
from tests.e2e.test_page_states import EL, EN, sign_in
from tests.gateway.conftest import SERVICES, seed_small
from tests.integration.test_cli import env_for
from tests.merge.helpers import run

pytestmark = pytest.mark.browser

LIVE_STUDENTS = (
    "SELECT count(DISTINCT s.id) FROM students s JOIN enrollments e ON e.student_ref = s.id "
    "JOIN courses c ON c.id = e.course_ref WHERE c.semester = :sem AND s.deleted_at IS NULL "
    "AND e.deleted_at IS NULL AND c.deleted_at IS NULL"
)
LIVE_COURSES = "SELECT count(*) FROM courses WHERE semester = :sem AND deleted_at IS NULL"


@pytest.fixture
def stack(make_app: Any, empty_url: str) -> Iterator[tuple[str, App, int]]:
    seed_small(empty_url)
    app = make_app(empty_url)
    create_user(app.engine, "teacher", PASSWORD, "operator")
    # A student of 2026-fall leaves the way a school office does it: a students csv that
    # carries `deleted_at` (Ferry keeps ListSemesters' counts with its own writes).
    with app.engine.connect() as conn:
        sid = conn.execute(
            sa.text(
                "SELECT s.student_id FROM students s WHERE s.id = (SELECT min(e.student_ref) "
                "FROM enrollments e JOIN courses c ON c.id = e.course_ref "
                "WHERE c.semester = '2026-fall')"
            )
        ).scalar_one()
    buf = io.StringIO()
    csv.writer(buf).writerows(
        [["student_id", "deleted_at"], [sid, dt.datetime.now(dt.UTC).isoformat()]]
    )
    rows = csv.DictReader(io.StringIO(buf.getvalue()))
    events = list(row_batches(SCHOOL.entity("students"), rows, {}, 500))
    assert run(app.engine, events, entity="students").status is Status.COMPLETED
    with running(app, SERVICES) as server:
        gw = GatewayServer(app, target=f"127.0.0.1:{server.port}", port=0)
        port = gw.start()
        try:
            yield f"http://127.0.0.1:{port}", app, server.port
        finally:
            gw.stop()


def _cli_counts(app: App, port: int) -> dict[str, tuple[int, int]]:
    """{semester: (students, courses)} as `ferry export semesters` prints them."""
    r = CliRunner().invoke(cli, ["export", "semesters"], env=env_for(app, port))
    assert r.exit_code == 0, r.output
    out = {}
    for line in r.output.splitlines():
        cells = line.split()
        if cells and re.fullmatch(r"\d{4}-\w+", cells[0]):
            out[cells[0]] = (int(cells[2].replace(",", "")), int(cells[1].replace(",", "")))
    return out


@pytest.mark.parametrize("language", ["en", "el"])
def test_the_drop_down_counts_what_the_cli_counts(
    browser: Any,  # noqa: F811
    stack: tuple[str, App, int],
    language: str,
) -> None:
    url, app, port = stack
    cli_counts = _cli_counts(app, port)
    assert "2026-fall" in cli_counts
    with app.engine.connect() as conn:
        for sem, (students, courses) in cli_counts.items():
            assert students == conn.execute(sa.text(LIVE_STUDENTS), {"sem": sem}).scalar_one()
            assert courses == conn.execute(sa.text(LIVE_COURSES), {"sem": sem}).scalar_one()

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(url + "/")
    sign_in(page)
    if language == "el":
        page.select_option("#lang", "el")
    table = EL if language == "el" else EN
    for select in ("#semester", "#job-semester", "#sem-semester", "#cls-semester"):
        options = page.locator(f"{select} option").evaluate_all(
            "os => os.filter(o => o.value).map(o => [o.value, o.textContent])"
        )
        shown = {}
        for value, text in options:
            want = table["semesterOption"]
            students, courses = cli_counts[value]
            assert text == want.format(name=value, students=students, courses=courses), text
            shown[value] = (students, courses)
        assert shown == cli_counts, select
    context.close()
