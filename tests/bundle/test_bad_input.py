"""Broken, hostile or foreign bundles get a clear error naming what is wrong."""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Any

import orjson
import pytest

from ferry.bundle.formats import common
from ferry.bundle.formats.base import BundleLimits, Header
from ferry.bundle.formats.common import Upgrade
from ferry.bundle.scan import FORMAT_VERSION
from ferry.errors import DataLoss, InvalidArgument, ResourceExhausted
from tests.bundle.helpers import COURSE, FORMATS, decode, encode, events_of, records_of

GOOD = events_of({"courses": [COURSE, {**COURSE, "course_code": "C2"}]})


def json_doc() -> dict[str, Any]:
    doc: dict[str, Any] = orjson.loads(encode("json", GOOD))
    return doc


def test_json_truncated_anywhere_is_invalid_argument() -> None:
    data = encode("json", GOOD)
    for cut in (1, len(data) // 3, len(data) // 2, len(data) - 1):
        with pytest.raises(InvalidArgument):
            decode("json", data[:cut])


def test_malformed_json_names_where_it_broke() -> None:
    data = encode("json", GOOD).replace(b'"credits":5', b'"credits":5x', 1)
    with pytest.raises(InvalidArgument, match=r"malformed JSON in courses\[0\]"):
        decode("json", data)


@pytest.mark.parametrize("name", ["json", "jsonl"])
def test_json_nested_too_deep_is_refused(name: str) -> None:
    deep = "[" * 50 + "]" * 50
    if name == "json":
        data = encode("json", GOOD).replace(b'"credits":5', f'"credits":{deep}'.encode(), 1)
    else:
        data = encode("jsonl", GOOD).replace(b'"credits":5', f'"credits":{deep}'.encode(), 1)
    with pytest.raises(InvalidArgument, match="nested deeper than 32"):
        decode(name, data)


@pytest.mark.parametrize("name", ["json", "jsonl"])
def test_a_bundle_over_max_bytes_is_resource_exhausted(name: str) -> None:
    with pytest.raises(ResourceExhausted):
        decode(name, encode(name, GOOD), BundleLimits(max_bytes=200))


def test_unknown_field_names_entity_record_and_field() -> None:
    doc = json_doc()
    doc["courses"][1]["room"] = "B12"
    with pytest.raises(
        InvalidArgument, match=r"courses record 1, field 'room': unknown field"
    ) as e:
        decode("json", orjson.dumps(doc))
    assert e.value.field == "courses[1].room"


def test_wrong_type_names_the_field() -> None:
    doc = json_doc()
    doc["courses"][0]["credits"] = "five"
    with pytest.raises(InvalidArgument, match=r"courses record 0, field 'credits'"):
        decode("json", orjson.dumps(doc))


def test_unknown_entity_is_named_with_the_known_ones() -> None:
    doc = json_doc()
    doc["teachers"] = [{"name": "x"}]
    del doc["trailer"]
    doc["trailer"] = json_doc()["trailer"]
    with pytest.raises(InvalidArgument, match="unknown entity 'teachers'; known: courses"):
        decode("json", orjson.dumps(doc))


def test_a_changed_record_fails_the_checksum_as_data_loss() -> None:
    data = encode("json", GOOD).replace(b'"title":"\xce\x95', b'"title":"\xce\x96', 1)
    with pytest.raises(DataLoss, match="checksum mismatch"):
        decode("json", data)


def test_a_dropped_record_is_data_loss_naming_the_counts() -> None:
    doc = json_doc()
    doc["courses"].pop()
    with pytest.raises(DataLoss, match=r"metadata\.counts"):
        decode("json", orjson.dumps(doc))


@pytest.mark.parametrize("name", FORMATS)
def test_a_newer_format_version_is_refused_naming_both(name: str) -> None:
    events = list(GOOD)
    head = events[0]
    assert isinstance(head, Header)
    head.metadata.format_version = 9
    with pytest.raises(
        InvalidArgument, match=rf"version 9 is newer .* \(version {FORMAT_VERSION}\)"
    ):
        decode(name, encode(name, events))
    head.metadata.format_version = FORMAT_VERSION


def test_an_older_version_is_upgraded_by_its_registered_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A made-up version 0 that called course titles "name": the upgrade renames it.
    def record(entity: str, raw: dict[str, Any]) -> dict[str, Any]:
        if entity == "courses" and "name" in raw:
            raw = {**raw, "title": raw["name"]}
            del raw["name"]
        return raw

    monkeypatch.setitem(common.UPGRADES, 0, Upgrade(lambda m: {**m, "format_version": 1}, record))
    doc = json_doc()
    doc["metadata"]["format_version"] = 0
    for r in doc["courses"]:
        r["name"] = r.pop("title")
    got = decode("json", orjson.dumps(doc))
    assert records_of(got) == records_of(GOOD)


def test_an_older_version_without_an_upgrade_is_refused() -> None:
    doc = json_doc()
    doc["metadata"]["format_version"] = 0
    with pytest.raises(InvalidArgument, match="no upgrade from version 0 to 1"):
        decode("json", orjson.dumps(doc))


def test_jsonl_without_trailer_is_truncated() -> None:
    lines = encode("jsonl", GOOD).splitlines(keepends=True)
    with pytest.raises(InvalidArgument, match="truncated"):
        decode("jsonl", b"".join(lines[:-1]))
    with pytest.raises(InvalidArgument, match="line 2: malformed or truncated JSON"):
        decode("jsonl", lines[0] + lines[1][:20] + b"\n")


def test_jsonl_unknown_field_names_the_record() -> None:
    data = encode("jsonl", GOOD).replace(b'"credits":5', b'"credits":5,"room":"x"', 1)
    with pytest.raises(InvalidArgument, match=r"courses record 0, field 'room'"):
        decode("jsonl", data)


# ---- tar.gz ------------------------------------------------------------------------


def tar_with(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, body in members:
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if info.isreg() else None)
    return buf.getvalue()


def members_of(data: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for m in tar.getmembers():
            f = tar.extractfile(m)
            out.append((m, f.read() if f else b""))
    return out


@pytest.mark.parametrize("bad", ["../evil.jsonl", "/etc/evil.jsonl", "a/../../x.jsonl"])
def test_tar_path_traversal_is_refused(bad: str) -> None:
    members = members_of(encode("tar.gz", GOOD))
    members.insert(1, (tarfile.TarInfo(bad), b"{}\n"))
    with pytest.raises(InvalidArgument, match="unsafe path"):
        decode("tar.gz", tar_with(members))


def test_tar_links_are_refused() -> None:
    members = members_of(encode("tar.gz", GOOD))
    link = tarfile.TarInfo("courses.jsonl")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    members[1] = (link, b"")
    with pytest.raises(InvalidArgument, match="not a regular file"):
        decode("tar.gz", tar_with(members))


def test_tar_member_with_a_wrong_sha256_is_data_loss() -> None:
    members = members_of(encode("tar.gz", GOOD))
    name = [m for m, _ in members].index(next(m for m, _ in members if m.name == "courses.jsonl"))
    info, body = members[name]
    members[name] = (info, body.replace(b"Ms A", b"Ms B"))
    with pytest.raises(DataLoss, match=r"member courses\.jsonl is damaged"):
        decode("tar.gz", tar_with(members))


def test_tar_too_many_members_or_bytes_is_resource_exhausted() -> None:
    data = encode("tar.gz", GOOD)
    with pytest.raises(ResourceExhausted, match="more than 3 members"):
        decode("tar.gz", data, BundleLimits(max_entries=3))
    with pytest.raises(ResourceExhausted, match="more than 100 bytes"):
        decode("tar.gz", data, BundleLimits(max_bytes=100))


def test_tar_gzip_bomb_is_refused_by_ratio() -> None:
    members = members_of(encode("tar.gz", GOOD))
    info, body = members[1]
    members[1] = (info, body + b" " * (20 * 1024 * 1024) + b"\n")
    with pytest.raises(ResourceExhausted, match="compression bomb"):
        decode("tar.gz", tar_with(members), BundleLimits(max_string_chars=10**7))


def test_tar_must_start_with_its_manifest() -> None:
    members = members_of(encode("tar.gz", GOOD))
    with pytest.raises(InvalidArgument, match=r"must start with manifest\.json"):
        decode("tar.gz", tar_with(members[1:]))


# ---- xlsx --------------------------------------------------------------------------


def zip_with(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in entries.items():
            zf.writestr(name, body)
    return buf.getvalue()


def xlsx_entries() -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(encode("xlsx", GOOD))) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_xlsx_zip_bomb_is_refused_before_parsing() -> None:
    entries = xlsx_entries()
    entries["xl/media/bomb.bin"] = b"\0" * (50 * 1024 * 1024)
    with pytest.raises(ResourceExhausted, match="refusing a zip bomb"):
        decode("xlsx", zip_with(entries))
    with pytest.raises(ResourceExhausted, match="zip entries, more than 3"):
        decode("xlsx", encode("xlsx", GOOD), BundleLimits(max_entries=3))
    with pytest.raises(ResourceExhausted, match="expands to"):
        decode("xlsx", encode("xlsx", GOOD), BundleLimits(max_bytes=20_000))


def test_xlsx_xml_bomb_is_refused() -> None:
    entries = xlsx_entries()
    sheet = "xl/worksheets/sheet2.xml"
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    )
    entries[sheet] = laughs + entries[sheet].split(b"?>", 1)[1]
    with pytest.raises(InvalidArgument, match="unsafe XML"):
        decode("xlsx", zip_with(entries))


def test_xlsx_neutralises_formulas_on_write_and_restores_them_on_read() -> None:
    sheet = xlsx_entries()["xl/worksheets/sheet2.xml"]
    assert b"'=1+2" in sheet and b"<f>" not in sheet
    assert records_of(decode("xlsx", encode("xlsx", GOOD)))[0][1]["description"] == "=1+2"


def test_xlsx_unknown_column_names_sheet_record_and_field() -> None:
    import openpyxl

    wb = openpyxl.load_workbook(io.BytesIO(encode("xlsx", GOOD)))
    ws = wb["courses"]
    ws.cell(1, 12, "room")
    ws.cell(3, 12, "B12")
    buf = io.BytesIO()
    wb.save(buf)
    with pytest.raises(InvalidArgument, match=r"courses record 1, field 'room': unknown field"):
        decode("xlsx", buf.getvalue())


def test_not_a_bundle_at_all_is_invalid_argument() -> None:
    for name in ("json", "jsonl", "xlsx", "tar.gz"):
        with pytest.raises(InvalidArgument):
            decode(name, b"hello, world\n")
