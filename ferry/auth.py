"""Bearer tokens: JWTs signed with the installation's key, carrying a role.

Roles are ordered admin > operator > viewer (ferry.v1.Role in options.proto); a caller
may call an RPC when its role is at least the RPC's declared min_role.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt

from ferry.errors import PermissionDenied, Unauthenticated
from ferry.v1 import options_pb2

ROLES = {
    "viewer": options_pb2.ROLE_VIEWER,
    "operator": options_pb2.ROLE_OPERATOR,
    "admin": options_pb2.ROLE_ADMIN,
}
ALGORITHM = "HS256"


def role_name(role: int) -> str:
    for name, value in ROLES.items():
        if value == role:
            return name
    return "none"


def parse_role(name: str) -> int:
    """The Role value for `name` (viewer, operator, admin)."""
    try:
        return ROLES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown role {name!r}; roles: {', '.join(ROLES)}") from None


@dataclass(frozen=True)
class Principal:
    subject: str
    role: int

    def require(self, min_role: int, method: str) -> None:
        """Raise PermissionDenied unless this principal's role reaches `min_role`."""
        if self.role < min_role:
            need, have = role_name(min_role), role_name(self.role)
            raise PermissionDenied(f"{method} needs role {need}; {self.subject} has {have}")


def read_key(path: Path) -> bytes | None:
    """The signing key at `path`, or None when it is missing or unreadable."""
    try:
        key = path.read_bytes().strip()
    except OSError:
        return None
    return key or None


def load_or_create_key(path: Path) -> bytes:
    """The signing key at `path`, created (owner-only) when missing: a laptop just works."""
    key = read_key(path)
    if key is not None:
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode())
    key = read_key(path)
    assert key is not None
    return key


@dataclass(frozen=True)
class TokenSigner:
    key: bytes
    issuer: str = "ferry"
    audience: str = "ferry"

    def issue(self, subject: str, role: int, ttl: dt.timedelta) -> str:
        """A signed token for `subject` with `role`, valid for `ttl`."""
        now = dt.datetime.now(dt.UTC)
        claims = {
            "sub": subject,
            "role": role_name(role),
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self.key, algorithm=ALGORITHM)

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; Unauthenticated saying why otherwise."""
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.InvalidTokenError as e:
            raise Unauthenticated(f"invalid token: {e}") from None
        try:
            role = parse_role(str(claims["role"]))
        except ValueError as e:
            raise Unauthenticated(f"invalid token: {e}") from None
        return Principal(str(claims["sub"]), role)


def bearer(metadata: dict[str, str]) -> str:
    """The token from an `authorization: Bearer …` header; Unauthenticated when absent."""
    value = metadata.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if not value:
        raise Unauthenticated("missing authorization metadata (expected 'Bearer <token>')")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    return token.strip()
