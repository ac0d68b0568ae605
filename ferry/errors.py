"""Errors as values with a gRPC status. Core code raises these; the RPC layer turns them
into `context.abort` in one place (ferry.rpc.errors)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping

import grpc

_log = logging.getLogger("ferry.errors")


# The google.rpc.ErrorInfo domain of every reason Ferry sends.
DOMAIN = "ferry"
# The reasons Ferry sends beside the status codes' own names, each with the metadata keys
# it fills. The page words each one (why_<REASON> in both its languages; a test holds it).
REASONS: dict[str, tuple[str, ...]] = {
    "FIELD_INVALID": ("field",),
    "UNKNOWN_LANGUAGE": ("field", "value", "known"),
    "UNKNOWN_VALUE": ("field", "value", "known"),
    "BAD_DATE": ("field", "value"),
    "INTERNAL": ("reference",),
    "TOO_LARGE": (),
    "TOO_MANY_ROWS": ("field", "max"),
    "WORKER_LOST": (),
    "CONFLICT_NOT_FOUND": ("id",),
    "CONFLICT_RESOLVED": ("id",),
    "CONFLICT_CHANGED": ("id",),
    "CHANGE_LIMIT": (
        "entity",
        "action",
        "max_percent",
        "allowed",
        "base",
        "count",
        "over",
        "limits",
    ),
    # What did not cross between Ferry and OneRoster (ferry.oneroster.loss.REASON_CODES):
    # the loss report's lines, on an import's warnings and GetOneRosterLoss.
    "LOSS_NO_DATES": (),
    "LOSS_EXTENSION": (),
    "LOSS_ENABLED": (),
    "LOSS_NO_GRADE_LEVEL": (),
    "LOSS_MAX_SCORE": (),
    "LOSS_WEIGHT": (),
    "LOSS_NO_DAY": (),
    "LOSS_CREATED": (),
    "LOSS_BLANK_TEACHER": (),
    "LOSS_NO_RECORDS": (),
    "LOSS_SESSION_TYPE": (),
    "LOSS_ROLE": (),
    "LOSS_TEACHER": (),
    "LOSS_NO_TERM": (),
    "LOSS_ONE_TEACHER": (),
    "LOSS_NOT_STUDENT_ENROLLMENT": (),
    "LOSS_PARENT_MISSING": (),
    "LOSS_NOT_STUDENT": (),
    "LOSS_NO_SCORE": (),
    "LOSS_MAX_ASSUMED": (),
    "LOSS_NO_PLACE": (),
    "LOSS_OTHER": (),
}


# Reasons no export job, schedule or backup ends with: an import's refusals (a conflict
# decision, a change limit) and the OneRoster loss lines (warnings, never errors). A failed
# job's mail words every other reason (ferry.notify.reasons, held by
# tests/notify/test_failure_reasons.py).
NOT_JOB_REASONS = frozenset(
    {"CONFLICT_NOT_FOUND", "CONFLICT_RESOLVED", "CONFLICT_CHANGED", "CHANGE_LIMIT"}
    | {reason for reason in REASONS if reason.startswith("LOSS_")}
)

class FerryError(Exception):
    """An error the caller should see, with its gRPC status.

    `field` names the offending request field or record, when there is one. `reason` is
    the machine reason a client translates (google.rpc.ErrorInfo, UPPER_SNAKE_CASE, see
    `reason_of`) and `metadata` its values ({"value": ..., "known": ...}); the message is
    English for logs and the CLI, never what a page shows.
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.reason = reason
        self.metadata = dict(metadata or {})


def reason_of(error: FerryError) -> str:
    """The error's machine reason: its own, else FIELD_INVALID for an invalid argument that
    names a field, else the status code's name (NOT_FOUND, ...)."""
    if error.reason:
        return error.reason
    if error.field and error.code == grpc.StatusCode.INVALID_ARGUMENT:
        return "FIELD_INVALID"
    return str(error.code.name)


class InvalidArgument(FerryError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(FerryError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(FerryError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Unauthenticated(FerryError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(FerryError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(FerryError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        retry_after: float = 0,
        reason: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, field=field, reason=reason, metadata=metadata)
        # Seconds until a retry may succeed; sent as `retry-after` trailing metadata.
        self.retry_after = retry_after


class FailedPrecondition(FerryError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(FerryError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(FerryError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class DataLoss(FerryError):
    code = grpc.StatusCode.DATA_LOSS


class OutOfRange(FerryError):
    """A read past the end (e.g. a download offset beyond the file)."""

    code = grpc.StatusCode.OUT_OF_RANGE


class Cancelled(FerryError):
    """The caller went away (cancelled the call) before its request arrived whole."""

    code = grpc.StatusCode.CANCELLED


class Internal(FerryError):
    """Something failed inside Ferry or its database; the message says what in words and
    carries a reference id, the full exception is in the log line with that id."""

    code = grpc.StatusCode.INTERNAL


def new_reference() -> str:
    """A short id tying a message a caller sees to the log line holding the details."""
    return uuid.uuid4().hex[:12]


def in_words(exc: BaseException, doing: str, logger: logging.Logger | None = None) -> str:
    """What failed, for anyone who may read it (a viewer through GetImport/GetExportJob):
    `doing` ("import 1234 while applying grades") and what kind of failure, with a
    reference id. No SQL, parameters, paths or stack trace: the whole exception goes only
    to the log line (ERROR, with exc_info) carrying the same reference."""
    return described(exc, doing, logger)[0]


def described(
    exc: BaseException, doing: str, logger: logging.Logger | None = None
) -> tuple[str, str]:
    """(`in_words`'s sentence, its reference id): the id is what a page shows beside its
    own words for the failure (reason INTERNAL, metadata reference)."""
    ref = new_reference()
    (logger or _log).error(
        "%s failed (reference %s)",
        doing,
        ref,
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"event": "error_reference", "reference": ref},
    )
    return f"{doing} failed: {_kind(exc)} (reference {ref}; the server log has the details)", ref


def _kind(exc: BaseException) -> str:
    """A database error in words (which constraint or table, by name), or the class of
    any other failure."""
    from sqlalchemy import exc as sa_exc  # the core errors module stays import-light

    if not isinstance(exc, sa_exc.DBAPIError):
        if isinstance(exc, sa_exc.SQLAlchemyError):
            return "a database error"
        return f"an unexpected error ({type(exc).__name__})"
    orig = exc.orig
    diag = getattr(orig, "diag", None)  # psycopg: the server's fields, SQL-free
    constraint = getattr(diag, "constraint_name", None) or ""
    table = getattr(diag, "table_name", None) or ""
    if not constraint and orig is not None and diag is None:
        # SQLite names the columns: "UNIQUE constraint failed: students.student_id".
        text = str(orig.args[0]) if orig.args else ""
        if " constraint failed" in text:
            constraint = text.replace("\n", " ")[:200]
    if isinstance(exc, sa_exc.IntegrityError):
        what = "the database refused a row"
    elif isinstance(exc, sa_exc.OperationalError):
        what = "the database could not run a step (unavailable, locked or an unexpected schema)"
    elif isinstance(exc, sa_exc.ProgrammingError):
        what = "the database could not run a step (an unexpected schema or a refused change)"
    else:
        what = "the database refused a step"
    if constraint:
        what += f" (constraint {constraint}"
        what += f" on table {table})" if table else ")"
    elif table:
        what += f" (table {table})"
    return what
