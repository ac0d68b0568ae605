"""Pages of a list, the one way every List RPC pages: newest first by (created_at, id),
the next page after the last row handed out (keyset: a row added or removed meanwhile
never shifts a page), with an opaque token that names that row.

Export jobs, notifications and imports all page through `newest_first`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import sqlalchemy as sa

from ferry.db.models import aware
from ferry.errors import InvalidArgument

DEFAULT_PAGE = 50
MAX_PAGE = 200
R = TypeVar("R")


@dataclass(frozen=True)
class Page(Generic[R]):
    items: list[R]
    next_token: str  # "" on the last page
    total: int = 0  # rows on every page together, when the caller asked for it


def page_size(requested: int) -> int:
    """`requested` rows a page (0: DEFAULT_PAGE); InvalidArgument naming page_size when it
    is negative or above MAX_PAGE."""
    if not 0 <= requested <= MAX_PAGE:
        raise InvalidArgument(
            f"page_size must be 0 to {MAX_PAGE} (0 means {DEFAULT_PAGE}), got {requested}",
            field="page_size",
        )
    return requested or DEFAULT_PAGE


def encode_token(created: dt.datetime, row_id: str) -> str:
    stamp = aware(created)
    assert stamp is not None
    return base64.urlsafe_b64encode(json.dumps([stamp.isoformat(), row_id]).encode()).decode()


def decode_token(token: str) -> tuple[dt.datetime, str]:
    """(created_at, id) of the row a token names; InvalidArgument naming page_token for
    anything this service did not hand out."""
    try:
        created, row_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return dt.datetime.fromisoformat(created), str(row_id)
    except (ValueError, TypeError, binascii.Error):
        raise InvalidArgument(
            "page_token is not one this service handed out", field="page_token"
        ) from None


def newest_first(
    run: Callable[[sa.Select[Any]], Sequence[R]],
    query: sa.Select[Any],
    created: sa.ColumnElement[Any],
    row_id: sa.ColumnElement[Any],
    size: int,
    token: str = "",
    total: Callable[[], int] | None = None,
) -> Page[R]:
    """One page of `query` (its filters already applied), newest first, after the row
    `token` names. `run` executes a statement and returns its rows (ORM objects or Core
    rows: either has the two columns as attributes); `total`, when given, counts them all."""
    n = page_size(size)
    if token:
        at, last = decode_token(token)
        query = query.where(sa.or_(created < at, sa.and_(created == at, row_id < last)))
    rows = list(run(query.order_by(created.desc(), row_id.desc()).limit(n + 1)))
    more = len(rows) > n
    rows = rows[:n]
    next_token = ""
    if more:
        last_row = rows[-1]
        next_token = encode_token(
            getattr(last_row, _key(created)), str(getattr(last_row, _key(row_id)))
        )
    return Page(rows, next_token, total() if total is not None else 0)


def counter(
    session: Any, table: sa.Table, where: Sequence[sa.ColumnElement[bool]]
) -> Callable[[], int]:
    """`total` for `newest_first`: how many rows of `table` match `where`, in `session`."""
    return lambda: int(
        session.execute(sa.select(sa.func.count()).select_from(table).where(*where)).scalar_one()
    )


def _key(column: sa.ColumnElement[Any]) -> str:
    key = getattr(column, "key", None)
    assert isinstance(key, str)
    return key
