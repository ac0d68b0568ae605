"""The application scope of every report query (docs/tenants.md, the first wall): each
table a query reads is limited to the acting school's rows by the query itself, so a
report is one school's on SQLite, under a role that row-level security does not bind (a
superuser), and with RLS on alike (tests/tenants/test_scope_reports.py)."""

from __future__ import annotations

from typing import Any

from ferry.db import tenant


def mine(*models: Any) -> list[Any]:
    """`model.school_id = <acting school>` for each model (or aliased table) given."""
    school = tenant.school_id()
    return [m.school_id == school for m in models]
