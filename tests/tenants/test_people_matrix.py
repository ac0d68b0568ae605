"""Every RPC x caller x school (docs/tenants.md): school `north` has data (an import, an
export job, a notification, a user, a token); callers of school `south` (each role, a
platform admin naming south, a link of south) call every RPC of every served service with
north's ids and names in the request. Each call is NOT_FOUND (a call naming one of north's
records), or answers about south alone; no response holds anything of north, and north's
rows are exactly as before (compared in plain SQL as the platform role). A south token
naming north in `x-ferry-school` is NOT_FOUND on every RPC, as an unknown school is.

The methods are read from the descriptors (as tests/auth/test_every_rpc.py does), so a new
RPC is tried without editing this file.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from google.protobuf import descriptor_pool, message_factory, text_format
from sqlalchemy.engine import Engine

from ferry import plugins, users
from ferry.app import App
from ferry.auth import Principal, issuing, parse_role
from ferry.bundle.formats.base import Event
from ferry.db import migrate, roles, tenant
from ferry.db.engine import make_engine
from ferry.rpc.methods import lookup
from ferry.rpc.server import Server
from ferry.v1 import export_pb2, export_pb2_grpc, notify_pb2, notify_pb2_grpc
from tests.conftest import fresh_database, make_settings
from tests.merge.helpers import records, run
from tests.tenants.conftest import app_role, as_role

pytestmark = pytest.mark.postgres

MINUTE = dt.timedelta(minutes=5)
# Fields that name one of north's records: a call with one is NOT_FOUND for south.
RECORD_FIELDS = ("job_id", "import_id", "id", "jti", "username")


def _methods() -> list[str]:
    pool = descriptor_pool.Default()
    out = []
    for name in plugins.names("ferry.services"):
        svc = plugins.load("ferry.services", name)
        desc = pool.FindServiceByName(svc.full_name)
        out += [f"/{desc.full_name}/{m.name}" for m in desc.methods]
    return sorted(out)


METHODS = _methods()


@dataclass
class World:
    app: App
    platform: Engine
    port: int
    schools: dict[str, int]
    north: dict[str, str]  # request field -> a value naming north's data
    markers: set[str]  # strings only north's rows hold
    tokens: dict[str, tuple[str, list[tuple[str, str]]]] = field(default_factory=dict)


def _snapshot(platform: Engine, school: int) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of school `school` in every table with a school_id (the platform role
    bypasses row-level security), without the columns a read may touch."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    inspector = sa.inspect(platform)
    with platform.connect() as conn:
        for table in sorted(inspector.get_table_names()):
            cols = [c["name"] for c in inspector.get_columns(table)]
            if "school_id" not in cols:
                continue
            keep = [c for c in cols if c not in ("last_used_at", "updated_at", "heartbeat_at")]
            select = ", ".join(f'"{c}"' for c in keep)
            rows = conn.execute(
                sa.text(f'SELECT {select} FROM "{table}" WHERE school_id = :s'), {"s": school}
            ).all()
            out[table] = sorted(tuple(map(repr, r)) for r in rows)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, source_events: list[Event]) -> Iterator[World]:
    folder: Path = tmp_path_factory.mktemp("people-matrix")
    with app_role() as role, fresh_database("postgres", folder) as url:
        platform = make_engine(url)
        migrate.upgrade(platform)
        roles.hand_over(platform, role)
        with platform.begin() as conn:
            for code in ("north", "south"):
                conn.execute(
                    sa.text(
                        "INSERT INTO schools (code, name, created_at) "
                        "VALUES (:c, :c, CURRENT_TIMESTAMP)"
                    ),
                    {"c": code},
                )
            schools = {
                str(k): int(v)
                for k, v in conn.execute(sa.text("SELECT code, id FROM schools")).all()
            }
        app_url = as_role(url, role)
        app = App(
            make_settings(
                app_url,
                folder,
                FERRY_EXPORT_POLL_SECONDS="0.2",
                FERRY_NOTIFY_CHANNELS="[log]",
                FERRY_NOTIFY_POLL_SECONDS="0.05",
            )
        )
        server = Server(app, plugins.names("ferry.services"))
        port = server.start()
        try:
            yield _build(app, platform, port, schools, source_events)
        finally:
            server.stop(grace=0, deregister_wait=0)
            app.close()
            platform.dispose()


def _build(
    app: App, platform: Engine, port: int, schools: dict[str, int], events: list[Event]
) -> World:
    north = schools["north"]
    with tenant.acting_for(north):
        imported = run(app.engine, events).id
        users.create_user(
            app.engine, "north-admin", "north-password", "admin", "north-office@school.example"
        )
        made = issuing.create_token(app, parse_role("operator"), "north-cron", 600, "test")
    north_md = [
        (
            "authorization",
            "Bearer "
            + app.issuer().issue("north-op", parse_role("admin"), MINUTE, school="north").token,
        )
    ]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        job = (
            export_pb2_grpc.ExportServiceStub(ch)
            .StartExport(
                export_pb2.StartExportRequest(export_type="students", format="csv"),
                metadata=north_md,
                timeout=10,
            )
            .job.id
        )
        for _ in export_pb2_grpc.ExportServiceStub(ch).WatchExportJob(
            export_pb2.WatchExportJobRequest(job_id=job), metadata=north_md, timeout=60
        ):
            pass
        note = (
            notify_pb2_grpc.NotifyServiceStub(ch)
            .Send(
                notify_pb2.SendRequest(
                    channels=["log"],
                    recipients=["north-office@school.example"],
                    subject="North only",
                    body="North's news",
                ),
                metadata=north_md,
                timeout=10,
            )
            .notification.id
        )
    data = records(events)
    student = data["students"][0]
    course = data["courses"][0]
    markers = {
        imported,
        job,
        note,
        made.jti,
        "north-admin",
        "north-office@school.example",
        "north-cron",
        "North only",
        "North's news",
        *(f"{s['first_name']} {s['last_name']}" for s in data["students"]),
        *(str(s["student_id"]) for s in data["students"]),
        *(str(c["course_code"]) for c in data["courses"]),
    }
    values = {
        "job_id": job,
        "import_id": imported,
        "id": note,
        "jti": made.jti,
        "username": "north-admin",
        "student_id": str(student["student_id"]),
        "student_ids": [str(student["student_id"])],
        "course_code": str(course["course_code"]),
        "semester": "2026-fall",
        "query": str(student["last_name"]),
        "entity": "students",
        "old_key": str(student["student_id"]),
        "new_key": "S-NEW",
        "dry_run": True,
        "path": f"/api/v1/exports/{job}/download",
        "subject": "north-cron",
        "export_type": "students",
        "format": "csv",
        "reason": "north's plan",
    }
    w = World(app, platform, port, schools, values, markers)

    def bearer(role: str, school: str = "south", named: str = "") -> list[tuple[str, str]]:
        token = app.issuer().issue(f"south-{role}", parse_role(role), MINUTE, school=school)
        md = [("authorization", f"Bearer {token.token}")]
        return md + ([("x-ferry-school", named)] if named else [])

    for role in ("viewer", "operator", "admin"):
        w.tokens[role] = (role, bearer(role))
    w.tokens["platform admin naming south"] = (
        "platform_admin",
        bearer("platform_admin", "default", "south"),
    )
    with tenant.acting_for(schools["south"]):
        link = issuing.link_token(app, values["path"], 300, Principal("south-admin", 3), "")
    w.tokens["south link to north's job"] = ("link", [("authorization", f"Link {link.token}")])
    time.sleep(0.5)
    return w


def _call(
    w: World, method: str, md: list[tuple[str, str]], fields: dict[str, Any]
) -> tuple[grpc.StatusCode, str, str]:
    """(code, details, the responses as text) of one call."""
    pool = descriptor_pool.Default()
    desc = pool.FindMethodByName(method.lstrip("/").replace("/", "."))
    req_cls: Any = message_factory.GetMessageClass(desc.input_type)
    resp_cls: Any = message_factory.GetMessageClass(desc.output_type)
    names = {f.name for f in desc.input_type.fields}
    req = req_cls()
    for k, v in fields.items():
        if k not in names:
            continue
        try:
            getattr(req, k).extend(v) if isinstance(v, list) else setattr(req, k, v)
        except (TypeError, AttributeError):
            continue  # a field of that name and another type: left empty
    kw = {
        "request_serializer": req_cls.SerializeToString,
        "response_deserializer": resp_cls.FromString,
    }
    out: list[str] = []
    with grpc.insecure_channel(f"127.0.0.1:{w.port}") as ch:
        try:
            if desc.client_streaming:
                call = (ch.stream_stream if desc.server_streaming else ch.stream_unary)(
                    method, **kw
                )
                got = call(iter([req]), metadata=md, timeout=20)
                out += [
                    text_format.MessageToString(r)
                    for r in (got if desc.server_streaming else [got])
                ]
            elif desc.server_streaming:
                for r in ch.unary_stream(method, **kw)(req, metadata=md, timeout=20):
                    out.append(text_format.MessageToString(r, as_utf8=True))
                    if len(out) > 5000:
                        break
            else:
                r = ch.unary_unary(method, **kw)(req, metadata=md, timeout=20)
                out.append(text_format.MessageToString(r, as_utf8=True))
        except grpc.RpcError as e:
            return e.code(), e.details() or "", "\n".join(out)  # type: ignore[attr-defined]
    return grpc.StatusCode.OK, "", "\n".join(out)


@pytest.mark.parametrize(
    "caller",
    ["viewer", "operator", "admin", "platform admin naming south", "south link to north's job"],
)
def test_every_rpc_of_south_with_north_ids_finds_nothing_of_north(
    world: World, caller: str
) -> None:
    w = world
    before = _snapshot(w.platform, w.schools["north"])
    role, md = w.tokens[caller]
    failures = []
    for method in METHODS:
        info = lookup(method)
        if info.min_role == 0:
            continue  # Login: no school yet (tests/tenants/test_people_auth.py)
        code, details, text = _call(w, method, md, w.north)
        request = str(w.north)
        crossed = sorted(m for m in w.markers if m in text and m not in request)
        if crossed:
            failures.append(f"{method}: the response holds north's {crossed[:3]}")
        if role == "link":
            if code not in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND):
                failures.append(f"{method}: a link of south got {code.name} {details}")
            continue
        below = info.min_role > parse_role(role)
        if method.endswith("/CreateLinkToken") and parse_role(role) < parse_role("admin"):
            below = True  # only an admin names another subject (north-cron) for a link
        if below:
            if code != grpc.StatusCode.PERMISSION_DENIED:
                failures.append(f"{method}: {role} below min_role got {code.name}")
            continue
        pool = descriptor_pool.Default()
        desc = pool.FindMethodByName(method.lstrip("/").replace("/", "."))
        fields = {f.name for f in desc.input_type.fields}
        names_record = [f for f in RECORD_FIELDS if f in fields]
        if names_record and desc.name not in ("CreateUser", "ListTokens"):
            if code != grpc.StatusCode.NOT_FOUND:
                failures.append(
                    f"{method} naming north's {names_record}: {code.name} {details[:120]}"
                )
        elif code not in (
            grpc.StatusCode.OK,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.FAILED_PRECONDITION,
            grpc.StatusCode.ALREADY_EXISTS,
        ):
            failures.append(f"{method}: {code.name} {details[:120]}")
    assert not failures, "\n".join(failures)
    assert _snapshot(w.platform, w.schools["north"]) == before  # no north row changed


def test_a_south_token_naming_north_is_not_found_on_every_rpc(world: World) -> None:
    """As a school that does not exist: the same code and words, nothing confirmed."""
    w = world
    _, md = w.tokens["admin"]
    for method in METHODS:
        if lookup(method).min_role == 0:
            continue
        for named in ("north", "nowhere"):
            code, details, text = _call(w, method, [*md, ("x-ferry-school", named)], {})
            assert code == grpc.StatusCode.NOT_FOUND, (method, named, code, details)
            assert details == f"school {named!r} not found", details
            assert text == ""


def test_the_same_calls_by_north_do_find_north(world: World) -> None:
    """The oracle sees: north's own admin finds what south never does, by the same calls."""
    w = world
    token = w.app.issuer().issue("north-admin", parse_role("admin"), MINUTE, school="north")
    md = [("authorization", f"Bearer {token.token}")]
    for method, marker in [
        ("/ferry.v1.ImportService/GetImport", w.north["import_id"]),
        ("/ferry.v1.ImportService/ListImports", w.north["import_id"]),
        ("/ferry.v1.ExportService/GetExportJob", w.north["job_id"]),
        ("/ferry.v1.NotifyService/GetNotification", "North only"),
        ("/ferry.v1.AuthService/ListUsers", "north-office@school.example"),
        ("/ferry.v1.AuthService/ListTokens", w.north["jti"]),
        ("/ferry.v1.ReportsService/SearchStudents", w.north["student_id"]),
    ]:
        code, details, text = _call(
            w, method, md, {k: v for k, v in w.north.items() if k != "subject"}
        )
        assert code == grpc.StatusCode.OK, (method, details)
        assert marker in text, method
