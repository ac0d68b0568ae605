"""What the auth service does, apart from gRPC: log in, issue, revoke, disable.

Every token issued here (Login, CreateToken, CreateLinkToken) is recorded in auth_tokens
so it can be listed and revoked, by id or with its user (ferry.auth.links for what a link
token may open).

Every token acts in one school (docs/tenants.md): a Login's is the user's school, a
CreateToken's or a link's is the school the caller acts for (`ferry.db.tenant`; a
platform admin's named school), so no token reaches into another school. Nobody makes a
token of a role above their own.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ferry import users
from ferry.auth import ROLES, Principal, links, role_name
from ferry.auth import store as token_store
from ferry.auth.revocation import publish
from ferry.auth.tokens import IssuedToken, TokenIssuer
from ferry.db import tenant
from ferry.db.models import School
from ferry.db.user_models import User
from ferry.errors import (
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
)
from ferry.ratelimit import Limiter
from ferry.v1 import options_pb2

if TYPE_CHECKING:
    from ferry.app import App

MAX_SUBJECT = 200
# Link tokens: 300 s for the page's links by default; at most 8 days, so a mail's
# download link can live notify.link_ttl_days (7).
LINK_TTL_DEFAULT, LINK_TTL_MAX = 300, 8 * 86400
LINK_CLAIM = links.PATH_CLAIM


def login_limiter(app: App) -> Limiter:
    """Failed logins per username, for every caller of Login (the gateway adds its own
    limits per username and per client address in front)."""
    a = app.settings.auth
    return Limiter("auth-login", a.login_attempts, a.login_window_seconds, app.redis())


def login(app: App, username: str, password: str, limiter: Limiter | None = None) -> IssuedToken:
    """A session token for a valid username and password; Unauthenticated otherwise (the
    same message and, through a dummy scrypt, the same time for an unknown user).
    ResourceExhausted once `limiter` has seen too many attempts for the username."""
    users.check_login_input(username, password)
    key = username.strip().lower()
    if limiter is not None:
        decision = limiter.hit(key)
        if not decision.allowed:
            raise ResourceExhausted(
                f"too many sign-in attempts for this user; try again in "
                f"{int(decision.retry_after + 0.999)}s"
            )
    account = users.verify(app.engine, username, password)
    if account is None:
        raise Unauthenticated("wrong username or password")
    if limiter is not None:
        limiter.clear(key)
    ttl = dt.timedelta(seconds=app.settings.auth.token_ttl_seconds)
    issued = app.issuer().issue(account.username, ROLES[account.role], ttl, school=account.school)
    token_store.record(app.engine, issued, "login", account.username)
    return issued


def acting_code(app: App) -> str:
    """The code of the school the current work acts for (ferry.db.tenant)."""
    with Session(app.engine) as s:
        code = s.scalar(sa.select(School.code).where(School.id == tenant.school_id()))
    return str(code or tenant.DEFAULT_SCHOOL_CODE)


def create_token(
    app: App,
    role: int,
    subject: str,
    ttl_seconds: int,
    issued_by: str,
    school: str = "",
    caller_role: int | None = None,
) -> IssuedToken:
    """A token for `subject` with `role` in `school` (the school acting now when empty:
    the caller's own, so a token never reaches into another school); INVALID_ARGUMENT
    naming the field otherwise, PERMISSION_DENIED for a role above `caller_role` (the
    caller's, when a caller asks; the CLI's --local holder of the key is not limited)."""
    a = app.settings.auth
    if role not in ROLES.values():
        raise InvalidArgument(f"role is required; roles: {', '.join(ROLES)}", field="role")
    if caller_role is not None and role > caller_role:
        raise PermissionDenied(
            f"a token of role {role_name(role)} is above the caller's own "
            f"({role_name(caller_role)})"
        )
    subject = subject.strip()
    if not subject or len(subject) > MAX_SUBJECT:
        raise InvalidArgument(f"subject needs 1 to {MAX_SUBJECT} characters", field="subject")
    if ttl_seconds < 0:
        raise InvalidArgument("ttl_seconds cannot be negative", field="ttl_seconds")
    ttl = ttl_seconds or a.token_ttl_seconds
    if ttl > a.max_token_ttl_seconds:
        days = a.max_token_ttl_seconds / 86400
        raise InvalidArgument(
            f"ttl_seconds {ttl} is longer than the {a.max_token_ttl_seconds} s "
            f"({days:g} days) auth.max_token_ttl_seconds allows",
            field="ttl_seconds",
        )
    issued = app.issuer().issue(
        subject, role, dt.timedelta(seconds=ttl), school=school or acting_code(app)
    )
    token_store.record(app.engine, issued, "api", issued_by)
    return issued


def revoke(app: App, jti: str) -> token_store.TokenInfo:
    """Revoke `jti` of the acting school in the database (NotFound for another school's),
    then tell services through Redis when it is there."""
    jti = jti.strip()
    if not jti:
        raise InvalidArgument("jti is required", field="jti")
    if len(jti) > 64:
        raise InvalidArgument("jti is longer than 64 characters", field="jti")
    info = token_store.revoke(app.engine, jti)
    publish(app.redis(), info.jti, info.expires_at.timestamp())
    return info


def disable_user(app: App, username: str) -> tuple[users.Account, int]:
    """Disable `username` of the acting school (NotFound for another school's) and revoke
    every unexpired token issued to them there."""
    if not username.strip():
        raise InvalidArgument("username is required", field="username")
    account = users.disable_user(app.engine, username)
    revoked = token_store.revoke_subject(app.engine, account.username)
    for jti, expires_at in revoked.items():
        publish(app.redis(), jti, expires_at)
    return account, len(revoked)


def link_token(
    app: App, path: str, ttl_seconds: int, caller: Principal, subject: str = ""
) -> IssuedToken:
    """A link token for one GET of `path` (ferry.auth.links), recorded as kind `link` under
    `subject` (the caller's own when empty; only an admin names someone else).
    INVALID_ARGUMENT naming the field for a path no link opens or a bad lifetime,
    PERMISSION_DENIED when the caller may not make the call the path names itself,
    FAILED_PRECONDITION when the link's user is disabled."""
    target = links.target(path)
    if not 0 <= ttl_seconds <= LINK_TTL_MAX:
        raise InvalidArgument(f"ttl_seconds must be 0 to {LINK_TTL_MAX}", field="ttl_seconds")
    if caller.role < target.min_role:
        raise PermissionDenied(
            f"{caller.subject[:64]} may not open {path[:64]} and so cannot link to it"
        )
    subject = subject.strip() or caller.subject
    if subject != caller.subject and caller.role < options_pb2.ROLE_ADMIN:
        raise PermissionDenied("only an admin may make a link for someone else")
    if len(subject) > MAX_SUBJECT or any(ord(c) < 32 or ord(c) == 127 for c in subject):
        raise InvalidArgument(
            f"subject needs at most {MAX_SUBJECT} characters and no control characters",
            field="subject",
        )
    school = caller.school or acting_code(app)  # the link opens the caller's school
    with Session(app.engine) as s:
        disabled = s.scalar(  # a user of the acting school: another school's says nothing
            sa.select(User.disabled).where(
                User.username == subject, User.school_id == tenant.school_id()
            )
        )
    if disabled:
        raise FailedPrecondition(f"user {subject[:64]!r} is disabled; no link is made for them")
    base = app.issuer()
    issuer = TokenIssuer(base.key, base.issuer, links.audience(base.audience))
    ttl = dt.timedelta(seconds=ttl_seconds or LINK_TTL_DEFAULT)
    issued = issuer.issue(
        subject,
        target.min_role,
        ttl,
        extra=links.claims_for(target, path),
        school=school,
    )
    token_store.record(app.engine, issued, "link", caller.subject[:MAX_SUBJECT])
    return issued
