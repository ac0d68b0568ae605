"""The gateway's ASGI app: contract routes built from the descriptors, the tRPC-style
/rpc route, login, signed links, OpenAPI, health, metrics, and the Export Center page."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote, urlencode

import grpc
from fastapi import FastAPI
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Match, Router
from starlette.staticfiles import StaticFiles

from ferry.app import App
from ferry.auth import links, role_name
from ferry.errors import InvalidArgument
from ferry.rpc.filters.validate import check_string
from ferry.users import check_login_input
from ferry.v1 import auth_pb2
from gateway import calls, errors
from gateway.auth import LINK_PARAM, LoginLimits, bearer_token, client_address, parse_networks
from gateway.calls import ServiceChannels, channels_for
from gateway.context import Bearer, Gateway, Handler, guarded, json_body
from gateway.handlers import (
    events_handler,
    file_handler,
    procedure_handler,
    records_handler,
    unary_handler,
)
from gateway.language import accepted
from gateway.middleware import FastLane, RequestMetrics, SecurityHeaders
from gateway.openapi import document
from gateway.routes import all_routes, method_by_name, service_key, services
from gateway.transcode import parse
from gateway.uploads import upload_handler

STATIC = Path(__file__).resolve().parent / "static"
# Contract routes served by a handler of their own here instead of the generic one.
_HAND_WRITTEN = {("/api/v1/auth/login", "POST")}
_KINDS = {
    "unary": unary_handler,
    "file": file_handler,
    "records": records_handler,
    "events": events_handler,
    "upload": upload_handler,
}


def create_app(app: App, channels: ServiceChannels | None = None) -> FastLane:
    """The gateway for `app`'s settings, calling services through `channels` (default:
    the configured client targets): the FastAPI app behind its fast lane (`.app`)."""
    s = app.settings
    g = s.gateway
    gw = Gateway(
        app=app,
        channels=channels or channels_for(s),
        verifier=app.verifier(),
        limits=LoginLimits(
            g.login_attempts, g.login_attempts_per_address, g.login_window_seconds, app.redis()
        ),
        trusted_proxies=parse_networks(g.trusted_proxies),
        link_verifier=links.verifier(app),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_api: FastAPI) -> AsyncIterator[None]:
        yield
        await gw.channels.close()

    api = FastAPI(
        title="Ferry gateway", openapi_url=None, docs_url=None, redoc_url=None, lifespan=lifespan
    )
    api.state.gateway = gw
    r = api.router
    fast: dict[tuple[str, str], Handler] = {}

    login = login_handler(gw)
    r.add_route("/api/v1/auth/login", login, methods=["POST"])
    for name in ("AuthService.Login", "ferry.v1.AuthService.Login"):  # /rpc/… too: the limits
        r.add_route(f"/rpc/{name}", login, methods=["POST"])
    r.add_route("/api/v1/exports/{job_id}/links", links_handler(gw), methods=["GET"])
    r.add_route("/rpc/{procedure}", procedure_handler(gw), methods=["POST"])
    for route in all_routes():
        if (route.path, route.verb) in _HAND_WRITTEN:
            continue  # Login: the gateway's own handler adds the login limits first
        handler = _KINDS[route.kind](gw, route)
        r.add_route(
            route.path, handler, methods=[route.verb],
            name=f"{route.service.name}.{route.method.name}",
        )  # fmt: skip
        if route.kind == "unary" and "{" not in route.path:
            fast[(route.verb, route.path)] = handler

    r.add_route("/openapi.json", _openapi, methods=["GET"])
    r.add_route("/docs", _static_page("docs.html"), methods=["GET"])
    r.add_route("/healthz", _healthz, methods=["GET"])
    r.add_route("/readyz", readyz_handler(gw), methods=["GET"])
    r.add_route("/metrics", _metrics, methods=["GET"])
    r.add_route("/", _static_page("index.html"), methods=["GET"])
    api.mount("/static", StaticFiles(directory=STATIC), name="static")

    api.add_middleware(
        CORSMiddleware,
        allow_origins=list(s.gateway.cors_origins),
        allow_methods=["GET", "POST", "DELETE", "PUT", "PATCH"],
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Grpc-Timeout",
            "X-Request-Timeout",
            "X-Ferry-School",
        ],
        expose_headers=["Content-Disposition", "ETag", "X-Content-SHA256", "Retry-After"],
    )
    hsts = s.tls.gateway.hsts_seconds if s.tls.gateway.cert_file else 0
    api.add_middleware(SecurityHeaders, hsts_seconds=hsts)
    api.add_middleware(RequestMetrics, router=api.router)
    # In front of FastAPI itself: the unary routes with a literal path skip every layer.
    return FastLane(api, routes=_routed_to(r, fast), hsts_seconds=hsts)


def _routed_to(
    router: Router, candidates: dict[tuple[str, str], Handler]
) -> dict[tuple[str, str], Handler]:
    """The (method, path) -> handler pairs the router itself sends to that handler (the
    first route that matches in full is the one it takes), so the fast lane never answers
    a request another route would have."""
    out = {}
    for (verb, path), handler in candidates.items():
        scope = {"type": "http", "method": verb, "path": path, "root_path": ""}
        for route in router.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                if getattr(route, "endpoint", None) is handler:
                    out[(verb, path)] = handler
                break
    return out


def login_handler(gw: Gateway) -> Handler:
    """POST /api/v1/auth/login {username, password} -> {token, role, expires_at, email,
    school}: the
    login limits (per username and per client address), then AuthService.Login."""
    found = method_by_name("AuthService.Login")
    assert found is not None
    svc, login = found

    async def handle(request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict):
            raise InvalidArgument('send {"username": …, "password": …}', field="body")
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not username.strip():
            raise InvalidArgument("username is required", field="username")
        if not isinstance(password, str) or not password:
            raise InvalidArgument("password is required", field="password")
        check_login_input(username, password)  # 400 over 1 KiB, before anything is hashed
        check_string(username, "username")
        check_string(password, "password", text=True)
        client = client_address(request, gw.trusted_proxies)
        decision = await run_in_threadpool(gw.limits.hit, client, username)
        if not decision.allowed:
            return errors.error_response(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too many sign-in attempts; wait a minute and try again",
                retry_after=int(decision.retry_after + 0.999),
            )
        timeout = calls.deadline(gw.settings.deadlines, "unary", request.headers)
        call = gw.channels.method("auth", f"/{svc.full_name}/{login.name}", login)
        lang = accepted(request.headers.get("accept-language", ""))  # remembered for mails
        got = await call(auth_pb2.LoginRequest(username=username, password=password,
                                               language=lang), timeout=timeout)  # fmt: skip
        await run_in_threadpool(gw.limits.succeeded, username)
        expires = got.expires_at.ToDatetime(dt.UTC).isoformat(timespec="seconds")
        return JSONResponse({"token": got.token, "role": role_name(got.role),
                             "expires_at": expires, "email": got.email,
                             "school": got.school})  # fmt: skip

    return guarded(handle)


def links_handler(gw: Gateway) -> Handler:
    """GET /api/v1/exports/{job_id}/links -> URLs for the job's download and progress
    events, for a browser's <a href> and EventSource (which send no headers). The caller's
    token must be able to see the job; each URL carries a link token the auth service
    issued for one GET of that path alone (`CreateLinkToken`, ferry.auth.links), valid
    for gateway.link_ttl_seconds."""
    found = method_by_name("ExportService.GetExportJob")
    assert found is not None
    svc, get = found
    found_link = method_by_name("AuthService.CreateLinkToken")
    assert found_link is not None
    auth_svc, make_link = found_link

    async def handle(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        raw = bearer_token(request)
        token = Bearer.of(raw, request) if raw is not None else None  # with X-Ferry-School
        timeout = calls.deadline(gw.settings.deadlines, "unary", request.headers)
        md = calls.metadata(token)
        call = gw.channels.method("export", f"/{svc.full_name}/{get.name}", get)
        await call(parse(get.input_type, {"job_id": job_id}), timeout=timeout, metadata=md)
        issue = gw.channels.method("auth", f"/{auth_svc.full_name}/{make_link.name}", make_link)
        base = f"/api/v1/exports/{quote(job_id, safe='')}"
        urls, expires = {}, ""
        ttl = gw.settings.link_ttl_seconds
        for name, path in (("download_url", f"{base}/download"), ("events_url", f"{base}/events")):
            got = await issue(
                auth_pb2.CreateLinkTokenRequest(path=path, ttl_seconds=ttl),
                timeout=timeout,
                metadata=md,
            )
            urls[name] = f"{path}?{urlencode({LINK_PARAM: got.token})}"
            expires = got.expires_at.ToDatetime(dt.UTC).isoformat(timespec="seconds")
        return JSONResponse({**urls, "expires_at": expires})

    return guarded(handle)


def readyz_handler(gw: Gateway) -> Handler:
    """200 when every checked service answers SERVING on gRPC health, else 503 naming
    those that do not."""
    s = gw.app.settings
    names = list(s.gateway.services) or [x.name for x in s.server.services]
    full = {service_key(svc): svc.full_name for svc in services()}

    async def handle(request: Request) -> Response:
        status: dict[str, str] = {}
        for name in names:
            stub = health_pb2_grpc.HealthStub(gw.channels.channel(name))
            try:
                resp = await stub.Check(
                    health_pb2.HealthCheckRequest(service=full.get(name, name)), timeout=2
                )
                status[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            except grpc.RpcError as e:
                status[name] = e.code().name  # type: ignore[attr-defined]
        ready = all(v == "SERVING" for v in status.values())
        body: dict[str, object] = {"ready": ready, "services": status}
        body["auth"] = "enabled" if s.auth.enabled else "DISABLED: calls need no token"
        return JSONResponse(body, status_code=200 if ready else 503)

    return handle


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def _metrics(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


async def _openapi(request: Request) -> Response:
    return JSONResponse(document())


def _static_page(name: str) -> Handler:
    async def page(request: Request) -> Response:
        return FileResponse(
            STATIC / name, media_type="text/html", headers={"Cache-Control": "no-cache"}
        )

    return page
