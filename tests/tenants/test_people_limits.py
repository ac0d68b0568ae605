"""Per school (docs/tenants.md): rate limits count each school's calls apart (the same
subject in two schools has two buckets), and a school's mails come from its `sender`
(the smtp channel's from address for a school without one)."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.auth import parse_role
from ferry.v1 import notify_pb2 as pb
from ferry.v1 import notify_pb2_grpc, reports_pb2, reports_pb2_grpc
from tests.conftest import make_settings, running
from tests.notify.helpers import SmtpServer
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres
MINUTE = dt.timedelta(minutes=5)
LIMITS = '{"reports/SearchStudents": {limit: 2, window_seconds: 60}}'


def _md(app: App, subject: str, school: str, role: str = "viewer") -> list[tuple[str, str]]:
    token = app.issuer().issue(subject, parse_role(role), MINUTE, school=school)
    return [("authorization", f"Bearer {token.token}")]


def test_each_school_has_its_own_rate_limit_bucket(tenancy: Tenancy, tmp_path: Path) -> None:
    app = App(
        make_settings(tenancy.app_url, tmp_path, FERRY_PLUGINS_FILTERS_RATELIMIT_LIMITS=LIMITS)
    )
    who = f"cron-{uuid.uuid4().hex[:8]}"  # the same subject in each school
    try:
        with (
            running(app, ["reports"]) as srv,
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch,
        ):
            stub = reports_pb2_grpc.ReportsServiceStub(ch)
            search = reports_pb2.SearchStudentsRequest(query="S0")
            for _ in range(2):
                stub.SearchStudents(search, metadata=_md(app, who, "north"), timeout=10)
            with pytest.raises(grpc.RpcError) as e:
                stub.SearchStudents(search, metadata=_md(app, who, "north"), timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "per caller and school" in (e.value.details() or "")
            # South's bucket is untouched by north's calls.
            for _ in range(2):
                stub.SearchStudents(search, metadata=_md(app, who, "south"), timeout=10)
            with pytest.raises(grpc.RpcError) as e:
                stub.SearchStudents(search, metadata=_md(app, who, "south"), timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # A platform admin's calls count in the school it names.
            admin = [*_md(app, who, "default", "platform_admin"), ("x-ferry-school", "north")]
            with pytest.raises(grpc.RpcError) as e:
                stub.SearchStudents(search, metadata=admin, timeout=10)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            fresh = [*_md(app, who, "default", "platform_admin"), ("x-ferry-school", "default")]
            stub.SearchStudents(search, metadata=fresh, timeout=10)
    finally:
        app.close()


def test_a_schools_mail_comes_from_its_sender(tenancy: Tenancy, tmp_path: Path) -> None:
    t = tenancy
    with t.platform.begin() as conn:
        conn.execute(
            sa.text("UPDATE schools SET sender = :s WHERE code = 'north'"),
            {"s": "North Office <office@north.example>"},
        )
    smtp = SmtpServer().start()
    app = App(
        make_settings(
            t.app_url,
            tmp_path,
            FERRY_NOTIFY_CHANNELS="[smtp]",
            FERRY_NOTIFY_POLL_SECONDS="0.05",
            FERRY_PLUGINS_CHANNELS_SMTP_PORT=str(smtp.port),
            FERRY_PLUGINS_CHANNELS_SMTP_FROM_ADDRESS="ferry@platform.example",
        )
    )
    try:
        with (
            running(app, ["notify"]) as srv,
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch,
        ):
            stub = notify_pb2_grpc.NotifyServiceStub(ch)
            for code in ("north", "south"):
                stub.Send(
                    pb.SendRequest(
                        channels=["smtp"],
                        recipients=[f"head@{code}.example"],
                        subject=f"For {code}",
                        body="Hello",
                    ),
                    metadata=_md(app, "t", code, "admin"),
                    timeout=10,
                )
            got = smtp.inbox.wait_for(2, timeout=30)
    finally:
        app.close()
        smtp.stop()
    by_to = {str(m["To"]): m for m in got}
    assert str(by_to["head@north.example"]["From"]) == "North Office <office@north.example>"
    assert "ferry@platform.example" in str(by_to["head@south.example"]["From"])
    envelopes = {tuple(rcpt): sender for sender, rcpt in smtp.inbox.envelopes}
    assert envelopes[("head@north.example",)] == "office@north.example"
    assert envelopes[("head@south.example",)] == "ferry@platform.example"


def test_calls_per_school_are_counted_only_where_configured(
    tenancy: Tenancy, tmp_path: Path
) -> None:
    from prometheus_client import REGISTRY

    def count(school: str, code: str = "OK") -> float:
        labels = {"school": school, "code": code}
        return REGISTRY.get_sample_value("ferry_school_calls_total", labels) or 0.0

    search = reports_pb2.SearchStudentsRequest(query="S0")
    for on in (False, True):
        env = {"FERRY_METRICS_SCHOOL_LABEL": "true"} if on else {}
        app = App(make_settings(tenancy.app_url, tmp_path, **env))
        before = {s: count(s) for s in ("north", "south", "nowhere")}
        try:
            with (
                running(app, ["reports"]) as srv,
                grpc.insecure_channel(f"127.0.0.1:{srv.port}") as ch,
            ):
                stub = reports_pb2_grpc.ReportsServiceStub(ch)
                for school, n in (("north", 2), ("south", 1)):
                    for _ in range(n):
                        stub.SearchStudents(search, metadata=_md(app, "t", school), timeout=10)
                with pytest.raises(grpc.RpcError):  # an unknown school is never a label
                    stub.SearchStudents(search, metadata=_md(app, "t", "nowhere"), timeout=10)
        finally:
            app.close()
        after = {s: count(s) for s in before}
        expected = {"north": 2, "south": 1, "nowhere": 0} if on else dict.fromkeys(before, 0)
        assert {s: after[s] - before[s] for s in before} == expected, on
    assert count("nowhere", "NOT_FOUND") == 0
