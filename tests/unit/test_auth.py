import datetime as dt
from pathlib import Path

import pytest

from ferry.auth import TokenSigner, bearer, load_or_create_key, parse_role, read_key
from ferry.errors import PermissionDenied, Unauthenticated
from ferry.v1 import options_pb2


def test_roles_are_ordered_admin_operator_viewer() -> None:
    assert parse_role("admin") > parse_role("operator") > parse_role("viewer") > 0
    with pytest.raises(ValueError, match="unknown role 'root'"):
        parse_role("root")


def test_token_round_trip_carries_subject_and_role() -> None:
    signer = TokenSigner(b"k" * 32)
    p = signer.verify(
        signer.issue("cron:nightly", options_pb2.ROLE_OPERATOR, dt.timedelta(minutes=5))
    )
    assert (p.subject, p.role) == ("cron:nightly", options_pb2.ROLE_OPERATOR)


def test_expired_forged_and_foreign_tokens_are_refused() -> None:
    signer = TokenSigner(b"k" * 32)
    with pytest.raises(Unauthenticated, match="expired"):
        signer.verify(signer.issue("a", options_pb2.ROLE_ADMIN, dt.timedelta(seconds=-5)))
    other = TokenSigner(b"x" * 32)
    with pytest.raises(Unauthenticated, match="invalid token"):
        signer.verify(other.issue("a", options_pb2.ROLE_ADMIN, dt.timedelta(minutes=1)))
    with pytest.raises(Unauthenticated, match="invalid token"):
        signer.verify("not-a-jwt")
    wrong_audience = TokenSigner(b"k" * 32, audience="elsewhere")
    with pytest.raises(Unauthenticated):
        signer.verify(wrong_audience.issue("a", options_pb2.ROLE_ADMIN, dt.timedelta(minutes=1)))


def test_weaker_role_is_denied_naming_what_is_needed() -> None:
    signer = TokenSigner(b"k" * 32)
    p = signer.verify(signer.issue("t", options_pb2.ROLE_VIEWER, dt.timedelta(minutes=1)))
    p.require(options_pb2.ROLE_VIEWER, "ListSemesters")
    with pytest.raises(PermissionDenied, match="StreamSession needs role operator; t has viewer"):
        p.require(options_pb2.ROLE_OPERATOR, "StreamSession")


def test_bearer_header_parsing() -> None:
    assert bearer({"authorization": "Bearer abc"}) == "abc"
    with pytest.raises(Unauthenticated, match="missing authorization"):
        bearer({})
    with pytest.raises(Unauthenticated, match="must be 'Bearer"):
        bearer({"authorization": "Basic abc"})


def test_signing_key_is_created_once_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "var" / "signing.key"
    assert read_key(path) is None
    key = load_or_create_key(path)
    assert load_or_create_key(path) == key
    assert path.stat().st_mode & 0o077 == 0
