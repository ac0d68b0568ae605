"""Fixtures for tenancy: a PostgreSQL database with an app role that row-level security
binds (docs/tenants.md) beside the platform role the tests connect as, and a seeded
source whose bundle the schools import."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.db import migrate, roles
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from tests.conftest import PG_ADMIN, after_drops, fresh_database
from tests.merge.helpers import bundle


@dataclass(frozen=True)
class Tenancy:
    platform: Engine  # the superuser: bypasses row-level security (migrations, checks)
    app: Engine  # the app role: bound by it, as every Ferry service is
    app_url: str
    schools: dict[str, int]  # code -> id


@contextmanager
def app_role() -> Iterator[str]:
    """A new LOGIN role that row-level security binds (password `app`), dropped after."""
    role = f"ferry_app_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'app' NOSUPERUSER NOBYPASSRLS")
    try:
        yield role
    finally:  # after the database its tables are in (dropped on the dropper's thread)
        after_drops(f"DROP ROLE IF EXISTS {role}")


def as_role(url: str, role: str) -> str:
    """`url` signing in as `role`."""
    parsed = sa.make_url(url).set(username=role, password="app")
    return parsed.render_as_string(hide_password=False)


@pytest.fixture
def tenancy(tmp_path: Path) -> Iterator[Tenancy]:
    """A migrated PostgreSQL database handed to an app role of its own, with schools
    `north` and `south` beside `default`."""
    with app_role() as role, fresh_database("postgres", tmp_path) as url:
        platform = make_engine(url)
        migrate.upgrade(platform)
        roles.hand_over(platform, role)
        app_url = as_role(url, role)
        app = make_engine(app_url)
        with platform.begin() as conn:
            for code in ("north", "south"):
                conn.execute(
                    sa.text(
                        "INSERT INTO schools (code, name, created_at) "
                        "VALUES (:c, :c, CURRENT_TIMESTAMP)"
                    ),
                    {"c": code},
                )
            schools = dict(conn.execute(sa.text("SELECT code, id FROM schools")).all())
        try:
            yield Tenancy(platform, app, app_url, {str(k): int(v) for k, v in schools.items()})
        finally:
            app.dispose()
            platform.dispose()


@pytest.fixture(scope="session")
def source_events(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Event]]:
    """The 2026-fall bundle of a seeded database (small demo data)."""
    with fresh_database("postgres", tmp_path_factory.mktemp("tenant-source")) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        seed(engine, Scale.SMALL, seed=11)
        events = bundle(engine)
        engine.dispose()
        yield events
