"""The renames a bundle carries (BundleMetadata.renames): natural keys changed here or by
an import (the `key_renames` table, written by ferry.merge.renames), oldest first. A
delta carries those made since its updated_since; a full bundle every one."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.db import tenant
from ferry.v1 import bundle_pb2 as pb


def add_renames(meta: pb.BundleMetadata, conn: Connection, since: dt.datetime | None) -> None:
    # The application scope: the acting school's renames only.
    query = (
        "SELECT entity, old_key, new_key, renamed_at FROM key_renames k "
        f"WHERE {tenant.scope_sql('k')}"
    )
    params: dict[str, object] = {}
    if since is not None:
        query += " AND renamed_at >= :since"
        params["since"] = since
    for entity, old, new, when in conn.execute(sa.text(query + " ORDER BY renamed_at, id"), params):
        if isinstance(when, str):  # SQLite without the column's type: naive UTC text
            when = dt.datetime.fromisoformat(when)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        r = meta.renames.add(entity=entity, old_key=old, new_key=new)
        r.renamed_at.FromDatetime(when)
