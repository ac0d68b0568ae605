# ruff: noqa: RUF001
"""Imports keep machine reasons (ferry.merge.reasons) for their failure and for each
record error, and the `import_finished` mail words them in its language: a failed import
announced to a Greek reader has no English in its failure part, and its record errors'
reasons are Greek."""

from __future__ import annotations

import copy
import re

import pytest
from sqlalchemy.engine import Engine

from ferry.bundle.formats.base import Event
from ferry.imports import convert
from ferry.merge import Status, get_import
from ferry.merge import reasons as codes
from ferry.notify import reasons, templates
from ferry.notify.import_announcement import import_variables
from tests.merge.helpers import rebuild, records, run

LANGUAGES = ("en", "el")


def test_every_reason_has_words_in_every_language() -> None:
    for table, bare, known in (
        (reasons.RECORD_WORDS, reasons.IMPORT_BARE, codes.RECORD),
        (reasons.IMPORT_WORDS, reasons.IMPORT_BARE, codes.IMPORT),
    ):
        for code, keys in known.items():
            for language in LANGUAGES:
                words = table[language].get(code) or reasons.WORDS[language][code]
                assert words.strip() and reasons.slots(words) <= set(keys), (code, language)
                if reasons.slots(words) and code in table[language]:
                    assert not reasons.slots(bare[language][code]), (code, language)
        assert sorted(table["en"]) == sorted(table["el"])


def _broken(events: list[Event]) -> list[Event]:
    by = copy.deepcopy(records(events))
    by["grades"][0]["score"] = "πολλά"  # not a number
    by["grades"][1]["score"] = 5e7  # out of range
    by["attendance"][0]["date"] = "32/13/2026"  # not a date
    by["enrollments"][0]["student_id"] = "S-NOBODY"  # its student exists nowhere
    by["grades"].append(dict(by["grades"][5]))  # a duplicate key
    return rebuild(by)


def _latin_words(text: str, allowed: set[str]) -> list[str]:
    return [w for w in re.findall(r"[A-Za-z]{3,}", text) if w not in allowed]


def test_a_failed_import_is_worded_in_greek_from_its_reasons(
    events: list[Event], target: Engine
) -> None:
    out = run(target, _broken(events))
    assert out.status is Status.FAILED
    assert (out.error_reason, out.error_details) == (
        "INVALID_RECORDS",
        {"count": str(out.total_errors)},
    )
    stored = get_import(target, out.id)  # the reasons are kept with the import
    assert stored.error_reason == "INVALID_RECORDS"
    found = {e.code for e in stored.errors}
    assert {
        "NOT_NUMBER",
        "OUT_OF_RANGE",
        "NOT_DATE",
        "PARENT_MISSING",
        "DUPLICATE_KEY",
    } <= found, stored.errors
    result = convert.result_proto(stored)
    assert result.error_reason == "INVALID_RECORDS"
    assert {e.reason_code for e in result.errors} == found
    variables = import_variables(result, "fall.json", "el")
    mail = templates.render("import_finished", variables, "el")
    failure = next(line for line in mail.text.splitlines() if line.startswith("Τι πήγε στραβά"))
    assert f"{out.total_errors} μη έγκυρες εγγραφές" in failure
    assert _latin_words(failure, set()) == [], failure
    assert out.error_message not in mail.text + mail.html
    listed = mail.text[mail.text.index("Εγγραφές με σφάλματα:") :]
    # Record keys and the file's own values are data; everything else is Greek.
    data = {w for e in result.errors for w in re.findall(r"[A-Za-z]{3,}", e.natural_key)}
    data |= {"NOBODY"}
    for e in result.errors:
        assert e.reason not in mail.text + mail.html  # the English sentence is gone
        greek = reasons.record_reason(e.reason_code, dict(e.details), "el")
        assert greek in listed and greek != reasons.record_reason(e.reason_code, {}, "en")
    lines = [line for line in listed.splitlines() if line.startswith("- ")]
    assert len(lines) == min(10, len(result.errors)) + (1 if variables["more_errors"] else 0)
    assert all(_latin_words(line, data) == [] for line in lines), lines
    english = templates.render("import_finished", import_variables(result, "fall.json"), "en")
    assert f"{out.total_errors} invalid record(s); nothing was imported" in english.text
    assert "not a number: πολλά" in english.text


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_import_recorded_before_reasons_keeps_its_sentences(
    events: list[Event], target: Engine
) -> None:
    out = run(target, _broken(events))
    result = convert.result_proto(out)
    result.error_reason = ""
    result.error_metadata.clear()
    for e in result.errors:
        e.reason_code = ""
    variables = import_variables(result, "fall.json", "el")
    assert variables["error"] == out.error_message
    assert [r["reason"] for r in variables["record_errors"]] == [e.reason for e in result.errors][
        :10
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_server_error_keeps_its_reference_as_its_reason(
    events: list[Event], target: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ferry.errors import Internal
    from ferry.merge import apply, list_imports

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("SELECT secret FROM somewhere")

    monkeypatch.setattr(apply, "insert_new", broken)
    with pytest.raises(Internal):
        run(target, events)
    (stored,) = list_imports(target, 10, "").items
    ref = stored.error_details["reference"]
    assert stored.error_reason == "INTERNAL" and ref in stored.error_message
    variables = import_variables(convert.result_proto(stored), "fall.json", "el")
    assert variables["error"] == f"σφάλμα του διακομιστή (αριθμός αναφοράς {ref})"
    assert "secret" not in variables["error"]
