"""The `ferry` command against real servers: tokens, listing, errors, serve + SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ferry.app import App
from ferry.auth.keys import KeySet, SigningKey
from ferry.cli.main import cli
from tests.conftest import running, token

ROOT = Path(__file__).resolve().parents[2]


def env_for(app: App, port: int = 0, **extra: str) -> dict[str, str]:
    s = app.settings
    env = {
        "FERRY_DATABASE_URL": s.database.url,
        "FERRY_AUTH_SIGNING_KEY_FILE": s.auth.signing_key_file,
        "FERRY_TARGET": f"127.0.0.1:{port}",
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
    }
    env.update(extra)
    return env


def test_export_semesters_signs_its_own_token_with_the_local_key(
    seeded_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(seeded_url)
    with running(app) as srv:
        result = CliRunner().invoke(cli, ["export", "semesters"], env=env_for(app, srv.port))
    assert result.exit_code == 0, result.output
    assert re.search(r"2026-fall\s+\d+\s+\d+\s+\d+", result.output)


def test_without_the_key_the_cli_uses_ferry_token(
    seeded_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    app = make_app(seeded_url)
    with running(app) as srv:
        no_key = env_for(app, srv.port, FERRY_AUTH_SIGNING_KEY_FILE=str(tmp_path / "absent.key"))
        denied = CliRunner().invoke(cli, ["export", "semesters"], env=no_key)
        assert denied.exit_code == 4 and "UNAUTHENTICATED" in denied.output
        allowed = CliRunner().invoke(
            cli, ["export", "semesters"], env={**no_key, "FERRY_TOKEN": token(app, "viewer")}
        )
        assert allowed.exit_code == 0, allowed.output


def test_bad_config_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "ferry.yaml"
    bad.write_text("server:\n  filtres: []\n")
    result = CliRunner().invoke(cli, ["--config", str(bad), "export", "semesters"])
    assert result.exit_code == 1
    assert "server.filtres: unknown key" in result.output


def test_unreachable_server_exits_nonzero_with_unavailable(tmp_path: Path) -> None:
    env = {
        "FERRY_TARGET": "127.0.0.1:9",
        "FERRY_CLIENT_TIMEOUT_SECONDS": "2",
        "FERRY_CLIENT_MAX_ATTEMPTS": "1",
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "k"),
        "FERRY_TOKEN": "x",
    }
    result = CliRunner().invoke(cli, ["export", "semesters"], env=env)
    assert result.exit_code == 5 and "UNAVAILABLE" in result.output


@pytest.mark.slow
def test_serve_migrates_sqlite_serves_and_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        "FERRY_DATABASE_URL": f"sqlite:///{tmp_path / 'ferry.db'}",
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "signing.key"),
        "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
        "FERRY_METRICS_PORT": "0",
        "FERRY_GATEWAY_PORT": "0",
        "FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS": "0",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferry.cli.main", "serve"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 90
        lines = []
        assert proc.stderr is not None
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            m = re.search(r"gRPC\s+127\.0\.0\.1:(\d+)", line)
            port = int(m.group(1)) if m else None
        assert port, "".join(lines)
        key = SigningKey.load(tmp_path / "signing.key")  # the server made its keys on start
        assert KeySet.load(tmp_path / "public-keys.json").get(key.kid) is not None
        env2 = {
            "FERRY_TARGET": f"127.0.0.1:{port}",
            "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "signing.key"),
        }
        listed = CliRunner().invoke(cli, ["export", "semesters"], env=env2)
        assert listed.exit_code == 0 and "no semesters yet" in listed.output
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert '"event": "stopped"' in err
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("args", [["serve", "nope"]])
def test_serve_unknown_service_names_the_known(args: list[str], tmp_path: Path) -> None:
    env = {
        "FERRY_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "k"),
        "FERRY_METRICS_ENABLED": "false",
    }
    result = CliRunner().invoke(cli, args, env=env)
    assert result.exit_code != 0
    assert "unknown service 'nope'; known: auth, export" in str(result.exception) + result.output
