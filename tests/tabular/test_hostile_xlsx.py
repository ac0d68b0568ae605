"""Hostile XLSX uploads are refused before they can exhaust the server."""

from __future__ import annotations

import io
import zipfile

import openpyxl.xml
import pytest

from ferry.errors import InvalidArgument, ResourceExhausted
from ferry.tabular.base import ReadLimits, Table, TableColumn
from ferry.tabular.xlsx import XlsxFormat

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>
<row r="1"><c r="A1" t="inlineStr"><is><t>&lol9;</t></is></c></row></sheetData></worksheet>
"""


def valid_xlsx() -> bytes:
    out = io.BytesIO()
    XlsxFormat().write(out, Table("T", [TableColumn("a", "A")]), [("x",)])
    return out.getvalue()


def replace_member(data: bytes, name: str, content: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = content if info.filename == name else src.read(info)
            dst.writestr(info.filename, body, zipfile.ZIP_DEFLATED)
    return out.getvalue()


def read(data: bytes, limits: ReadLimits | None = None) -> list[dict[str, str | None]]:
    return list(XlsxFormat().read(io.BytesIO(data), limits or ReadLimits()))


def test_openpyxl_parses_through_defusedxml() -> None:
    assert openpyxl.xml.DEFUSEDXML


@pytest.mark.parametrize("member", ["xl/worksheets/sheet1.xml", "xl/workbook.xml"])
def test_billion_laughs_in_any_part_is_refused(member: str) -> None:
    with pytest.raises(InvalidArgument, match="XML entities are not allowed"):
        read(replace_member(valid_xlsx(), member, BILLION_LAUGHS))


def test_zip_bomb_is_refused_by_its_compression_ratio_before_parsing() -> None:
    bomb = replace_member(valid_xlsx(), "xl/worksheets/sheet1.xml", b"\0" * (50 * 1024 * 1024))
    assert len(bomb) < 200_000
    with pytest.raises(ResourceExhausted, match=r"compresses [\d,]+:1"):
        read(bomb)


def test_xlsx_expanding_past_max_bytes_is_refused() -> None:
    data = valid_xlsx()
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        expanded = sum(i.file_size for i in zf.infolist())
    assert expanded > len(data) + 1
    with pytest.raises(ResourceExhausted, match="expands to"):
        read(data, ReadLimits(max_bytes=len(data) + 1))


def test_xlsx_with_too_many_zip_entries_is_refused() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for i in range(30):
            zf.writestr(f"junk/{i}.xml", b"<a/>")
    with pytest.raises(ResourceExhausted, match="30 zip entries"):
        read(out.getvalue(), ReadLimits(max_zip_entries=20))


def test_xlsx_upload_larger_than_max_bytes_is_refused_while_reading() -> None:
    with pytest.raises(ResourceExhausted, match="larger than the 100-byte limit"):
        read(valid_xlsx(), ReadLimits(max_bytes=100))


def test_zip_without_a_workbook_is_not_xlsx() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("hello.txt", b"hi")
    with pytest.raises(InvalidArgument, match="not a readable XLSX"):
        read(out.getvalue())
