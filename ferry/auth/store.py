"""The tokens table (auth_tokens): what the auth service issued, last use, revocation.

Only the auth service writes rows; every service reads the ids of revoked tokens that have
not expired yet (`revoked_ids`, of every school) and records when tokens were last used
(`touch`). Each row names the school its token acts in (migration 0016); listing and
revoking are scoped to a school (the acting one, ferry.db.tenant, when not given): a
token of another school is NotFound, as if never issued.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from ferry.auth import role_name
from ferry.auth.tokens import IssuedToken
from ferry.db import tenant
from ferry.db.models import School
from ferry.db.user_models import IssuedToken as Row
from ferry.errors import FailedPrecondition, NotFound

KINDS = ("login", "api", "link")


@dataclass(frozen=True)
class TokenInfo:
    jti: str
    subject: str
    role: str
    kind: str
    issued_by: str
    issued_at: dt.datetime
    expires_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    school: str = tenant.DEFAULT_SCHOOL_CODE


def _school(school_id: int | None) -> int:
    return tenant.school_id() if school_id is None else int(school_id)


def _utc(t: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes; everything here is UTC."""
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _info(r: Row, school: str) -> TokenInfo:
    return TokenInfo(
        r.jti, r.subject, r.role, r.kind, r.issued_by,
        _utc(r.issued_at) or r.issued_at, _utc(r.expires_at) or r.expires_at,
        _utc(r.last_used_at), _utc(r.revoked_at), school,
    )  # fmt: skip


def _code(s: Session, school_id: int) -> str:
    return str(s.scalar(sa.select(School.code).where(School.id == school_id)) or "")


def record(engine: Engine, token: IssuedToken, kind: str, issued_by: str) -> None:
    """Store a token just issued, so it can be listed and revoked, in the school it names
    (NotFound when the installation has no such school: nothing is recorded)."""
    assert kind in KINDS
    with Session(engine) as s, s.begin():
        school = s.scalar(sa.select(School.id).where(School.code == token.school))
        if school is None:
            raise NotFound(f"school {token.school[:64]!r} not found", field="school")
        s.add(
            Row(
                jti=token.jti,
                subject=token.subject,
                role=role_name(token.role),
                kind=kind,
                issued_by=issued_by,
                issued_at=token.issued_at,
                expires_at=token.expires_at,
                school_id=school,
            )
        )


def revoke(
    engine: Engine, jti: str, now: dt.datetime | None = None, school_id: int | None = None
) -> TokenInfo:
    """Mark token `jti` of the school (the acting one when None) revoked; NotFound when
    the school issued no such token, FailedPrecondition when it was already revoked."""
    now = now or dt.datetime.now(dt.UTC)
    school = _school(school_id)
    with Session(engine) as s, s.begin():
        row = s.get(Row, jti, with_for_update=True)
        if row is None or row.school_id != school:
            raise NotFound(f"no token with id {jti[:64]!r}", field="jti")
        if row.revoked_at is not None:
            raise FailedPrecondition(f"token {jti!r} is already revoked")
        row.revoked_at = now
        s.flush()
        return _info(row, _code(s, school))


def revoke_subject(
    engine: Engine, subject: str, now: dt.datetime | None = None, school_id: int | None = None
) -> dict[str, float]:
    """Revoke every unexpired token of `subject` (a disabled user) in the school (the
    acting one when None): jti -> expiry (unix)."""
    now = now or dt.datetime.now(dt.UTC)
    with Session(engine) as s, s.begin():
        rows = s.execute(
            sa.select(Row.jti, Row.expires_at).where(
                Row.subject == subject,
                Row.revoked_at.is_(None),
                Row.expires_at > now,
                Row.school_id == _school(school_id),
            )
        ).all()
        found = {jti: (_utc(exp) or exp).timestamp() for jti, exp in rows}
        if found:
            s.execute(sa.update(Row).where(Row.jti.in_(list(found))).values(revoked_at=now))
    return found


def get(engine: Engine, jti: str, school_id: int | None = None) -> TokenInfo | None:
    """Token `jti` of the school (the acting one when None); None when it has none."""
    school = _school(school_id)
    with Session(engine) as s:
        row = s.get(Row, jti)
        return None if row is None or row.school_id != school else _info(row, _code(s, school))


def list_tokens(
    engine: Engine,
    subject: str = "",
    include_expired: bool = False,
    limit: int = 100,
    now: dt.datetime | None = None,
    school_id: int | None = None,
) -> list[TokenInfo]:
    """Issued tokens of the school (the acting one when None), newest first (unexpired
    and unrevoked unless include_expired)."""
    now = now or dt.datetime.now(dt.UTC)
    school = _school(school_id)
    q = (
        sa.select(Row)
        .where(Row.school_id == school)
        .order_by(Row.issued_at.desc(), Row.jti)
        .limit(limit)
    )
    if subject:
        q = q.where(Row.subject == subject)
    if not include_expired:
        q = q.where(Row.expires_at > now, Row.revoked_at.is_(None))
    with Session(engine) as s:
        code = _code(s, school)
        return [_info(r, code) for r in s.scalars(q)]


def revoked_ids(engine: Engine, now: dt.datetime | None = None) -> dict[str, float]:
    """jti -> expiry (unix seconds) of every revoked token that has not expired yet."""
    now = now or dt.datetime.now(dt.UTC)
    q = sa.select(Row.jti, Row.expires_at).where(Row.revoked_at.is_not(None), Row.expires_at > now)
    with Session(engine) as s:
        return {jti: (_utc(exp) or exp).timestamp() for jti, exp in s.execute(q)}


def touch(engine: Engine, used: Mapping[str, float]) -> None:
    """Record when tokens were last used (jti -> unix seconds); unknown ids are ignored."""
    if not used:
        return
    rows = [
        {"j": jti, "t": dt.datetime.fromtimestamp(t, dt.UTC)} for jti, t in sorted(used.items())
    ]
    table = cast(sa.Table, Row.__table__)
    t = table.c
    stmt = (
        sa.update(table)
        .where(t.jti == sa.bindparam("j"))
        .where(sa.or_(t.last_used_at.is_(None), t.last_used_at < sa.bindparam("t")))
        .values(last_used_at=sa.bindparam("t"))
    )
    with engine.begin() as conn:
        conn.execute(stmt, rows)
