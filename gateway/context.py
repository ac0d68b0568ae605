"""What every gateway handler needs: settings, the service channels, the token verifier
(public keys only) for links, the login limits, and helpers shared by the route kinds."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
import orjson
from starlette.requests import Request
from starlette.responses import Response

from ferry.app import App
from ferry.auth import TokenVerifier
from ferry.config import GatewaySettings
from ferry.errors import FerryError, InvalidArgument
from gateway import errors
from gateway.auth import LinkExpired, LinkToken, LoginLimits, Network, bearer_token, link_token
from gateway.calls import ServiceChannels
from gateway.language import accepted

log = logging.getLogger("ferry.gateway")
Handler = Callable[[Request], Awaitable[Response]]


@dataclass
class Gateway:
    app: App
    channels: ServiceChannels
    verifier: TokenVerifier
    limits: LoginLimits
    trusted_proxies: list[Network]
    link_verifier: TokenVerifier | None = None

    @property
    def settings(self) -> GatewaySettings:
        return self.app.settings.gateway

    def token(self, request: Request) -> str | LinkToken | None:
        """The caller's bearer token (with the school its X-Ferry-School header names,
        forwarded as `x-ferry-school`); else the link token of a browser link when it is
        valid for this method and path (Unauthenticated when it is not; a link carries
        its school and no header changes it)."""
        token = bearer_token(request)
        if token is not None:
            return Bearer.of(token, request)
        return link_token(self.link_verifier or self.verifier, request)


SCHOOL_HEADER = "X-Ferry-School"


class Bearer(str):
    """A bearer token from the Authorization header, and the school the request names in
    X-Ferry-School ("" for none): a platform admin's choice for the call (the page's
    school picker), checked by the services (docs/tenants.md)."""

    school: str = ""

    @classmethod
    def of(cls, token: str, request: Request) -> Bearer:
        from ferry.db.schools import check_code

        made = cls(token)
        named = request.headers.get(SCHOOL_HEADER, "").strip()
        if named:
            made.school = check_code(named, SCHOOL_HEADER)
        return made


def guarded(handler: Handler) -> Handler:
    """Turn FerryError and failed calls into the one JSON error shape; anything else is
    logged and answered with a generic 500 (never a stack trace)."""

    @functools.wraps(handler)
    async def run(request: Request) -> Response:
        try:
            check_url(request)
            return await handler(request)
        except TooLarge as e:
            return errors.too_large(e.message)
        except LinkExpired as e:
            if "text/html" in request.headers.get("accept", ""):
                lang = accepted(request.headers.get("accept-language", ""))
                return errors.link_expired_page(e.message, lang or "en")
            return errors.from_ferry(e)
        except FerryError as e:
            return errors.from_ferry(e)
        except grpc.RpcError as e:
            return errors.from_rpc(e)
        except Exception:
            log.exception("gateway handler failed", extra={"event": "gateway_error"})
            return errors.error_response(grpc.StatusCode.INTERNAL, "")

    return run


def check_url(request: Request) -> None:
    """InvalidArgument naming the path parameter or query parameter that holds a NUL or
    another control character, before anything is called (the services check every
    field of the message again, JSON bodies included: ferry.rpc.filters.validate)."""
    from ferry.rpc.filters.validate import check_string

    if not request.scope.get("path", "").isprintable():
        for name, value in request.path_params.items():
            check_string(str(value), str(name).replace("__", "."))
        check_string(request.scope.get("path", ""), "path")
    raw: bytes = request.scope.get("query_string", b"")
    if raw and (b"%" in raw or not raw.isascii() or any(b < 32 for b in raw)):
        for name, value in request.query_params.multi_items():
            check_string(name, "query parameter name")
            check_string(value, name if name.isprintable() and len(name) <= 64 else "query")


# A JSON body becomes one gRPC message, and no message may pass 4 MiB.
MAX_JSON_BYTES = 4 * 1024 * 1024


class TooLarge(FerryError):
    """A body over its limit; answered with HTTP 413."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


async def json_body(request: Request) -> Any:
    """The request's JSON body (None when empty); InvalidArgument when it is not JSON,
    TooLarge past MAX_JSON_BYTES (checked while reading)."""
    return parse_json(await read_body(request))


async def read_body(request: Request) -> bytes:
    """The request's body as sent; TooLarge past MAX_JSON_BYTES (checked while reading)."""
    buf = bytearray()
    async for piece in request.stream():
        buf += piece
        if len(buf) > MAX_JSON_BYTES:
            raise TooLarge("the request body is larger than 4 MiB; upload files instead")
    return bytes(buf)


def parse_json(raw: bytes) -> Any:
    """A body read by read_body as JSON (None when empty); InvalidArgument when it is not."""
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidArgument(f"the request body is not valid JSON: {e}", field="body") from None
