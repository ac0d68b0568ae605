"""The schools of an installation (docs/tenants.md): add, list, find by code.

Platform work: `ferry school add` runs it as the platform role. The app reads `schools`
(no policy on it) to turn a token's `sch` into the id the transactions act for.
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.addresses import parse_address
from ferry.db.models import School, utcnow
from ferry.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

CODE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
LANGUAGES = ("", "en", "el")
_T = cast(sa.Table, School.__table__)


@dataclass(frozen=True)
class SchoolInfo:
    id: int
    code: str
    name: str
    language: str
    time_zone: str
    sender: str


def check_code(code: str, field: str = "code") -> str:
    """`code` when it is a school code ([a-z0-9-], starting with a letter or digit, at
    most 64); InvalidArgument naming `field` otherwise."""
    if not isinstance(code, str) or not CODE.fullmatch(code):
        raise InvalidArgument(
            f"{field}: a school code is 1-64 of a-z, 0-9 and '-', starting with a letter or digit",
            field=field,
        )
    return code


def add(
    engine: Engine,
    code: str,
    name: str = "",
    language: str = "",
    time_zone: str = "",
    sender: str = "",
) -> SchoolInfo:
    """A new school; InvalidArgument naming the bad field, AlreadyExists for a taken code,
    FailedPrecondition on SQLite, which has no row-level security to wall schools apart
    and so holds one school."""
    check_code(code)
    if "\x00" in name or len(name) > 200:
        raise InvalidArgument("name: at most 200 characters, no NUL", field="name")
    if language not in LANGUAGES:
        raise InvalidArgument(
            f"language: one of en, el (or empty), not {language!r}", field="language"
        )
    if time_zone:
        try:
            zoneinfo.ZoneInfo(time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidArgument(
                f"time_zone: {time_zone[:64]!r} is not a time zone name (e.g. Europe/Athens)",
                field="time_zone",
            ) from None
    if sender:
        try:
            parse_address(sender)
        except ValueError as e:
            raise InvalidArgument(f"sender: {e}", field="sender") from None
    if engine.dialect.name == "sqlite":
        raise FailedPrecondition(
            "an SQLite database holds one school (nothing walls a second one off); "
            "serve several schools from PostgreSQL"
        )
    with engine.begin() as conn:
        if conn.execute(sa.select(_T.c.id).where(_T.c.code == code)).first() is not None:
            raise AlreadyExists(f"school {code!r} exists", field="code")
        new = conn.execute(
            _T.insert()
            .values(
                code=code,
                name=name,
                language=language,
                time_zone=time_zone,
                sender=sender,
                created_at=utcnow(),
            )
            .returning(_T.c.id)
        ).scalar_one()
    return SchoolInfo(int(new), code, name, language, time_zone, sender)


def ids(engine: Engine) -> list[int]:
    """Every school's id, in order: what a worker goes through, acting for each in turn,
    to find the work of every school (row-level security shows it one school at a time)."""
    with engine.connect() as conn:
        return [int(i) for i in conn.execute(sa.select(_T.c.id).order_by(_T.c.id)).scalars()]


def all_schools(engine: Engine) -> list[SchoolInfo]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(_T).order_by(_T.c.code)).all()
    return [_info(r) for r in rows]


def find(engine: Engine, code: str, field: str = "school") -> SchoolInfo:
    """The school named `code`; NotFound naming `field` when there is none."""
    check_code(code, field)
    with engine.connect() as conn:
        row = conn.execute(sa.select(_T).where(_T.c.code == code)).first()
    if row is None:
        raise NotFound(f"school {code!r} not found", field=field)
    return _info(row)


def _info(row: sa.Row[tuple[object, ...]]) -> SchoolInfo:
    m = row._mapping
    return SchoolInfo(
        int(m["id"]),
        str(m["code"]),
        str(m["name"]),
        str(m["language"]),
        str(m["time_zone"]),
        str(m["sender"]),
    )
