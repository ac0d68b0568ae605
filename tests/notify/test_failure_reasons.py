"""Issue 24, item 1: a failed export's mail says why in its own language, for every reason
a job can end with. The reasons are enumerated from the code that stores them (the
runner stores `reason_of(error)` for any FerryError and INTERNAL for anything else, the
reaper WORKER_LOST): a reason added without words in either language fails here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ferry import errors
from ferry.notify import reasons, templates
from tests.notify.helpers import SmtpServer
from tests.notify.test_export_mail import _broken_export, export_app, seeded  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
SERVER_SENTENCE = "the server said this in English"


def _error_classes() -> list[type[errors.FerryError]]:
    out: list[type[errors.FerryError]] = []
    todo: list[type[errors.FerryError]] = [errors.FerryError]
    while todo:
        cls = todo.pop()
        out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def job_reasons() -> dict[str, tuple[str, ...]]:
    """{reason: the metadata keys it may carry} for every reason a failed job can store."""
    found = {r: v for r, v in errors.REASONS.items() if r not in errors.NOT_JOB_REASONS}
    runner = (ROOT / "ferry" / "export_jobs" / "runner.py").read_text(encoding="utf-8")
    # The model below holds only while the runner stores reason_of(...) and INTERNAL.
    assert "reason_of(e)" in runner and 'reason, meta = "INTERNAL"' in runner
    for cls in _error_classes():
        for field in ("", "a_field"):
            found.setdefault(errors.reason_of(cls("x", field=field)), ("field",))
    # Reasons written straight into a job's error_reason (the reaper's WORKER_LOST).
    for path in (ROOT / "ferry").rglob("*.py"):
        for m in re.findall(r'error_reason\s*=\s*"([A-Z_]+)"', path.read_text(encoding="utf-8")):
            found.setdefault(m, ())
    return found


def test_the_enumeration_finds_the_reasons_a_job_ends_with() -> None:
    got = job_reasons()
    for reason in ("WORKER_LOST", "INTERNAL", "FIELD_INVALID", "TOO_MANY_ROWS", "NOT_FOUND",
                   "INVALID_ARGUMENT", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED",
                   "DATA_LOSS", "UNAVAILABLE", "CANCELLED"):  # fmt: skip
        assert reason in got, reason


def test_every_reason_a_job_can_end_with_has_words_in_every_language() -> None:
    missing = [
        (language, reason)
        for reason in job_reasons()
        for language in templates.LANGUAGES
        if not reasons.WORDS.get(language, {}).get(reason, "").strip()
    ]
    assert missing == []
    for reason, keys in job_reasons().items():
        en, el = reasons.WORDS["en"][reason], reasons.WORDS["el"][reason]
        assert reasons.slots(en) == reasons.slots(el), reason
        assert reasons.slots(en) <= set(keys), reason  # only values the reason carries
        if reasons.slots(en):  # words for when a value is missing
            for language in templates.LANGUAGES:
                bare = reasons.BARE[language][reason]
                assert bare.strip() and not reasons.slots(bare), (language, reason)
    assert sorted(reasons.WORDS["en"]) == sorted(reasons.WORDS["el"])


def _render(template: str, language: str, reason: str, details: dict[str, str]) -> Any:
    variables = {"job_id": "job-1", "export_type": "courses", "format": "pdf",
                 "filename": "courses.pdf", "schedule": "nightly", "error": SERVER_SENTENCE,
                 "error_reason": reason, "error_details": details}  # fmt: skip
    return templates.render(template, variables, language)


@pytest.mark.parametrize("template", ["export_failed", "backup_failed"])
def test_every_failure_mail_words_its_reason_with_its_values(template: str) -> None:
    for reason, keys in job_reasons().items():
        details = {k: f"<{k}-{reason.lower()}>" for k in keys}
        for language in templates.LANGUAGES:
            out = _render(template, language, reason, details)
            want = reasons.WORDS[language][reason]
            for k in reasons.slots(want):
                want = want.replace("{" + k + "}", details[k])
            assert want in out.text, (language, reason, out.text)
            assert SERVER_SENTENCE not in out.text + out.html, (language, reason)
            assert not re.search(r"\{\w+\}", out.text), (language, reason, out.text)
            # The HTML part has the values escaped (they come from a request).
            for k in reasons.slots(reasons.WORDS[language][reason]):
                assert details[k] not in out.html and "&lt;" + details[k][1:-1] in out.html


def test_a_reason_without_its_values_has_bare_words_never_a_hole() -> None:
    out = _render("export_failed", "el", "INTERNAL", {})
    assert "σφάλμα του διακομιστή" in out.text and "{reference}" not in out.text
    assert SERVER_SENTENCE not in out.text
    out = _render("export_failed", "el", "TOO_MANY_ROWS", {"max": " "})
    assert "PDF" in out.text and "{max}" not in out.text
    # A value that looks like a placeholder is written as it is, not filled again.
    out = _render("export_failed", "en", "UNKNOWN_VALUE",
                  {"field": "{value}", "value": "x", "known": "a, b"})  # fmt: skip
    assert "{value}: there is no x; known: a, b" in out.text
    # A reason nobody words (a Send caller's own variables) keeps the sentence given.
    assert SERVER_SENTENCE in _render("export_failed", "el", "NO_SUCH", {}).text
    assert SERVER_SENTENCE in _render("export_failed", "el", 7, "not a map").text  # type: ignore[arg-type]


def test_a_greek_mail_for_a_non_internal_reason_is_greek(
    export_app: Any,  # noqa: F811
    smtp: SmtpServer,
) -> None:
    """Through the runner, the outbox, a notify worker and aiosmtpd: a PDF job refused for
    its size (TOO_MANY_ROWS, max 2000) mails its Greek words, never the English sentence."""
    english = "a pdf holds at most 2000 rows, this export has 52000"
    failure = errors.ResourceExhausted(
        english, field="format", reason="TOO_MANY_ROWS", metadata={"max": "2000"}
    )
    job, mail = _broken_export(export_app, smtp, "el", failure)
    assert job.error_reason == "TOO_MANY_ROWS" and dict(job.error_metadata)["max"] == "2000"
    assert job.error_message == english
    text = mail.get_body(("plain",)).get_content()
    assert "ένα PDF χωράει έως 2000 γραμμές· επιλέξτε csv ή xlsx ή στενέψτε τα φίλτρα" in text
    html = mail.get_body(("html",)).get_content()
    assert "ένα PDF χωράει έως 2000 γραμμές" in html
    for part in (text, html):
        assert english not in part and "pdf holds" not in part and "What went wrong" not in part
