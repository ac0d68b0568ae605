"""Change limits: an import that would change too much of a scope at once stops.

Each limit (`imports.change_limits`, ferry.merge.model.ChangeLimit) says: at most
`max_percent` of the live records of `entity` in a scope may be created, updated or
soft-deleted (`action`) by one import. The base is counted before the import changes
anything, in the import's semester (scope `semester`; the whole table for an import
without one) or the whole table (scope `all`). A base of 0 has nothing to protect: the
limit does not apply. Every run measures every limit (a dry run reports them all in
`limits`); a run that exceeds one is FailedPrecondition naming the limit and by how much,
unless `allow_mass_change` is set, and nothing is written.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ferry.datasets.query import in_scope
from ferry.datasets.spec import Dataset
from ferry.db import tenant
from ferry.errors import FailedPrecondition, InvalidArgument
from ferry.merge.model import ChangeLimit, EntitySummary, LimitCheck

ACTIONS = {"create": "created", "update": "updated", "delete": "deleted"}
VERBS = {"create": "create", "update": "change", "delete": "soft-delete"}
SCOPES = ("semester", "all")


def check_limits(ds: Dataset, limits: tuple[ChangeLimit, ...]) -> None:
    """InvalidArgument naming the first limit that names an unknown entity, action or
    scope, or a percentage outside 0..100."""
    for i, lim in enumerate(limits):
        where = f"imports.change_limits[{i}]"
        if lim.entity not in ds.entities:
            raise InvalidArgument(
                f"{where}: unknown entity {lim.entity!r}; known: {', '.join(ds.entities)}",
                field=f"{where}.entity",
            )
        if lim.action not in ACTIONS:
            raise InvalidArgument(
                f"{where}: unknown action {lim.action!r}; known: {', '.join(ACTIONS)}",
                field=f"{where}.action",
            )
        if lim.scope not in SCOPES:
            raise InvalidArgument(
                f"{where}: unknown scope {lim.scope!r}; known: {', '.join(SCOPES)}",
                field=f"{where}.scope",
            )
        if not 0 <= lim.max_percent <= 100:
            raise InvalidArgument(
                f"{where}: max_percent must be between 0 and 100", field=f"{where}.max_percent"
            )


def bases(
    conn: Connection,
    ds: Dataset,
    limits: tuple[ChangeLimit, ...],
    semester: str | None,
    active: set[str],
) -> dict[tuple[str, str], int]:
    """Live records per (entity, scope) of the limits on entities this run merges,
    counted before it changes anything: of the acting school only (the application
    scope), so another school's records never make a limit's base larger."""
    out: dict[tuple[str, str], int] = {}
    for lim in limits:
        key = (lim.entity, lim.scope)
        if lim.entity not in active or key in out:
            continue
        entity = ds.entity(lim.entity)
        alias = entity.table.alias("t")
        value = semester if lim.scope == "semester" and entity.scope else None
        query = (
            sa.select(sa.func.count())
            .select_from(alias)
            .where(alias.c.school_id == tenant.school_id())
            .where(in_scope(ds, entity, alias, value, False))
        )
        out[key] = int(conn.execute(query).scalar_one())
    return out


def measure(
    limits: tuple[ChangeLimit, ...],
    summaries: dict[str, EntitySummary],
    counted: dict[tuple[str, str], int],
    semester: str | None,
) -> list[LimitCheck]:
    """Every limit against what the run did (`summaries`)."""
    out = []
    for lim in limits:
        key = (lim.entity, lim.scope)
        if key not in counted:
            continue
        base = counted[key]
        summary = summaries.get(lim.entity)
        count = int(getattr(summary, ACTIONS[lim.action])) if summary is not None else 0
        allowed = int(base * lim.max_percent / 100)
        exceeded = base > 0 and count > allowed
        where = f"of {semester}" if lim.scope == "semester" and semester else "in all"
        verb = VERBS[lim.action]
        said = (
            f"{lim.entity}: {verb} at most {lim.max_percent:g}% {where} "
            f"({allowed} of {base} live); this import would {verb} {count}"
        )
        if base:
            said += f" ({100.0 * count / base:.1f}%)"
        if exceeded:
            said += f", {count - allowed} over the limit"
        out.append(
            LimitCheck(
                lim.entity, lim.action, lim.scope, lim.max_percent, count, base, exceeded, said
            )
        )
    return out


def refuse_exceeded(checks: list[LimitCheck]) -> None:
    """FailedPrecondition naming every exceeded limit."""
    over = [c for c in checks if c.exceeded]
    if over:
        first = over[0]
        raise FailedPrecondition(
            "change limit exceeded: "
            + "; ".join(c.message for c in over)
            + "; nothing was imported (an admin may set allow_mass_change)",
            field="options.allow_mass_change",
            reason="CHANGE_LIMIT",
            metadata={
                "entity": first.entity,
                "action": first.action,
                "max_percent": f"{first.max_percent:g}",
                "allowed": str(int(first.base * first.max_percent / 100)),
                "base": str(first.base),
                "count": str(first.count),
                "over": str(first.count - int(first.base * first.max_percent / 100)),
                "limits": str(len(over)),
            },
        )
