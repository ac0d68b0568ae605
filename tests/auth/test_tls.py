"""TLS between processes, with certificates made here: server TLS, mutual TLS, the server's
name checked, and the gateway on HTTPS with HSTS. Plaintext clients, clients without a
certificate under mTLS, and clients trusting another CA are each refused."""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from click.testing import CliRunner

from ferry import config
from ferry.app import App
from ferry.cli.main import cli
from ferry.rpc import tls
from ferry.v1 import export_pb2, export_pb2_grpc
from tests.auth.certs import Ca
from tests.conftest import auth, running

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    ca, other = Ca(tmp_path, "ferry-ca"), Ca(tmp_path, "mallory-ca")
    server = ca.issue("server", server=True)
    client = ca.issue("client", server=False)
    rogue = other.issue("rogue", server=False)
    return {"ca": ca.path, "other_ca": other.path, "server_cert": server.cert,
            "server_key": server.key, "client_cert": client.cert, "client_key": client.key,
            "rogue_cert": rogue.cert, "rogue_key": rogue.key}  # fmt: skip


def client_settings(**env: str | Path) -> config.Settings:
    return config.load(ROOT / "ferry.yaml", {k: str(v) for k, v in env.items()})


def list_semesters(settings: config.Settings, target: str, app: App) -> grpc.StatusCode:
    with tls.channel(settings, target, []) as ch:
        try:
            export_pb2_grpc.ExportServiceStub(ch).ListSemesters(
                export_pb2.ListSemestersRequest(), metadata=auth(app, "viewer"), timeout=5
            )
        except grpc.RpcError as e:
            return e.code()  # type: ignore[attr-defined,no-any-return]
    return grpc.StatusCode.OK


def test_server_tls_refuses_plaintext_a_wrong_ca_and_a_wrong_name(
    pki: dict[str, Path], empty_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(empty_url, FERRY_TLS_SERVER_CERT_FILE=pki["server_cert"],
                   FERRY_TLS_SERVER_KEY_FILE=pki["server_key"])  # fmt: skip
    with running(app, ["export"]) as srv:
        good = client_settings(FERRY_TLS_CLIENT_CA_FILE=pki["ca"])
        assert list_semesters(good, f"127.0.0.1:{srv.port}", app) == grpc.StatusCode.OK
        assert list_semesters(good, f"localhost:{srv.port}", app) == grpc.StatusCode.OK
        plain = client_settings()
        assert list_semesters(plain, f"127.0.0.1:{srv.port}", app) == grpc.StatusCode.UNAVAILABLE
        wrong_ca = client_settings(FERRY_TLS_CLIENT_CA_FILE=pki["other_ca"])
        assert list_semesters(wrong_ca, f"127.0.0.1:{srv.port}", app) == grpc.StatusCode.UNAVAILABLE
        wrong_name = client_settings(
            FERRY_TLS_CLIENT_CA_FILE=pki["ca"],
            FERRY_TLS_CLIENT_SERVER_NAME="export.elsewhere.example",
        )
        code = list_semesters(wrong_name, f"127.0.0.1:{srv.port}", app)
        assert code == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls_refuses_clients_without_a_certificate_or_with_another_cas(
    pki: dict[str, Path], empty_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(empty_url, FERRY_TLS_SERVER_CERT_FILE=pki["server_cert"],
                   FERRY_TLS_SERVER_KEY_FILE=pki["server_key"],
                   FERRY_TLS_SERVER_CLIENT_CA_FILE=pki["ca"])  # fmt: skip
    with running(app, ["export"]) as srv:
        target = f"127.0.0.1:{srv.port}"
        with_cert = client_settings(FERRY_TLS_CLIENT_CA_FILE=pki["ca"],
                                    FERRY_TLS_CLIENT_CERT_FILE=pki["client_cert"],
                                    FERRY_TLS_CLIENT_KEY_FILE=pki["client_key"])  # fmt: skip
        assert list_semesters(with_cert, target, app) == grpc.StatusCode.OK
        no_cert = client_settings(FERRY_TLS_CLIENT_CA_FILE=pki["ca"])
        assert list_semesters(no_cert, target, app) == grpc.StatusCode.UNAVAILABLE
        rogue = client_settings(FERRY_TLS_CLIENT_CA_FILE=pki["ca"],
                                FERRY_TLS_CLIENT_CERT_FILE=pki["rogue_cert"],
                                FERRY_TLS_CLIENT_KEY_FILE=pki["rogue_key"])  # fmt: skip
        assert list_semesters(rogue, target, app) == grpc.StatusCode.UNAVAILABLE
        assert list_semesters(client_settings(), target, app) == grpc.StatusCode.UNAVAILABLE


def test_a_missing_certificate_file_names_the_setting(tmp_path: Path) -> None:
    s = client_settings(FERRY_TLS_SERVER_CERT_FILE=tmp_path / "nope.crt",
                        FERRY_TLS_SERVER_KEY_FILE=tmp_path / "nope.key")  # fmt: skip
    with pytest.raises(tls.TlsError, match=r"tls\.server\.cert_file: cannot read"):
        tls.server_credentials(s)


def _tls_env(pki: dict[str, Path], tmp_path: Path, url: str) -> dict[str, str]:
    return {
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        "FERRY_DATABASE_URL": url,
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "signing.pem"),
        "FERRY_METRICS_ENABLED": "false",
        "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
        "FERRY_GATEWAY_PORT": "0",
        "FERRY_EXPORT_WORKERS": "0",
        "FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS": "0",
        "FERRY_TLS_SERVER_CERT_FILE": str(pki["server_cert"]),
        "FERRY_TLS_SERVER_KEY_FILE": str(pki["server_key"]),
        "FERRY_TLS_SERVER_CLIENT_CA_FILE": str(pki["ca"]),
        "FERRY_TLS_CLIENT_CA_FILE": str(pki["ca"]),
        "FERRY_TLS_CLIENT_CERT_FILE": str(pki["client_cert"]),
        "FERRY_TLS_CLIENT_KEY_FILE": str(pki["client_key"]),
        "FERRY_TLS_GATEWAY_CERT_FILE": str(pki["server_cert"]),
        "FERRY_TLS_GATEWAY_KEY_FILE": str(pki["server_key"]),
    }


@contextmanager
def serve(env: dict[str, str], *services: str) -> Iterator[tuple[int, int]]:
    """`ferry serve SERVICES` in its own process: (gRPC port, gateway port or 0)."""
    proc = subprocess.Popen([sys.executable, "-m", "ferry.cli.main", "serve", *services],
                            env={**os.environ, **env}, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)  # fmt: skip
    assert proc.stderr is not None
    port = web = 0
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (port and (web or services)):
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
        lines.append(line)
        if m := re.search(r"gRPC\s+\S+:(\d+)", line):
            port = int(m.group(1))
        if m := re.search(r"web\s+https?://\S+:(\d+)/", line):
            web = int(m.group(1))
    try:
        assert port and (web or services), "".join(lines)
        yield port, web
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@pytest.mark.slow
def test_all_in_one_over_mutual_tls_with_the_gateway_on_https(
    pki: dict[str, Path], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'ferry.db'}"
    env = _tls_env(pki, tmp_path, url)
    with serve(env) as (port, web):
        verify = ssl.create_default_context(cafile=str(pki["ca"]))
        with httpx.Client(base_url=f"https://127.0.0.1:{web}", verify=verify) as http:
            r = http.get("/healthz")
            assert r.status_code == 200
            assert r.headers["strict-transport-security"] == "max-age=31536000"
            ready = http.get("/readyz")  # the gateway reaches every service over mTLS
            assert ready.status_code == 200, ready.text
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{web}/healthz", timeout=5)  # plain HTTP is refused
        cli_env = {**env, "FERRY_TARGET": f"127.0.0.1:{port}"}
        listed = CliRunner().invoke(cli, ["export", "semesters"], env=cli_env)
        assert listed.exit_code == 0, listed.output
        no_cert = {**cli_env, "FERRY_TLS_CLIENT_CERT_FILE": "", "FERRY_TLS_CLIENT_KEY_FILE": ""}
        refused = CliRunner().invoke(cli, ["export", "semesters"], env=no_cert)
        assert refused.exit_code == 5 and "UNAVAILABLE" in refused.output


@pytest.mark.slow
def test_split_processes_over_mutual_tls(pki: dict[str, Path], tmp_path: Path) -> None:
    """The auth service and the export service in processes of their own (as pods), the
    CLI getting an operator token from one and using it on the other."""
    url = f"sqlite:///{tmp_path / 'ferry.db'}"
    env = _tls_env(pki, tmp_path, url)
    with serve(env, "auth") as (auth_port, _), serve(env, "export") as (export_port, _):
        cli_env = {**env, "FERRY_CLIENT_SERVICES": (
            f"[{{name: auth, target: '127.0.0.1:{auth_port}'}}, "
            f"{{name: export, target: '127.0.0.1:{export_port}'}}]")}  # fmt: skip
        made = CliRunner().invoke(cli, ["token", "create", "--role", "viewer", "--subject",
                                        "cron:tls"], env=cli_env)  # fmt: skip
        assert made.exit_code == 0, made.output
        token = made.stdout.strip()
        # Now as a CronJob would: no private key, only the token.
        as_cron = {**cli_env, "FERRY_TOKEN": token,
                   "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "absent.pem"),
                   "FERRY_AUTH_CREATE_KEYS": "false"}  # fmt: skip
        listed = CliRunner().invoke(cli, ["export", "semesters"], env=as_cron)
        assert listed.exit_code == 0, listed.output
        whoami = CliRunner().invoke(cli, ["token", "whoami"], env=as_cron)
        assert whoami.exit_code == 0 and whoami.stdout.startswith("cron:tls (viewer)")
        plain = {**as_cron, "FERRY_TLS_CLIENT_CA_FILE": ""}
        refused = CliRunner().invoke(cli, ["export", "semesters"], env=plain)
        assert refused.exit_code == 5, refused.output
