"""`ferry serve` starts the gateway with the services and stops it on SIGTERM; `ferry user
add` creates accounts; the page's translations are complete."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from ferry.app import App
from ferry.cli.accounts import DEMO_PASSWORD
from ferry.cli.main import cli
from ferry.db.engine import make_engine
from ferry.users import verify
from tests.conftest import running

pytestmark = pytest.mark.slow  # starts and kills real server processes

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "gateway" / "static"


def _env(tmp_path: Path, url: str) -> dict[str, str]:
    return {
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        "FERRY_DATABASE_URL": url,
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "signing.key"),
    }


def test_user_add_generates_reads_stdin_and_is_idempotent(
    tmp_path: Path, empty_url: str, make_app: Callable[..., App]
) -> None:
    """`ferry user add` calls the auth service; `--demo` writes the database directly."""
    server = ExitStack()
    srv = server.enter_context(running(make_app(empty_url)))
    env = {**_env(tmp_path, empty_url), "FERRY_TARGET": f"127.0.0.1:{srv.port}"}
    runner = CliRunner()
    made = runner.invoke(cli, ["user", "add", "anna", "--role", "admin"], env=env)
    assert made.exit_code == 0, made.output
    password = made.output.rsplit("password: ", 1)[1].strip()
    again = runner.invoke(cli, ["user", "add", "anna"], env=env)
    assert again.exit_code != 0 and "already exists" in again.output
    same = runner.invoke(cli, ["user", "add", "anna", "--if-missing"], env=env)
    assert same.exit_code == 0 and "not changed" in same.output
    piped = runner.invoke(cli, ["user", "add", "kostas", "--password-stdin"],
                          input="from standard input\n", env=env)  # fmt: skip
    assert piped.exit_code == 0 and "from standard input" not in piped.output
    engine = make_engine(empty_url)
    try:
        account = verify(engine, "anna", password)
        assert account is not None and account.role == "admin"
        assert verify(engine, "kostas", "from standard input") is not None
    finally:
        engine.dispose()
    server.close()  # `make run` adds its demo admin before anything serves
    demo = runner.invoke(cli, ["user", "add", "demo", "--role", "admin", "--demo"], env=env)
    assert demo.exit_code == 0
    assert (DEMO_PASSWORD in demo.output) == empty_url.startswith("sqlite")


def test_serve_starts_the_gateway_and_stops_it_on_sigterm(tmp_path: Path) -> None:
    env = {
        **os.environ,
        **_env(tmp_path, f"sqlite:///{tmp_path / 'ferry.db'}"),
        "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
        "FERRY_METRICS_PORT": "0",
        "FERRY_GATEWAY_PORT": "0",
        "FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS": "0",
    }
    proc = subprocess.Popen([sys.executable, "-m", "ferry.cli.main", "serve"], env=env,
                            cwd=tmp_path, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        url, lines = None, []
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            m = re.search(r"web\s+(http://127\.0\.0\.1:\d+/)", line)
            url = m.group(1) if m else None
        assert url, "".join(lines)
        page = httpx.get(url)
        assert page.status_code == 200 and "Ferry Export Center" in page.text
        assert httpx.get(url + "readyz").status_code == 200
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()


def test_every_page_string_is_translated_in_english_and_greek() -> None:
    en = json.loads((STATIC / "i18n" / "en.json").read_text(encoding="utf-8"))
    el = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))
    assert set(en) == set(el)
    assert all(el[k].strip() for k in el)
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    js = (STATIC / "app.js").read_text(encoding="utf-8")
    used = set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', html))
    used |= set(re.findall(r'\bt\("([A-Za-z_]+)"', js))
    used |= set(re.findall(r'\bsay\("([A-Za-z_]+)"', js))
    used |= {f"err_{c}" for c in re.findall(r'code: "([A-Z_]+)"', js)}
    missing = sorted(k for k in used if k not in en)
    assert not missing, missing
