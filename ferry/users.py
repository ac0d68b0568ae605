"""Users of the Export Center page: create them and check their passwords.

Passwords are hashed with scrypt (stdlib) and a per-user random salt; the cost parameters
are stored with each hash so they can be raised later. Comparison is constant-time, and an
unknown username costs as much as a wrong password, so timing does not reveal who exists.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ferry.auth import ROLES
from ferry.db.user_models import User
from ferry.errors import AlreadyExists, InvalidArgument

# scrypt cost: ~16 MiB and a few tens of milliseconds per check on a laptop.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
HASH_BYTES = 64
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


@dataclass(frozen=True)
class Account:
    username: str
    role: str


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


def create_user(engine: Engine, username: str, password: str, role: str) -> Account:
    """Store a new user; InvalidArgument for a bad name/role/password, AlreadyExists when
    the username is taken."""
    username = username.strip()
    if not username or len(username) > 150:
        raise InvalidArgument("a username needs 1 to 150 characters", field="username")
    if role not in ROLES:
        raise InvalidArgument(f"unknown role {role!r}; roles: {', '.join(ROLES)}", field="role")
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidArgument(
            f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters", field="password"
        )
    salt = secrets.token_bytes(16)
    user = User(
        username=username,
        password_hash=_hash(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P),
        password_salt=salt,
        scrypt_n=SCRYPT_N,
        scrypt_r=SCRYPT_R,
        scrypt_p=SCRYPT_P,
        role=role,
        disabled=False,
    )
    try:
        with Session(engine) as s, s.begin():
            s.add(user)
    except IntegrityError:
        raise AlreadyExists(f"user {username!r} already exists") from None
    return Account(username, role)


def user_exists(engine: Engine, username: str) -> bool:
    """True when `username` has an account (enabled or not)."""
    with Session(engine) as s:
        return s.scalar(sa.select(User.id).where(User.username == username.strip())) is not None


# Checked against when the username is unknown, so both paths cost one scrypt.
_DUMMY_SALT = secrets.token_bytes(16)


def verify(engine: Engine, username: str, password: str) -> Account | None:
    """The account when `username` exists, is enabled and `password` matches; else None."""
    with Session(engine) as s:
        user = s.scalar(sa.select(User).where(User.username == username.strip()))
    if len(password) > MAX_PASSWORD:
        return None
    if user is None:
        _hash(password, _DUMMY_SALT, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return None
    given = _hash(password, user.password_salt, user.scrypt_n, user.scrypt_r, user.scrypt_p)
    if not hmac.compare_digest(given, user.password_hash) or user.disabled:
        return None
    return Account(user.username, user.role)
