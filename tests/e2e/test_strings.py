"""The page's string tables: a key missing in either language, a placeholder that one
language lacks, or a key the page builds at run time (statuses, field labels) that no
table holds fails here. No browser needed."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ferry.datasets import school
from ferry.v1 import export_pb2, import_pb2, notify_pb2
from tests.e2e.test_export_center import STATIC

EN = json.loads((STATIC / "i18n" / "en.json").read_text(encoding="utf-8"))
EL = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))
JS = (STATIC / "app.js").read_text(encoding="utf-8")
HTML = (STATIC / "index.html").read_text(encoding="utf-8")


def test_both_languages_have_every_key_and_the_same_placeholders() -> None:
    assert sorted(set(EN) - set(EL)) == [] and sorted(set(EL) - set(EN)) == []
    for key in EN:
        assert EN[key].strip() and EL[key].strip(), key
        assert set(re.findall(r"\{(\w+)\}", EN[key])) == set(re.findall(r"\{(\w+)\}", EL[key])), key


def test_every_key_the_page_uses_exists() -> None:
    used = set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', HTML))
    used |= set(re.findall(r'\b(?:t|say)\("([A-Za-z_]+)"', JS))
    used |= {f"err_{c}" for c in re.findall(r'code: "([A-Z_]+)"', JS)}
    assert sorted(k for k in used if k not in EN) == []


def test_every_key_the_page_builds_at_run_time_exists() -> None:
    built: set[str] = set()
    for enum in (export_pb2.ExportJobStatus, import_pb2.ImportStatus,
                 notify_pb2.NotificationStatus):  # fmt: skip
        built |= set(enum.keys())
    source = Path(school.__file__).read_text(encoding="utf-8")
    fields = set(re.findall(r'Field\("([a-z_]+)"', source))
    built |= {f"field_{f}" for f in fields}
    built |= {f"st_{v}" for v in re.findall(r'<option value="([a-z]+)" data-i18n="st_', HTML)}
    assert sorted(k for k in built if k not in EN) == []
