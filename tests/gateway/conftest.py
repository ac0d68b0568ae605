"""A gateway in front of real in-process services, on each database backend."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest

from ferry import plugins
from ferry.app import App
from ferry.db.engine import make_engine
from ferry.demo.seed import Scale, seed
from gateway.app import create_app
from gateway.calls import ServiceChannels
from tests.conftest import running, token

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's TestClient nags about httpx2
    from fastapi.testclient import TestClient

# The services the gateway routes to; import only where its plugin exists.
SERVICES = [
    s
    for s in ("export", "import", "auth", "notify", "reports")
    if s in plugins.names("ferry.services")
]


def seed_small(url: str) -> None:
    engine = make_engine(url)
    try:
        seed(engine, Scale.SMALL, seed=11)
    finally:
        engine.dispose()


@contextmanager
def gateway_for(app: App, services: list[str] | None = None) -> Iterator[TestClient]:
    """A TestClient on the gateway, calling real services of `app` on a loopback port."""
    with running(app, services or SERVICES) as server:
        asgi = create_app(app, ServiceChannels(app.settings.client, f"127.0.0.1:{server.port}"))
        with TestClient(asgi, raise_server_exceptions=False) as client:
            yield client


@pytest.fixture
def gateway(make_app: Callable[..., App]) -> Iterator[Callable[..., Any]]:
    """gateway(url, **env) -> (client, app) with services running; closed afterwards."""
    stack = ExitStack()

    def make(url: str, **env: Any) -> tuple[TestClient, App]:
        app = make_app(url, **env)
        return stack.enter_context(gateway_for(app)), app

    with stack:
        yield make


def bearer(app: App, role: str = "admin") -> dict[str, str]:
    return {"authorization": f"Bearer {token(app, role)}"}
