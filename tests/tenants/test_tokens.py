"""Tokens carry their school (`sch`): one without a school is refused, and a token of
one school finds nothing of another, through the RPCs (docs/tenants.md)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import grpc
import jwt
import pytest

from ferry.app import App
from ferry.auth import parse_role
from ferry.auth.keys import SigningKey
from ferry.auth.tokens import TokenIssuer, TokenVerifier
from ferry.bundle.formats.base import Event
from ferry.db import tenant
from ferry.errors import Unauthenticated
from ferry.v1 import import_pb2, import_pb2_grpc
from tests.conftest import make_settings, running
from tests.merge.helpers import run
from tests.tenants.conftest import Tenancy

MINUTE = dt.timedelta(minutes=1)


class Keys:
    def __init__(self, key: SigningKey) -> None:
        self.key = key

    def get(self, kid: str) -> object:
        return self.key.public_key() if kid == self.key.kid else None


def test_a_token_names_its_school_and_one_without_is_refused() -> None:
    key = SigningKey.generate()
    verifier = TokenVerifier(Keys(key), cache_size=0)
    issuer = TokenIssuer(key)
    assert verifier.verify(issuer.issue("a", parse_role("admin"), MINUTE).token).school == (
        "default"
    )
    assert verifier.verify(issuer.issue("a", 3, MINUTE, school="north").token).school == "north"
    made = jwt.decode(issuer.issue("a", 3, MINUTE).token, options={"verify_signature": False})
    for sch in (None, "", 7, ["north"], "x" * 65):
        claims = dict(made)
        if sch is None:
            del claims["sch"]
        else:
            claims["sch"] = sch
        token = jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})
        with pytest.raises(Unauthenticated, match="school"):
            verifier.verify(token)


@pytest.mark.postgres
def test_a_token_of_one_school_finds_nothing_of_another(
    tenancy: Tenancy, source_events: list[Event], tmp_path: Path
) -> None:
    t = tenancy
    with tenant.acting_for(t.schools["north"]):
        north_import = run(t.app, source_events).id
    app = App(make_settings(t.app_url, tmp_path))
    try:
        with (
            running(app, ["import"]) as srv,
            grpc.insecure_channel(f"127.0.0.1:{srv.port}") as channel,
        ):
            stub = import_pb2_grpc.ImportServiceStub(channel)

            def md(school: str) -> list[tuple[str, str]]:
                token = app.issuer().issue("t", parse_role("admin"), MINUTE, school=school)
                return [("authorization", f"Bearer {token.token}")]

            get = import_pb2.GetImportRequest(import_id=north_import)
            assert stub.GetImport(get, metadata=md("north")).result.id == north_import
            listed = stub.ListImports(import_pb2.ListImportsRequest(), metadata=md("north"))
            assert [r.id for r in listed.imports] == [north_import]
            for other in ("south", "default"):
                with pytest.raises(grpc.RpcError) as e:
                    stub.GetImport(get, metadata=md(other))
                assert e.value.code() == grpc.StatusCode.NOT_FOUND, other
                listed = stub.ListImports(import_pb2.ListImportsRequest(), metadata=md(other))
                assert list(listed.imports) == []
            # A school this installation does not have: NOT_FOUND, before any data.
            with pytest.raises(grpc.RpcError) as e:
                stub.GetImport(get, metadata=md("nowhere"))
            assert e.value.code() == grpc.StatusCode.NOT_FOUND
            assert "nowhere" in (e.value.details() or "")
    finally:
        app.close()
