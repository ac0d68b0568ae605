"""Schemathesis against /openapi.json: generated GET requests never get a 5xx, and every
response matches the schema (a bounded number of examples per operation)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from ferry.app import App
from gateway.app import create_app
from gateway.calls import ServiceChannels
from tests.conftest import make_settings, running, token
from tests.gateway.conftest import SERVICES


@pytest.fixture(scope="module")
def served(seeded_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, int]]:
    app = App(make_settings(seeded_url, tmp_path_factory.mktemp("fuzz"),
                            FERRY_EXPORT_WORKERS=0))  # fmt: skip
    with running(app, SERVICES) as server:
        yield app, server.port
    app.close()


def test_generated_get_requests_never_fail_with_5xx_and_match_the_schema(
    served: tuple[App, int],
) -> None:
    app, port = served
    asgi = create_app(app, ServiceChannels(app.settings.client, f"127.0.0.1:{port}"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", asgi)
    headers = {"authorization": f"Bearer {token(app, 'admin', ttl=600)}"}
    checks = [
        schemathesis.checks.not_a_server_error,
        schemathesis.checks.response_schema_conformance,
        schemathesis.checks.content_type_conformance,
    ]
    operations = [r.ok() for r in schema.get_all_operations()]
    gets = [op for op in operations if op.method.upper() == "GET"]
    assert len(gets) >= 8

    for operation in gets:

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True,
                  database=None)  # fmt: skip
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(headers=headers, checks=checks)

        fuzz()
