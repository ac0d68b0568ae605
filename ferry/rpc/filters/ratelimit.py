"""Rate-limit filter (`ratelimit`): at most N calls per caller and method in a window.

Limits come from plugins.filters.ratelimit, keyed "service/Method" or "service" (the
short names of ferry.yaml: "reports/BulkStudentReports"). Counts are kept by
ferry.ratelimit.Limiter: a sliding-window counter on the shared Redis, so every replica
sees the same count, and in this process while Redis is absent or down. Over the limit the
call ends with RESOURCE_EXHAUSTED and a `retry-after` trailer in seconds, which the
gateway turns into 429 with Retry-After. List it in a service's `filters:` (it runs after
the server's chain, so the caller is known from auth).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from ferry.config import Strict
from ferry.db import tenant
from ferry.errors import ResourceExhausted
from ferry.ratelimit import Limiter
from ferry.rpc.filters import Filter, FilterPlugin, RpcCall
from ferry.rpc.methods import service_key as _short_name

if TYPE_CHECKING:
    from ferry.app import App


class Limit(Strict):
    limit: int = Field(ge=1)
    window_seconds: float = Field(gt=0)


class RateLimitSettings(Strict):
    limits: dict[str, Limit] = {}


class RateLimitFilter(Filter):
    settings_model: ClassVar[type[Strict]] = RateLimitSettings

    def __init__(self, app: App) -> None:
        settings: RateLimitSettings = app.plugin_settings("ferry.filters", "ratelimit")
        redis = app.redis()
        self.limiters = {
            key: Limiter(f"rpc:{key}", spec.limit, spec.window_seconds, redis)
            for key, spec in settings.limits.items()
        }
        self.specs = dict(settings.limits)

    def start(self, call: RpcCall) -> None:
        service = _short_name(call.method.service)
        key = f"{service}/{call.method.name}"
        if key not in self.limiters:
            key = service
        limiter = self.limiters.get(key)
        if limiter is None:
            return
        # The token's subject; without auth, the client's address (not its port).
        who = call.caller if call.caller not in ("", "-") else f"peer:{_host(call.peer)}"
        decision = limiter.hit(f"school:{tenant.school_id()}", who)
        if not decision.allowed:
            spec = self.specs[key]
            raise ResourceExhausted(
                f"rate limit: at most {spec.limit} {call.method.name} calls per "
                f"{spec.window_seconds:g}s per caller and school; "
                f"retry in {decision.retry_after:.0f}s",
                retry_after=decision.retry_after,
            )


def _host(peer: str) -> str:
    """'ipv4:10.0.0.7:51234' -> 'ipv4:10.0.0.7' ('ipv6:[::1]:5' -> 'ipv6:[::1]')."""
    host, sep, port = peer.rpartition(":")
    return host if sep and port.isdigit() and host else peer


class RateLimitPlugin(FilterPlugin):
    """The `ratelimit` filter: a server half only."""

    settings_model: ClassVar[type[Strict]] = RateLimitSettings
    server_half = RateLimitFilter
