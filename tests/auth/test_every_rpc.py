"""Every RPC of every served service x every kind of caller, generated from the protos.

For each method the server serves (read from the descriptors, so a new RPC or a new
service plugin is covered without editing this file), each caller below calls it with an
empty request. Bad credentials must be UNAUTHENTICATED with a message saying what was
wrong; a valid token below the RPC's min_role is PERMISSION_DENIED; a token at or above
it gets past auth (whatever the handler then says about the empty request). RPCs declared
ROLE_UNSPECIFIED (Login) are open to everyone. A link token is refused as a bearer token
on every RPC, and as a link on every RPC but the one call it names, for its own job.
A platform admin names the school of every call (x-ferry-school): without one, every RPC
but WhoAmI and ListSchools is INVALID_ARGUMENT naming the metadata; naming one, it passes
every role check (docs/tenants.md "People").
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from google.protobuf import descriptor_pool, message_factory

from ferry import plugins
from ferry.app import App
from ferry.auth import Principal, TokenIssuer, issuing, parse_role
from ferry.auth import store as token_store
from ferry.auth.keys import SigningKey
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.rpc.filters.auth import UNSCHOOLED
from ferry.rpc.methods import lookup
from ferry.rpc.server import Server
from tests.conftest import make_settings

REFRESH = 0.2
LINK_JOB = "job-of-the-link"
LINK_PATH = f"/api/v1/exports/{LINK_JOB}/download"
# caller -> what the refusal must say (None: a valid token of that role)
CALLERS: dict[str, str | None] = {
    "no token": "missing authorization",
    "malformed": "malformed token",
    "expired": "token expired",
    "wrong audience": "wrong audience",
    "wrong issuer": "wrong issuer",
    "unknown kid": "unknown key id",
    "alg confusion": "algorithm HS256 refused",
    "alg none": "alg none",
    "revoked": "token revoked",
    # A link token (issue 23): never a bearer token, and as a link (authorization: Link)
    # only for the one call its path names with its job id, which no empty request is.
    "link token": "wrong audience",
    "link token as a link": "a link token opens only its own link",
    "viewer": None,
    "operator": None,
    "admin": None,
    "platform admin naming default": None,
    "platform admin naming no school": None,
}


def _served_methods() -> list[str]:
    """'/pkg.Service/Method' of every method of every installed service plugin."""
    pool = descriptor_pool.Default()
    out = []
    for name in plugins.names("ferry.services"):
        svc = plugins.load("ferry.services", name)
        desc = pool.FindServiceByName(svc.full_name)
        out += [f"/{desc.full_name}/{m.name}" for m in desc.methods]
    return sorted(out)


METHODS = _served_methods()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _handmade(alg: str, kid: str, sign: Callable[[bytes], bytes] | None) -> str:
    now = int(time.time())
    claims = {"sub": "mallory", "role": "admin", "iss": "ferry", "aud": "ferry", "iat": now,
              "nbf": now, "exp": now + 300, "jti": "forged"}  # fmt: skip
    head = (
        f"{_b64(json.dumps({'alg': alg, 'kid': kid}).encode())}.{_b64(json.dumps(claims).encode())}"
    )
    return f"{head}.{_b64(sign(head.encode()) if sign else b'')}"


class World:
    last_details = ""  # the details of the last call's status

    def __init__(self, app: App, port: int) -> None:
        self.app, self.port = app, port
        issuer = app.issuer()
        key = issuer.key
        minute = dt.timedelta(minutes=5)
        admin = parse_role("admin")
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        revoked = issuer.issue("revoked-admin", admin, minute)
        token_store.record(app.engine, revoked, "api", "test")
        token_store.revoke(app.engine, revoked.jti)
        self.link = issuing.link_token(app, LINK_PATH, 300, Principal("a-admin", admin), "")
        self.tokens: dict[str, str | None] = {
            "no token": None,
            "malformed": "this-is-not-a-jwt",
            "expired": issuer.issue("a", admin, dt.timedelta(seconds=-60)).token,
            "wrong audience": TokenIssuer(key, audience="elsewhere")
            .issue("a", admin, minute)
            .token,
            "wrong issuer": TokenIssuer(key, issuer="mallory").issue("a", admin, minute).token,
            "unknown kid": TokenIssuer(SigningKey.generate()).issue("a", admin, minute).token,
            "alg confusion": _handmade(
                "HS256", key.kid, lambda m: hmac.new(public_pem, m, hashlib.sha256).digest()
            ),
            "alg none": _handmade("none", key.kid, None),
            "revoked": revoked.token,
            "link token": self.link.token,
            "link token as a link": self.link.token,
            **{
                r: issuer.issue(f"a-{r}", parse_role(r), minute).token
                for r in ("viewer", "operator", "admin")
            },
            **{
                p: issuer.issue("a-platform", parse_role("platform_admin"), minute).token
                for p in ("platform admin naming default", "platform admin naming no school")
            },
        }
        assert jwt.get_unverified_header(self.tokens["alg confusion"] or "")["alg"] == "HS256"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    folder: Path = tmp_path_factory.mktemp("every-rpc")
    url = f"sqlite:///{folder / 'ferry.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    settings = make_settings(url, folder, FERRY_AUTH_REVOCATION_REFRESH_SECONDS=REFRESH,
                             FERRY_EXPORT_WORKERS=0)  # fmt: skip
    app = App(settings)
    server = Server(app, plugins.names("ferry.services"))
    port = server.start()
    w = World(app, port)
    time.sleep(REFRESH * 2)  # the revocation is known everywhere by now
    try:
        yield w
    finally:
        server.stop(grace=0, deregister_wait=0)
        app.close()


def _call(
    world: World,
    method: str,
    token: str | None,
    scheme: str = "Bearer",
    school: str = "",
    **fields: Any,
) -> grpc.StatusCode:
    pool = descriptor_pool.Default()
    desc = pool.FindMethodByName(method.lstrip("/").replace("/", "."))
    req_cls: Any = message_factory.GetMessageClass(desc.input_type)
    resp_cls: Any = message_factory.GetMessageClass(desc.output_type)
    md = [("authorization", f"{scheme} {token}")] if token else []
    md += [("x-ferry-school", school)] if school else []
    kw = {"request_serializer": req_cls.SerializeToString,
          "response_deserializer": resp_cls.FromString}  # fmt: skip
    with grpc.insecure_channel(f"127.0.0.1:{world.port}") as ch:
        try:
            if desc.client_streaming and desc.server_streaming:
                for _ in ch.stream_stream(method, **kw)(iter([req_cls(**fields)]), metadata=md,
                                                        timeout=5):  # fmt: skip
                    break
            elif desc.client_streaming:
                ch.stream_unary(method, **kw)(iter([req_cls(**fields)]), metadata=md, timeout=5)
            elif desc.server_streaming:
                for _ in ch.unary_stream(method, **kw)(req_cls(**fields), metadata=md, timeout=5):
                    break
            else:
                ch.unary_unary(method, **kw)(req_cls(**fields), metadata=md, timeout=5)
        except grpc.RpcError as e:
            world.last_details = e.details()  # type: ignore[attr-defined]
            return e.code()  # type: ignore[attr-defined,no-any-return]
    world.last_details = ""
    return grpc.StatusCode.OK


def test_refusals_are_counted_by_reason(world: World) -> None:
    from prometheus_client import REGISTRY

    def count(reason: str) -> float:
        return REGISTRY.get_sample_value("ferry_auth_refused_total", {"reason": reason}) or 0.0

    method = "/ferry.v1.ExportService/CleanupExports"
    for caller, reason in [
        ("no token", "missing"),
        ("alg none", "invalid"),
        ("expired", "expired"),
        ("revoked", "revoked"),
        ("viewer", "role"),
    ]:
        before = count(reason)
        _call(world, method, world.tokens[caller])
        assert count(reason) == before + 1, caller  # fmt: skip


def test_a_link_token_opens_the_one_call_it_names(world: World) -> None:
    """The link's own call, for its own job, gets past auth (NOT_FOUND: no such job); the
    same call for another job, or as a bearer token, does not."""
    method, token = "/ferry.v1.ExportService/DownloadExport", world.link.token
    assert _call(world, method, token, "Link", job_id=LINK_JOB) == grpc.StatusCode.NOT_FOUND
    other = _call(world, method, token, "Link", job_id="another-job")
    assert other == grpc.StatusCode.PERMISSION_DENIED, world.last_details
    bearer = _call(world, method, token, "Bearer", job_id=LINK_JOB)
    assert bearer == grpc.StatusCode.UNAUTHENTICATED and "wrong audience" in world.last_details


def test_every_service_rpc_is_covered() -> None:
    assert len(METHODS) >= 20
    assert "/ferry.v1.AuthService/Login" in METHODS
    assert "/ferry.v1.ExportService/ListSemesters" in METHODS


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("method", METHODS)
def test_every_rpc_x_every_caller(world: World, method: str, caller: str) -> None:
    min_role = lookup(method).min_role
    scheme = "Link" if caller == "link token as a link" else "Bearer"
    school = "default" if caller == "platform admin naming default" else ""
    code = _call(world, method, world.tokens[caller], scheme, school)
    details = world.last_details
    refused = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
    if min_role == 0:
        assert code not in refused, f"{method} is open, yet {caller} got {code}: {details}"
        return
    if caller == "platform admin naming no school" and method not in UNSCHOOLED:
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
        assert "x-ferry-school" in details, details
        return
    if caller.startswith("platform admin"):
        assert code not in refused, f"{caller} may call {method}, got {code}: {details}"
        return
    expected = CALLERS[caller]
    if scheme == "Link":
        assert code == grpc.StatusCode.PERMISSION_DENIED, (code, details)
        assert expected is not None and expected in details, details
    elif expected is not None:
        assert code == grpc.StatusCode.UNAUTHENTICATED, (code, details)
        assert expected in details, details
    elif parse_role(caller) < min_role:
        assert code == grpc.StatusCode.PERMISSION_DENIED, (code, details)
        assert f"{lookup(method).name} needs role" in details
    else:
        assert code not in refused, f"{caller} may call {method}, got {code}: {details}"
