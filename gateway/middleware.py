"""Pure ASGI middleware (streaming-safe): security headers on every response, and request
metrics for Prometheus."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The page loads only its own scripts and styles; nothing may frame it.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]

REQUESTS = Counter(
    "ferry_gateway_requests_total",
    "HTTP requests served by the gateway, by route template, method and status.",
    ["route", "method", "status"],
)
LATENCY = Histogram(
    "ferry_gateway_request_duration_seconds",
    "Time to the first response byte of gateway requests.",
    ["route", "method"],
)


class SecurityHeaders:
    """SECURITY_HEADERS on every response; Strict-Transport-Security too when the gateway
    serves HTTPS (`hsts_seconds` > 0; never over plain HTTP, where browsers ignore it)."""

    def __init__(self, app: ASGIApp, hsts_seconds: int = 0) -> None:
        self.app = app
        self.headers = list(SECURITY_HEADERS)
        if hsts_seconds:
            self.headers.append((b"strict-transport-security", f"max-age={hsts_seconds}".encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RequestMetrics:
    def __init__(self, app: ASGIApp, router: Router) -> None:
        self.app = app
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        method = scope["method"]

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = self._template(scope)
                REQUESTS.labels(route, method, str(message["status"])).inc()
                LATENCY.labels(route, method).observe(time.perf_counter() - start)
            await send(message)

        await self.app(scope, receive, observe)

    def _template(self, scope: Scope) -> str:
        """The matched route's template (bounded label values), not the raw path."""
        for route in self.router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return str(getattr(route, "path", "unmatched"))
        return "unmatched"
