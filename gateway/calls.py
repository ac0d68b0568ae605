"""Calling services from the gateway: grpc.aio channels per target, generic method
handles built from descriptors, the caller's token forwarded, and a deadline on every call
(the route class's, shortened by the client's Grpc-Timeout / X-Request-Timeout).

Every call runs the client filters (`client.filters`). Streaming calls run them as a
grpc.aio interceptor; unary calls, the gateway's hot path, run them here around a channel
without interceptors (`FilteredUnary`): grpc.aio's interceptor machinery (an intercepted
call object, a task for the chain and a second task waiting for the status) cost the
gateway about 200 us of CPU per request, more than the filters and half the call itself
(issue 27's profile of a cached report through the gateway)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor as _d
from google.protobuf import message as _message

from ferry.app import App
from ferry.config import ClientSettings, GatewayDeadlines, Settings
from ferry.errors import InvalidArgument
from ferry.rpc.client import connection_options
from ferry.rpc.filters import client as client_filters
from gateway.transcode import message_class

MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_GRPC_TIMEOUT = re.compile(r"^\s*(\d{1,8})\s*([HMSmun])\s*$")
_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def deadline(deadlines: GatewayDeadlines, route_class: str, headers: Mapping[str, str]) -> float:
    """Seconds for a call: the configured deadline of `route_class`, or less when the
    client asks for less (Grpc-Timeout like `500m`, or X-Request-Timeout in seconds)."""
    limit = float(getattr(deadlines, route_class))
    asked: float | None = None
    if raw := headers.get("grpc-timeout"):
        m = _GRPC_TIMEOUT.match(raw)
        if not m:
            raise InvalidArgument(
                f"Grpc-Timeout {raw!r} is not like 500m or 30S", field="Grpc-Timeout"
            )
        asked = int(m.group(1)) * _UNITS[m.group(2)]
    elif raw := headers.get("x-request-timeout"):
        try:
            asked = float(raw)
        except ValueError:
            raise InvalidArgument(
                f"X-Request-Timeout {raw!r} is not a number of seconds", field="X-Request-Timeout"
            ) from None
        if asked <= 0:
            raise InvalidArgument("X-Request-Timeout must be positive", field="X-Request-Timeout")
    return min(limit, asked) if asked is not None else limit


def metadata(token: str | None) -> list[tuple[str, str]]:
    """Call metadata forwarding the caller's bearer token, or a link token as `Link` (the
    services check either themselves), and the school a bearer's request names
    (X-Ferry-School, as `x-ferry-school`)."""
    from ferry.auth import SCHOOL_HEADER
    from gateway.auth import LinkToken

    if not token:
        return []
    md = [("authorization", f"{'Link' if isinstance(token, LinkToken) else 'Bearer'} {token}")]
    school = getattr(token, "school", "")
    if school:
        md.append((SCHOOL_HEADER, school))
    return md


class FilteredUnary:
    """A unary-unary method called with the client filters run around it: `start` before
    the call (timeout and metadata as the filters leave them), `finish` with its status
    code, whatever the outcome (OK, the RpcError's code, CANCELLED when the request is
    abandoned, UNKNOWN for anything else)."""

    __slots__ = ("_call", "_chain", "_method")

    def __init__(self, call: Any, chain: client_filters._Chain, method: str) -> None:
        self._call = call
        self._chain = chain
        self._method = method

    async def __call__(
        self,
        request: _message.Message,
        *,
        timeout: float | None = None,
        metadata: Sequence[tuple[str, str]] | None = None,
    ) -> Any:
        chain = self._chain
        call = client_filters.start_call(
            chain.filters, self._method, timeout, metadata, chain.default_timeout, chain.token
        )
        code = grpc.StatusCode.UNKNOWN
        try:
            response = await self._call(request, timeout=call.timeout, metadata=call.metadata)
            code = grpc.StatusCode.OK
            return response
        except grpc.RpcError as e:
            code = e.code()  # type: ignore[attr-defined]
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            client_filters.finish_call(chain.filters, call, code)


class ServiceChannels:
    """grpc.aio channels to the services, one per target and event loop.

    `target` overrides every service's configured target (`ferry serve` points the gateway
    at its own in-process server)."""

    def __init__(
        self,
        settings: ClientSettings,
        target: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        extra_options: Sequence[tuple[str, Any]] = (),
        app: Any = None,
    ) -> None:
        self.settings = settings
        # Builds the client filters (plugins, like every other); one around `settings`
        # alone when none is given.
        self.app = app
        self.target = target
        # TLS to the services (ferry.rpc.tls): None is plaintext.
        self.credentials = credentials
        self.extra_options = list(extra_options)
        # (target, loop id, with interceptors) -> channel
        self._channels: dict[tuple[str, int, bool], grpc.aio.Channel] = {}
        self._chain: client_filters._Chain | None = None
        # Multicallables are made once per channel and method, not on every request.
        self._methods: dict[tuple[str, int, str, bool], tuple[grpc.aio.Channel, Any]] = {}
        # (service, loop id, rpc, raw) -> (channel key, channel, callable): a request's
        # lookup without resolving the target and the channel again.
        self._fast: dict[tuple[str, int, str, bool], tuple[Any, grpc.aio.Channel, Any]] = {}

    def target_of(self, service: str) -> str:
        return self.target or self.settings.for_service(service)[0]

    def chain(self) -> client_filters._Chain:
        """The client filters, built once (for FilteredUnary; the interceptor of the
        streaming channels holds its own)."""
        if self._chain is None:
            self._chain = client_filters._Chain(self._filters(), self.settings.timeout_seconds)
        return self._chain

    def _filters(self) -> list[client_filters.ClientFilter]:
        if self.app is None:
            self.app = App(Settings(client=self.settings))
        return client_filters.build(self.settings.filters, self.app)

    def channel(self, service: str, intercepted: bool = True) -> grpc.aio.Channel:
        """The channel for `service` on the running event loop: with the client filters as
        an interceptor, or (`intercepted=False`) bare, for calls that run them themselves."""
        key = (self.target_of(service), id(asyncio.get_running_loop()), intercepted)
        ch = self._channels.get(key)
        if ch is None:
            interceptors = (
                [client_filters.AioClientChain(self._filters(), self.settings.timeout_seconds)]
                if intercepted
                else []
            )
            options = [
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                *connection_options(self.settings),
                *self.extra_options,
            ]
            if self.credentials is not None:
                ch = grpc.aio.secure_channel(
                    key[0], self.credentials, options=options,
                    interceptors=interceptors,  # type: ignore[arg-type]
                )  # fmt: skip
            else:
                ch = grpc.aio.insecure_channel(
                    key[0],
                    options=options,
                    interceptors=interceptors,  # type: ignore[arg-type]
                )
            self._channels[key] = ch
        return ch

    def method(self, service: str, rpc: str, desc: _d.MethodDescriptor, raw: bool = False) -> Any:
        """A callable for the gRPC method `rpc` of the right streaming kind; with `raw`,
        responses come as their wire bytes (the caller parses them, or not). A unary
        method's callable is a coroutine function (FilteredUnary)."""
        loop = id(asyncio.get_running_loop())
        fast = self._fast.get((service, loop, rpc, raw))
        if fast is not None and self._channels.get(fast[0]) is fast[1]:
            return fast[2]
        unary = not desc.client_streaming and not desc.server_streaming
        ch = self.channel(service, intercepted=not unary)
        chkey = (self.target_of(service), loop, not unary)
        key = (self.target_of(service), id(asyncio.get_running_loop()), rpc, raw)
        made = self._methods.get(key)
        if made is not None and made[0] is ch:
            self._fast[(service, loop, rpc, raw)] = (chkey, ch, made[1])
            return made[1]
        req = message_class(desc.input_type).SerializeToString
        resp = None if raw else message_class(desc.output_type).FromString
        call: Any
        if desc.client_streaming and not desc.server_streaming:
            call = ch.stream_unary(rpc, request_serializer=req, response_deserializer=resp)
        elif desc.server_streaming and not desc.client_streaming:
            call = ch.unary_stream(rpc, request_serializer=req, response_deserializer=resp)
        elif desc.server_streaming:
            call = ch.stream_stream(rpc, request_serializer=req, response_deserializer=resp)
        else:
            call = FilteredUnary(
                ch.unary_unary(rpc, request_serializer=req, response_deserializer=resp),
                self.chain(),
                rpc,
            )
        self._methods[key] = (ch, call)
        self._fast[(service, loop, rpc, raw)] = (chkey, ch, call)
        return call

    async def close(self) -> None:
        """Close the channels of the running loop (others die with their loop)."""
        loop = id(asyncio.get_running_loop())
        for made in [k for k in self._methods if k[1] == loop]:
            del self._methods[made]
        for made in [k for k in self._fast if k[1] == loop]:
            del self._fast[made]
        for key in [k for k in self._channels if k[1] == loop]:
            await self._channels.pop(key).close(None)


def channels_for(settings: Settings, target: str | None = None) -> ServiceChannels:
    """ServiceChannels with the configured TLS (tls.client) to the services."""
    from ferry.rpc import tls

    return ServiceChannels(
        settings.client, target, tls.channel_credentials(settings),
        tls.channel_options(settings, []),
    )  # fmt: skip
