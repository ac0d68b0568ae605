"""People of a school and the platform admin (docs/tenants.md): a user belongs to a school
and signs in to a token of it; a platform admin names the school of every call
(`x-ferry-school`), INVALID_ARGUMENT naming the metadata without one, NOT_FOUND for a
school that does not exist, each such call in the audit log; nobody makes a token or a
user above their own role; migration 0016 keeps every user in the default school and
refuses the way back while several schools exist (before it changes anything)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import jwt
import pytest
import sqlalchemy as sa

from ferry import users
from ferry.app import App
from ferry.auth import parse_role
from ferry.bundle.formats.base import Event
from ferry.db import migrate, tenant
from ferry.db.engine import make_engine
from ferry.v1 import auth_pb2 as apb
from ferry.v1 import auth_pb2_grpc, import_pb2, import_pb2_grpc, options_pb2
from tests.conftest import BACKENDS, fresh_database, make_settings, running
from tests.merge.helpers import run
from tests.tenants.conftest import Tenancy

MINUTE = dt.timedelta(minutes=5)


class Calls:
    def __init__(self, app: App, channel: grpc.Channel) -> None:
        self.app = app
        self.auth = auth_pb2_grpc.AuthServiceStub(channel)
        self.imports = import_pb2_grpc.ImportServiceStub(channel)

    def md(self, role: str, school: str = "default", named: str = "") -> list[tuple[str, str]]:
        token = self.app.issuer().issue(f"t-{role}", parse_role(role), MINUTE, school=school)
        extra = [("x-ferry-school", named)] if named else []
        return [("authorization", f"Bearer {token.token}"), *extra]


@pytest.fixture
def calls(tenancy: Tenancy, tmp_path: Path) -> Iterator[Calls]:
    app = App(make_settings(tenancy.app_url, tmp_path))
    try:
        with (
            running(app, ["auth", "import"]) as srv,
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            yield Calls(app, channel)
    finally:
        app.close()


def _refused(fn: object, *args: object, **kw: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        fn(*args, **kw)  # type: ignore[operator]
    return e.value


@pytest.mark.postgres
def test_a_user_signs_in_to_a_token_of_their_school(tenancy: Tenancy, calls: Calls) -> None:
    with tenant.acting_for(tenancy.schools["north"]):
        users.create_user(calls.app.engine, "nora", "nora-password", "operator", "n@x.example")
    got = calls.auth.Login(apb.LoginRequest(username="nora", password="nora-password"))
    assert got.school == "north" and got.email == "n@x.example"
    assert jwt.decode(got.token, options={"verify_signature": False})["sch"] == "north"
    md = [("authorization", f"Bearer {got.token}")]
    assert calls.auth.WhoAmI(apb.WhoAmIRequest(), metadata=md).school == "north"
    listed = calls.auth.ListSchools(apb.ListSchoolsRequest(), metadata=md)
    assert [s.code for s in listed.schools] == ["north"]  # its own school only
    # The user is north's: south's admin neither lists nor changes them.
    south = calls.md("admin", "south")
    assert list(calls.auth.ListUsers(apb.ListUsersRequest(), metadata=south).users) == []
    e = _refused(calls.auth.DisableUser, apb.DisableUserRequest(username="nora"), metadata=south)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    north = calls.md("admin", "north")
    listed_users = calls.auth.ListUsers(apb.ListUsersRequest(), metadata=north).users
    assert [(u.username, u.school) for u in listed_users] == [("nora", "north")]
    # The token of her sign-in is listed in north, not in south.
    jti = jwt.decode(got.token, options={"verify_signature": False})["jti"]
    north_tokens = calls.auth.ListTokens(apb.ListTokensRequest(), metadata=north).tokens
    assert jti in {t.jti for t in north_tokens} and {t.school for t in north_tokens} == {"north"}
    south_tokens = calls.auth.ListTokens(apb.ListTokensRequest(), metadata=south).tokens
    assert jti not in {t.jti for t in south_tokens}
    e = _refused(calls.auth.RevokeToken, apb.RevokeTokenRequest(jti=jti), metadata=south)
    assert e.code() == grpc.StatusCode.NOT_FOUND
    # Disabled in north: north makes no link for her; south's answer is the one for a
    # name it has never heard of (nothing said about north's users).
    calls.auth.DisableUser(apb.DisableUserRequest(username="nora"), metadata=north)
    path = "/api/v1/exports/j1/download"
    e = _refused(
        calls.auth.CreateLinkToken,
        apb.CreateLinkTokenRequest(path=path, subject="nora"),
        metadata=north,
    )
    assert e.code() == grpc.StatusCode.FAILED_PRECONDITION
    for name in ("nora", "never-heard-of"):
        made = calls.auth.CreateLinkToken(
            apb.CreateLinkTokenRequest(path=path, subject=name), metadata=south
        )
        assert made.info.school == "south"


@pytest.mark.postgres
def test_a_platform_admin_names_the_school_of_every_call(
    tenancy: Tenancy, calls: Calls, source_events: list[Event], caplog: pytest.LogCaptureFixture
) -> None:
    with tenant.acting_for(tenancy.schools["north"]):
        north_import = run(tenancy.app, source_events).id
    listing = import_pb2.ListImportsRequest()
    # No school named: INVALID_ARGUMENT naming the metadata, nothing read.
    e = _refused(calls.imports.ListImports, listing, metadata=calls.md("platform_admin"))
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x-ferry-school" in (e.details() or "")
    # WhoAmI and ListSchools read no school's data: they go without.
    plain = calls.md("platform_admin")
    assert calls.auth.WhoAmI(apb.WhoAmIRequest(), metadata=plain).school == ""
    listed = calls.auth.ListSchools(apb.ListSchoolsRequest(), metadata=plain)
    assert [s.code for s in listed.schools] == ["default", "north", "south"]
    # Unknown: NOT_FOUND; not a school code at all: INVALID_ARGUMENT naming the metadata.
    e = _refused(calls.imports.ListImports, listing, metadata=calls.md("platform_admin", named="x"))
    assert e.code() == grpc.StatusCode.NOT_FOUND and "'x'" in (e.details() or "")
    bad = calls.md("platform_admin", named="../North")
    e = _refused(calls.imports.ListImports, listing, metadata=bad)
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT and "x-ferry-school" in (e.details() or "")
    # Named: the call acts for that school, whatever school the token itself names.
    caplog.set_level(logging.INFO, logger="ferry.audit")
    for named, expected in (("north", [north_import]), ("south", [])):
        md = calls.md("platform_admin", "south", named)
        got = calls.imports.ListImports(listing, metadata=md)
        assert [r.id for r in got.imports] == expected, named
        assert calls.auth.WhoAmI(apb.WhoAmIRequest(), metadata=md).school == named
    audit = [r for r in caplog.records if getattr(r, "event", "") == "platform_call"]
    seen = [(r.school, r.method, r.code) for r in audit]  # type: ignore[attr-defined]
    assert ("north", "/ferry.v1.ImportService/ListImports", "OK") in seen
    assert ("south", "/ferry.v1.ImportService/ListImports", "OK") in seen
    # Refused calls are audited too (the school picked, or none).
    e = _refused(calls.imports.ListImports, listing, metadata=calls.md("platform_admin", named="x"))
    audit = [r for r in caplog.records if getattr(r, "event", "") == "platform_call"]
    assert (audit[-1].school, audit[-1].code) == ("x", "NOT_FOUND")  # type: ignore[attr-defined]
    assert all(r.caller == "t-platform_admin" for r in audit)  # type: ignore[attr-defined]
    # A user made by a platform admin for north belongs to north.
    md = calls.md("platform_admin", named="north")
    made = calls.auth.CreateUser(
        apb.CreateUserRequest(username="nils", role=options_pb2.ROLE_ADMIN), metadata=md
    )
    assert made.user.school == "north"
    token = calls.auth.CreateToken(
        apb.CreateTokenRequest(role=options_pb2.ROLE_VIEWER, subject="cron"), metadata=md
    )
    assert token.info.school == "north"
    assert jwt.decode(token.token, options={"verify_signature": False})["sch"] == "north"


@pytest.mark.postgres
def test_nobody_makes_a_token_or_user_above_their_own_role(calls: Calls) -> None:
    admin = calls.md("admin", "south")
    for fn, req in (
        (
            calls.auth.CreateToken,
            apb.CreateTokenRequest(role=options_pb2.ROLE_PLATFORM_ADMIN, subject="escalate"),
        ),
        (
            calls.auth.CreateUser,
            apb.CreateUserRequest(username="escalate", role=options_pb2.ROLE_PLATFORM_ADMIN),
        ),
    ):
        e = _refused(fn, req, metadata=admin)
        assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e.details()
    assert not users.user_exists(calls.app.engine, "escalate")
    ok = calls.auth.CreateToken(
        apb.CreateTokenRequest(role=options_pb2.ROLE_ADMIN, subject="peer"), metadata=admin
    )
    assert ok.info.school == "south"


@pytest.mark.parametrize("backend_", BACKENDS)
def test_migration_0016_puts_users_in_the_default_school_and_the_way_back_refuses_others(
    backend_: str, tmp_path: Path
) -> None:
    with fresh_database(backend_, tmp_path) as url:
        engine = make_engine(url)
        try:
            migrate.upgrade(engine, "0015")
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO users (username, password_hash, password_salt, scrypt_n, "
                        "scrypt_r, scrypt_p, role, disabled, created_at) VALUES ('old', :h, "
                        ":h, 1, 1, 1, 'admin', false, CURRENT_TIMESTAMP)"
                    ),
                    {"h": b"x"},
                )
            migrate.upgrade(engine)
            with engine.connect() as conn:
                school = conn.execute(
                    sa.text("SELECT school_id FROM users WHERE username = 'old'")
                ).scalar_one()
            assert school == tenant.DEFAULT_SCHOOL_ID
            assert [a.username for a in users.list_users(engine)] == ["old"]
            migrate.downgrade(engine, "0015")  # one school: the way back is open
            migrate.upgrade(engine)
            if backend_ != "postgres":
                return
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "INSERT INTO schools (code, name, created_at) "
                        "VALUES ('north', '', CURRENT_TIMESTAMP)"
                    )
                )
                conn.execute(
                    sa.text(
                        "UPDATE users SET school_id = (SELECT id FROM schools WHERE code = 'north')"
                    )
                )
            with pytest.raises(RuntimeError, match="2 schools"):
                migrate.downgrade(engine, "0015")
            with engine.connect() as conn:  # nothing was changed
                assert "school_id" in {c["name"] for c in sa.inspect(conn).get_columns("users")}
        finally:
            engine.dispose()
