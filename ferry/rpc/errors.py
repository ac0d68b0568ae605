"""The one path from an exception to a gRPC status.

`to_error` turns any exception into a FerryError (a lost database is UNAVAILABLE; anything
unexpected is INTERNAL with a reference id, its details only in the log line with that id);
`abort` turns a FerryError into `context.abort`. The filter chain and `handles_errors` both
use them, so a handler and the chain can never map the same error differently.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import re
import uuid
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from sqlalchemy import exc as sa_exc

from ferry.errors import DOMAIN, FerryError, Internal, Unavailable, reason_of

log = logging.getLogger("ferry.rpc")
F = TypeVar("F", bound=Callable[..., Any])


# An error quotes at most this much of any input, and says at most MAX_MESSAGE in all:
# the message travels twice in the trailers (grpc-message and the status details), and
# past gRPC's 8 KiB of metadata a client sees RESOURCE_EXHAUSTED instead of the error.
MAX_QUOTE = 64
MAX_MESSAGE = 1024
MAX_FIELD = MAX_QUOTE  # a field name may be input too (an unknown query parameter)
_N = MAX_QUOTE + 1
# A quoted input longer than MAX_QUOTE, as repr() writes it ('…' or "…", escapes kept).
_SINGLE = rf"'((?:[^'\\]|\\.){{{_N},}})'"
_DOUBLE = rf'"((?:[^"\\]|\\.){{{_N},}})"'
_QUOTED = re.compile(f"{_SINGLE}|{_DOUBLE}")


def clip(message: str, limit: int = MAX_MESSAGE) -> str:
    """`message` with every quoted input cut to MAX_QUOTE characters (…) and the whole to
    `limit`: what any error, gRPC or HTTP, may say."""

    def cut(m: re.Match[str]) -> str:
        q = "'" if m.group(1) is not None else '"'
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        return f"{q}{inner[:MAX_QUOTE]}…{q}"

    if len(message) > MAX_QUOTE + 2:
        message = _QUOTED.sub(cut, message)
    return message if len(message) <= limit else message[: limit - 1] + "…"


MAX_METADATA = 8  # ErrorInfo entries, each value clipped to MAX_QUOTE


def error_info(error: FerryError) -> error_details_pb2.ErrorInfo:
    """The machine reason of `error` (google.rpc.ErrorInfo) a client translates into its
    own words: the reason, and its values (the field it names, the value refused, ...)
    each clipped to MAX_QUOTE characters."""
    meta = {"field": error.field} if error.field else {}
    meta.update(error.metadata)
    return error_details_pb2.ErrorInfo(
        reason=reason_of(error),
        domain=DOMAIN,
        metadata={
            clip(k, MAX_FIELD): v if len(v) <= MAX_QUOTE else v[:MAX_QUOTE] + "…"
            for k, v in list(meta.items())[:MAX_METADATA]
        },
    )


def abort(context: grpc.ServicerContext, error: FerryError) -> NoReturn:
    """Abort the call with the error's status; its machine reason travels as ErrorInfo
    detail, a named field as BadRequest detail. The message is clipped (`clip`), so no
    error can overflow gRPC's metadata limit."""
    message = clip(error.message)
    status = status_pb2.Status(code=error.code.value[0], message=message)
    if error.field and error.code == grpc.StatusCode.INVALID_ARGUMENT:
        detail = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=clip(error.field, MAX_FIELD), description=message
                )
            ]
        )
        status.details.add().Pack(detail)
    status.details.add().Pack(error_info(error))
    # What abort_with_status does, spelled out: grpc-testing's context lacks that method.
    trailers = tuple(rpc_status.to_status(status).trailing_metadata)
    retry_after = getattr(error, "retry_after", 0)
    if retry_after:  # RESOURCE_EXHAUSTED from a rate limit: when to try again
        trailers += (("retry-after", str(max(1, math.ceil(retry_after)))),)
    context.set_trailing_metadata(trailers)
    context.abort(error.code, message)
    raise AssertionError("unreachable")  # abort always raises


def to_error(e: BaseException, where: str = "") -> FerryError:
    """The FerryError a caller sees for `e`; never SQL, a path or a stack trace."""
    if isinstance(e, FerryError):
        return e
    if isinstance(e, sa_exc.OperationalError):
        return _database_down(e)
    ref = uuid.uuid4().hex[:12]
    log.error(
        "unexpected error in %s (ref %s)", where or "a call", ref, exc_info=e,
        extra={"event": "internal_error", "ref": ref},
    )  # fmt: skip
    return Internal(
        f"internal error (ref {ref}); the server log has the details", metadata={"reference": ref}
    )


def handles_errors(method: F) -> F:
    """Servicer method decorator: FerryError -> abort with its status.

    Works for unary and streaming handlers, so a servicer behaves the same under
    grpc-testing (no interceptors) and on a real server.
    """
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from method(self, request, context)
            except (FerryError, sa_exc.OperationalError) as e:
                abort(context, to_error(e))

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except (FerryError, sa_exc.OperationalError) as e:
            abort(context, to_error(e))

    return unary  # type: ignore[return-value]


def _database_down(e: sa_exc.OperationalError) -> Unavailable:
    """A lost or refused database connection is UNAVAILABLE (callers may retry); the SQL
    and driver text stay in the server log."""
    log.warning("database unavailable: %s", e.orig, extra={"event": "database_unavailable"})
    return Unavailable("the database is unavailable; try again shortly")
