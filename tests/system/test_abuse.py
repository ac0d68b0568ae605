"""Hostile callers through a real gateway process in front of real services: every abuse
gets the right code, no body carries a stack trace, SQL or a server path, and the
database is unchanged afterwards (every table's checksum)."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import tarfile
import zipfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.bundle.test_bad_input import members_of, tar_with
from tests.conftest import token_from_key_file
from tests.system.harness import Cluster, Proc, checksums

LEAKS = ("Traceback", "SELECT ", "INSERT ", "UPDATE ", "psycopg", "sqlalchemy", "/work/", '.py"')


@pytest.fixture
def front(system: Cluster) -> Iterator[tuple[Cluster, Proc, httpx.Client]]:
    exp = system.serve("export", FERRY_EXPORT_WORKERS="1")
    imp = system.serve("import")
    gw = system.gateway(
        {"export": f"127.0.0.1:{exp.port}", "import": f"127.0.0.1:{imp.port}"},
        FERRY_GATEWAY_MAX_UPLOAD_BYTES=str(8 * 1024 * 1024),
        FERRY_GATEWAY_LINK_TTL_SECONDS="1",
    )
    with httpx.Client(base_url=f"http://127.0.0.1:{gw.port}", timeout=60) as client:
        yield system, gw, client


def _b64(obj: dict[str, Any]) -> str:
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _clean(r: httpx.Response) -> None:
    text = r.text
    for leak in LEAKS:
        assert leak not in text, f"{r.request.method} {r.request.url.path} leaked {leak!r}"


def test_abuse_gets_the_right_codes_and_changes_nothing(
    front: tuple[Cluster, Proc, httpx.Client],
) -> None:
    system, _, client = front
    viewer, operator, admin = (system.token(r) for r in ("viewer", "operator", "admin"))
    # Expired a minute ago, well past the verifier's 5 s clock leeway (no sleep needed).
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=2)
    expired = token_from_key_file(system.folder / "signing.key", "admin", "system:admin",
                                  dt.timedelta(minutes=1), issued_at=long_ago)  # fmt: skip
    head, payload, sig = admin.split(".")
    forged = ".".join([head, _b64({**json.loads(base64.urlsafe_b64decode(payload + "==")),
                                   "role": "admin", "sub": "mallory"}), sig])  # fmt: skip
    alg_none = ".".join([_b64({"alg": "none", "typ": "JWT"}), payload, ""])
    got = client.post(
        "/api/v1/sessions/export?semester=2026-fall&format=tar.gz",
        headers={"authorization": f"Bearer {operator}"},
    )
    assert got.status_code == 200, got.text[:300]
    bundle = got.content
    before = checksums(system.url)

    def auth(token: str) -> dict[str, str]:
        return {"authorization": f"Bearer {token}"}

    members = members_of(bundle)
    traversal = tar_with([members[0], (tarfile.TarInfo("../../etc/evil.jsonl"), b"{}\n")])
    link = tarfile.TarInfo("courses.jsonl")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    symlinked = tar_with([members[0], (link, b"")])
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", b"<Types/>")
        zf.writestr("xl/media/bomb.bin", b"\0" * (60 * 1024 * 1024))
    deep = b'{"metadata":' + b"[" * 5000 + b"]" * 5000 + b"}"
    imports = "/api/v1/sessions/import?merge_strategy=replace"
    cases: list[tuple[str, str, dict[str, Any], int]] = [
        ("GET", "/api/v1/sessions/semesters", {}, 401),
        ("GET", "/api/v1/sessions/semesters", {"headers": auth("not-a-jwt")}, 401),
        ("GET", "/api/v1/sessions/semesters", {"headers": auth(expired)}, 401),
        ("GET", "/api/v1/sessions/semesters", {"headers": auth(forged)}, 401),
        ("GET", "/api/v1/sessions/semesters", {"headers": auth(alg_none)}, 401),
        ("GET", "/api/v1/sessions/semesters", {"headers": auth("x" * 8_300)}, 401),
        ("POST", imports, {"headers": auth(viewer), "content": bundle}, 403),
        ("POST", "/api/v1/imports/some-id/undo", {"headers": auth(viewer), "json": {}}, 403),
        ("POST", "/api/v1/exports/cleanup", {"headers": auth(operator), "json": {}}, 403),
        ("POST", imports + "&filename=b.tar.gz", {"headers": auth(admin), "content": traversal},
         400),
        ("POST", imports + "&filename=b.tar.gz", {"headers": auth(admin), "content": symlinked},
         400),
        ("POST", imports + "&filename=b.xlsx", {"headers": auth(admin), "content": zbuf.getvalue()},
         429),
        ("POST", imports + "&filename=b.json", {"headers": auth(admin), "content": deep}, 400),
        ("POST", imports + "&filename=b.jsonl",
         {"headers": auth(admin), "content": b"x" * (9 * 1024 * 1024)}, 413),
        ("POST", "/rpc/ExportService.ListSemesters",
         {"headers": {**auth(admin), "content-type": "application/json"},
          "content": b'{"dataset": "' + b"a" * (5 * 1024 * 1024) + b'"}'}, 413),
        ("POST", "/api/v1/exports",
         {"headers": auth(admin), "json": {"export_type": "students", "format": "os:system"}},
         400),
        ("GET", "/api/v1/exports/nope/download?exp=1&sig=00", {}, 401),
    ]  # fmt: skip
    for method, path, kwargs, want in cases:
        r = client.request(method, path, **kwargs)
        assert r.status_code == want, f"{method} {path}: {r.status_code} {r.text[:300]}"
        _clean(r)
        if want == 401:
            assert r.headers.get("www-authenticate", "").startswith("Bearer")
    after = checksums(system.url)
    # The school's data is untouched; the import history records the refused uploads as
    # failed imports (by design: GetImport explains each), and nothing else.
    history = ("imports", "import_changes", "import_rejects")
    assert {k: v for k, v in after.items() if k not in history} == {
        k: v for k, v in before.items() if k not in history
    }
    engine = sa.create_engine(system.url)
    with engine.connect() as conn:
        statuses = {r[0] for r in conn.execute(sa.text("SELECT status FROM imports"))}
    engine.dispose()
    assert statuses <= {"failed"}
