"""Bearer tokens: EdDSA (Ed25519) JWTs issued by the auth service, carrying a role.

Roles are ordered platform_admin > admin > operator > viewer (ferry.v1.Role in
options.proto); a caller may call an RPC when its role is at least the RPC's declared
min_role. Every role but platform_admin acts in its token's school (the `sch` claim); a
platform admin names the school of each call (`SCHOOL_HEADER`, docs/tenants.md).

Only the auth service (and the CLI on a laptop, where it can read the private key file)
signs tokens (`TokenIssuer`); every service and the gateway verify them with the public
key set (`TokenVerifier`). Keys live in `ferry.auth.keys`; revocation in
`ferry.auth.revocation`; the tokens table in `ferry.auth.store`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.errors import PermissionDenied, Unauthenticated
from ferry.v1 import options_pb2

ROLES = {
    "viewer": options_pb2.ROLE_VIEWER,
    "operator": options_pb2.ROLE_OPERATOR,
    "admin": options_pb2.ROLE_ADMIN,
    "platform_admin": options_pb2.ROLE_PLATFORM_ADMIN,
}
PLATFORM_ADMIN = options_pb2.ROLE_PLATFORM_ADMIN
# The metadata naming the school a call acts for: required of a platform admin, and
# refused (NOT_FOUND) from anyone else when it names another school than their token's.
# The gateway forwards its X-Ferry-School header as it.
SCHOOL_HEADER = "x-ferry-school"


def role_name(role: int) -> str:
    for name, value in ROLES.items():
        if value == role:
            return name
    return "none"


def parse_role(name: str) -> int:
    """The Role value for `name` (viewer, operator, admin, platform_admin)."""
    try:
        return ROLES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown role {name!r}; roles: {', '.join(ROLES)}") from None


@dataclass(frozen=True)
class Principal:
    subject: str
    role: int
    jti: str = ""
    expires_at: float = 0.0  # unix seconds
    # The code of the school the token acts in (its `sch` claim, docs/tenants.md).
    school: str = ""

    @property
    def platform(self) -> bool:
        """A platform admin: acts for any school, naming it per call."""
        return self.role >= PLATFORM_ADMIN

    def require(self, min_role: int, method: str) -> None:
        """Raise PermissionDenied unless this principal's role reaches `min_role`."""
        if self.role < min_role:
            need, have = role_name(min_role), role_name(self.role)
            raise PermissionDenied(f"{method} needs role {need}; {self.subject} has {have}")


def bearer(metadata: dict[str, str]) -> str:
    """The token from an `authorization: Bearer …` header; Unauthenticated when absent."""
    scheme, token = credentials(metadata)
    if scheme != "bearer":
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    return token


def credentials(metadata: dict[str, str]) -> tuple[str, str]:
    """(scheme, token) of `authorization: Bearer …` or `authorization: Link …` (a link
    token the gateway forwards, ferry.auth.links); Unauthenticated otherwise."""
    value = metadata.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if not value:
        raise Unauthenticated("missing authorization metadata (expected 'Bearer <token>')")
    scheme = scheme.lower()
    if scheme not in ("bearer", "link") or not token.strip():
        raise Unauthenticated("authorization metadata must be 'Bearer <token>'")
    return scheme, token.strip()


from ferry.auth.keys import KeySet, SigningKey  # noqa: E402
from ferry.auth.tokens import (  # noqa: E402
    MAX_TOKEN_BYTES,
    IssuedToken,
    TokenIssuer,
    TokenVerifier,
    check_size,
)

__all__ = [
    "MAX_TOKEN_BYTES",
    "PLATFORM_ADMIN",
    "ROLES",
    "SCHOOL_HEADER",
    "IssuedToken",
    "KeySet",
    "Principal",
    "SigningKey",
    "TokenIssuer",
    "TokenVerifier",
    "bearer",
    "check_size",
    "credentials",
    "parse_role",
    "role_name",
]
