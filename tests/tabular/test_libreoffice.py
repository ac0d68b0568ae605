"""Issue 24, files people open elsewhere: a Greek CSV export opened in LibreOffice keeps its
Greek headers and names, and its byte-order mark never leaks into the first header cell.
LibreOffice converts it headless to xlsx, which openpyxl reads back.

Headless, LibreOffice reads a CSV in the character set its filter options name and ignores
the byte-order mark (without options it reads Latin-1 and garbles the Greek, whatever the
locale): the options are UTF-8 (76), what its import dialog picks for a file with a BOM.

The machine gets LibreOffice from scripts/machine-setup.sh (libreoffice-calc-nogui)."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import openpyxl
import pytest

from ferry.datasets.spec import Kind
from ferry.tabular.base import Table, TableColumn
from ferry.tabular.csv import CsvFormat
from ferry.tabular.labels import field_label

SOFFICE = shutil.which("soffice") or shutil.which("libreoffice")
NAMES = [("S000001", "Ελένη", "Νικολάου"), ("S000002", "Γιώργος", "Παπαδόπουλος")]


def _greek_csv(bom: bool) -> bytes:
    fields = ("student_id", "first_name", "last_name")
    table = Table(
        title="Μαθητές",
        columns=[TableColumn(f, field_label(f, "el"), Kind.STR) for f in fields],
        language="el",
    )
    out = io.BytesIO()
    CsvFormat(bom=bom).write(out, table, NAMES)
    return out.getvalue()


def _open_in_libreoffice(data: bytes, tmp_path: Path) -> list[list[object]]:
    src = tmp_path / "students_2026-fall_el.csv"
    src.write_bytes(data)
    profile = (tmp_path / "lo-profile").as_uri()  # its own profile: runs never collide
    done = subprocess.run(
        [str(SOFFICE), f"-env:UserInstallation={profile}", "--headless", "--norestore",
         "--infilter=CSV:44,34,76", "--convert-to", "xlsx", "--outdir", str(tmp_path), str(src)],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    out = tmp_path / "students_2026-fall_el.xlsx"
    assert out.exists(), (done.returncode, done.stdout, done.stderr)
    sheet = openpyxl.load_workbook(out, read_only=True).worksheets[0]
    return [list(r) for r in sheet.iter_rows(values_only=True)]


@pytest.mark.skipif(SOFFICE is None, reason="LibreOffice is not installed (machine-setup.sh)")
def test_libreoffice_opens_a_greek_csv_with_its_greek_intact(tmp_path: Path) -> None:
    data = _greek_csv(bom=True)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = _open_in_libreoffice(data, tmp_path)
    assert rows[0] == ["Αριθμός μητρώου", "Όνομα", "Επώνυμο"]
    assert [tuple(r) for r in rows[1:]] == NAMES
