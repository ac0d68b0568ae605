"""The school a piece of work acts for (docs/tenants.md).

A context variable, so it follows a request through the functions it calls without
being passed along, and each thread or task has its own. `acting_for` sets it for a
block; `school_id` reads it. Nothing set means the default school: a single-school
install never names one.

The engine (ferry.db.engine) copies it into every PostgreSQL transaction as
`ferry.school`, which the row-level security policies of migration 0013 compare each
row's `school_id` with; the application scope (`scope_sql`) puts it into queries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

# Migration 0013 creates it and moves every row that existed before schools into it.
DEFAULT_SCHOOL_ID = 1
DEFAULT_SCHOOL_CODE = "default"

_SCHOOL: ContextVar[int] = ContextVar("ferry_school", default=DEFAULT_SCHOOL_ID)


def school_id() -> int:
    """The id of the school the current work acts for."""
    return _SCHOOL.get()


@contextmanager
def acting_for(school: int) -> Iterator[int]:
    """Act for school `school` (its id) inside the block; the previous school after."""
    token = enter(school)
    try:
        yield school
    finally:
        _SCHOOL.reset(token)


def enter(school: int) -> Token[int]:
    """Act for `school` until `leave` with the token returned (for hooks that start and
    end a piece of work in two calls, such as the RPC filters)."""
    if isinstance(school, bool) or not isinstance(school, int) or school < 1:
        raise ValueError(f"a school id is a positive integer, not {school!r}")
    return _SCHOOL.set(school)


def leave(token: Token[int]) -> None:
    try:
        _SCHOOL.reset(token)
    except ValueError:  # ended in another context (a stream closed from elsewhere)
        _SCHOOL.set(DEFAULT_SCHOOL_ID)


def carried(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn`, acting for the school acting now: the target of a thread that does part of
    the current work (a new thread starts with no context, so in the default school)."""
    school = school_id()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with acting_for(school):
            return fn(*args, **kwargs)

    return run


def scope_sql(alias: str) -> str:
    """SQL: the row `alias` belongs to the acting school (the application scope). The
    id is an integer from the code, never input text, so it is written inline: the
    planner sees a constant and uses the (school_id, key) indexes."""
    return f"{alias}.school_id = {int(school_id())}"
