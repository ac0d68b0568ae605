"""Bundle format version 2 (docs/tenants.md): a bundle's metadata may name its school,
which a Ferry reading version 1 refused as an unknown field, so the version was raised.
A version 1 bundle (no school) still imports, from a file and as typed chunks; a bundle
of a newer version than this Ferry reads is INVALID_ARGUMENT naming both versions, and
nothing is written."""

from __future__ import annotations

import copy

import orjson
import pytest
import sqlalchemy as sa

from ferry.bundle.formats.base import Event, Header
from ferry.bundle.scan import FORMAT_VERSION
from ferry.db import tenant
from ferry.errors import InvalidArgument
from ferry.merge import Status
from tests.bundle.helpers import decode, encode
from tests.merge.helpers import bundle, records, run
from tests.tenants.conftest import Tenancy
from tests.tenants.test_walls import per_school

pytestmark = pytest.mark.postgres


def versioned(events: list[Event], version: int) -> list[Event]:
    """`events` with a header of format `version` that names no school (as every bundle
    before version 2)."""
    out = copy.deepcopy(events)
    head = out[0]
    assert isinstance(head, Header)
    head.metadata.format_version = version
    head.metadata.ClearField("school")
    return out


def test_version_2_names_the_school_and_a_version_1_bundle_still_imports(
    tenancy: Tenancy, source_events: list[Event]
) -> None:
    t = tenancy
    north, south = t.schools["north"], t.schools["south"]
    assert FORMAT_VERSION == 2
    sent = sum(len(v) for v in records(source_events).values())
    old = encode("json", versioned(source_events, 1))
    meta = orjson.loads(old)["metadata"]
    assert meta["format_version"] == 1 and "school" not in meta
    got = decode("json", old)
    head = got[0]
    assert isinstance(head, Header)
    assert (head.metadata.format_version, head.metadata.school) == (FORMAT_VERSION, "")
    # Into a school of an installation of several: a bundle of no school goes where the
    # call acts, from a file (upgraded while decoding) and as typed chunks (as sent).
    with tenant.acting_for(north):
        done = run(t.app, got)
        assert done.status is Status.COMPLETED, done.error_message
        assert sum(s.created for s in done.summaries) == sent
        again = bundle(t.app)
    with tenant.acting_for(south):
        typed = run(t.app, versioned(source_events, 1))
        assert typed.status is Status.COMPLETED, typed.error_message
        assert sum(s.created for s in typed.summaries) == sent
    assert per_school(t, "students")[north] == per_school(t, "students")[south]
    # What this Ferry writes is version 2, naming the school.
    written = orjson.loads(encode("json", again))["metadata"]
    assert (written["format_version"], written["school"]) == (2, "north")


@pytest.mark.parametrize("name", ["json", "jsonl", "tar.gz"])
def test_a_bundle_of_a_newer_version_is_invalid_argument_naming_both(
    tenancy: Tenancy, source_events: list[Event], name: str
) -> None:
    t = tenancy
    north = t.schools["north"]
    newer = versioned(source_events, FORMAT_VERSION + 1)
    with pytest.raises(InvalidArgument) as file_error:
        decode(name, encode(name, newer))
    said = str(file_error.value)
    assert f"version {FORMAT_VERSION + 1} is newer" in said
    assert f"(version {FORMAT_VERSION})" in said
    assert file_error.value.field == "format_version"
    # Typed chunks carry their header as sent: the merge engine refuses it before anything.
    with tenant.acting_for(north), pytest.raises(InvalidArgument) as typed_error:
        run(t.app, newer)
    assert str(typed_error.value) == said and typed_error.value.field == "format_version"
    with t.platform.connect() as conn:
        for table in ("imports", "students", "courses"):
            assert conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
