"""The import lock is per dataset and school (docs/tenants.md): while an import of north
holds north's lock, an import of south runs to its end, and another import of north waits
until north's lock is let go."""

from __future__ import annotations

import threading

import pytest

from ferry.bundle.formats.base import Event
from ferry.datasets.school import SCHOOL
from ferry.db import tenant
from ferry.merge import ImportOutcome, Status
from ferry.merge.run import begin_locked
from tests.merge.helpers import run
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres


def test_one_schools_import_never_waits_for_anothers(
    tenancy: Tenancy, source_events: list[Event]
) -> None:
    t = tenancy
    north, south = t.schools["north"], t.schools["south"]
    done: dict[str, ImportOutcome] = {}

    def importing(code: str, school: int) -> threading.Thread:
        def go() -> None:
            with tenant.acting_for(school):
                done[code] = run(t.app, source_events)

        thread = threading.Thread(target=go, daemon=True)
        thread.start()
        return thread

    holder = t.app.connect()
    try:
        with tenant.acting_for(north):
            begin_locked(holder, SCHOOL.name)  # north's import lock, held
        other = importing("south", south)
        other.join(timeout=120)
        assert not other.is_alive() and done["south"].status is Status.COMPLETED
        same = importing("north", north)
        same.join(timeout=3)
        assert same.is_alive() and "north" not in done  # waits for north's lock
    finally:
        holder.rollback()
        holder.close()
    same.join(timeout=120)
    assert done["north"].status is Status.COMPLETED
