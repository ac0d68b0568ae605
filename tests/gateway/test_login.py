"""Signing in: users in the database, a JWT the services accept, and a rate limit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ferry.errors import AlreadyExists, InvalidArgument
from ferry.users import create_user, verify

Gateway = Callable[..., Any]


def test_login_returns_a_token_the_services_accept(gateway: Gateway, empty_url: str) -> None:
    client, app = gateway(empty_url)
    create_user(app.engine, "maria", "correct horse battery", "operator")
    r = client.post("/api/v1/auth/login", json={"username": "maria",
                                                "password": "correct horse battery"})  # fmt: skip
    assert r.status_code == 200
    body = r.json()
    assert body["role"] == "operator" and body["expires_at"]
    h = {"authorization": f"Bearer {body['token']}"}
    assert client.get("/api/v1/sessions/semesters", headers=h).status_code == 200


def test_wrong_password_unknown_user_and_disabled_user_are_401(
    gateway: Gateway, empty_url: str
) -> None:
    client, app = gateway(empty_url)
    create_user(app.engine, "nikos", "a good password", "viewer")
    for username, password in [("nikos", "wrong password"), ("nobody", "a good password")]:
        r = client.post("/api/v1/auth/login", json={"username": username, "password": password})
        assert r.status_code == 401 and r.json()["message"] == "wrong username or password"
    r = client.post("/api/v1/auth/login", json={"username": "nikos"})
    assert r.status_code == 400 and r.json()["details"][0]["field"] == "password"


def test_login_is_rate_limited_per_address_and_username(gateway: Gateway, empty_url: str) -> None:
    client, app = gateway(empty_url, FERRY_GATEWAY_LOGIN_ATTEMPTS=3)
    create_user(app.engine, "eleni", "the right password", "viewer")
    bad = {"username": "eleni", "password": "guess guess"}
    codes = [client.post("/api/v1/auth/login", json=bad).status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    r = client.post("/api/v1/auth/login", json={**bad, "password": "the right password"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
    other = client.post("/api/v1/auth/login", json={"username": "someone", "password": "x" * 8})
    assert other.status_code == 401


def test_users_are_unique_and_passwords_are_checked(empty_url: str) -> None:
    from ferry.db.engine import make_engine

    engine = make_engine(empty_url)
    try:
        create_user(engine, "admin", "long enough", "admin")
        with pytest.raises(AlreadyExists):
            create_user(engine, "admin", "another one", "viewer")
        with pytest.raises(InvalidArgument):
            create_user(engine, "short", "2short", "viewer")
        with pytest.raises(InvalidArgument):
            create_user(engine, "who", "long enough", "superuser")
        assert verify(engine, "admin", "long enough") is not None
        assert verify(engine, "admin", "long enougH") is None
    finally:
        engine.dispose()
