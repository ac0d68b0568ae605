"""Entity exports as Ferry writes them (the job's query and format plugin), for tests that
import them back."""

from __future__ import annotations

import io

from sqlalchemy.engine import Engine

from ferry.datasets.school import SCHOOL
from ferry.export_jobs.query import ExportRequest, plan_export, row_fixer
from ferry.export_jobs.runner import tabular_format


def export_file(engine: Engine, entity: str, fmt: str, include_deleted: bool = True) -> bytes:
    """The file an export job of `entity` in `fmt` writes (every row and field)."""
    req = ExportRequest(export_type=entity, include_deleted=include_deleted)
    out = io.BytesIO()
    with engine.connect() as conn:
        plan = plan_export(conn, SCHOOL, req, 10_000_000)
        total = int(conn.execute(plan.count).scalar_one())
        rows = [list(r) for r in conn.execute(plan.rows)]
        fix = row_fixer(plan.columns, engine.dialect.name)
        values = list(fix(rows)) if fix is not None else rows
        tabular_format(fmt).write(out, plan.table({}, total), values)
    return out.getvalue()
