"""Pure ASGI middleware (streaming-safe): security headers on every response, request
metrics for Prometheus, and the fast lane of the unary routes with a literal path."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
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


# Responses whose __call__ sends exactly start + body (FastLane sends those two itself).
_PLAIN = frozenset({Response, JSONResponse})


class FastLane:
    """The unary contract routes with a literal path (no `{field}`), asked without an
    Origin header, go straight to their handler: the same handler, the same security
    headers, the same `Vary: Origin` CORS adds to a request without Origin, the same
    request metrics, without the stack of ASGI layers in between (FastAPI's exception,
    telemetry and body-limit middleware, CORS, a linear route match done twice: once to
    route, once more for the metrics label). That stack cost a cached report through the
    gateway about as much CPU as the whole `/healthz` request (issue 27's profile).

    Every other request (a path with parameters, a preflight, any request naming an
    Origin, another method) takes the full stack. `routes` maps (method, path) to the
    handler the router itself would pick for it (gateway.app checks that when it builds
    the table), so a request reaches the same code either way.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: Mapping[tuple[str, str], Callable[[Request], Awaitable[Response]]],
        hsts_seconds: int = 0,
    ) -> None:
        self.app = app
        self.routes = dict(routes)
        self.headers = [*SECURITY_HEADERS, (b"vary", b"Origin")]
        if hsts_seconds:
            self.headers.append((b"strict-transport-security", f"max-age={hsts_seconds}".encode()))
        self._names = {k for k, _ in self.headers}
        # Prometheus children per (path, method, status): labels() is a locked dict lookup
        # with its arguments checked, every time.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = None
        if scope["type"] == "http" and not scope.get("root_path"):
            handler = self.routes.get((scope["method"], scope["path"]))
        if handler is None or any(k == b"origin" for k, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path, method = scope["path"], scope["method"]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                present = {k.lower() for k, _ in headers}
                message["headers"] = [
                    *headers, *(h for h in self.headers if h[0] not in present)
                ]  # fmt: skip
                key = (path, method, message["status"])
                children = self._children.get(key)
                if children is None:
                    children = (
                        REQUESTS.labels(path, method, str(message["status"])),
                        LATENCY.labels(path, method),
                    )
                    self._children[key] = children
                children[0].inc()
                children[1].observe(time.perf_counter() - start)
            await send(message)

        response = await handler(Request(scope, receive, send))
        if type(response) not in _PLAIN or response.background is not None:
            await response(scope, receive, send_with_headers)
            return
        # A whole body in hand (a unary answer or an error): the two messages its
        # Response.__call__ would send, without the wrapper's second pass over them.
        await send_with_headers(
            {"type": "http.response.start", "status": response.status_code,
             "headers": response.raw_headers}
        )  # fmt: skip
        await send({"type": "http.response.body", "body": response.body})
