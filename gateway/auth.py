"""Who is calling: bearer tokens from the Authorization header, links for what a browser
fetches without headers (<a href> downloads, EventSource), the client's address, and the
login limits.

The gateway holds nothing secret: no database URL and no private key. Logins are the auth
service's `Login`; the services check every token themselves and the gateway only forwards
it. A browser link carries a link token the auth service issued for exactly one GET of
that path (`CreateLinkToken`, ferry.auth.links): its audience is not the bearer tokens'
one, so it is never accepted from an Authorization header; the gateway checks it with the
public key set, serves it only for that method and path, and forwards it as
`authorization: Link …`, which the service accepts only for the one call the path names.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request

from ferry.auth import TokenVerifier, check_size
from ferry.auth.links import METHOD_CLAIM, PATH_CLAIM
from ferry.errors import FerryError, PermissionDenied, Unauthenticated
from ferry.ratelimit import Decision, Limiter

LINK_PARAM = "link"
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None; Unauthenticated when it
    is larger than any token the auth service issues (forwarded, it would break gRPC's
    metadata limit and come back as a random RESOURCE_EXHAUSTED)."""
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    check_size(token)
    return token


class LinkToken(str):
    """A link token from a URL (forwarded as `authorization: Link …`, never as Bearer)."""


def link_token(verifier: TokenVerifier, request: Request) -> LinkToken | None:
    """The link token of `?link=…` when it is valid for this very method and path (checked
    with the link audience); None when the URL has none; Unauthenticated when it is
    expired, forged, a bearer token, or for another path or method."""
    token = request.query_params.get(LINK_PARAM)
    if token is None:
        return None
    invalid = "this link has expired or is not valid; open it again from the page"
    try:
        claims = verifier.claims(token)
    except Unauthenticated as e:
        # The signature is checked before the expiry, so "expired" means a genuine link
        # whose time is up (a mail older than notify.link_ttl_days): 403, as a page.
        if e.message == "token expired" and _unverified_path(token) == request.url.path:
            raise LinkExpired(
                "this download link has expired; open the export in the Export Center "
                "to get a new one"
            ) from None
        raise Unauthenticated(invalid) from None
    except FerryError:
        raise Unauthenticated(invalid) from None
    if claims.get(PATH_CLAIM) != request.url.path or claims.get(METHOD_CLAIM) != request.method:
        raise Unauthenticated(invalid)
    return LinkToken(token)


class LinkExpired(PermissionDenied):
    """A genuine link whose time is up: 403, as a page for a browser."""


def _unverified_path(token: str) -> str:
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return ""
    return str(claims.get(PATH_CLAIM, ""))


def parse_networks(entries: Sequence[str]) -> list[Network]:
    """gateway.trusted_proxies: addresses or CIDR networks."""
    return [ipaddress.ip_network(e.strip(), strict=False) for e in entries if e.strip()]


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None


def client_address(request: Request, trusted: Sequence[Network]) -> str:
    """The caller's address: the peer, unless the peer is a trusted proxy; then the
    X-Forwarded-For entry before it, walking right to left through trusted hops only.
    Entries from untrusted hops are never believed (anyone can send the header)."""
    peer = request.client.host if request.client else "unknown"
    if not trusted:
        return peer
    hops = [h for part in request.headers.getlist("x-forwarded-for") for h in part.split(",")]
    current = peer
    while hops:
        ip = _ip(current)
        if ip is None or not any(ip in net for net in trusted):
            break
        candidate = hops.pop().strip()
        if _ip(candidate) is None:
            break  # a garbled entry: stop at the last hop we could trust
        current = candidate
    return current


class LoginLimits:
    """Login attempts limited per username and, separately, per client address, shared
    by every gateway replica through Redis (ferry.ratelimit; per process without it)."""

    def __init__(
        self, per_user: int, per_address: int, window: float, redis_client: object = None
    ) -> None:
        self.user = Limiter("login-user", per_user, window, redis_client)
        self.address = Limiter("login-address", per_address, window, redis_client)

    def hit(self, address: str, username: str) -> Decision:
        """Count one attempt; not allowed when either limit is reached."""
        by_address = self.address.hit(address)
        if not by_address.allowed:
            return by_address
        return self.user.hit(username.strip().lower())

    def succeeded(self, username: str) -> None:
        """A good password clears that username's failures (not the address's)."""
        self.user.clear(username.strip().lower())
