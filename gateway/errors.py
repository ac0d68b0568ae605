"""The one table from gRPC status to HTTP, and the JSON error body `{code, reason, message,
details}`. Nothing else in a response ever describes a failure: no stack trace, no SQL.

`reason` is the service's machine reason (google.rpc.ErrorInfo; the status code's name when
it sent none) and `metadata` its values: what a page translates into its own language.
`message` is English, for logs and scripts; `details` are the field violations."""

from __future__ import annotations

import logging
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2
from starlette.responses import HTMLResponse, JSONResponse

from ferry.errors import DOMAIN, FerryError
from ferry.rpc.errors import MAX_FIELD, clip, error_info

log = logging.getLogger("ferry.gateway")
S = grpc.StatusCode

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    S.OK: 200,
    S.CANCELLED: 499,  # client closed request (nginx's convention)
    S.UNKNOWN: 500,
    S.INVALID_ARGUMENT: 400,
    S.DEADLINE_EXCEEDED: 504,
    S.NOT_FOUND: 404,
    S.ALREADY_EXISTS: 409,
    S.PERMISSION_DENIED: 403,
    S.RESOURCE_EXHAUSTED: 429,
    S.FAILED_PRECONDITION: 400,
    S.ABORTED: 409,
    # A resumable download asked past the end of its file: 416 Range Not Satisfiable.
    S.OUT_OF_RANGE: 416,
    S.UNIMPLEMENTED: 501,
    S.INTERNAL: 500,
    S.UNAVAILABLE: 503,
    S.DATA_LOSS: 500,
    S.UNAUTHENTICATED: 401,
}
# Seconds a client should wait before retrying a RESOURCE_EXHAUSTED call.
RETRY_AFTER_SECONDS = 5
# Messages of these codes may describe internals; the client gets a generic sentence.
_OPAQUE = {S.UNKNOWN, S.INTERNAL}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC status code."""
    return HTTP_STATUS.get(code, 500)


def error_response(
    code: grpc.StatusCode,
    message: str,
    details: list[dict[str, Any]] | None = None,
    retry_after: int | None = None,
    info: error_details_pb2.ErrorInfo | None = None,
) -> JSONResponse:
    """The JSON error response for `code`; RESOURCE_EXHAUSTED carries Retry-After. The
    message quotes at most 64 characters of any input (ferry.rpc.errors.clip). The
    reason and metadata are `info`'s (the code's name and the first field named when
    there is none)."""
    message = clip(message)
    details = list(details or [])
    if info is None or info.domain != DOMAIN:
        field = next((d["field"] for d in details if d.get("field")), "")
        info = error_details_pb2.ErrorInfo(
            reason=code.name, domain=DOMAIN, metadata={"field": field} if field else {}
        )
    if code in _OPAQUE:
        message = (
            "the service failed unexpectedly; try again, and tell an administrator "
            "if it keeps happening"
        )
    headers = {}
    if code == S.UNAUTHENTICATED:
        headers["WWW-Authenticate"] = 'Bearer realm="ferry"'
    if code == S.RESOURCE_EXHAUSTED:
        headers["Retry-After"] = str(retry_after or RETRY_AFTER_SECONDS)
    body = {
        "code": code.name,
        "reason": info.reason,
        "metadata": dict(info.metadata),
        "message": message,
        "details": details,
    }
    return JSONResponse(body, status_code=http_status(code), headers=headers)


def too_large(message: str) -> JSONResponse:
    """413: a body over its limit (refused while it was being read)."""
    body = {
        "code": S.RESOURCE_EXHAUSTED.name,
        "reason": "TOO_LARGE",
        "metadata": {},
        "message": message,
        "details": [],
    }
    return JSONResponse(body, status_code=413)


# The expired-link page's words: (title, heading, what to do, the link back).
EXPIRED_PAGE = {
    "en": (
        "Link expired",
        "This link has expired",
        "",  # English shows the gateway's own sentence (how long links last)
        "Open the Export Center",
    ),
    "el": (
        "Ο σύνδεσμος έληξε",  # noqa: RUF001 (Greek)
        "Αυτός ο σύνδεσμος έχει λήξει",  # noqa: RUF001 (Greek)
        "Ζητήστε έναν νέο: κάντε ξανά την εξαγωγή από το Κέντρο Εξαγωγών.",
        "Άνοιγμα του Κέντρου Εξαγωγών",
    ),
}


def link_expired_page(message: str, language: str = "en") -> HTMLResponse:
    """403 as a small page for a browser that opened an expired link (from a mail), in the
    browser's language (en, el)."""
    import html

    lang = language if language in EXPIRED_PAGE else "en"
    title, heading, advice, back = EXPIRED_PAGE[lang]
    page = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        f'<title>{title}</title></head><body style="font-family: sans-serif">'
        f"<h1>{heading}</h1><p>{html.escape(advice or message)}</p>"
        f'<p><a href="/">{back}</a></p></body></html>'
    )
    return HTMLResponse(page, status_code=403)


def from_ferry(e: FerryError) -> JSONResponse:
    """A gateway-side FerryError (bad query parameter, ...) as a response."""
    details: list[dict[str, Any]] = []
    if e.field:
        details.append({"type": "field_violation", "field": clip(e.field, MAX_FIELD),
                        "description": clip(e.message)})  # fmt: skip
    return error_response(e.code, e.message, details, info=error_info(e))


def from_rpc(e: grpc.RpcError) -> JSONResponse:
    """A failed call as a response, with BadRequest field violations as details."""
    code = e.code() if hasattr(e, "code") else S.UNKNOWN
    message = (e.details() if hasattr(e, "details") else "") or code.name.lower()
    if code in _OPAQUE:
        log.warning(
            "service call failed: %s: %s", code.name, message, extra={"event": "gateway_rpc_failed"}
        )
    details, info = _details(e)
    return error_response(code, message, details, _retry_after(e), info)


def _retry_after(e: grpc.RpcError) -> int | None:
    """The service's `retry-after` trailer (whole seconds), when it sent one."""
    trailers: Any = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == "retry-after" and isinstance(value, str) and value.isdigit():
            return max(1, int(value))
    return None


def stream_error(e: grpc.RpcError) -> dict[str, Any]:
    """`{"code", "reason", "metadata", "message"}` for a stream that failed after it
    started (NDJSON, SSE): the same reason a unary error carries."""
    code = e.code() if hasattr(e, "code") else S.UNKNOWN
    message = (e.details() if hasattr(e, "details") else "") or code.name.lower()
    if code in _OPAQUE:
        message = "the service failed unexpectedly; the service log has the details"
    _, info = _details(e)
    known = info is not None and info.domain == DOMAIN
    return {
        "code": code.name,
        "reason": info.reason if info is not None and known else code.name,
        "metadata": dict(info.metadata) if info is not None and known else {},
        "message": message,
    }


def _details(
    e: grpc.RpcError,
) -> tuple[list[dict[str, Any]], error_details_pb2.ErrorInfo | None]:
    """(field violations, the machine reason) from the call's google.rpc.Status trailer,
    when present."""
    trailers: Any = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    out: list[dict[str, Any]] = []
    found: error_details_pb2.ErrorInfo | None = None
    for key, value in trailers or ():
        if key != "grpc-status-details-bin" or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for any_ in status.details:
            if any_.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                br = error_details_pb2.BadRequest()
                any_.Unpack(br)
                out.extend(
                    {"type": "field_violation", "field": v.field, "description": v.description}
                    for v in br.field_violations
                )
            elif any_.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                found = error_details_pb2.ErrorInfo()
                any_.Unpack(found)
    return out, found
