"""The app role and the platform role (docs/tenants.md): `ferry db upgrade` migrates as
the platform role and hands the tables to the app role, which row-level security binds;
a role it would not bind is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry.cli.main import cli
from ferry.db import migrate, roles
from ferry.db.engine import make_engine
from tests.conftest import fresh_database
from tests.tenants.conftest import app_role, as_role

pytestmark = pytest.mark.postgres


def owners(engine: sa.Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                sa.text("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
        )


def upgrade(tmp_path: Path, **env: str) -> tuple[int, str]:
    env = {"FERRY_CONFIG": str(Path(__file__).parents[2] / "ferry.yaml"), **env}
    env["FERRY_AUTH_SIGNING_KEY_FILE"] = str(tmp_path / "signing.key")
    r = CliRunner().invoke(cli, ["db", "upgrade"], env=env)
    return r.exit_code, r.stdout + r.stderr


def test_db_upgrade_migrates_as_platform_and_hands_the_tables_to_the_app(
    tmp_path: Path,
) -> None:
    with app_role() as role, fresh_database("postgres", tmp_path) as url:
        code, out = upgrade(
            tmp_path, FERRY_DATABASE_URL=as_role(url, role), FERRY_DATABASE_PLATFORM_URL=url
        )
        assert code == 0, out
        assert "handed to the app role" in out
        platform, app = make_engine(url), make_engine(as_role(url, role))
        try:
            assert migrate.is_current(app)
            assert owners(platform) == {role}
            assert roles.binds(app) and not roles.binds(platform)
            with app.connect() as conn:  # the app reads and writes its tables
                assert conn.execute(sa.text("SELECT count(*) FROM schools")).scalar_one() == 1
        finally:
            app.dispose()
            platform.dispose()


def test_a_role_that_row_level_security_would_not_bind_is_refused(tmp_path: Path) -> None:
    with fresh_database("postgres", tmp_path) as url:
        platform = make_engine(url)
        try:
            migrate.upgrade(platform)
            before = owners(platform)
            who = platform.url.username or "postgres"
            with pytest.raises(roles.RoleError, match="BYPASSRLS"):
                roles.hand_over(platform, who)
            with pytest.raises(roles.RoleError, match="does not exist"):
                roles.hand_over(platform, "no_such_role_here")
            assert owners(platform) == before
        finally:
            platform.dispose()
        # One URL for both, a superuser: migrated, with a warning that RLS does not bind.
        code, out = upgrade(tmp_path, FERRY_DATABASE_URL=url)
        assert code == 0 and "row-level security does not bind" in out


def test_sqlite_needs_neither_role(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    code, out = upgrade(tmp_path, FERRY_DATABASE_URL=url)
    assert code == 0 and f"revision {migrate.head()}" in out and "handed" not in out
    assert roles.hand_over(make_engine(url), "anyone") == []
