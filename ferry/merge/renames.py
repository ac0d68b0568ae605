"""Renamed keys followed: a bundle's renames (BundleMetadata.renames) applied in place.

Before any record is merged, each rename (oldest first) of an entity whose natural key is
one field of its own (a student id, a course code):

    old key here, new key not       the record is renamed in place: its children and
                                    links (by id) stay with it; recorded for undo (action
                                    `renamed`, the old key) and in key_renames, so this
                                    installation's own exports carry it on
    both keys here                  a conflict: a record error naming both (the import
                                    fails with on_error=abort; skip_invalid skips it)
    old key not here                nothing (renamed already, or never held)

The bundle's records then match the renamed record by its new key: no duplicate, no
orphan. Undo puts the old key back. `rename_key` renames here (an import of a bundle
holding only the rename, recorded and undoable like any).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ferry.bundle.formats.base import Header, Trailer
from ferry.datasets.spec import Dataset, Entity
from ferry.db import tenant
from ferry.db.import_models import KeyRename
from ferry.errors import InvalidArgument
from ferry.merge.model import MergeOptions, RecordChange, RecordError
from ferry.merge.shape import q
from ferry.v1 import bundle_pb2 as pb

T: sa.Table = KeyRename.__table__  # type: ignore[assignment]


def key_field(ds: Dataset, name: str, where: str = "entity") -> tuple[Entity, str]:
    """The entity and its one-field natural key; InvalidArgument for others."""
    if name not in ds.entities:
        raise InvalidArgument(
            f"unknown entity {name!r}; known: {', '.join(ds.entities)}", field=where
        )
    entity = ds.entity(name)
    key = entity.natural_key
    own = {c.name for c in entity.table.c}
    if len(key) != 1 or key[0] not in own:
        renamable = [
            e.name
            for e in ds.in_order()
            if len(e.natural_key) == 1 and e.natural_key[0] in {c.name for c in e.table.c}
        ]
        raise InvalidArgument(
            f"{name} records cannot be renamed: their key is made of their parents' keys "
            f"(renamable: {', '.join(renamable)})",
            field=where,
        )
    return entity, key[0]


def apply(
    conn: Connection,
    ds: Dataset,
    renames: list[pb.KeyRename],
    import_id: str,
    now: Any,
    now_dt: dt.datetime,
) -> tuple[list[RecordError], list[RecordChange], dict[str, int], str]:
    """Apply `renames` (see the module doc). Returns the conflicts (record errors), the
    samples (action `rename`), renamed records per entity, and the plan's part (what
    each rename found, with the versions of the rows it read)."""
    errors: list[RecordError] = []
    samples: list[RecordChange] = []
    counted: dict[str, int] = {}
    seen: list[str] = []
    ordered = sorted(enumerate(renames), key=lambda p: (p[1].renamed_at.ToDatetime(), p[0]))
    for i, r in ordered:
        entity, field = key_field(ds, r.entity, f"metadata.renames[{i}].entity")
        table = q(entity.table.name)
        rows = conn.execute(
            sa.text(
                f"SELECT id, {q(field)}, updated_at FROM {table} WHERE {q(field)} IN (:o, :n) "
                f"AND {tenant.scope_sql(table)}"
            ),
            {"o": r.old_key, "n": r.new_key},
        ).all()
        old = next((row for row in rows if row[1] == r.old_key), None)
        new = next((row for row in rows if row[1] == r.new_key), None)
        seen.append(f"{i}:{old[0] if old else ''}@{old[2] if old else ''}:{bool(new)}")
        if old is None or r.old_key == r.new_key:
            continue
        if new is not None:
            errors.append(
                RecordError(
                    entity.name,
                    r.old_key,
                    field,
                    f"cannot rename {r.old_key!r} to {r.new_key!r}: a {entity.name} record "
                    f"with {field} {r.new_key!r} exists already (conflicting rename)",
                    i + 1,
                    "RENAME_CONFLICT",
                    {"old": r.old_key, "new": r.new_key, "field": field},
                )
            )
            continue
        conn.execute(
            sa.text(
                "INSERT INTO import_changes (import_id, entity, action, row_id, old_values, "
                "new_updated_at) VALUES (:iid, :entity, 'renamed', :id, :old, :now)"
            ).bindparams(sa.bindparam("old", type_=sa.JSON())),
            {
                "iid": import_id,
                "entity": entity.name,
                "id": old[0],
                "old": {field: r.old_key, "updated_at": str(old[2])},
                "now": now,
            },
        )
        conn.execute(
            sa.text(
                f"UPDATE {table} SET {q(field)} = :n, updated_at = :now WHERE id = :id "
                f"AND {tenant.scope_sql(table)}"
            ),
            {"n": r.new_key, "now": now, "id": old[0]},
        )
        conn.execute(
            T.insert().values(
                entity=entity.name,
                old_key=r.old_key,
                new_key=r.new_key,
                renamed_at=r.renamed_at.ToDatetime(dt.UTC) if r.HasField("renamed_at") else now_dt,
                import_id=import_id,
            )
        )
        counted[entity.name] = counted.get(entity.name, 0) + 1
        samples.append(
            RecordChange(entity.name, r.new_key, "rename", [(field, r.old_key, r.new_key)])
        )
    return errors, samples, counted, ";".join(seen)


def undo(conn: Connection, ds: Dataset, import_id: str, sqlite: bool) -> None:
    """Put back the old keys of the records import `import_id` renamed (after its
    updated rows were restored), and forget its renames."""
    for entity in ds.in_order():
        if len(entity.natural_key) != 1:
            continue
        field = entity.natural_key[0]
        table = q(entity.table.name)
        old = (
            f"json_extract(c.old_values, '$.{field}')"
            if sqlite
            else f"(c.old_values ->> '{field}')"
        )
        stamp = (
            "json_extract(c.old_values, '$.updated_at')"
            if sqlite
            else "CAST(c.old_values ->> 'updated_at' AS timestamptz)"
        )
        first = (
            "FROM import_changes c WHERE c.import_id = :iid AND c.entity = :e AND "
            f"c.action = 'renamed' AND c.row_id = {table}.id ORDER BY c.id LIMIT 1"
        )
        conn.execute(
            sa.text(
                f"UPDATE {table} SET {q(field)} = (SELECT {old} {first}), "
                f"updated_at = (SELECT {stamp} {first}) WHERE {tenant.scope_sql(table)} AND "
                "id IN (SELECT row_id FROM import_changes WHERE import_id = :iid AND entity = :e "
                "AND action = 'renamed')"
            ),
            {"iid": import_id, "e": entity.name},
        )
    conn.execute(T.delete().where(T.c.import_id == import_id, T.c.school_id == tenant.school_id()))


def rename_key(
    engine: Engine,
    ds: Dataset,
    entity: str,
    old_key: str,
    new_key: str,
    *,
    requested_by: str,
    dry_run: bool = False,
) -> Any:
    """Rename a record here: an import of a bundle holding only this rename (recorded,
    undoable, and carried on by this installation's exports). Returns its outcome."""
    from ferry.merge.run import run_import  # run imports this module

    key_field(ds, entity)
    for name, value in (("old_key", old_key), ("new_key", new_key)):
        if not value or len(value) > 200 or "\x00" in value:
            raise InvalidArgument(
                f"{name} must be a non-empty text of at most 200 characters", field=name
            )
    meta = pb.BundleMetadata(dataset=ds.name)
    r = meta.renames.add(entity=entity, old_key=old_key, new_key=new_key)
    r.renamed_at.FromDatetime(dt.datetime.now(dt.UTC))
    return run_import(
        engine,
        ds,
        [Header(meta), Trailer({})],
        MergeOptions(dry_run=dry_run, dataset=ds.name),
        requested_by=requested_by,
        source_sha256="",
    )
