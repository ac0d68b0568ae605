"""A gRPC server built from ferry.yaml: services and filters loaded by name, health per
service, reflection, explicit message limits, and graceful stop on SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ferry import plugins
from ferry.app import App
from ferry.rpc.filters import Filter, FilterChain

log = logging.getLogger("ferry.server")


class Service(Protocol):
    """What a `ferry.services` plugin builds: the gRPC face of one service."""

    # Full proto name, e.g. "ferry.v1.ExportService".
    full_name: str

    def register(self, server: grpc.Server) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def load_filters(app: App, names: Sequence[str]) -> list[Filter]:
    """Filter instances for `names`, from `ferry.filters`, in chain order."""
    return [plugins.resolve("ferry.filters", name, app, allow_path=True) for name in names]


def chain_names(server: Sequence[str], own: Sequence[str] | None) -> list[str]:
    """A service's filters: the server's chain, then its own (deduplicated, order kept).

    A service's list adds to the server's chain and never replaces it, so a service can
    never be served without the server's `auth` by a config that forgot to list it.
    """
    out: list[str] = []
    for name in [*server, *(own or [])]:
        if name not in out:
            out.append(name)
    return out


def check_config(app: App) -> None:
    """Resolve everything ferry.yaml names before health says SERVING: the dataset, the
    storage, the formats of the schedules. A typo stops start-up naming the known names."""
    from ferry.errors import FerryError
    from ferry.storage import open_storage

    s = app.settings
    try:
        app.dataset()
    except FerryError as e:
        raise plugins.PluginError(f"dataset: {e.message}") from None
    open_storage(s)
    for name, sched in s.export.schedules.items():
        if sched.format not in plugins.names("ferry.formats"):
            known = ", ".join(plugins.names("ferry.formats"))
            raise plugins.PluginError(
                f"export.schedules.{name}.format: unknown format {sched.format!r}; known: {known}"
            )


class Server:
    """Serves the named services (default: those in server.services) on one port."""

    def __init__(self, app: App, names: Sequence[str] | None = None, address: str | None = None):
        self.app = app
        cfg = app.settings.server
        configured = {s.name: s for s in cfg.services}
        self.names = list(names) if names else list(configured)
        unknown = [n for n in self.names if n not in plugins.names("ferry.services")]
        if unknown:
            known = ", ".join(plugins.names("ferry.services"))
            raise plugins.PluginError(f"unknown service {unknown[0]!r}; known: {known}")
        default = load_filters(app, cfg.filters)
        per_service: dict[str, list[Filter]] = {}
        self.services: list[Service] = []
        for name in self.names:
            svc: Service = plugins.resolve("ferry.services", name, app, allow_path=True)
            self.services.append(svc)
            own = configured.get(name)
            if own is not None and own.filters:
                per_service[svc.full_name] = load_filters(
                    app, chain_names(cfg.filters, own.filters)
                )
        limit = cfg.max_message_bytes
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="rpc"),
            interceptors=[FilterChain(default, per_service)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.health = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        for svc in self.services:
            svc.register(self.grpc)
        if cfg.reflection:
            names_ = [s.full_name for s in self.services]
            reflection.enable_server_reflection(
                [
                    *names_,
                    health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                    reflection.SERVICE_NAME,
                ],
                self.grpc,
            )
        self.address = address or cfg.address
        self.port = 0
        self._stopped = threading.Event()

    def start(self) -> int:
        """Start serving; returns the bound port (useful with port 0)."""
        timeout = self.app.settings.server.setup_timeout_seconds
        plugins.setup_all([("configuration", lambda: check_config(self.app))], timeout=timeout)
        plugins.setup_all(
            ((f"service {type(s).__name__}", s.start) for s in self.services), timeout=timeout
        )
        self.port = self.grpc.add_insecure_port(self.address)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.address}")
        self.grpc.start()
        for svc in self.services:
            self.health.set(svc.full_name, health_pb2.HealthCheckResponse.SERVING)
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "serving %s on port %d", ", ".join(self.names), self.port, extra={"event": "serving"}
        )
        return self.port

    def stop(self, grace: float | None = None, deregister_wait: float | None = None) -> None:
        """Health NOT_SERVING, wait for balancers, drain in-flight calls, stop workers."""
        if self._stopped.is_set():
            return
        shutdown = self.app.settings.server.shutdown
        self.health.enter_graceful_shutdown()
        time.sleep(shutdown.deregister_wait_seconds if deregister_wait is None else deregister_wait)
        self.grpc.stop(shutdown.grace_seconds if grace is None else grace).wait()
        for svc in self.services:
            svc.stop()
        self._stopped.set()
        log.info("stopped", extra={"event": "stopped"})

    def wait(self) -> None:
        self._stopped.wait()

    def stop_on_signals(self) -> None:
        """SIGTERM/SIGINT start a graceful stop (main thread only)."""

        def handle(signum: int, _frame: Any) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name, extra={"event": "signal"})
            threading.Thread(target=self.stop, name="graceful-stop", daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
