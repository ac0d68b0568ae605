"""Users of the Export Center page: create them and check their passwords.

Passwords are hashed with scrypt (stdlib) and a per-user random salt; the cost parameters
are stored with each hash so they can be raised later. Comparison is constant-time, and an
unknown username costs as much as a wrong password, so timing does not reveal who exists.
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
    engine: Engine, username: str, password: str, role: str, email: str = ""
) -> Account:
    """Store a new user; InvalidArgument for a bad name/role/password/email, AlreadyExists
    when the username is taken."""
    username = username.strip()
    if not username or len(username) > 150:
        raise InvalidArgument("a username needs 1 to 150 characters", field="username")
    if role not in ROLES:
        raise InvalidArgument(f"unknown role {role!r}; roles: {', '.join(ROLES)}", field="role")
    email = check_email(email)
    _check_password(password)
    salt = secrets.token_bytes(16)
    created = dt.datetime.now(dt.UTC)
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
    )
    try:
        with Session(engine) as s, s.begin():
            s.add(user)
    except IntegrityError:
        raise AlreadyExists(f"user {username!r} already exists") from None
    return Account(username, role, False, created, email)


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidArgument(
            f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters", field="password"
        )


def _account(u: User) -> Account:
    created = u.created_at if u.created_at.tzinfo else u.created_at.replace(tzinfo=dt.UTC)
    return Account(u.username, u.role, u.disabled, created, u.email or "")


def email_of(engine: Engine, username: str) -> str:
    """`username`'s mail address ("" when none is set or the user is unknown)."""
    with Session(engine) as s:
        found = s.scalar(sa.select(User.email).where(User.username == username.strip()))
    return found or ""


def set_email(engine: Engine, username: str, email: str) -> Account:
    """Set (or with "" clear) `username`'s mail address; NotFound when unknown."""
    email = check_email(email)
    with Session(engine) as s, s.begin():
        user = s.scalar(sa.select(User).where(User.username == username.strip()))
        if user is None:
            raise NotFound(f"no user {username.strip()!r}")
        user.email = email
        return _account(user)


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
    (`a@b.example` or `Name <a@b.example>`) is a user's who has signed in to the page
    (one query)."""
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
            sa.func.lower(User.email).in_(sorted(by_address)), User.language != ""
        )
    )
    return {r: str(lang) for address, lang in rows for r in by_address.get(str(address), [])}


def language_of(conn: Connection, addresses: list[str]) -> str:
    """The language of the users whose mail addresses these are, when they share one
    ("" when none of them is a user with a language, or they differ)."""
    found = set(languages_by_address(conn, addresses).values())
    return found.pop() if len(found) == 1 else ""


def set_password(engine: Engine, username: str, password: str) -> Account:
    """Replace `username`'s password (a fresh salt, today's cost); NotFound when unknown."""
    _check_password(password)
    salt = secrets.token_bytes(16)
    digest = _hash(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    with Session(engine) as s, s.begin():
        user = s.scalar(sa.select(User).where(User.username == username.strip()))
        if user is None:
            raise NotFound(f"no user {username.strip()!r}")
        user.password_hash, user.password_salt = digest, salt
        user.scrypt_n, user.scrypt_r, user.scrypt_p = SCRYPT_N, SCRYPT_R, SCRYPT_P
        return _account(user)


def disable_user(engine: Engine, username: str) -> Account:
    """Disable `username` (no more logins); NotFound when unknown. Idempotent."""
    with Session(engine) as s, s.begin():
        user = s.scalar(sa.select(User).where(User.username == username.strip()))
        if user is None:
            raise NotFound(f"no user {username.strip()!r}")
        user.disabled = True
        return _account(user)


def list_users(engine: Engine) -> list[Account]:
    """Every user, by username."""
    with Session(engine) as s:
        return [_account(u) for u in s.scalars(sa.select(User).order_by(User.username))]


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
    """True when `username` has an account (enabled or not)."""
    with Session(engine) as s:
        return s.scalar(sa.select(User.id).where(User.username == username.strip())) is not None


# Checked against when the username is unknown, so both paths cost one scrypt.
_DUMMY_SALT = secrets.token_bytes(16)


def verify(engine: Engine, username: str, password: str) -> Account | None:
    """The account when `username` exists, is enabled and `password` matches; else None."""
    check_login_input(username, password)
    with Session(engine) as s:
        user = s.scalar(sa.select(User).where(User.username == username.strip()))
    if user is None:
        _hash(password, _DUMMY_SALT, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return None
    given = _hash(password, user.password_salt, user.scrypt_n, user.scrypt_r, user.scrypt_p)
    if not hmac.compare_digest(given, user.password_hash) or user.disabled:
        return None
    return _account(user)
