"""`--school CODE` on the CLI (docs/tenants.md): the CLI's own token is signed for the
school; with FERRY_TOKEN the call names the school in `x-ferry-school` (a platform
admin's per-call school); a code that is no school code is refused before any call, exit
2, naming --school. A stand-in export service records what each call carried."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from click.testing import CliRunner

from ferry.cli.main import cli
from ferry.v1 import export_pb2, export_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]


class Recording(export_pb2_grpc.ExportServiceServicer):
    def __init__(self) -> None:
        self.calls: list[dict[str, str]] = []

    def ListSemesters(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append(dict(context.invocation_metadata()))  # type: ignore[arg-type]
        return export_pb2.ListSemestersResponse()


@pytest.fixture
def service() -> Iterator[tuple[Recording, int]]:
    servicer = Recording()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    export_pb2_grpc.add_ExportServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, port
    finally:
        server.stop(0)


def ferry(args: list[str], port: int, tmp_path: Path, **env: str) -> Any:
    base = {
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        "FERRY_DATABASE_URL": f"sqlite:///{tmp_path / 'unused.db'}",
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "signing.key"),
        "FERRY_TARGET": f"127.0.0.1:{port}",
        "FERRY_CLIENT_MAX_ATTEMPTS": "1",
    }
    return CliRunner().invoke(cli, args, env=base | env)


def school_of(metadata: dict[str, str]) -> str:
    token = metadata["authorization"].removeprefix("Bearer ")
    return str(jwt.decode(token, options={"verify_signature": False})["sch"])


def test_the_cli_acts_for_the_school_it_names(
    service: tuple[Recording, int], tmp_path: Path
) -> None:
    servicer, port = service
    r = ferry(["export", "semesters", "--school", "north"], port, tmp_path)
    assert r.exit_code == 0, r.output
    r = ferry(["export", "semesters"], port, tmp_path)
    assert r.exit_code == 0, r.output
    named, unnamed = servicer.calls
    assert school_of(named) == "north" and "x-ferry-school" not in named
    assert school_of(unnamed) == "default" and "x-ferry-school" not in unnamed

    # A token from elsewhere: the call names the school per call.
    r = ferry(["export", "semesters", "--school", "north"], port, tmp_path,
              FERRY_TOKEN="given-token")  # fmt: skip
    assert r.exit_code == 0, r.output
    given = servicer.calls[-1]
    assert given["authorization"] == "Bearer given-token"
    assert given["x-ferry-school"] == "north"
    r = ferry(["export", "semesters"], port, tmp_path, FERRY_TOKEN="given-token")
    assert r.exit_code == 0 and "x-ferry-school" not in servicer.calls[-1]


@pytest.mark.parametrize("code", ["North", "a/b", "-x", "x" * 65, ""])
def test_a_code_that_is_no_school_code_is_refused_before_any_call(
    code: str, service: tuple[Recording, int], tmp_path: Path
) -> None:
    servicer, port = service
    r = ferry(["export", "semesters", f"--school={code}"], port, tmp_path)
    if code == "":  # empty: no school named, the default's
        assert r.exit_code == 0 and school_of(servicer.calls[-1]) == "default"
        return
    assert r.exit_code == 2 and "--school" in r.output, r.output
    assert servicer.calls == []


def test_token_create_local_is_of_the_school_named(tmp_path: Path) -> None:
    from ferry.db import migrate
    from ferry.db.engine import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'unused.db'}")
    migrate.upgrade(engine)
    engine.dispose()
    args = ["token", "create", "--role", "viewer", "--local"]
    r = ferry([*args, "--school", "default"], 0, tmp_path)
    assert r.exit_code == 0, r.output
    token = r.stdout.splitlines()[0]
    assert jwt.decode(token, options={"verify_signature": False})["sch"] == "default"
    r = ferry([*args, "--school", "nowhere"], 0, tmp_path)
    assert r.exit_code == 2 and "school 'nowhere' not found" in r.output, r.output
    assert "eyJ" not in r.stdout  # no token printed
