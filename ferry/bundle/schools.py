"""Which school a bundle goes into (docs/tenants.md, "Exports across the wall").

A bundle names the school it was exported from (BundleMetadata.school, its code). An
import acts for one school (the token's, or the platform admin's per-call school), and
may name it (ImportOptions.school, `ferry import FILE --school CODE`):

- named: it must be the acting school's code, else NOT_FOUND (a code this caller cannot
  act for is, to it, no school at all);
- not named, acting for the default school (where work lands that names no school: the
  CLI without --school, a token from before schools), the bundle of another school, the
  installation holding several schools: INVALID_ARGUMENT naming the schools to choose
  from, never silently into the default;
- otherwise it goes into the acting school: one school only, a bundle of no school or of
  the default school's own code, or a call acting for a school it named (its token's, or
  a platform admin's per-call school).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.db import tenant
from ferry.db.schools import check_code
from ferry.errors import InvalidArgument, NotFound

FIELD = "options.school"


def import_target(engine: Engine, source: str, named: str) -> None:
    """Raise unless a bundle of school `source` ("" none) may go into the acting school,
    `named` being the school the caller named ("" none); see the module doc."""
    if not source and not named:
        return
    acting = tenant.school_id()
    with engine.connect() as conn:
        codes = {
            int(i): str(c)
            for i, c in conn.execute(sa.text("SELECT id, code FROM schools ORDER BY code"))
        }
    mine = codes.get(acting, tenant.DEFAULT_SCHOOL_CODE)
    if named:
        check_code(named, FIELD)
        if named != mine:
            raise NotFound(f"school {named!r} not found", field=FIELD)
        return
    if acting != tenant.DEFAULT_SCHOOL_ID or source == mine or len(codes) <= 1:
        return
    choices = sorted(codes.values())
    raise InvalidArgument(
        f"the bundle is of school {source!r} and this installation has several schools: "
        f"name the school to import it into (--school, {FIELD}), one of: {', '.join(choices)}",
        field=FIELD,
    )
