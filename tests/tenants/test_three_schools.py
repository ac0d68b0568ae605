"""Three schools on PostgreSQL holding the same natural keys (docs/tenants.md): each
imports its own version of one bundle, exports exactly what it imported, and keeps it
through another school's update and undo; no row links across schools, and a school's
undo cannot reach another's import. The app role runs everything, as a service does."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.db import tenant
from ferry.errors import NotFound
from ferry.merge import Status, undo_import
from tests.merge.helpers import bundle, comparable, edited, run
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres


def crossing(t: Tenancy) -> dict[str, int]:
    """Rows whose parent, or whose import, is of another school (platform's count)."""
    found = {}
    with t.platform.connect() as conn:
        for e in SCHOOL.in_order():
            for r in e.references:
                parent = SCHOOL.entity(r.parent).table.name
                found[f"{e.name}.{r.column}"] = conn.execute(
                    sa.text(
                        f"SELECT count(*) FROM {e.table.name} c JOIN {parent} p "
                        f"ON p.id = c.{r.column} WHERE p.school_id <> c.school_id"
                    )
                ).scalar_one()
        for table in ("import_changes", "import_rejects", "pending_links", "key_renames"):
            found[table] = conn.execute(
                sa.text(
                    f"SELECT count(*) FROM {table} c JOIN imports i ON i.id = c.import_id "
                    "WHERE i.school_id <> c.school_id"
                )
            ).scalar_one()
    return found


def test_three_schools_with_the_same_keys_never_mix(
    tenancy: Tenancy, source_events: list[Event]
) -> None:
    t = tenancy
    # One bundle, a version per school: the same keys, a name that says whose it is.
    sent = {
        code: edited(source_events, "students", 0, first_name=f"Of {code}") for code in t.schools
    }
    imports = {}
    for code, school in t.schools.items():
        with tenant.acting_for(school):
            outcome = run(t.app, sent[code])
        assert outcome.status is Status.COMPLETED, code
        imports[code] = outcome.id

    def exported(code: str) -> dict[str, list[tuple[object, ...]]]:
        with tenant.acting_for(t.schools[code]):
            return comparable(bundle(t.app))

    for code in t.schools:
        assert exported(code) == comparable(sent[code]), code
    before = {code: exported(code) for code in t.schools}

    # North updates a record and takes the update back; the others never notice.
    north = t.schools["north"]
    with tenant.acting_for(north):
        changed = run(t.app, edited(sent["north"], "courses", 0, title="Changed"))
        assert changed.status is Status.COMPLETED
        assert exported("north") != before["north"]
        # South cannot undo north's import: to south it does not exist.
        with tenant.acting_for(t.schools["south"]), pytest.raises(NotFound):
            undo_import(t.app, SCHOOL, changed.id)
        assert undo_import(t.app, SCHOOL, changed.id).status is Status.UNDONE
    for code in t.schools:
        assert exported(code) == before[code], code

    assert set(crossing(t).values()) == {0}
    with t.platform.connect() as conn:
        owners = dict(conn.execute(sa.text("SELECT id, school_id FROM imports")).all())
    assert {owners[imports[c]] for c in t.schools} == set(t.schools.values())
