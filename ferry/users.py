"""Users of the Export Center page: create them and check their passwords.

Passwords are hashed with scrypt (stdlib) and a per-user random salt; the cost parameters
are stored with each hash so they can be raised later. Comparison is constant-time, and an
unknown username costs as much as a wrong password, so timing does not reveal who exists.

Every user belongs to one school (migration 0016, docs/tenants.md). `users` is a platform
table (a sign-in finds its user before any school is known), so the application scopes
it: every function that reads or changes users by name takes the school (the acting
one, `ferry.db.tenant`, when not given) and finds nobody of another school (NotFound).
Usernames stay unique in the installation, so a sign-in needs no school; `verify` alone
looks across schools, and says whose school the user is in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ferry.auth import ROLES
from ferry.db import tenant
from ferry.db.models import School
from ferry.db.user_models import User
from ferry.errors import AlreadyExists, InvalidArgument, NotFound

# scrypt cost: ~16 MiB and a few tens of milliseconds per check on a laptop.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
HASH_BYTES = 64
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


MAX_USERNAME_INPUT = 1024  # Login refuses longer input before any hashing


@dataclass(frozen=True)
class Account:
    username: str
    role: str
    disabled: bool = False
    created_at: dt.datetime | None = None
    email: str = ""
    school_id: int = tenant.DEFAULT_SCHOOL_ID
    # The school's code (what the user's tokens carry as `sch`).
    school: str = tenant.DEFAULT_SCHOOL_CODE


def _school(school_id: int | None) -> int:
    """`school_id`, or the acting school when None."""
    return tenant.school_id() if school_id is None else int(school_id)


def _hash(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * 1024 * 1024,
        dklen=HASH_BYTES,
    )


def generate_password() -> str:
    """A random password that is easy to copy (about 96 bits)."""
    return secrets.token_urlsafe(12)


def check_email(value: str) -> str:
    """A user's mail address trimmed ("" for none): a bare address (`a@b.example`, no
    display name, at most 254 characters), else InvalidArgument naming `email`."""
    import email.utils

    from ferry.addresses import parse_address

    value = value.strip()
    if not value:
        return ""
    try:
        parse_address(value)
    except ValueError as e:
        raise InvalidArgument(f"email: {e}", field="email") from None
    if email.utils.parseaddr(value)[1] != value or not value.isascii():
        raise InvalidArgument(
            f"email: {value!r} is not a bare mail address (like name@school.example)",
            field="email",
        )
    return value


def create_user(
    engine: Engine,
    username: str,
    password: str,
    role: str,
    email: str = "",
    school_id: int | None = None,
) -> Account:
    """Store a new user of school `school_id` (the acting one when None); InvalidArgument
    for a bad name/role/password/email, AlreadyExists when the username is taken (in any
    school: a sign-in names no school)."""
    username = username.strip()
    if not username or len(username) > 150:
        raise InvalidArgument("a username needs 1 to 150 characters", field="username")
    if role not in ROLES:
        raise InvalidArgument(f"unknown role {role!r}; roles: {', '.join(ROLES)}", field="role")
    email = check_email(email)
    _check_password(password)
    salt = secrets.token_bytes(16)
    created = dt.datetime.now(dt.UTC)
    school = _school(school_id)
    user = User(
        username=username,
        password_hash=_hash(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P),
        password_salt=salt,
        scrypt_n=SCRYPT_N,
        scrypt_r=SCRYPT_R,
        scrypt_p=SCRYPT_P,
        role=role,
        disabled=False,
        created_at=created,
        email=email,
        school_id=school,
    )
    try:
        with Session(engine) as s, s.begin():
            s.add(user)
            s.flush()
            code = _code(s, school)
    except IntegrityError:
        raise AlreadyExists(f"user {username!r} already exists") from None
    return Account(username, role, False, created, email, school, code)


def _code(s: Session, school_id: int) -> str:
    return str(s.scalar(sa.select(School.code).where(School.id == school_id)) or "")


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidArgument(
            f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters", field="password"
        )


def _account(u: User, code: str = "") -> Account:
    created = u.created_at if u.created_at.tzinfo else u.created_at.replace(tzinfo=dt.UTC)
    return Account(
        u.username, u.role, u.disabled, created, u.email or "", int(u.school_id), code
    )


def _one(s: Session, username: str, school_id: int | None, lock: bool = False) -> User:
    """The user `username` of the school (the acting one when None); NotFound when there
    is none there, whether or not another school has one (nothing says which)."""
    school = _school(school_id)
    q = sa.select(User).where(User.username == username.strip(), User.school_id == school)
    user = s.scalar(q.with_for_update() if lock else q)
    if user is None:
        raise NotFound(f"no user {username.strip()[:150]!r}", field="username")
    return user


def email_of(engine: Engine, username: str, school_id: int | None = None) -> str:
    """`username`'s mail address ("" when none is set or the school has no such user)."""
    with Session(engine) as s:
        found = s.scalar(
            sa.select(User.email).where(
                User.username == username.strip(), User.school_id == _school(school_id)
            )
        )
    return found or ""


def set_email(
    engine: Engine, username: str, email: str, school_id: int | None = None
) -> Account:
    """Set (or with "" clear) `username`'s mail address; NotFound when the school has no
    such user."""
    email = check_email(email)
    with Session(engine) as s, s.begin():
        user = _one(s, username, school_id, lock=True)
        user.email = email
        return _account(user, _code(s, user.school_id))


LANGUAGES = ("en", "el")


def set_language(engine: Engine, username: str, language: str) -> None:
    """Remember `language` (en, el) as `username`'s; anything else, or an unknown user,
    changes nothing (a sign-in never fails for it)."""
    if language not in LANGUAGES:
        return
    with engine.begin() as conn:
        conn.execute(
            sa.update(User)
            .where(User.username == username.strip(), User.language != language)
            .values(language=language)
        )


def languages_by_address(conn: Connection, recipients: list[str]) -> dict[str, str]:
    """{recipient as given (trimmed): language} for the recipients whose address
    (`a@b.example` or `Name <a@b.example>`) is that of a user of the acting school who has
    signed in to the page (one query; another school's users are not asked)."""
    import email.utils

    by_address: dict[str, list[str]] = {}
    for r in recipients:
        address = email.utils.parseaddr(r.strip())[1].lower()
        if address:
            by_address.setdefault(address, []).append(r.strip())
    if not by_address:
        return {}
    rows = conn.execute(
        sa.select(sa.func.lower(User.email), User.language).where(
            sa.func.lower(User.email).in_(sorted(by_address)),
            User.language != "",
            User.school_id == tenant.school_id(),
        )
    )
    return {r: str(lang) for address, lang in rows for r in by_address.get(str(address), [])}


def language_of(conn: Connection, addresses: list[str]) -> str:
    """The language of the users whose mail addresses these are, when they share one
    ("" when none of them is a user with a language, or they differ)."""
    found = set(languages_by_address(conn, addresses).values())
    return found.pop() if len(found) == 1 else ""


def set_password(
    engine: Engine, username: str, password: str, school_id: int | None = None
) -> Account:
    """Replace `username`'s password (a fresh salt, today's cost); NotFound when the
    school has no such user."""
    _check_password(password)
    salt = secrets.token_bytes(16)
    digest = _hash(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    with Session(engine) as s, s.begin():
        user = _one(s, username, school_id, lock=True)
        user.password_hash, user.password_salt = digest, salt
        user.scrypt_n, user.scrypt_r, user.scrypt_p = SCRYPT_N, SCRYPT_R, SCRYPT_P
        return _account(user, _code(s, user.school_id))


def disable_user(engine: Engine, username: str, school_id: int | None = None) -> Account:
    """Disable `username` (no more logins); NotFound when the school has no such user.
    Idempotent."""
    with Session(engine) as s, s.begin():
        user = _one(s, username, school_id, lock=True)
        user.disabled = True
        return _account(user, _code(s, user.school_id))


def list_users(engine: Engine, school_id: int | None = None) -> list[Account]:
    """Every user of the school (the acting one when None), by username."""
    school = _school(school_id)
    with Session(engine) as s:
        code = _code(s, school)
        q = sa.select(User).where(User.school_id == school).order_by(User.username)
        return [_account(u, code) for u in s.scalars(q)]


def check_login_input(username: str, password: str) -> None:
    """InvalidArgument for a login's missing or oversized fields (before any hashing)."""
    if not username.strip():
        raise InvalidArgument("username is required", field="username")
    if not password:
        raise InvalidArgument("password is required", field="password")
    if len(username.encode("utf-8", "surrogatepass")) > MAX_USERNAME_INPUT:
        raise InvalidArgument("username is longer than 1 KiB", field="username")
    if len(password.encode("utf-8", "surrogatepass")) > MAX_PASSWORD:
        raise InvalidArgument("password is longer than 1 KiB", field="password")


def user_exists(engine: Engine, username: str) -> bool:
    """True when `username` has an account (enabled or not) in any school (usernames are
    unique in the installation)."""
    with Session(engine) as s:
        return s.scalar(sa.select(User.id).where(User.username == username.strip())) is not None


# Checked against when the username is unknown, so both paths cost one scrypt.
_DUMMY_SALT = secrets.token_bytes(16)


def verify(engine: Engine, username: str, password: str) -> Account | None:
    """The account when `username` exists (in any school), is enabled and `password`
    matches, with its school; else None."""
    check_login_input(username, password)
    with Session(engine) as s:
        user = s.scalar(sa.select(User).where(User.username == username.strip()))
        code = _code(s, user.school_id) if user is not None else ""
    if user is None:
        _hash(password, _DUMMY_SALT, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return None
    given = _hash(password, user.password_salt, user.scrypt_n, user.scrypt_r, user.scrypt_p)
    if not hmac.compare_digest(given, user.password_hash) or user.disabled:
        return None
    return _account(user, code)
