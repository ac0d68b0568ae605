"""Ed25519 keys for tokens: one private signing key, a set of public keys to verify with.

- The private key (PEM, PKCS#8, owner-only file) is held by the auth service alone on
  Kubernetes, and by the CLI on a laptop.
- The key set is a JSON Web Key Set (`{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": …,
  "kid": …}]}`) with several public keys, oldest first, so a new key can be published
  before tokens are signed with it, and the old one kept until its tokens have expired.
- A key's `kid` is its RFC 7638 JWK thumbprint (sha256 over the canonical public JWK).
- `rotate` makes the next key: it adds the new public key to the set first (so verifiers
  that reload the set know it), then replaces the private key, keeping the newest `keep`
  public keys.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class KeyFileError(ValueError):
    """A key file that is missing, unreadable or not what it should be (names the file)."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def thumbprint(key: Ed25519PublicKey) -> str:
    """The RFC 7638 thumbprint of `key`: its kid."""
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64(_raw_public(key))},
        separators=(",", ":"),
        sort_keys=True,
    )
    return _b64(hashlib.sha256(canonical.encode()).digest())


def public_jwk(key: Ed25519PublicKey) -> dict[str, str]:
    return {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": _b64(_raw_public(key)),
        "kid": thumbprint(key),
        "use": "sig",
        "alg": "EdDSA",
    }


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` through a temporary file and a rename (never half a key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey
    kid: str

    @classmethod
    def generate(cls) -> SigningKey:
        key = Ed25519PrivateKey.generate()
        return cls(key, thumbprint(key.public_key()))

    @classmethod
    def load(cls, path: Path) -> SigningKey:
        """The private key at `path`; KeyFileError naming the file when it is not one."""
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyFileError(f"private key file {path} does not exist") from None
        except OSError as e:
            raise KeyFileError(f"private key file {path} cannot be read: {e.strerror}") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise KeyFileError(
                f"{path} is not a PEM private key (an old HS256 key file? remove it and "
                "run `ferry keys rotate`)"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
        return cls(key, thumbprint(key.public_key()))

    def public_key(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def save(self, path: Path) -> None:
        pem = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomic(path, pem, 0o600)


class KeySet:
    """Public keys by kid, in the order they were added (oldest first)."""

    def __init__(self, keys: dict[str, Ed25519PublicKey] | None = None) -> None:
        self.keys: dict[str, Ed25519PublicKey] = dict(keys or {})

    def get(self, kid: str) -> Ed25519PublicKey | None:
        return self.keys.get(kid)

    def add(self, key: Ed25519PublicKey) -> str:
        kid = thumbprint(key)
        self.keys.setdefault(kid, key)
        return kid

    def keep_newest(self, n: int) -> None:
        kids = list(self.keys)
        for kid in kids[: max(0, len(kids) - n)]:
            del self.keys[kid]

    def to_json(self) -> bytes:
        jwks = {"keys": [public_jwk(k) for k in self.keys.values()]}
        return json.dumps(jwks, indent=2).encode() + b"\n"

    @classmethod
    def parse(cls, data: bytes, where: str) -> KeySet:
        try:
            doc: Any = json.loads(data)
        except ValueError:
            raise KeyFileError(f"key set {where} is not JSON") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise KeyFileError(f'key set {where} must be {{"keys": [...]}}')
        out = cls()
        for i, jwk in enumerate(doc["keys"]):
            if not (
                isinstance(jwk, dict)
                and jwk.get("kty") == "OKP"
                and jwk.get("crv") == "Ed25519"
                and isinstance(jwk.get("x"), str)
            ):
                raise KeyFileError(f"key set {where}: keys[{i}] is not an Ed25519 public key")
            try:
                key = Ed25519PublicKey.from_public_bytes(_unb64(jwk["x"]))
            except ValueError:
                raise KeyFileError(f"key set {where}: keys[{i}].x is not a valid key") from None
            kid = out.add(key)
            if jwk.get("kid", kid) != kid:
                raise KeyFileError(f"key set {where}: keys[{i}].kid does not match the key")
        return out

    @classmethod
    def load(cls, path: Path) -> KeySet:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise KeyFileError(f"key set file {path} does not exist") from None
        except OSError as e:
            raise KeyFileError(f"key set file {path} cannot be read: {e.strerror}") from None
        return cls.parse(data, str(path))

    def save(self, path: Path) -> None:
        _write_atomic(path, self.to_json(), 0o644)


class KeySetFile:
    """A key set read from a file, read again when the file changes (a rotated Secret).

    `get(kid)` of an unknown kid looks at the file's mtime, at most once per
    `recheck_seconds`, so a flood of bad kids costs a stat call, not a parse each."""

    def __init__(self, path: Path, recheck_seconds: float = 1.0) -> None:
        self.path = path
        self.recheck = recheck_seconds
        self._mtime = self._stat()
        self.keys = KeySet.load(path)
        # Bumped on every reload, so verifiers forget tokens checked with the old set.
        self.generation = 0
        self._checked = time.monotonic()
        self._lock = threading.Lock()

    def _stat(self) -> float:
        try:
            return self.path.stat().st_mtime_ns / 1e9
        except OSError:
            return 0.0

    def get(self, kid: str) -> Ed25519PublicKey | None:
        key = self.keys.get(kid)
        if key is not None:
            return key
        now = time.monotonic()
        if now - self._checked < self.recheck:
            return None
        with self._lock:
            self._checked = now
            mtime = self._stat()
            if mtime and mtime != self._mtime:
                try:
                    self.keys = KeySet.load(self.path)
                    self._mtime = mtime
                    self.generation += 1
                except KeyFileError:
                    pass  # a half-written or broken file: keep the keys we have
        return self.keys.get(kid)


def ensure_keys(private_path: Path, key_set_path: Path) -> SigningKey:
    """The signing key, created with its key set when neither exists (a laptop just works).

    A private key whose public key is missing from the key set is added to it."""
    if not private_path.exists():
        if key_set_path.exists():
            raise KeyFileError(
                f"private key file {private_path} is missing but key set {key_set_path} "
                "exists: restore the key or run `ferry keys rotate`"
            )
        key = SigningKey.generate()
        ks = KeySet()
        ks.add(key.public_key())
        ks.save(key_set_path)
        key.save(private_path)
        return key
    key = SigningKey.load(private_path)
    ks = KeySet.load(key_set_path) if key_set_path.exists() else KeySet()
    if ks.get(key.kid) is None:
        ks.add(key.public_key())
        ks.save(key_set_path)
    return key


def rotate(private_path: Path, key_set_path: Path, keep: int = 3) -> tuple[SigningKey, KeySet]:
    """Make the next signing key: publish its public key, then replace the private key.

    The set keeps the newest `keep` public keys (the new one and its predecessors), so
    tokens signed with the previous key stay valid until they expire."""
    ks = KeySet.load(key_set_path) if key_set_path.exists() else KeySet()
    if private_path.exists():
        ks.add(SigningKey.load(private_path).public_key())  # never drop the current key
    key = SigningKey.generate()
    ks.add(key.public_key())
    ks.keep_newest(max(2, keep))
    ks.save(key_set_path)
    key.save(private_path)
    return key, ks
