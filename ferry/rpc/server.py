"""A gRPC server built from ferry.yaml: services and filters loaded by name, health per
service, reflection, explicit message limits, and graceful stop on SIGTERM."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Sequence
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ferry import plugins
from ferry.app import App
from ferry.contracts import Service
from ferry.rpc import tls
from ferry.rpc.filters import Filter, FilterChain

log = logging.getLogger("ferry.server")


def load_filters(app: App, names: Sequence[str]) -> list[Filter]:
    """The server halves of the `ferry.filters` plugins `names`, in chain order."""
    return [app.plugin("ferry.filters", name).server() for name in names]


def connection_age_options(seconds: float) -> list[tuple[str, int]]:
    """Server options that close each client connection after `seconds` (0: never), with
    a grace for the calls in flight, so clients resolve their dns:/// target again and
    pods added by scaling up get calls without waiting for a connection to break."""
    if seconds <= 0:
        return []
    ms = int(seconds * 1000)
    return [("grpc.max_connection_age_ms", ms), ("grpc.max_connection_age_grace_ms", ms)]


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

    s = app.settings
    try:
        app.dataset()
    except FerryError as e:
        raise plugins.PluginError(f"dataset: {e.message}") from None
    app.storage()
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
        # Authentication is off only by auth.enabled: false, never by a filter list; and
        # every string is checked at the edge (ferry.rpc.filters.validate) whatever it says.
        server_chain = [*cfg.filters, *(f for f in ("auth", "validate") if f not in cfg.filters)]
        default = load_filters(app, server_chain)
        per_service: dict[str, list[Filter]] = {}
        self.services: list[Service] = []
        for name in self.names:
            # factory(app) like every plugin, but owned by this server (it starts and stops
            # them), not cached by the app: a second Server on the same app gets its own.
            svc: Service = plugins.build_within(
                ("ferry.services", name), app, cfg.setup_timeout_seconds
            )
            self.services.append(svc)
            own = configured.get(name)
            if own is not None and own.filters:
                per_service[svc.full_name] = load_filters(
                    app, chain_names(server_chain, own.filters)
                )
        limit = cfg.max_message_bytes
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=cfg.max_workers, thread_name_prefix="rpc"),
            interceptors=[FilterChain(default, per_service)],
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 0),
                *connection_age_options(cfg.max_connection_age_seconds),
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
        self._stopping = False

    def start(self) -> int:
        """Start serving; returns the bound port (useful with port 0)."""
        timeout = self.app.settings.server.setup_timeout_seconds
        plugins.setup_all([("configuration", lambda: check_config(self.app))], timeout=timeout)
        plugins.setup_all(
            ((f"service {type(s).__name__}", s.start) for s in self.services), timeout=timeout
        )
        self.port = tls.bind(self.grpc, self.address, self.app.settings)  # TLS when configured
        if self.port == 0:
            raise OSError(f"cannot listen on {self.address}")
        self.grpc.start()
        for svc in self.services:
            self.health.set(svc.full_name, health_pb2.HealthCheckResponse.SERVING)
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        if self.app.settings.server.database_check_seconds > 0:
            threading.Thread(target=self._watch_database, name="db-health", daemon=True).start()
        log.info(
            "serving %s on port %d", ", ".join(self.names), self.port, extra={"event": "serving"}
        )
        return self.port

    def _watch_database(self) -> None:
        """Each service's health follows the database: NOT_SERVING while it cannot be
        reached (readiness turns false, so balancers send calls elsewhere), SERVING once it
        answers again. The overall status "" stays SERVING: the process itself is alive,
        so a liveness probe on "" never restarts a pod for an outage of the database."""
        every = self.app.settings.server.database_check_seconds
        up = True
        while not self._stopped.wait(every):
            try:
                with self.app.engine.connect() as conn:
                    conn.exec_driver_sql("SELECT 1")
                ok = True
            except Exception as e:  # any failure to reach it counts as down
                ok = False
                if up:
                    log.warning(
                        "database unreachable (%s): services NOT_SERVING", type(e).__name__,
                        extra={"event": "database_down"},
                    )  # fmt: skip
            if ok != up and not self._stopping:
                status = health_pb2.HealthCheckResponse.SERVING if ok else (
                    health_pb2.HealthCheckResponse.NOT_SERVING
                )  # fmt: skip
                for svc in self.services:
                    self.health.set(svc.full_name, status)
                if ok:
                    log.info("database reachable again", extra={"event": "database_up"})
            up = ok

    def stop(self, grace: float | None = None, deregister_wait: float | None = None) -> None:
        """Health NOT_SERVING, wait for balancers, drain in-flight calls, stop workers."""
        if self._stopped.is_set():
            return
        shutdown = self.app.settings.server.shutdown
        self._stopping = True
        self.health.enter_graceful_shutdown()
        time.sleep(shutdown.deregister_wait_seconds if deregister_wait is None else deregister_wait)
        self.grpc.stop(shutdown.grace_seconds if grace is None else grace).wait()
        for svc in self.services:
            svc.stop()
        self._stopped.set()
        log.info("stopped", extra={"event": "stopped"})

    def wait(self) -> None:
        # In short waits, not one: the kernel may hand SIGTERM to any thread (gRPC's
        # own, say), and CPython then runs the handler only once the main thread runs
        # Python code again; blocked in one untimed wait it never did, and a `ferry serve`
        # went on serving (SERVING for 8 s after SIGTERM, tests/deploy/test_sigterm.py).
        while not self._stopped.wait(0.2):
            pass

    def stop_on_signals(self) -> None:
        """SIGTERM/SIGINT start a graceful stop (main thread only)."""

        def handle(signum: int, _frame: Any) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name, extra={"event": "signal"})
            threading.Thread(target=self.stop, name="graceful-stop", daemon=True).start()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
