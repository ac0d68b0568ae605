"""Schemathesis over the gateway's /openapi.json, against a real gateway process in front
of every service (one `ferry serve` process serving all five: the contract is what is
tested here, and one process starts in a fifth of the time): every operation and every
method, called as a viewer, an operator and an admin, with a small bounded number of
generated examples each.

Pass: no response is a 5xx, and every response matches the schema (status, body and
content type as documented).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from tests.system.harness import cluster

ROLES = ("viewer", "operator", "admin")
EXAMPLES = 5  # per operation and role: bounded (~45 operations x 3 roles)
SERVICES = ("export", "import", "auth", "notify", "reports")
CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.content_type_conformance,
]


# A minute or more: `make test-system` runs it, `make test` (CI) does not.
@pytest.mark.slow
@pytest.mark.long
def test_generated_calls_of_every_method_as_each_role_never_5xx_and_match_the_schema(
    small_pg: str, tmp_path: Path
) -> None:
    env = {"FERRY_EXPORT_WORKERS": "1", "FERRY_NOTIFY_CHANNELS": "[log]"}
    with cluster(small_pg, tmp_path, **env) as system:
        services = system.serve(" ".join(SERVICES))
        gw = system.gateway({n: f"127.0.0.1:{services.port}" for n in SERVICES})
        schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{gw.port}/openapi.json")
        operations = [r.ok() for r in schema.get_all_operations()]
        methods = {op.method.upper() for op in operations}
        assert {"GET", "POST", "DELETE"} <= methods, methods
        assert len(operations) >= 30, len(operations)
        failures: list[str] = []
        for role in ROLES:
            failures += _fuzz(operations, {"authorization": f"Bearer {system.token(role)}"}, role)
        assert not failures, "\n\n".join(failures)


def _fuzz(operations: list[Any], headers: dict[str, str], role: str) -> list[str]:
    """Every operation with EXAMPLES generated cases; the failures, each named."""
    failures: list[str] = []
    calls = 0
    started = time.monotonic()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def fuzz(case: schemathesis.Case) -> None:
            nonlocal calls
            calls += 1
            case.call_and_validate(headers=headers, checks=CHECKS, timeout=60)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as e:  # every operation is tried; all reported
            failures.append(f"as {role}: {operation.method.upper()} {operation.path}: {e}"[:1500])
    print(f"\nschemathesis as {role}: {len(operations)} operations, {calls} calls, "
          f"{time.monotonic() - started:.1f}s")  # fmt: skip
    return failures
