"""Run the gateway with uvicorn in a background thread (`ferry serve`, tests)."""

from __future__ import annotations

import logging
import sys
import threading
import time

import uvicorn

from ferry.app import App
from gateway.app import create_app
from gateway.calls import channels_for

log = logging.getLogger("ferry.gateway")


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
            http="httptools",  # the C parser (a declared dependency), never h11's Python one
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
