"""Issuing and verifying EdDSA tokens.

Verification pins everything a token could try to choose for itself: the algorithm
(EdDSA only: a token "signed" HS256 with the public key as the HMAC secret, or with
`alg: none`, is refused before any key is touched), the issuer, the audience and the
`kid` (which must name a key of the key set). Tokens over 4 KiB are refused before they
are parsed. Every refusal is Unauthenticated with a message saying which check failed.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from ferry.auth import Principal, parse_role, role_name
from ferry.auth.keys import SigningKey
from ferry.db.tenant import DEFAULT_SCHOOL_CODE
from ferry.errors import Unauthenticated

ALGORITHM = "EdDSA"
# A call's headers together must stay under gRPC's 8 KiB metadata limit (past it a call
# fails at random with RESOURCE_EXHAUSTED), so a token gets half of it; ours are ~400 bytes.
MAX_TOKEN_BYTES = 4 * 1024
REQUIRED = ["exp", "iat", "iss", "aud", "sub", "jti", "role"]
# The claim naming the school a token acts in (a school code, docs/tenants.md). Checked
# after the signature and the registered claims, so a forged token is refused for that.
SCHOOL_CLAIM = "sch"

# Clock skew between pods that is still accepted for exp / nbf / iat.
LEEWAY_SECONDS = 5


def check_size(token: str) -> None:
    """Unauthenticated when `token` is larger than any token the auth service issues."""
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated(f"token is larger than {MAX_TOKEN_BYTES // 1024} KiB")


class PublicKeys(Protocol):
    def get(self, kid: str) -> Any: ...


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    subject: str
    role: int
    issued_at: dt.datetime
    expires_at: dt.datetime
    # The code of the school the token acts in (its sch claim).
    school: str = DEFAULT_SCHOOL_CODE


@dataclass(frozen=True)
class TokenIssuer:
    key: SigningKey
    issuer: str = "ferry"
    audience: str = "ferry"

    def issue(
        self,
        subject: str,
        role: int,
        ttl: dt.timedelta,
        extra: Mapping[str, Any] | None = None,
        now: dt.datetime | None = None,
        school: str = DEFAULT_SCHOOL_CODE,
    ) -> IssuedToken:
        """A signed token for `subject` with `role` in `school` (its code), valid for
        `ttl` (a fresh jti)."""
        now = now or dt.datetime.now(dt.UTC)
        now = now.replace(microsecond=0)
        jti = uuid.uuid4().hex
        claims: dict[str, Any] = {
            **(extra or {}),
            "sub": subject,
            "role": role_name(role),
            SCHOOL_CLAIM: school,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": jti,
        }
        token = jwt.encode(claims, self.key.private, algorithm=ALGORITHM,
                           headers={"kid": self.key.kid})  # fmt: skip
        return IssuedToken(token, jti, subject, role, now, now + ttl, school)


class TokenVerifier:
    """Checks tokens against a set of public keys (never a private one).

    An Ed25519 signature check costs ~0.1 ms, paid on every call by a token used again
    and again; so `verify` remembers the principals of tokens it verified (at most
    `cache_size`, least recently used out), keyed by the whole token string. A token is
    immutable, so a remembered one needs only its expiry checked again; the memory is
    dropped when the key set is reloaded (a key may have been retired). Revocation is
    not cached here: the auth filter checks it on every call.
    """

    def __init__(
        self,
        keys: PublicKeys,
        issuer: str = "ferry",
        audience: str = "ferry",
        cache_size: int = 4096,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Principal] = OrderedDict()
        self._generation = getattr(keys, "generation", 0)
        self._lock = threading.Lock()

    def claims(self, token: str) -> dict[str, Any]:
        """The verified claims of `token`; Unauthenticated saying which check failed."""
        check_size(token)
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthenticated("malformed token (not a signed JWT)") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise Unauthenticated("unsigned token (alg none) refused")
        if alg != ALGORITHM:
            raise Unauthenticated(f"token algorithm {alg} refused; only {ALGORITHM} is accepted")
        kid = header.get("kid")
        if not kid:
            raise Unauthenticated("token has no key id (kid)")
        key = self.keys.get(str(kid))
        if key is None:
            raise Unauthenticated(f"token signed by unknown key id {str(kid)[:64]!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                f"token has the wrong audience (expected {self.audience!r})"
            ) from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated(
                f"token has the wrong issuer (expected {self.issuer!r})"
            ) from None
        except jwt.MissingRequiredClaimError as e:
            raise Unauthenticated(f"token lacks the {e.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify") from None
        except jwt.InvalidTokenError as e:
            raise Unauthenticated(f"invalid token: {e}") from None
        return claims

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; Unauthenticated saying why otherwise."""
        generation = getattr(self.keys, "generation", 0)
        if generation != self._generation:
            with self._lock:
                self._cache.clear()
                self._generation = generation
        known = self._cache.get(token)
        if known is not None:
            if time.time() < known.expires_at + LEEWAY_SECONDS:
                with self._lock:
                    if token in self._cache:
                        self._cache.move_to_end(token)
                return known
            raise Unauthenticated("token expired")
        principal = self._verify(token)
        if self.cache_size:
            with self._lock:
                self._cache[token] = principal
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return principal

    def _verify(self, token: str) -> Principal:
        claims = self.claims(token)
        try:
            role = parse_role(str(claims["role"]))
        except ValueError as e:
            raise Unauthenticated(f"invalid token: {e}") from None
        exp = claims["exp"]
        if not isinstance(exp, (int, float)):
            raise Unauthenticated("invalid token: exp is not a number")
        return Principal(
            str(claims["sub"]), role, str(claims["jti"]), float(exp), school_of(claims)
        )


def school_of(claims: Mapping[str, Any]) -> str:
    """The school code a verified token names; Unauthenticated when it names none (a
    token from before schools, or one made by hand): every token acts in one school."""
    school = claims.get(SCHOOL_CLAIM)
    if not isinstance(school, str) or not school:
        raise Unauthenticated(f"token names no school (the {SCHOOL_CLAIM!r} claim)")
    if len(school) > 64:
        raise Unauthenticated("invalid token: the school code is longer than 64")
    return school
