"""Server filters (tRPC's name for interceptors) and the chain that runs them.

A filter sees a call start (and may reject it by raising a FerryError), each message the
call receives (client streams) and sends (server streams), and the call finish with its
status code. Filters are chosen by name in ferry.yaml: the server's chain, plus any a
service adds after it; the first listed runs outermost.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import grpc

from ferry.rpc.errors import abort, to_error
from ferry.rpc.methods import MethodInfo, lookup

if TYPE_CHECKING:
    from ferry.rpc.filters.client import ClientFilter

log = logging.getLogger("ferry.rpc")

_current: contextvars.ContextVar[RpcCall | None] = contextvars.ContextVar(
    "ferry_call", default=None
)


@dataclass
class RpcCall:
    """One incoming call, as filters and servicers see it."""

    method: MethodInfo
    context: grpc.ServicerContext
    metadata: dict[str, str]
    peer: str
    started: float = field(default_factory=time.monotonic)
    caller: str = "-"  # the token's subject once auth has run
    role: int = 0
    deadline: float | None = None  # monotonic time; set by the deadline filter
    attrs: dict[str, Any] = field(default_factory=dict)
    # The request message of a unary-request call (seen at `start`); on a client stream,
    # the message just received (seen at `received`).
    request: Any = None

    def remaining(self) -> float | None:
        """Seconds left before this call's deadline, if it has one."""
        return None if self.deadline is None else self.deadline - time.monotonic()


def current_call() -> RpcCall | None:
    """The call being served on this thread, if any (for deadlines and exported_by)."""
    return _current.get()


def caller() -> str:
    """The subject of the call being served on this thread ("" outside a call): what a
    servicer records as requested_by, exported_by."""
    call = _current.get()
    return call.caller if call is not None else ""


class Filter:
    """Base filter: override what you need. `start` may raise a FerryError to reject."""

    def start(self, call: RpcCall) -> None:
        return None

    def message(self, call: RpcCall) -> None:
        """Each message the call sends (server streams)."""
        return None

    def received(self, call: RpcCall) -> None:
        """Each message the call receives (client streams); may raise a FerryError, which
        ends the call with that status at this message."""
        return None

    def finish(self, call: RpcCall, code: grpc.StatusCode, details: str) -> None:
        return None


class FilterPlugin:
    """A `ferry.filters` plugin (`ferry.contracts.FilterPlugin`): both halves of one
    filter, from one module, built as `factory(app)` by `App.plugin`.

    `server_half` is built with the app on first use (so a CLI that only needs the client
    half never opens what the server half needs); `client_half` takes no arguments: what
    it needs of the caller (default timeout, token) travels on the OutgoingCall.
    """

    # A Filter subclass built as `cls(app)`; a ClientFilter subclass built as `cls()`.
    server_half: ClassVar[type[Any] | None] = None
    client_half: ClassVar[type[Any] | None] = None

    def __init__(self, app: Any) -> None:
        self.app = app
        self._server: Filter | None = None

    def server(self) -> Filter:
        if self._server is None:
            if self.server_half is None:
                raise TypeError(f"{type(self).__name__} has no server half")
            built: Filter = self.server_half(self.app)
            self._server = built
        return self._server

    def client(self) -> ClientFilter | None:
        if self.client_half is None:
            return None
        half: ClientFilter = self.client_half()
        return half


class FilterChain(grpc.ServerInterceptor):  # type: ignore[misc,type-arg]
    """The one interceptor: runs each service's filter list around its handlers."""

    def __init__(self, default: Sequence[Filter], per_service: Mapping[str, Sequence[Filter]]):
        self.default = list(default)
        self.per_service = {k: list(v) for k, v in per_service.items()}
        # gRPC asks on every call; a registered method's handler is the same object each
        # time, so its wrapped handler is built once (keyed by the handler, kept alive).
        self._wrapped: dict[tuple[str, int], tuple[Any, Any]] = {}

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        if handler is None:
            return None
        key = (details.method, id(handler))
        found = self._wrapped.get(key)
        if found is not None:
            return found[1]
        wrapped = self._wrap(details.method, handler)
        if len(self._wrapped) < 4096:  # bounded: generic handlers may build one per call
            self._wrapped[key] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: Any) -> Any:
        info = lookup(method)
        filters = self.per_service.get(info.service, self.default)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(info, filters, handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(info, filters, handler.stream_unary, client_stream=True),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(info, filters, handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._stream(info, filters, handler.stream_stream, client_stream=True),
            handler.request_deserializer,
            handler.response_serializer,
        )

    def _unary(
        self, info: MethodInfo, filters: list[Filter], behavior: Any, client_stream: bool = False
    ) -> Any:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            call = _new_call(info, context)
            if not client_stream:
                call.request = request
            token = _current.set(call)
            started: list[Filter] = []
            code, details = grpc.StatusCode.OK, ""
            try:
                for f in filters:
                    f.start(call)
                    started.append(f)
                if client_stream:
                    request = _receiving(call, started, request)
                return behavior(request, context)
            except Exception as e:
                code, details = _failure(context, e, info)
                raise
            finally:
                code = status_of(context) or code if code == grpc.StatusCode.OK else code
                for f in reversed(started):
                    _finish(f, call, code, details)
                _current.reset(token)

        return run

    def _stream(
        self, info: MethodInfo, filters: list[Filter], behavior: Any, client_stream: bool = False
    ) -> Any:
        def run(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _new_call(info, context)
            if not client_stream:
                call.request = request
            token = _current.set(call)
            started: list[Filter] = []
            code, details = grpc.StatusCode.OK, ""
            responses: Iterator[Any] | None = None
            try:
                for f in filters:
                    f.start(call)
                    started.append(f)
                if client_stream:
                    request = _receiving(call, started, request)
                responses = iter(behavior(request, context))
                for message in responses:
                    for f in started:
                        f.message(call)
                    yield message
            except GeneratorExit:  # the client went away or cancelled
                code, details = grpc.StatusCode.CANCELLED, "cancelled by the client"
                raise
            except Exception as e:
                code, details = _failure(context, e, info)
                raise
            finally:
                close = getattr(responses, "close", None)
                if close is not None:
                    close()  # release the servicer's cursors now, not at garbage collection
                code = status_of(context) or code if code == grpc.StatusCode.OK else code
                for f in reversed(started):
                    _finish(f, call, code, details)
                _current.reset(token)

        return run


def status_of(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The code a handler set or aborted with (None while none was set)."""
    code: grpc.StatusCode | None = context.code()  # type: ignore[attr-defined]
    return code


def _new_call(info: MethodInfo, context: grpc.ServicerContext) -> RpcCall:
    metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
    return RpcCall(info, context, metadata, context.peer())


def _receiving(call: RpcCall, filters: list[Filter], requests: Iterator[Any]) -> Iterator[Any]:
    """The request stream, shown to each filter message by message as it arrives."""
    for message in requests:
        call.request = message
        for f in filters:
            f.received(call)
        yield message


def _failure(
    context: grpc.ServicerContext, e: Exception, info: MethodInfo
) -> tuple[grpc.StatusCode, str]:
    """End a call that raised: keep the status a handler already aborted with, else abort
    with the one status `to_error` gives the exception. Returns (code, details)."""
    code = status_of(context)
    if code is not None and code != grpc.StatusCode.OK:
        return code, str(context.details() or "")  # type: ignore[attr-defined]
    error = to_error(e, info.full_name)
    with contextlib.suppress(Exception):  # abort raises by design; the original goes on up
        abort(context, error)
    return error.code, error.message


def _finish(f: Filter, call: RpcCall, code: grpc.StatusCode, details: str) -> None:
    try:
        f.finish(call, code, details)
    except Exception:  # a broken filter must not change the call's outcome
        log.exception("filter %s failed in finish", type(f).__name__)
