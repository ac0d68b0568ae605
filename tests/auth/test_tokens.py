"""EdDSA tokens: issue, verify, and every way verification refuses a token, by name."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import os
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from ferry.auth import MAX_TOKEN_BYTES, TokenIssuer, TokenVerifier, bearer, parse_role
from ferry.auth.keys import KeyFileError, KeySet, KeySetFile, SigningKey, ensure_keys, rotate
from ferry.errors import PermissionDenied, Unauthenticated
from ferry.v1 import options_pb2

ADMIN = options_pb2.ROLE_ADMIN
MINUTE = dt.timedelta(minutes=1)


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def handmade(header: dict[str, object], claims: dict[str, object], sign: object) -> str:
    """A JWT put together by hand, as an attacker would (PyJWT refuses to make these)."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    sig = sign(head.encode()) if callable(sign) else b""
    return f"{head}.{b64(sig)}"


@pytest.fixture
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def verifier(key: SigningKey) -> TokenVerifier:
    ks = KeySet()
    ks.add(key.public_key())
    return TokenVerifier(ks)


def claims_now(**over: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {"sub": "a", "role": "admin", "iss": "ferry", "aud": "ferry",
                               "iat": now, "nbf": now, "exp": now + 60, "jti": "j1"}  # fmt: skip
    base.update(over)
    return base


def test_roles_are_ordered_admin_operator_viewer() -> None:
    assert parse_role("admin") > parse_role("operator") > parse_role("viewer") > 0
    with pytest.raises(ValueError, match="unknown role 'root'"):
        parse_role("root")


def test_round_trip_carries_subject_role_jti_and_a_kid(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    issued = TokenIssuer(key).issue("cron:nightly", options_pb2.ROLE_OPERATOR, MINUTE)
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": "EdDSA", "kid": key.kid, "typ": "JWT"}
    p = verifier.verify(issued.token)
    assert (p.subject, p.role, p.jti) == ("cron:nightly", options_pb2.ROLE_OPERATOR, issued.jti)
    assert len(issued.jti) == 32
    assert TokenIssuer(key).issue("x", ADMIN, MINUTE).jti != issued.jti


@pytest.mark.parametrize(
    ("issuer_kwargs", "ttl", "now_shift", "message"),
    [
        ({}, dt.timedelta(seconds=-30), 0, "token expired"),
        ({}, MINUTE, 600, "token not yet valid"),
        ({"audience": "elsewhere"}, MINUTE, 0, "wrong audience"),
        ({"issuer": "mallory"}, MINUTE, 0, "wrong issuer"),
    ],
)
def test_expired_future_wrong_audience_and_issuer_say_which(
    key: SigningKey,
    verifier: TokenVerifier,
    issuer_kwargs: dict[str, str],
    ttl: dt.timedelta,
    now_shift: int,
    message: str,
) -> None:
    now = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=now_shift)
    token = TokenIssuer(key, **issuer_kwargs).issue("a", ADMIN, ttl, now=now).token
    with pytest.raises(Unauthenticated, match=message):
        verifier.verify(token)


def test_unknown_kid_and_missing_kid_are_refused(verifier: TokenVerifier) -> None:
    stranger = SigningKey.generate()
    with pytest.raises(Unauthenticated, match="unknown key id"):
        verifier.verify(TokenIssuer(stranger).issue("a", ADMIN, MINUTE).token)
    no_kid = jwt.encode(claims_now(), stranger.private, algorithm="EdDSA")
    with pytest.raises(Unauthenticated, match="no key id"):
        verifier.verify(no_kid)


def test_a_signature_by_another_key_under_a_known_kid_does_not_verify(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    forged = jwt.encode(claims_now(), SigningKey.generate().private, algorithm="EdDSA",
                        headers={"kid": key.kid})  # fmt: skip
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        verifier.verify(forged)


def test_algorithm_confusion_hs256_with_the_public_key_as_secret(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    for secret in (public_pem, raw):
        token = handmade({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims_now(),
                         lambda m, s=secret: hmac.new(s, m, hashlib.sha256).digest())  # fmt: skip
        with pytest.raises(Unauthenticated, match="algorithm HS256 refused; only EdDSA"):
            verifier.verify(token)


def test_alg_none_is_refused(key: SigningKey, verifier: TokenVerifier) -> None:
    for alg in ("none", "None", "NONE"):
        token = handmade({"alg": alg, "kid": key.kid}, claims_now(), None)
        with pytest.raises(Unauthenticated, match="alg none"):
            verifier.verify(token)


def test_malformed_and_claimless_tokens(key: SigningKey, verifier: TokenVerifier) -> None:
    for junk in ("not-a-jwt", "a.b.c", "", "...."):
        with pytest.raises(Unauthenticated, match="malformed"):
            verifier.verify(junk)
    claims = claims_now()
    del claims["jti"]
    no_jti = jwt.encode(claims, key.private, algorithm="EdDSA", headers={"kid": key.kid})
    with pytest.raises(Unauthenticated, match="lacks the 'jti' claim"):
        verifier.verify(no_jti)


def test_oversized_token_is_refused_before_parsing(key: SigningKey) -> None:
    class Keys:
        asked = 0

        def get(self, kid: str) -> object:
            Keys.asked += 1
            return key.public_key()

    verifier = TokenVerifier(Keys())
    big = TokenIssuer(key).issue("a", ADMIN, MINUTE, extra={"pad": "x" * MAX_TOKEN_BYTES}).token
    with pytest.raises(Unauthenticated, match="larger than 4 KiB"):
        verifier.verify(big)
    with pytest.raises(Unauthenticated, match="larger than 4 KiB"):
        verifier.verify("{" * (MAX_TOKEN_BYTES + 1))  # would not even parse
    assert Keys.asked == 0


def test_weaker_role_is_denied_naming_what_is_needed(
    key: SigningKey, verifier: TokenVerifier
) -> None:
    p = verifier.verify(TokenIssuer(key).issue("t", options_pb2.ROLE_VIEWER, MINUTE).token)
    p.require(options_pb2.ROLE_VIEWER, "ListSemesters")
    with pytest.raises(PermissionDenied, match="StreamSession needs role operator; t has viewer"):
        p.require(options_pb2.ROLE_OPERATOR, "StreamSession")


def test_bearer_header_parsing() -> None:
    assert bearer({"authorization": "Bearer abc"}) == "abc"
    with pytest.raises(Unauthenticated, match="missing authorization"):
        bearer({})
    with pytest.raises(Unauthenticated, match="must be 'Bearer"):
        bearer({"authorization": "Basic abc"})


def test_keys_are_created_once_private_owner_only(tmp_path: Path) -> None:
    private, public = tmp_path / "var" / "signing-key.pem", tmp_path / "var" / "public-keys.json"
    key = ensure_keys(private, public)
    assert ensure_keys(private, public).kid == key.kid
    assert private.stat().st_mode & 0o077 == 0
    doc = json.loads(public.read_text())
    assert [k["kid"] for k in doc["keys"]] == [key.kid]
    assert "d" not in doc["keys"][0]  # the key set never holds private material


def test_a_missing_private_key_beside_an_existing_set_is_not_silently_replaced(
    tmp_path: Path,
) -> None:
    private, public = tmp_path / "k.pem", tmp_path / "keys.json"
    ensure_keys(private, public)
    private.unlink()
    with pytest.raises(KeyFileError, match="is missing but key set"):
        ensure_keys(private, public)


def test_an_old_hmac_key_file_is_a_clear_error(tmp_path: Path) -> None:
    old = tmp_path / "signing.key"
    old.write_text(os.urandom(32).hex())
    with pytest.raises(KeyFileError, match="not a PEM private key"):
        SigningKey.load(old)


def test_rotation_keeps_old_tokens_valid_and_verifiers_learn_the_new_key(tmp_path: Path) -> None:
    private, public = tmp_path / "k.pem", tmp_path / "keys.json"
    first = ensure_keys(private, public)
    keys = KeySetFile(public, recheck_seconds=0)
    verifier = TokenVerifier(keys)
    old_token = TokenIssuer(first).issue("a", ADMIN, MINUTE).token
    second, ks = rotate(private, public, keep=2)
    assert list(ks.keys) == [first.kid, second.kid]
    assert SigningKey.load(private).kid == second.kid
    os.utime(public, ns=(time.time_ns() + 10**9,) * 2)  # a distinct mtime on coarse clocks
    verifier.verify(TokenIssuer(second).issue("b", ADMIN, MINUTE).token)  # reloaded the set
    verifier.verify(old_token)
    rotate(private, public, keep=2)  # the first key falls out of the set
    os.utime(public, ns=(time.time_ns() + 2 * 10**9,) * 2)
    keys.get("reload-now")
    with pytest.raises(Unauthenticated, match="unknown key id"):
        verifier.verify(old_token)


def test_a_broken_key_set_names_the_file_and_entry(tmp_path: Path) -> None:
    bad = tmp_path / "keys.json"
    bad.write_text('{"keys": [{"kty": "RSA"}]}')
    with pytest.raises(KeyFileError, match=r"keys\[0\] is not an Ed25519 public key"):
        KeySet.load(bad)
    bad.write_text("nope")
    with pytest.raises(KeyFileError, match="is not JSON"):
        KeySet.load(bad)


def test_a_remembered_token_still_expires(key: SigningKey, verifier: TokenVerifier) -> None:
    # Expired 4 s ago: still inside the 5 s clock-skew leeway, so it verifies (and is
    # remembered); 1.5 s later it is past the leeway and refused from memory too.
    token = TokenIssuer(key).issue("a", ADMIN, dt.timedelta(seconds=-4)).token
    assert verifier.verify(token).subject == "a"
    assert token in verifier._cache
    time.sleep(1.5)
    with pytest.raises(Unauthenticated, match="token expired"):
        verifier.verify(token)
