"""Signing in through the gateway: Login behind limits that hold across replicas, the
client address from X-Forwarded-For only through trusted proxies, oversized input refused
before hashing, and the same time for unknown users as for wrong passwords."""

from __future__ import annotations

import statistics
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from starlette.requests import Request

from ferry.app import App
from ferry.users import create_user
from gateway.app import create_app
from gateway.auth import client_address, parse_networks
from gateway.calls import ServiceChannels
from tests.conftest import REDIS, _redis_reachable, running

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

LOGIN = "/api/v1/auth/login"


def fresh_address() -> str:
    """An address of the test's own (Redis keeps counts across tests for the window)."""
    n = uuid.uuid4().int
    return f"198.18.{n % 250}.{(n >> 8) % 250 + 1}"


@contextmanager
def replicas(app: App, *others: App, peer: str = "") -> Iterator[list[TestClient]]:
    """One auth+export server and a gateway replica for `app` and each of `others`, all
    seeing calls from `peer` (a fresh address by default)."""
    client = (peer or fresh_address(), 50000)
    with running(app, ["auth", "export"]) as server, ExitStack() as stack:
        target = f"127.0.0.1:{server.port}"
        yield [
            stack.enter_context(TestClient(create_app(a, ServiceChannels(a.settings.client,
                                                                          target)), client=client))
            for a in (app, *others)
        ]  # fmt: skip


def redis_url() -> str:
    if err := _redis_reachable():
        pytest.skip(f"Redis at {REDIS} is unreachable: {err}")
    return f"redis://{REDIS[0]}:{REDIS[1]}/0"


@pytest.mark.redis
def test_the_username_limit_holds_across_two_gateway_replicas(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    env = {"FERRY_REDIS_URL": redis_url(), "FERRY_GATEWAY_LOGIN_ATTEMPTS": 4}
    a, b = make_app(empty_url, **env), make_app(empty_url, **env)
    name = f"u{uuid.uuid4().hex[:10]}"  # Redis outlives the test: a name of its own
    create_user(a.engine, name, "the right password", "viewer")
    with replicas(a, b) as (g1, g2):
        bad = {"username": name, "password": "a wrong guess"}
        codes = [g.post(LOGIN, json=bad).status_code for g in (g1, g2, g1, g2, g1)]
        assert codes == [401, 401, 401, 401, 429]  # 4 in all, not 4 per replica
        right = g2.post(LOGIN, json={**bad, "password": "the right password"})
        assert right.status_code == 429 and int(right.headers["Retry-After"]) >= 1


@pytest.mark.redis
def test_a_locked_username_does_not_lock_others_and_the_address_has_its_own_limit(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    env = {"FERRY_REDIS_URL": redis_url(), "FERRY_GATEWAY_LOGIN_ATTEMPTS": 2,
           "FERRY_GATEWAY_LOGIN_ATTEMPTS_PER_ADDRESS": 5,
           "FERRY_GATEWAY_TRUSTED_PROXIES": "[testclient]"}  # fmt: skip
    with pytest.raises(Exception, match="not an address or CIDR"):
        make_app(empty_url, **env)
    env["FERRY_GATEWAY_TRUSTED_PROXIES"] = "[10.0.0.0/8]"  # the ingress
    app = make_app(empty_url, **env)
    users = [f"u{uuid.uuid4().hex[:10]}" for _ in range(5)]
    school, home = fresh_address(), fresh_address()
    with replicas(app, peer="10.1.1.1") as (g,):

        def login(user: str, address: str) -> int:
            body = {"username": user, "password": "a guess"}
            return g.post(LOGIN, json=body, headers={"X-Forwarded-For": address}).status_code

        assert [login(users[0], school) for _ in range(3)] == [401, 401, 429]
        # Another username from the same address still gets its tries, until the
        # address's own limit (5 attempts) is reached; other addresses are not affected.
        assert login(users[1], school) == 401
        assert login(users[2], school) == 401
        assert login(users[3], school) == 429
        assert login(users[4], home) == 401


def test_the_rpc_route_to_login_has_the_same_limits(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(empty_url, FERRY_GATEWAY_LOGIN_ATTEMPTS=2)
    with replicas(app) as (g,):
        bad = {"username": "whoever", "password": "a wrong guess"}
        codes = [g.post(path, json=bad).status_code
                 for path in ("/rpc/AuthService.Login", "/rpc/ferry.v1.AuthService.Login",
                              LOGIN)]  # fmt: skip
        assert codes == [401, 401, 429]


def test_redis_down_still_limits_per_process(empty_url: str, make_app: Callable[..., App]) -> None:
    app = make_app(empty_url, FERRY_REDIS_URL="redis://127.0.0.1:1/0",
                   FERRY_GATEWAY_LOGIN_ATTEMPTS=2)  # fmt: skip
    with replicas(app) as (g,):
        bad = {"username": "whoever", "password": "a wrong guess"}
        assert [g.post(LOGIN, json=bad).status_code for _ in range(3)] == [401, 401, 429]


def test_a_client_on_loopback_cannot_choose_its_address_with_forwarded_for(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    """Issue 23, item 5, through the real HTTP server (uvicorn) from loopback: with
    gateway.trusted_proxies empty, failed logins with a new X-Forwarded-For (and a new
    username) each time still meet the per-address limit; only when loopback is listed
    as a trusted proxy is the header believed. The HTTP server's own defaults (uvicorn
    trusts X-Forwarded-For from 127.0.0.1) decide nothing."""
    import httpx

    from gateway.server import GatewayServer

    def attempts(app: App, n: int) -> list[int]:
        with running(app, ["auth"]) as server:
            gw = GatewayServer(app, target=f"127.0.0.1:{server.port}", port=0)
            port = gw.start()
            try:
                return [
                    httpx.post(f"http://127.0.0.1:{port}{LOGIN}", timeout=10,
                               json={"username": f"u{i}", "password": "a wrong guess"},
                               headers={"X-Forwarded-For": fresh_address()}).status_code
                    for i in range(n)
                ]  # fmt: skip
            finally:
                gw.stop()

    env = {"FERRY_GATEWAY_LOGIN_ATTEMPTS_PER_ADDRESS": 5}
    untrusted = attempts(make_app(empty_url, **env), 8)
    assert untrusted == [401] * 5 + [429] * 3, untrusted
    trusted = attempts(make_app(empty_url, FERRY_GATEWAY_TRUSTED_PROXIES="[127.0.0.1]", **env), 8)
    assert trusted == [401] * 8, trusted


def _request(peer: str, xff: list[str]) -> Request:
    headers = [(b"x-forwarded-for", v.encode()) for v in xff]
    return Request({"type": "http", "headers": headers, "client": (peer, 1234)})


def test_forwarded_for_is_believed_only_through_trusted_proxies() -> None:
    ingress = parse_networks(["10.0.0.0/8", "fd00::/8"])
    # No trusted proxies: the header is ignored, whoever sends it.
    assert client_address(_request("203.0.113.9", ["1.2.3.4"]), []) == "203.0.113.9"
    # An untrusted peer cannot claim another address.
    assert client_address(_request("203.0.113.9", ["1.2.3.4"]), ingress) == "203.0.113.9"
    # Through the ingress: the entry it appended.
    assert client_address(_request("10.1.2.3", ["198.51.100.7"]), ingress) == "198.51.100.7"
    # A client-forged entry before a real one is not believed: walk right to left.
    forged = _request("10.1.2.3", ["6.6.6.6, 198.51.100.7"])
    assert client_address(forged, ingress) == "198.51.100.7"
    # Two trusted hops (two headers, or one list), then the client.
    chained = _request("10.0.0.1", ["198.51.100.7", "10.0.0.2"])
    assert client_address(chained, ingress) == "198.51.100.7"
    assert client_address(_request("10.0.0.1", ["garbage"]), ingress) == "10.0.0.1"
    assert client_address(_request("fd00::1", ["2001:db8::5"]), ingress) == "2001:db8::5"


def test_oversized_username_or_password_is_400_before_any_hashing(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(empty_url, FERRY_GATEWAY_LOGIN_ATTEMPTS=1000)
    create_user(app.engine, "maria", "correct horse battery", "viewer")
    with replicas(app) as (g,):
        started = time.perf_counter()
        g.post(LOGIN, json={"username": "maria", "password": "a wrong one"})
        one_scrypt = time.perf_counter() - started
        cases = [
            ({"username": "m" * 1025, "password": "x" * 8}, "username"),
            ({"username": "maria", "password": "p" * 1025}, "password"),
            ({"username": "maria", "password": "é" * 513}, "password"),  # 1026 bytes
        ]
        for body, field in cases:
            started = time.perf_counter()
            r = g.post(LOGIN, json=body)
            took = time.perf_counter() - started
            assert r.status_code == 400 and r.json()["details"][0]["field"] == field
            assert "1 KiB" in r.json()["message"]
            assert took < one_scrypt  # no scrypt ran


def test_an_unknown_user_takes_as_long_as_a_wrong_password(
    empty_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(empty_url, FERRY_GATEWAY_LOGIN_ATTEMPTS=1000,
                   FERRY_GATEWAY_LOGIN_ATTEMPTS_PER_ADDRESS=1000,
                   FERRY_AUTH_LOGIN_ATTEMPTS=1000)  # fmt: skip
    create_user(app.engine, "maria", "correct horse battery", "viewer")
    known: list[float] = []
    unknown: list[float] = []
    with replicas(app) as (g,):
        g.post(LOGIN, json={"username": "warm", "password": "up up up"})
        for i in range(20):  # interleaved, so load on the machine hits both alike
            for name, times in (("maria", known), (f"nobody{i}", unknown)):
                started = time.perf_counter()
                r = g.post(LOGIN, json={"username": name, "password": "not the password"})
                times.append(time.perf_counter() - started)
                assert r.status_code == 401
    a, b = statistics.median(known), statistics.median(unknown)
    assert abs(a - b) < 0.25 * max(a, b), (a, b)


def test_the_gateway_needs_no_database_and_no_private_key(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    """A gateway App whose database URL leads nowhere and which has only the public key
    set (no private key, no key creation): login and links still work, through Login and
    CreateLinkToken."""
    services = make_app(empty_url)
    create_user(services.engine, "maria", "correct horse battery", "operator")
    services.issuer()  # the auth service's keys exist
    public = tmp_path / "public-keys.json"
    assert public.exists()
    gw_app = make_app(
        "postgresql+psycopg://nobody@127.0.0.1:1/none",
        FERRY_AUTH_SIGNING_KEY_FILE=str(tmp_path / "gateway-has-no-key.pem"),
        FERRY_AUTH_KEY_SET_FILE=str(public),
        FERRY_AUTH_CREATE_KEYS="false",
    )
    with running(services, ["auth", "export"]) as server:
        channels = ServiceChannels(gw_app.settings.client, f"127.0.0.1:{server.port}")
        with TestClient(create_app(gw_app, channels), client=(fresh_address(), 1)) as g:
            r = g.post(LOGIN, json={"username": "maria", "password": "correct horse battery"})
            assert r.status_code == 200, r.text
            h = {"authorization": f"Bearer {r.json()['token']}"}
            assert g.get("/api/v1/auth/whoami", headers=h).json()["subject"] == "maria"
            assert g.get("/api/v1/sessions/semesters", headers=h).status_code == 200
    assert gw_app._engine is None  # never even built an engine
    assert not (tmp_path / "gateway-has-no-key.pem").exists()
