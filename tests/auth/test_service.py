"""AuthService on a real server, on each database backend: logins, tokens, users, revocation."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import jwt
import pytest

from ferry import users
from ferry.app import App
from ferry.v1 import auth_pb2 as pb
from ferry.v1 import auth_pb2_grpc, export_pb2, export_pb2_grpc, options_pb2
from tests.conftest import REDIS, _redis_reachable, auth, running

REFRESH = 0.5


@contextmanager
def stubs(app: App, services: list[str] | None = None) -> Iterator[tuple[object, object]]:
    with running(app, services) as server, grpc.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield auth_pb2_grpc.AuthServiceStub(ch), export_pb2_grpc.ExportServiceStub(ch)


@pytest.fixture
def app(empty_url: str, make_app: Callable[..., App]) -> App:
    a = make_app(empty_url, FERRY_AUTH_REVOCATION_REFRESH_SECONDS=REFRESH)
    users.create_user(a.engine, "ada", "correct horse", "operator")
    return a


def code_of(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call()
    return e.value.code(), e.value.details()  # type: ignore[attr-defined]


def md(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_login_then_whoami_and_bad_logins_say_nothing_about_who_exists(app: App) -> None:
    with stubs(app) as (a, _):
        got = a.Login(pb.LoginRequest(username="ada", password="correct horse"), timeout=10)
        assert got.role == options_pb2.ROLE_OPERATOR and got.subject == "ada"
        me = a.WhoAmI(pb.WhoAmIRequest(), metadata=md(got.token), timeout=10)
        assert (me.subject, me.role) == ("ada", options_pb2.ROLE_OPERATOR) and me.jti
        wrong = code_of(lambda: a.Login(pb.LoginRequest(username="ada", password="nope nope"),
                                        timeout=10))  # fmt: skip
        nobody = code_of(lambda: a.Login(pb.LoginRequest(username="bob", password="nope nope"),
                                         timeout=10))  # fmt: skip
        assert wrong == nobody == (grpc.StatusCode.UNAUTHENTICATED, "wrong username or password")
        long = code_of(lambda: a.Login(pb.LoginRequest(username="ada", password="x" * 1025),
                                       timeout=10))  # fmt: skip
        assert long == (grpc.StatusCode.INVALID_ARGUMENT, "password is longer than 1 KiB")


def test_create_token_caps_the_ttl_and_names_bad_fields(app: App) -> None:
    with stubs(app) as (a, e):
        admin = auth(app, "admin")
        ninety_one_days = 91 * 86400
        for req, field in [
            (pb.CreateTokenRequest(role=2, subject="cron:x", ttl_seconds=ninety_one_days),
             "ttl_seconds"),
            (pb.CreateTokenRequest(role=0, subject="cron:x"), "role"),
            (pb.CreateTokenRequest(role=2, subject=" "), "subject"),
            (pb.CreateTokenRequest(role=2, subject="x", ttl_seconds=-1), "ttl_seconds"),
        ]:  # fmt: skip
            code, details = code_of(lambda r=req: a.CreateToken(r, metadata=admin, timeout=10))
            assert code == grpc.StatusCode.INVALID_ARGUMENT and field in details
        assert a.ListTokens(pb.ListTokensRequest(), metadata=admin, timeout=10).tokens == []
        made = a.CreateToken(pb.CreateTokenRequest(role=2, subject="cron:nightly",
                                                   ttl_seconds=90 * 86400),
                             metadata=admin, timeout=10)  # fmt: skip
        assert made.info.issued_by == "tester" and made.info.kind == "api"
        assert not made.info.HasField("last_used_at")
        e.ListSemesters(export_pb2.ListSemestersRequest(), metadata=md(made.token), timeout=10)
        time.sleep(REFRESH + 0.1)
        # The next call's refresh writes the last use, in the background.
        e.ListSemesters(export_pb2.ListSemestersRequest(), metadata=md(made.token), timeout=10)
        deadline = time.monotonic() + 5
        while True:
            listed = a.ListTokens(pb.ListTokensRequest(subject="cron:nightly"), metadata=admin,
                                  timeout=10).tokens  # fmt: skip
            if listed[0].HasField("last_used_at") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert [t.jti for t in listed] == [made.info.jti]
        assert listed[0].HasField("last_used_at") and listed[0].role == options_pb2.ROLE_OPERATOR
        denied = code_of(lambda: a.CreateToken(pb.CreateTokenRequest(role=3, subject="me"),
                                               metadata=md(made.token), timeout=10))  # fmt: skip
        assert denied[0] == grpc.StatusCode.PERMISSION_DENIED


def _revoked_everywhere_within_the_bound(app: App, other: App) -> None:
    """Revoke through one server; a second server (another process's view) refuses the
    token within auth.revocation_refresh_seconds."""
    with stubs(app) as (a, e1), stubs(other, ["export"]) as (_, e2):
        admin = auth(app, "admin")
        made = a.CreateToken(pb.CreateTokenRequest(role=1, subject="viewer:x"), metadata=admin,
                             timeout=10)  # fmt: skip
        req = export_pb2.ListSemestersRequest()
        for e in (e1, e2):
            e.ListSemesters(req, metadata=md(made.token), timeout=10)
        revoked = a.RevokeToken(pb.RevokeTokenRequest(jti=made.info.jti), metadata=admin,
                                timeout=10)  # fmt: skip
        assert revoked.info.HasField("revoked_at")
        started = time.monotonic()
        for e in (e1, e2):
            while True:
                try:
                    e.ListSemesters(req, metadata=md(made.token), timeout=10)
                except grpc.RpcError as err:
                    assert err.code() == grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
                    assert err.details() == "token revoked"  # type: ignore[attr-defined]
                    break
                assert time.monotonic() - started < REFRESH + 1.0, "still accepted"
                time.sleep(0.05)
        again = code_of(lambda: a.RevokeToken(pb.RevokeTokenRequest(jti=made.info.jti),
                                              metadata=admin, timeout=10))  # fmt: skip
        assert again[0] == grpc.StatusCode.FAILED_PRECONDITION
        unknown = code_of(lambda: a.RevokeToken(pb.RevokeTokenRequest(jti="nope"),
                                                metadata=admin, timeout=10))  # fmt: skip
        assert unknown[0] == grpc.StatusCode.NOT_FOUND


def test_a_revoked_token_is_refused_everywhere_within_the_refresh(
    app: App, empty_url: str, make_app: Callable[..., App]
) -> None:
    other = make_app(empty_url, FERRY_AUTH_REVOCATION_REFRESH_SECONDS=REFRESH)
    _revoked_everywhere_within_the_bound(app, other)


@pytest.mark.redis
def test_revocation_through_redis_too(
    app: App, empty_url: str, make_app: Callable[..., App]
) -> None:
    if err := _redis_reachable():
        pytest.skip(f"Redis at {REDIS} is unreachable: {err}")
    url = f"redis://{REDIS[0]}:{REDIS[1]}/0"
    first = make_app(empty_url, FERRY_AUTH_REVOCATION_REFRESH_SECONDS=REFRESH, FERRY_REDIS_URL=url)
    other = make_app(empty_url, FERRY_AUTH_REVOCATION_REFRESH_SECONDS=REFRESH, FERRY_REDIS_URL=url)
    _revoked_everywhere_within_the_bound(first, other)


def test_users_create_set_password_disable_list(app: App) -> None:
    with stubs(app) as (a, _):
        admin = auth(app, "admin")
        made = a.CreateUser(pb.CreateUserRequest(username="cy", role=1), metadata=admin,
                            timeout=10)  # fmt: skip
        assert made.user.role == options_pb2.ROLE_VIEWER and len(made.generated_password) >= 12
        dup = code_of(
            lambda: a.CreateUser(
                pb.CreateUserRequest(username="cy", role=1, password="whatever1"),
                metadata=admin,
                timeout=10,
            )
        )
        assert dup[0] == grpc.StatusCode.ALREADY_EXISTS
        norole = code_of(lambda: a.CreateUser(pb.CreateUserRequest(username="dd"),
                                              metadata=admin, timeout=10))  # fmt: skip
        assert norole[0] == grpc.StatusCode.INVALID_ARGUMENT and "role" in norole[1]
        a.SetPassword(pb.SetPasswordRequest(username="cy", password="new password"),
                      metadata=admin, timeout=10)  # fmt: skip
        session = a.Login(pb.LoginRequest(username="cy", password="new password"), timeout=10)
        missing = code_of(lambda: a.SetPassword(pb.SetPasswordRequest(username="zz"),
                                                metadata=admin, timeout=10))  # fmt: skip
        assert missing[0] == grpc.StatusCode.NOT_FOUND
        off = a.DisableUser(pb.DisableUserRequest(username="cy"), metadata=admin, timeout=10)
        assert off.user.disabled and off.revoked_tokens == 1
        refused = code_of(
            lambda: a.Login(pb.LoginRequest(username="cy", password="new password"), timeout=10)
        )
        assert refused[0] == grpc.StatusCode.UNAUTHENTICATED
        time.sleep(REFRESH + 0.1)
        gone = code_of(lambda: a.WhoAmI(pb.WhoAmIRequest(), metadata=md(session.token),
                                        timeout=10))  # fmt: skip
        assert gone == (grpc.StatusCode.UNAUTHENTICATED, "token revoked")
        listed = a.ListUsers(pb.ListUsersRequest(), metadata=admin, timeout=10).users
        assert [(u.username, u.disabled) for u in listed] == [("ada", False), ("cy", True)]


def _link_md(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Link {token}")]


def test_a_link_token_is_a_capability_for_one_call_not_a_login(app: App) -> None:
    """A viewer's link token (issue 23, item 1): not a bearer token anywhere, opens only the
    one call its path names with that path's job id, mints nothing, is listed with its
    user's tokens, revocable by id and revoked when its user is disabled."""
    users.create_user(app.engine, "vic", "viewer password", "viewer")
    path = "/api/v1/exports/job-1/download"
    with stubs(app) as (a, e):
        vic = md(a.Login(pb.LoginRequest(username="vic", password="viewer password"),
                         timeout=10).token)  # fmt: skip
        got = a.CreateLinkToken(pb.CreateLinkTokenRequest(path=path, ttl_seconds=8 * 86400),
                                metadata=vic, timeout=10)  # fmt: skip
        assert got.info.kind == "link" and got.info.subject == "vic" and got.info.jti
        # Its own audience: no bearer check accepts it, on any RPC.
        claims = jwt.decode(got.token, options={"verify_signature": False})
        assert claims["aud"] != app.settings.auth.audience and claims["lnk"] == path
        assert (claims["mth"], claims["rpc"]) == ("GET", "/ferry.v1.ExportService/DownloadExport")
        for call in (
            lambda m: a.WhoAmI(pb.WhoAmIRequest(), metadata=m, timeout=10),
            lambda m: e.ListSemesters(export_pb2.ListSemestersRequest(), metadata=m, timeout=10),
            lambda m: e.GetExportJob(export_pb2.GetExportJobRequest(job_id="job-1"), metadata=m,
                                     timeout=10),
            lambda m: a.CreateLinkToken(pb.CreateLinkTokenRequest(path=path), metadata=m,
                                        timeout=10),
            lambda m: list(e.DownloadExport(export_pb2.DownloadExportRequest(job_id="job-1"),
                                            metadata=m, timeout=10)),
        ):  # fmt: skip
            code, details = code_of(lambda c=call: c(md(got.token)))
            assert code == grpc.StatusCode.UNAUTHENTICATED and "wrong audience" in details
        # As a link: only the call it names, only for its job.
        for call in (
            lambda m: a.WhoAmI(pb.WhoAmIRequest(), metadata=m, timeout=10),
            lambda m: e.GetExportJob(export_pb2.GetExportJobRequest(job_id="job-1"), metadata=m,
                                     timeout=10),
            lambda m: a.CreateLinkToken(pb.CreateLinkTokenRequest(path=path), metadata=m,
                                        timeout=10),
            lambda m: a.CreateToken(pb.CreateTokenRequest(role=1, subject="x"), metadata=m,
                                    timeout=10),
            lambda m: list(e.DownloadExport(export_pb2.DownloadExportRequest(job_id="job-2"),
                                            metadata=m, timeout=10)),
            lambda m: list(e.WatchExportJob(export_pb2.WatchExportJobRequest(job_id="job-1"),
                                            metadata=m, timeout=10)),
        ):  # fmt: skip
            code, details = code_of(lambda c=call: c(_link_md(got.token)))
            assert code == grpc.StatusCode.PERMISSION_DENIED and "link token" in details, details
        named = export_pb2.DownloadExportRequest(job_id="job-1")
        code, _ = code_of(lambda: list(e.DownloadExport(named, metadata=_link_md(got.token),
                                                        timeout=10)))  # fmt: skip
        assert code == grpc.StatusCode.NOT_FOUND  # past auth: there is no such job
        # Listed with its user's tokens, and revocable by id.
        admin = auth(app, "admin")
        listed = a.ListTokens(pb.ListTokensRequest(subject="vic"), metadata=admin,
                              timeout=10).tokens  # fmt: skip
        assert got.info.jti in [t.jti for t in listed]
        a.RevokeToken(pb.RevokeTokenRequest(jti=got.info.jti), metadata=admin, timeout=10)
        time.sleep(REFRESH + 0.2)
        code, details = code_of(lambda: list(e.DownloadExport(named, metadata=_link_md(got.token),
                                                              timeout=10)))  # fmt: skip
        assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "token revoked")
        # Revoked with its user, and none is made for a disabled user.
        second = a.CreateLinkToken(pb.CreateLinkTokenRequest(path=path), metadata=vic, timeout=10)
        off = a.DisableUser(pb.DisableUserRequest(username="vic"), metadata=admin, timeout=10)
        assert off.revoked_tokens == 2  # the session and the second link
        time.sleep(REFRESH + 0.2)
        code, details = code_of(lambda: list(e.DownloadExport(
            named, metadata=_link_md(second.token), timeout=10)))  # fmt: skip
        assert (code, details) == (grpc.StatusCode.UNAUTHENTICATED, "token revoked")
        code, details = code_of(
            lambda: a.CreateLinkToken(
                pb.CreateLinkTokenRequest(path=path, subject="vic"), metadata=admin, timeout=10
            )
        )
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "disabled" in details


def test_link_tokens_open_only_download_and_event_routes(app: App) -> None:
    users.create_user(app.engine, "vic", "viewer password", "viewer")
    with stubs(app) as (a, _):
        viewer = auth(app, "viewer")
        for path in ("/etc/passwd", "/api/v1/auth/whoami", "/api/v1/exports/job-1",
                     "/api/v1/auth/links", "/api/v1/exports/job-1/download?x=1",
                     "/api/v1/exports/a\x00b/download", "/api/v1/exports//download"):  # fmt: skip
            code, details = code_of(
                lambda p=path: a.CreateLinkToken(
                    pb.CreateLinkTokenRequest(path=p), metadata=viewer, timeout=10
                )
            )
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "path" in details, path
        events = a.CreateLinkToken(pb.CreateLinkTokenRequest(path="/api/v1/exports/j/events"),
                                   metadata=viewer, timeout=10)  # fmt: skip
        claims = jwt.decode(events.token, options={"verify_signature": False})
        assert claims["rpc"] == "/ferry.v1.ExportService/WatchExportJob"
        assert claims["arg"] == {"job_id": "j"} and claims["role"] == "viewer"
        # Only an admin names another user as the link's owner.
        code, _ = code_of(
            lambda: a.CreateLinkToken(
                pb.CreateLinkTokenRequest(path="/api/v1/exports/j/events", subject="vic"),
                metadata=viewer,
                timeout=10,
            )
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
        too_long = pb.CreateLinkTokenRequest(path="/api/v1/exports/j/events",
                                             ttl_seconds=8 * 86400 + 1)  # fmt: skip
        code, details = code_of(lambda: a.CreateLinkToken(too_long, metadata=viewer, timeout=10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "ttl_seconds" in details


def test_login_over_grpc_is_limited_per_username_too(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    """Callers that reach gRPC without the gateway meet auth.login_attempts."""
    app = make_app(empty_url, FERRY_AUTH_LOGIN_ATTEMPTS=3)
    users.create_user(app.engine, "ada", "correct horse", "operator")
    with stubs(app, ["auth"]) as (a, _):
        wrong = pb.LoginRequest(username="ada", password="wrong guess")
        codes = [code_of(lambda: a.Login(wrong, timeout=10))[0] for _ in range(3)]
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 3
        right = pb.LoginRequest(username="ADA ", password="correct horse")
        code, details = code_of(lambda: a.Login(right, timeout=10))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "too many" in details
        other = pb.LoginRequest(username="bob", password="whatever1")
        assert code_of(lambda: a.Login(other, timeout=10))[0] == grpc.StatusCode.UNAUTHENTICATED
