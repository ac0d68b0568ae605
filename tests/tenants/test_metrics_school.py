"""A `school` label on the RPC and notify metrics, only with `metrics.school_label: true`
(docs/tenants.md), read from the Prometheus exposition the metrics endpoint serves: each
call and each delivery is counted under the school it acted for, by code; a school the
installation lacks is never a label value (the series stay bounded by the schools
table), and without the setting nothing is counted by school."""

from __future__ import annotations

import datetime as dt
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferry.app import App
from ferry.auth import parse_role
from ferry.rpc.metrics_http import serve_metrics
from ferry.v1 import notify_pb2 as npb
from ferry.v1 import notify_pb2_grpc, reports_pb2, reports_pb2_grpc
from tests.conftest import make_settings, running
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[int]:
    """The metrics endpoint (ferry.rpc.metrics_http) of this process; its port."""
    http, port = serve_metrics("127.0.0.1", 0)
    try:
        yield port
    finally:
        http.shutdown()


def scrape(port: int) -> Samples:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def grew(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How much the sample `name` with exactly `labels` grew between two scrapes."""
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


def schools_in(samples: Samples, prefix: str) -> set[str]:
    """The `school` label values of every sample of the families named `prefix`..."""
    return {dict(k[1])["school"] for k in samples if k[0].startswith(prefix)}


def md(app: App, school: str, role: str = "viewer") -> list[tuple[str, str]]:
    made = app.issuer().issue("t", parse_role(role), dt.timedelta(minutes=5), school=school)
    return [("authorization", f"Bearer {made.token}")]


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_rpc_calls_are_counted_by_school_only_where_configured(
    tenancy: Tenancy, tmp_path: Path, endpoint: int, on: bool
) -> None:
    env = {"FERRY_METRICS_SCHOOL_LABEL": "true"} if on else {}
    app = App(make_settings(tenancy.app_url, tmp_path, **env))
    search = reports_pb2.SearchStudentsRequest(query="S0")
    before = scrape(endpoint)
    try:
        with (
            running(app, ["reports"]) as srv,
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch,
        ):
            stub = reports_pb2_grpc.ReportsServiceStub(ch)
            for school, n in (("north", 2), ("south", 1)):
                for _ in range(n):
                    stub.SearchStudents(search, metadata=md(app, school), timeout=10)
            with pytest.raises(grpc.RpcError) as e:  # an unknown school is never a label
                stub.SearchStudents(search, metadata=md(app, "nowhere"), timeout=10)
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        app.close()
    after = scrape(endpoint)
    method = {
        "grpc_service": "ferry.v1.ReportsService",
        "grpc_method": "SearchStudents",
        "grpc_type": "unary",
    }
    # The families without a school count every call, as before.
    assert grew(before, after, "ferry_rpc_server_handled_total", **method, grpc_code="OK") == 3
    handled = "ferry_rpc_server_school_handled_total"
    took = "ferry_rpc_server_school_handling_seconds_count"
    got = {
        school: (
            grew(before, after, handled, **method, school=school, grpc_code="OK"),
            grew(before, after, took, **method, school=school),
        )
        for school in ("north", "south")
    }
    assert got == ({"north": (2, 2), "south": (1, 1)} if on else {"north": (0, 0), "south": (0, 0)})
    assert "nowhere" not in schools_in(after, "ferry_rpc_server_school_")
    assert schools_in(after, "ferry_rpc_server_school_") <= {"default", "north", "south"}
    if not on:
        assert schools_in(after, "ferry_rpc_server_school_") == schools_in(
            before, "ferry_rpc_server_school_"
        )


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_deliveries_are_counted_by_school_only_where_configured(
    tenancy: Tenancy, tmp_path: Path, endpoint: int, on: bool
) -> None:
    env = {"FERRY_METRICS_SCHOOL_LABEL": "true"} if on else {}
    app = App(
        make_settings(
            tenancy.app_url,
            tmp_path,
            FERRY_NOTIFY_CHANNELS="[log]",
            FERRY_NOTIFY_POLL_SECONDS="0.05",
            **env,
        )
    )
    before = scrape(endpoint)
    sent = "ferry_notify_school_attempts_total"
    try:
        with (
            running(app, ["notify"]) as srv,
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch,
        ):
            stub = notify_pb2_grpc.NotifyServiceStub(ch)
            for school, n in (("north", 2), ("south", 1)):
                for i in range(n):
                    req = npb.SendRequest(
                        channels=["log"],
                        recipients=["office@school.example"],
                        subject=f"For {school} {i}",
                        body="Hello",
                    )
                    stub.Send(req, metadata=md(app, school, "admin"), timeout=10)
            # Waited for on the channel's own counter (counted right after the school's),
            # and, with the label, for north's outbox depth (refreshed when idle).
            north = frozenset({("school", "north"), ("channel", "log")})
            depth = ("ferry_notify_school_outbox_depth", north)
            deadline = time.monotonic() + 30
            while True:
                after = scrape(endpoint)
                delivered = grew(before, after, "ferry_notify_sent_total", channel="log")
                if delivered >= 3 and (not on or depth in after):
                    break
                assert time.monotonic() < deadline, (delivered, on)
                time.sleep(0.1)
    finally:
        app.close()
    got = {
        school: grew(before, after, sent, school=school, channel="log", outcome="sent")
        for school in ("north", "south")
    }
    assert got == ({"north": 2, "south": 1} if on else {"north": 0, "south": 0})
    assert schools_in(after, "ferry_notify_school_") <= {"default", "north", "south"}
    if not on:
        assert schools_in(after, "ferry_notify_school_") == schools_in(
            before, "ferry_notify_school_"
        )
