"""`ferry user …`, `ferry token …` and `ferry keys rotate` against a real auth service."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from ferry.app import App
from ferry.auth.keys import SigningKey
from ferry.cli.main import cli
from ferry.users import verify
from tests.conftest import running, token
from tests.integration.test_cli import env_for


def run(args: list[str], env: dict[str, str], stdin: str | None = None) -> tuple[int, str, str]:
    """(exit code, standard output, standard error) of one `ferry` command."""
    r = CliRunner().invoke(cli, args, env=env, input=stdin)
    return r.exit_code, r.stdout, r.stderr


def test_token_create_list_whoami_revoke(empty_url: str, make_app: Callable[..., App]) -> None:
    app = make_app(empty_url)
    with running(app) as srv:
        env = env_for(app, srv.port)
        code, out, err = run(["token", "create", "--role", "operator", "--ttl", "30d",
                              "--subject", "cron:nightly-students"], env)  # fmt: skip
        assert code == 0, out + err
        made = out.strip()
        principal = app.verifier().verify(made)
        assert principal.subject == "cron:nightly-students" and principal.jti in err
        code, out, _ = run(["token", "whoami"], {**env, "FERRY_TOKEN": made})
        assert code == 0 and out.startswith("cron:nightly-students (operator), school default")
        code, out, _ = run(["token", "list"], env)
        assert principal.jti in out and "cron:nightly-students" in out
        code, out, err = run(["token", "create", "--role", "admin", "--ttl", "91d"], env)
        assert code == 2 and "ttl_seconds" in err  # capped by auth.max_token_ttl_seconds
        code, out, err = run(["token", "create", "--role", "admin"], {**env, "FERRY_TOKEN": made})
        assert code == 4 and "PERMISSION_DENIED" in err  # an operator cannot mint an admin
        code, out, _ = run(["token", "revoke", principal.jti], env)
        assert code == 0 and "revoked" in out
        code, out, err = run(["token", "revoke", "no-such-id"], env)
        assert code == 3 and "NOT_FOUND" in err
        code, out, err = run(["token", "create", "--role", "operator", "--ttl", "soon"], env)
        assert code == 2 and "not a duration" in err


def test_users_through_the_service(empty_url: str, make_app: Callable[..., App]) -> None:
    app = make_app(empty_url)
    with running(app) as srv:
        env = env_for(app, srv.port)
        code, out, _ = run(["user", "add", "sofia", "--role", "operator"], env)
        assert code == 0 and "password: " in out
        generated = out.rsplit("password: ", 1)[1].strip()
        assert verify(app.engine, "sofia", generated) is not None
        code, out, _ = run(["user", "add", "sofia", "--if-missing"], env)
        assert code == 0 and "exists; not changed" in out
        code, out, err = run(["user", "add", "sofia"], env)
        assert code == 1 and "ALREADY_EXISTS" in err
        code, out, _ = run(["user", "passwd", "sofia", "--password-stdin"], env, "a new secret\n")
        assert code == 0 and verify(app.engine, "sofia", "a new secret") is not None
        code, out, _ = run(["user", "disable", "sofia"], env)
        assert code == 0 and "disabled sofia" in out
        code, out, _ = run(["user", "list"], env)
        assert "sofia" in out and "operator" in out and "disabled" in out
        assert out.splitlines()[0].split()[-1] == "school" and "default" in out
        viewer = {**env, "FERRY_TOKEN": token(app, "viewer")}
        code, out, err = run(["user", "list"], viewer)
        assert code == 4 and "PERMISSION_DENIED" in err


def test_without_a_private_key_the_cli_needs_ferry_token(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    """A CronJob: the key set only, no private key, no key creation."""
    app = make_app(empty_url)
    with running(app) as srv:
        env = env_for(app, srv.port, FERRY_AUTH_SIGNING_KEY_FILE=str(tmp_path / "none.pem"),
                      FERRY_AUTH_CREATE_KEYS="false")  # fmt: skip
        code, _out, err = run(["token", "whoami"], env)
        assert code == 4 and "UNAUTHENTICATED" in err
        assert not (tmp_path / "none.pem").exists()


def test_keys_rotate_keeps_old_tokens_valid(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    app = make_app(empty_url)
    old = token(app, "viewer")
    before = SigningKey.load(tmp_path / "signing.key").kid
    code, out, _ = run(["keys", "rotate"], env_for(app))
    assert code == 0, out
    after = SigningKey.load(tmp_path / "signing.key").kid
    assert after != before and after in out
    kids = [k["kid"] for k in json.loads((tmp_path / "public-keys.json").read_text())["keys"]]
    assert kids == [before, after]
    with running(app) as srv:
        env = env_for(app, srv.port)
        code, out, _ = run(["token", "whoami"], {**env, "FERRY_TOKEN": old})
        assert code == 0, out
        fresh = app.issuer().issue("x", 1, __import__("datetime").timedelta(minutes=1))
        assert fresh.token and app.verifier().verify(fresh.token).subject == "x"
        assert __import__("jwt").get_unverified_header(fresh.token)["kid"] == after


def test_token_create_local_needs_no_server_and_is_recorded(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    from ferry.auth import store

    app = make_app(empty_url)
    env = env_for(app)  # no server runs
    code, out, err = run(["token", "create", "--local", "--role", "admin", "--subject",
                          "bootstrap"], env)  # fmt: skip
    assert code == 0, err
    principal = app.verifier().verify(out.strip())
    info = store.get(app.engine, principal.jti)
    assert info is not None and info.subject == "bootstrap" and info.role == "admin"
    code, _, err = run(["token", "create", "--local", "--role", "admin", "--ttl", "91d"], env)
    assert code == 2 and "--ttl" in err and "max_token_ttl_seconds" in err
    no_key = {**env, "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "none.pem"),
              "FERRY_AUTH_CREATE_KEYS": "false"}  # fmt: skip
    code, _, err = run(["token", "create", "--local", "--role", "viewer"], no_key)
    assert code == 1 and "--local needs the private key" in err
