"""Templates: every one renders in en and el, HTML is escaped, missing variables are a clear
error, languages without a template fall back to English, Babel formats per language."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ferry.errors import InvalidArgument
from ferry.notify import templates

VARS = {
    "export_completed": {
        "export_type": "students",
        "format": "xlsx",
        "records": 1234567,
        "size_bytes": 3 * 1024**2,
        "duration_seconds": 75,
        "filename": "s.xlsx",
        "download_url": "http://x/d?a=1&b=2",
        "link_expires_at": "2026-12-08T10:00:00+00:00",
    },
    "export_failed": {
        "export_type": "grades",
        "format": "pdf",
        "error": "disk <full>",
        "job_id": "j1",
    },
    "import_finished": {
        "filename": "fall.json",
        "dry_run": False,
        "import_id": "i1",
        "warnings": ["w <1>"],
        "failed": False,
        "error": "",
        "entities": [
            {
                "entity": "student",
                "created": 3,
                "updated": 1,
                "unchanged": 0,
                "skipped": 0,
                "errors": 0,
            }
        ],
    },
    "backup_done": {
        "schedule": "nightly",
        "export_type": "students",
        "format": "csv",
        "records": 10,
        "size_bytes": 100,
        "duration_seconds": 1,
        "filename": "n.csv",
        "download_url": "http://x/d",
        "link_expires_at": "2026-12-08T10:00:00+00:00",
    },
    "backup_failed": {
        "schedule": "nightly",
        "export_type": "students",
        "format": "csv",
        "error": "boom",
        "job_id": "j2",
    },
}


def test_every_template_has_variables_here() -> None:
    assert sorted(VARS) == templates.names()


@pytest.mark.parametrize("name", sorted(VARS))
@pytest.mark.parametrize("language", ["en", "el"])
def test_renders(name: str, language: str) -> None:
    r = templates.render(name, VARS[name], language)
    assert r.subject and "\n" not in r.subject
    assert r.text.strip() and r.html.startswith("<!doctype html>")
    assert f'lang="{language}"' in r.html
    for value in ("<full>", "<1>"):
        assert value not in r.html


def test_language_formats() -> None:
    en = templates.render("export_completed", VARS["export_completed"], "en")
    el = templates.render("export_completed", VARS["export_completed"], "el")
    assert "1,234,567" in en.subject and "1.234.567" in el.subject
    assert "3.0 MB" in en.text and "3,0 MB" in el.text
    assert "Dec 8, 2026" in en.text and "8 Δεκ 2026" in el.text
    assert "Took: 75 seconds" in en.text and "Διάρκεια: 75 δευτερόλεπτα" in el.text


def test_english_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "templates"
    shutil.copytree(templates.FOLDER, folder)
    for p in (folder / "el").glob("backup_failed.*"):
        p.unlink()
    monkeypatch.setattr(templates, "FOLDER", folder)
    templates._env.cache_clear()
    try:
        r = templates.render("backup_failed", VARS["backup_failed"], "el")
        assert r.subject == "Scheduled export nightly failed"
        assert "Στάλθηκε από το Ferry." in r.html  # the Greek layout still frames it
    finally:
        templates._env.cache_clear()


def test_missing_and_wrong_variables() -> None:
    with pytest.raises(InvalidArgument) as e:
        templates.render("export_failed", {"export_type": "x", "format": "csv"}, "en")
    assert e.value.field == "variables" and "'error' is undefined" in e.value.message
    with pytest.raises(InvalidArgument) as e:
        templates.render("export_completed", {**VARS["export_completed"], "records": "many"}, "en")
    assert e.value.field == "variables"
