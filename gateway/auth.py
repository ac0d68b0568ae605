"""Who is calling: bearer tokens from the Authorization header, signed expiring links for
what a browser fetches without headers (<a href> downloads, EventSource), and a login
rate limiter. The services check every token themselves; the gateway only forwards it."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
import time
from collections import deque
from urllib.parse import urlencode

from starlette.requests import Request

from ferry.auth import ROLES, TokenSigner

# A link token only has to live until the service has accepted the call.
LINK_TOKEN_SECONDS = 60


def bearer_token(request: Request) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class LinkSigner:
    """HMAC-signed, expiring URLs: `path?exp=<unix>&sig=<hex>`.

    The key is derived from the token signing key, so nothing new has to be provisioned;
    the path is part of what is signed, so a link opens exactly one resource."""

    def __init__(self, signer: TokenSigner, ttl_seconds: int) -> None:
        self.signer = signer
        self.ttl = ttl_seconds
        self._key = hmac.new(signer.key, b"ferry-gateway-links", hashlib.sha256).digest()

    def _mac(self, path: str, exp: int) -> str:
        return hmac.new(self._key, f"{path}\n{exp}".encode(), hashlib.sha256).hexdigest()

    def sign(self, path: str, now: float | None = None) -> tuple[str, int]:
        """(the signed URL of `path`, its expiry as unix seconds)."""
        exp = int((now or time.time()) + self.ttl)
        return f"{path}?{urlencode({'exp': exp, 'sig': self._mac(path, exp)})}", exp

    def verify(self, path: str, sig: str, exp: str) -> bool:
        """True when `sig` signs `path` until `exp` and `exp` has not passed."""
        try:
            when = int(exp)
        except ValueError:
            return False
        return when >= time.time() and hmac.compare_digest(sig, self._mac(path, when))

    def expired(self, path: str, sig: str, exp: str) -> bool:
        """True when `sig` is a genuine signature of `path` whose time has passed (a link
        from an old mail), as opposed to a forged or mangled one."""
        try:
            when = int(exp)
        except ValueError:
            return False
        return when < time.time() and hmac.compare_digest(sig, self._mac(path, when))

    def token_for(self, path: str) -> str:
        """A short-lived viewer token for serving one signed link."""
        return self.signer.issue(
            f"link:{path}", ROLES["viewer"], dt.timedelta(seconds=LINK_TOKEN_SECONDS)
        )


class LoginLimiter:
    """At most `attempts` logins per (client address, username) within `window` seconds."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._seen: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, address: str, username: str) -> int:
        """0 when this attempt may proceed (and counts it); else seconds to wait."""
        now = time.monotonic()
        key = (address, username.strip().lower())
        with self._lock:
            if len(self._seen) > 10_000:  # forget idle keys so memory stays bounded
                self._seen = {
                    k: v for k, v in self._seen.items() if v and v[-1] > now - self.window
                }
            times = self._seen.setdefault(key, deque())
            while times and times[0] <= now - self.window:
                times.popleft()
            if len(times) >= self.attempts:
                return max(1, int(times[0] + self.window - now + 0.999))
            times.append(now)
            return 0

    def reset(self, address: str, username: str) -> None:
        """Forget the attempts of a successful login."""
        with self._lock:
            self._seen.pop((address, username.strip().lower()), None)
