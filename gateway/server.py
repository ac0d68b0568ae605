"""Run the gateway with uvicorn in a background thread (`ferry serve`, tests)."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ferry.app import App
from gateway.app import create_app
from gateway.calls import channels_for

log = logging.getLogger("ferry.gateway")


class OneSend:
    """A transport that sends a response's head and the write after it in one send.

    uvicorn writes a response's status line and headers, then its body, as two writes: on
    loopback each is a send that runs the receiver's TCP path and wakes its reader, and
    the reader wakes twice (a cached report through the gateway spent a quarter of the
    gateway thread's GIL time in the first of them, issue 27's profile). The first small
    write of an event-loop turn is held; the next write in the same turn leaves with it,
    else it leaves when the turn ends (or before close). At most one write is held, so
    flow control still sees every byte at once."""

    __slots__ = ("_held", "_loop", "_transport")

    HOLD_AT_MOST = 16 * 1024
    JOIN_AT_MOST = 1024 * 1024

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if len(data) <= self.JOIN_AT_MOST:
                self._transport.write(held + bytes(data))
                return
            self._transport.write(held)  # a large body: not copied to save one send
            self._transport.write(data)
        elif isinstance(data, bytes) and len(data) <= self.HOLD_AT_MOST:
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._transport.write(data)

    def writelines(self, data: Any) -> None:
        self.write(b"".join(data))

    def flush(self) -> None:
        held = self._held
        if held is not None:
            self._held = None
            if not self._transport.is_closing():
                self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneSendHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol on a OneSend transport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, only alike)
        sends = OneSend(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(sends)  # type: ignore[arg-type]


class GatewayServer:
    """The gateway on `address:port` (port 0: a free one), calling services at `target`
    (default: the configured client targets)."""

    def __init__(
        self, app: App, target: str | None = None, address: str | None = None,
        port: int | None = None,
    ) -> None:  # fmt: skip
        g = app.settings.gateway
        self.asgi = create_app(app, channels_for(app.settings, target))
        t = app.settings.tls.gateway
        https: dict[str, str] = {}
        if t.cert_file:  # HTTPS (and HSTS, in create_app)
            https = {"ssl_certfile": str(app.settings.path(t.cert_file)),
                     "ssl_keyfile": str(app.settings.path(t.key_file or t.cert_file))}  # fmt: skip
        config = uvicorn.Config(
            self.asgi,
            host=address or g.address,
            port=g.port if port is None else port,
            log_config=None,  # Ferry's logging is already set up
            access_log=False,
            lifespan="on",
            # the C parser (a declared dependency), never h11's Python one, on a transport
            # that sends a response's head with its body
            http=OneSendHttpTools,
            # libuv's loop (a declared dependency): the calls to the services (grpc.aio) and
            # the HTTP side both run on it, with handles and transports in C
            loop="uvloop" if sys.platform != "win32" else "asyncio",
            # Only gateway.trusted_proxies decide whether X-Forwarded-For is believed
            # (gateway.auth.client_address): uvicorn's own proxy_headers, on by default and
            # trusting 127.0.0.1 (FORWARDED_ALLOW_IPS), rewrote the peer before that check, so
            # a client on loopback chose its own address and escaped the login limits.
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=5,
            **https,  # type: ignore[arg-type]
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gateway", daemon=True)
        self.port = 0

    def start(self, timeout: float = 10.0) -> int:
        """Start serving; returns the bound port. OSError when it does not come up."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError(
                    f"the gateway did not start on {self.server.config.host}:"
                    f"{self.server.config.port} (is the port in use?)"
                )
            time.sleep(0.01)
        sockets = [s for srv in self.server.servers for s in srv.sockets]
        self.port = int(sockets[0].getsockname()[1])
        log.info("gateway on port %d", self.port, extra={"event": "gateway_serving"})
        return self.port

    def stop(self) -> None:
        """Stop accepting, let in-flight requests finish briefly, and join the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
