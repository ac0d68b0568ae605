"""Greek mails are Greek all the way: every English template has a Greek one, and what was
exported or imported is named in Greek (the words the page uses), never `students`."""

from __future__ import annotations

import copy
import json
import re

import pytest

from ferry.notify import templates
from tests.e2e.test_export_center import STATIC
from tests.notify.test_templates import VARS

PAGE_EL = json.loads((STATIC / "i18n" / "el.json").read_text(encoding="utf-8"))
HTML = (STATIC / "index.html").read_text(encoding="utf-8")
TYPES = re.findall(
    r'<option value="([a-z_]+)" data-i18n="[A-Za-z]+">',
    HTML.split('id="job-type"')[1].split("</select>")[0],
)


def test_every_template_has_a_greek_one() -> None:
    en = {p.name for p in (templates.FOLDER / "en").iterdir() if not p.name.startswith("plain.")}
    el = {p.name for p in (templates.FOLDER / "el").iterdir()}
    assert sorted(en - el) == []


@pytest.mark.parametrize(
    "name", ["export_completed", "export_failed", "backup_done", "backup_failed"]
)
@pytest.mark.parametrize("export_type", TYPES)
def test_the_export_type_is_named_in_greek(name: str, export_type: str) -> None:
    assert len(TYPES) == 7
    variables = copy.deepcopy(VARS[name]) | {"export_type": export_type}
    r = templates.render(name, variables, "el")
    greek = PAGE_EL[export_type]
    for part in (r.subject, r.text, r.html) if name.startswith("export") else (r.text, r.html):
        assert greek in part, (name, export_type, part)
        assert not re.search(rf"\b{export_type}\b", part), (name, export_type, part)


def test_imported_entities_are_named_in_greek() -> None:
    variables = copy.deepcopy(VARS["import_finished"])
    variables["entities"][0]["entity"] = "grades"
    r = templates.render("import_finished", variables, "el")
    assert PAGE_EL["entity_grades"] in r.text and "grades" not in r.text
    assert PAGE_EL["entity_grades"] in r.html


@pytest.mark.parametrize("name", ["export_failed", "backup_failed"])
def test_a_failure_is_worded_in_greek_from_its_reason(name: str) -> None:
    """A failed job's machine reason and values become Greek words, escaped in HTML; a
    reason without Greek words (or none) falls back to the stored sentence."""
    variables = copy.deepcopy(VARS[name]) | {
        "error_reason": "TOO_MANY_ROWS",
        "error_details": {"max": "<200000>", "field": "limit"},
    }
    r = templates.render(name, variables, "el")
    assert "ένα PDF χωράει έως <200000> γραμμές" in r.text
    assert "ένα PDF χωράει έως &lt;200000&gt; γραμμές" in r.html
    assert VARS[name]["error"] not in r.text
    variables["error_reason"] = "SOMETHING_NEW"
    r = templates.render(name, variables, "el")
    assert VARS[name]["error"] in r.text
    assert "disk &lt;full&gt;" in r.html or VARS[name]["error"] in r.html
