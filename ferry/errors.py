"""Errors as values with a gRPC status. Core code raises these; the RPC layer turns them
into `context.abort` in one place (ferry.rpc.errors)."""

from __future__ import annotations

import grpc


class FerryError(Exception):
    """An error the caller should see, with its gRPC status.

    `field` names the offending request field or record, when there is one.
    """

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.field = field


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

    def __init__(self, message: str, *, field: str = "", retry_after: float = 0) -> None:
        super().__init__(message, field=field)
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


class Internal(FerryError):
    """Something unexpected; the message says only where to look (a reference id)."""

    code = grpc.StatusCode.INTERNAL


class Cancelled(FerryError):
    """The caller went away (cancelled the call) before its request arrived whole."""

    code = grpc.StatusCode.CANCELLED
