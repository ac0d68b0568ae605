"""`ferry user …`, `ferry token …` and `ferry keys rotate`.

`user` and `token` call the AuthService (the only holder of the users table and the
private key). The CLI's own credential is FERRY_TOKEN, or, where it can read the local
private key (a laptop, or `kubectl exec` into the auth pod), a short-lived admin token it
signs for itself.

Two verbs work on local files instead, because no server may be running yet:
`ferry user add --demo` on the embedded SQLite demo database (`make run` creates the
demo admin before `ferry serve`), and `ferry keys rotate`, which writes the next private
key and the public key set where the configuration says they are.
"""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click
from google.protobuf.timestamp_pb2 import Timestamp

from ferry.auth import parse_role, role_name
from ferry.cli.common import (
    acting_for_named,
    clients,
    load_app,
    parse_duration,
    rpc_errors,
    school_named,
    school_option,
    table,
)
from ferry.db import migrate
from ferry.errors import FerryError
from ferry.v1 import auth_pb2 as pb
from ferry.v1 import options_pb2

# The one fixed password Ferry knows: only for the embedded SQLite demo (`make run`),
# never for a database server.
DEMO_PASSWORD = "ferry-demo-admin"
ROLE_CHOICE = click.Choice(["viewer", "operator", "admin", "platform_admin"])


def _auth(ctx: click.Context) -> Any:
    app = load_app(ctx)
    c = clients(app)
    ctx.call_on_close(c.close)
    return c.auth()


def _when(ts: Timestamp, has: bool = True) -> str:
    if not has:
        return "-"
    return ts.ToDatetime(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@click.group()
def user() -> None:
    """People who sign in to the Export Center page (through the auth service)."""


@user.command("add")
@click.argument("name")
@click.option("--role", type=ROLE_CHOICE, default="viewer", show_default=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--if-missing", is_flag=True, help="Succeed without change when NAME exists.")
@click.option(
    "--email",
    default="",
    help="The user's mail address (name@school.example): where 'Email me when done' sends.",
)
@click.option(
    "--demo",
    is_flag=True,
    help=f"Before any server runs (make run): write the account directly; on embedded "
    f"SQLite with the demo password {DEMO_PASSWORD!r}, elsewhere a generated one.",
)
@click.pass_context
def user_add(
    ctx: click.Context,
    name: str,
    role: str,
    password_stdin: bool,
    if_missing: bool,
    email: str,
    demo: bool,
) -> None:
    """Create user NAME; prints a generated password unless one is given."""
    from ferry.users import check_email

    try:
        email = check_email(email)  # here first: a typo fails before anything is asked
    except FerryError as e:
        raise click.BadParameter(e.message.removeprefix("email: "), param_hint="--email") from None
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else ""
    if demo:
        _demo_user(ctx, name, role, password, email)
        return
    with rpc_errors():
        import grpc

        try:
            got = _auth(ctx).CreateUser(
                pb.CreateUserRequest(
                    username=name,
                    role=options_pb2.Role.ValueType(parse_role(role)),
                    password=password,
                    email=email,
                )
            )
        except grpc.RpcError as e:
            if if_missing and e.code() == grpc.StatusCode.ALREADY_EXISTS:  # type: ignore[attr-defined]
                click.echo(f"user {name} exists; not changed")
                return
            raise
    who = f"{name} ({role}{', ' + got.user.email if got.user.email else ''})"
    if got.generated_password:
        click.echo(f"created user {who}; password: {got.generated_password}")
    else:
        click.echo(f"created user {who}")


def _demo_user(ctx: click.Context, name: str, role: str, password: str, email: str = "") -> None:
    """`make run`'s demo admin, written straight into the configured database before any
    server runs. Only the embedded SQLite database gets the well-known demo password; a
    database server gets a generated one, printed once."""
    from ferry.users import create_user, generate_password, user_exists

    app = load_app(ctx)
    engine = app.engine
    if not migrate.is_current(engine):
        migrate.upgrade(engine)
    embedded = engine.dialect.name == "sqlite"
    if user_exists(engine, name):
        click.echo(f"Sign in as {name} / {DEMO_PASSWORD} (demo account)" if embedded
                   else f"user {name} exists; not changed")  # fmt: skip
        return
    chosen = password or (DEMO_PASSWORD if embedded else generate_password())
    try:
        create_user(engine, name, chosen, role, email)
    except FerryError as e:
        raise click.ClickException(e.message) from None
    if password:
        click.echo(f"created user {name} ({role})")
    elif embedded:
        click.echo(f"Sign in as {name} / {DEMO_PASSWORD} (demo account)")
    else:
        click.echo(f"created user {name} ({role}); password: {chosen}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.pass_context
def user_passwd(ctx: click.Context, name: str, password_stdin: bool) -> None:
    """Set NAME's password (a generated one unless given)."""
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else ""
    with rpc_errors():
        got = _auth(ctx).SetPassword(pb.SetPasswordRequest(username=name, password=password))
    extra = f"; password: {got.generated_password}" if got.generated_password else ""
    click.echo(f"password of {name} changed{extra}")


@user.command("email")
@click.argument("name")
@click.argument("address", default="")
@click.pass_context
def user_email(ctx: click.Context, name: str, address: str) -> None:
    """Set NAME's mail address (where 'Email me when done' sends); none given clears it."""
    with rpc_errors():
        got = _auth(ctx).SetEmail(pb.SetEmailRequest(username=name, email=address))
    click.echo(f"mail address of {name}: {got.user.email or 'none'}")


@user.command("disable")
@click.argument("name")
@click.pass_context
def user_disable(ctx: click.Context, name: str) -> None:
    """Disable NAME: no more logins, and their tokens are revoked."""
    with rpc_errors():
        got = _auth(ctx).DisableUser(pb.DisableUserRequest(username=name))
    click.echo(f"disabled {name}; revoked {got.revoked_tokens} token(s)")


@user.command("list")
@click.pass_context
def user_list(ctx: click.Context) -> None:
    """Every user of the school the token acts in, with role and state."""
    with rpc_errors():
        got = _auth(ctx).ListUsers(pb.ListUsersRequest())
    rows = [
        [u.username, role_name(u.role), u.email or "-", "disabled" if u.disabled else "active",
         _when(u.created_at, u.HasField("created_at")), u.school or "-"]
        for u in got.users
    ]  # fmt: skip
    table(rows, ["user", "role", "email", "state", "created", "school"])


@click.group()
def token() -> None:
    """Bearer tokens for CLI users, CronJobs and other services (through the auth service)."""


@token.command("create")
@click.option("--role", required=True, type=ROLE_CHOICE)
@click.option("--ttl", default="1h", show_default=True, help="Lifetime: 90s, 15m, 12h, 30d.")
@click.option("--subject", default="", help="Who the token is for (default: the role).")
@click.option(
    "--local",
    is_flag=True,
    help="Issue it here, with the local private key and database, without the auth "
    "service (a laptop, or the auth pod to bootstrap the first admin). It is recorded, "
    "listed and revocable like any other.",
)
@school_option
@click.pass_context
def token_create(ctx: click.Context, role: str, ttl: str, subject: str, local: bool) -> None:
    """Print a new token (only the token, for a Secret); its id goes to standard error."""
    seconds = parse_duration(ttl)
    if local:
        _local_token(ctx, role, subject or role, int(seconds))
        return
    with rpc_errors():
        got = _auth(ctx).CreateToken(
            pb.CreateTokenRequest(
                role=options_pb2.Role.ValueType(parse_role(role)),
                subject=subject or role,
                ttl_seconds=int(seconds),
            )
        )
    click.echo(got.token)
    click.echo(f"token id {got.info.jti}, expires {_when(got.info.expires_at)}", err=True)


def _local_token(ctx: click.Context, role: str, subject: str, seconds: int) -> None:
    import os

    from ferry.auth import issuing
    from ferry.auth.keys import KeyFileError

    app = load_app(ctx)
    if not migrate.is_current(app.engine):
        raise click.ClickException(
            f"database schema is at {migrate.current(app.engine)}, code needs "
            f"{migrate.head()}: run `ferry db upgrade` first"
        )
    who = f"cli:{os.environ.get('USER', 'local')}"
    code = school_named()
    if code:
        with acting_for_named(app):  # an unknown school: named, exit 2
            pass
    try:
        issued = issuing.create_token(app, parse_role(role), subject, seconds, who, school=code)
    except KeyFileError as e:
        raise click.ClickException(f"--local needs the private key: {e}") from None
    except FerryError as e:
        hint = {"ttl_seconds": "--ttl", "subject": "--subject", "role": "--role"}
        raise click.BadParameter(e.message, param_hint=hint.get(e.field, "--ttl")) from None
    click.echo(issued.token)
    expires = issued.expires_at.isoformat(timespec="seconds").replace("+00:00", "Z")
    click.echo(f"token id {issued.jti}, expires {expires}", err=True)


@token.command("revoke")
@click.argument("jti")
@click.pass_context
def token_revoke(ctx: click.Context, jti: str) -> None:
    """Revoke token JTI (`ferry token list` shows the ids)."""
    with rpc_errors():
        got = _auth(ctx).RevokeToken(pb.RevokeTokenRequest(jti=jti))
    click.echo(f"revoked {got.info.jti} ({got.info.subject}); services refuse it within "
               f"{load_app(ctx).settings.auth.revocation_refresh_seconds:g}s")  # fmt: skip


@token.command("list")
@click.option("--subject", default="", help="Only this subject's tokens.")
@click.option("--all", "everything", is_flag=True, help="Also expired and revoked tokens.")
@click.pass_context
def token_list(ctx: click.Context, subject: str, everything: bool) -> None:
    """Issued tokens: who, role, expiry, last used."""
    with rpc_errors():
        got = _auth(ctx).ListTokens(
            pb.ListTokensRequest(subject=subject, include_expired=everything)
        )
    rows = [
        [t.jti, t.subject, role_name(t.role), t.kind, _when(t.expires_at),
         _when(t.last_used_at, t.HasField("last_used_at")),
         "revoked" if t.HasField("revoked_at") else ""]
        for t in got.tokens
    ]  # fmt: skip
    table(rows, ["id", "subject", "role", "kind", "expires", "last used", "state"])


@token.command("whoami")
@click.pass_context
def token_whoami(ctx: click.Context) -> None:
    """Who the CLI's token says it is."""
    with rpc_errors():
        got = _auth(ctx).WhoAmI(pb.WhoAmIRequest())
    school = f"school {got.school}" if got.school else "no school named"
    click.echo(
        f"{got.subject} ({role_name(got.role)}), {school}, expires {_when(got.expires_at)}"
    )


@click.group()
def keys() -> None:
    """Token signing keys (local files: the private key and the public key set)."""


@keys.command("rotate")
@click.option("--keep", type=int, default=None, help="Public keys to keep (auth.keep_keys).")
@click.pass_context
def keys_rotate(ctx: click.Context, keep: int | None) -> None:
    """Write the next signing key: its public key joins the key set first, then it
    replaces the private key. Tokens signed by the previous keys stay valid until they
    expire; distribute the new key set before the auth service uses the new key."""
    from ferry.auth.keys import KeyFileError, rotate

    app = load_app(ctx)
    private, key_set = app.key_paths()
    try:
        key, ks = rotate(private, key_set, keep or app.settings.auth.keep_keys)
    except (KeyFileError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"new signing key {key.kid} in {private}")
    click.echo(f"key set {key_set}: {', '.join(ks.keys)}")


__all__ = ["keys", "token", "user"]
