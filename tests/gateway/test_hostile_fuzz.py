"""Schemathesis with hostile values (issue 23): every operation of /openapi.json, as
viewer, operator and admin, with its generated path parameters, query parameters and JSON
body strings replaced by NUL bytes, control characters, 5,000-character strings and
numbers like 1e308. Pass: no 5xx, no 429 from an error's metadata overflowing (an echoed
input), and a refused call changes nothing. Before the edge checks this found 500s on
PostgreSQL (NUL in ids, queries, logins) and metadata-overflow 429s."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from ferry.app import App
from ferry.db.engine import make_engine
from gateway.app import create_app
from gateway.calls import ServiceChannels
from tests.conftest import make_settings, running, token
from tests.gateway.conftest import SERVICES

HOSTILE_STRINGS = ["a\x00b", "\x00", "x\x1by", "line\r\nX-Evil: 1", "x" * 5000, "\x7f", "1e308"]
HOSTILE_NUMBERS: list[Any] = [1e308, -1e308, 10**30, -(2**63)]
TABLES = ("export_jobs", "imports", "notifications", "users", "auth_tokens", "students")


def _hostile(value: Any, pick: st.DataObject, kind: type) -> Any:
    """`value` with its strings (kind str) or its numbers (kind float) replaced by hostile
    ones, recursively: one kind at a time, so a bad number does not hide a NUL."""
    if isinstance(value, str):
        return pick.draw(st.sampled_from(HOSTILE_STRINGS)) if kind is str else value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return pick.draw(st.sampled_from(HOSTILE_NUMBERS)) if kind is float else value
    if isinstance(value, list):
        return [_hostile(v, pick, kind) for v in value]
    if isinstance(value, dict):
        return {k: _hostile(v, pick, kind) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def served(seeded_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[App, int]]:
    app = App(make_settings(seeded_url, tmp_path_factory.mktemp("hostile"),
                            FERRY_EXPORT_WORKERS=0))  # fmt: skip
    with running(app, SERVICES) as server:
        yield app, server.port
    app.close()


def _counts(engine: Engine) -> dict[str, int]:
    # One pooled connection and one statement per look (a new engine and connection per
    # look, twice per case, was most of this file's time on PostgreSQL).
    counts = ", ".join(f"(SELECT count(*) FROM {t})" for t in TABLES)
    with engine.connect() as c:
        return dict(zip(TABLES, c.execute(sa.text(f"SELECT {counts}")).one(), strict=True))


def _message(r: Any) -> str:
    try:
        return str(r.json().get("message", ""))
    except ValueError:
        return r.text


def _fuzz(
    operation: Any,
    callers: list[tuple[str, dict[str, str]]],
    engine: Engine,
    failures: list[str],
    examples: int = 6,
) -> None:
    # The short run (make test) is derandomized: the same 6 cases every time. The long run
    # (make test-long) draws fresh cases each time. Each case is sent once per caller (role).
    @given(case=operation.as_strategy(), pick=st.data())
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
              derandomize=examples <= 6, database=None)  # fmt: skip
    def fuzz(case: schemathesis.Case, pick: st.DataObject) -> None:
        kind = pick.draw(st.sampled_from([str, str, float]))
        case.path_parameters = _hostile(case.path_parameters or {}, pick, kind)
        case.query = _hostile(case.query or {}, pick, kind)
        if isinstance(case.body, (dict, list)):
            case.body = _hostile(case.body, pick, kind)
        for role, headers in callers:
            before = _counts(engine)
            r = case.call(headers=headers)
            where = f"{role} {operation.method.upper()} {operation.path}"
            # An echoed input overflowing gRPC's metadata: a 429 whose message says so (the
            # body's own "metadata" key is the error's reason values, not an overflow).
            overflow = r.status_code == 429 and "metadata" in _message(r)
            if r.status_code >= 500 or overflow:
                failures.append(f"{where}: {r.status_code} {r.text[:200]}")
            elif r.status_code >= 400 and _counts(engine) != before:
                failures.append(f"{where}: refused {r.status_code} yet changed something")

    fuzz()


def _every_operation(served: tuple[App, int], seeded_url: str, examples: int) -> None:
    app, port = served
    asgi = create_app(app, ServiceChannels(app.settings.client, f"127.0.0.1:{port}"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", asgi)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 30
    failures: list[str] = []
    callers = [
        (role, {"authorization": f"Bearer {token(app, role, ttl=600)}"})
        for role in ("viewer", "operator", "admin")
    ]
    # The short run's cases are derandomized, so each role got the same cases anyway: they
    # are drawn once and sent as each role (drawing them was half of the time). The long run
    # draws fresh cases for each role.
    groups = [callers] if examples <= 6 else [[c] for c in callers]
    engine = make_engine(seeded_url)
    try:
        for group in groups:
            for operation in operations:
                if operation.path in ("/api/v1/sessions/import", "/api/v1/imports/entities"):
                    continue  # uploads: a file body, not JSON (tests/gateway/test_uploads.py)
                _fuzz(operation, group, engine, failures, examples)
    finally:
        engine.dispose()
    assert not failures, "\n".join(failures[:20])


@pytest.mark.slow
def test_hostile_values_in_every_operation_never_5xx_and_refusals_change_nothing(
    served: tuple[App, int], seeded_url: str
) -> None:
    _every_operation(served, seeded_url, examples=6)


@pytest.mark.slow
@pytest.mark.long  # make test-long: 40 fresh cases per operation and role
def test_hostile_values_long_run(served: tuple[App, int], seeded_url: str) -> None:
    _every_operation(served, seeded_url, examples=40)
