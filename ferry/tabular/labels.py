"""The words of entity exports in each language they are written in (en, el): column
headers, table titles and the pdf's few words, and cells formatted by Babel for people.

An export asked for in a language (`StartExportRequest.language`) has these labels as its
header; one asked for in none keeps the field names (scripts and the CLI). Both import
back: `header_names` maps every label of every language to its field.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from babel import dates as babel_dates
from babel import numbers as babel_numbers

from ferry.datasets.spec import Kind
from ferry.errors import InvalidArgument

LANGUAGES = ("en", "el")

FIELDS: dict[str, dict[str, str]] = {
    "en": {
        "assessment": "Assessment",
        "category": "Category",
        "comment": "Comment",
        "course_code": "Course code",
        "created_at": "Created",
        "credits": "Credits",
        "date": "Date",
        "date_of_birth": "Date of birth",
        "deleted_at": "Deleted",
        "description": "Description",
        "email": "Email",
        "enrolled_on": "Enrolled on",
        "final_score": "Final score",
        "first_name": "First name",
        "graded_on": "Graded on",
        "kind": "Kind",
        "last_name": "Last name",
        "max_score": "Maximum score",
        "mentor_student_id": "Mentor (student ID)",
        "note": "Note",
        "prerequisite_code": "Prerequisite (course code)",
        "score": "Score",
        "semester": "Semester",
        "status": "Status",
        "student_id": "Student ID",
        "teacher": "Teacher",
        "title": "Title",
        "updated_at": "Updated",
        "weight": "Weight",
        "year_level": "Year",
        # filters named in a pdf's subtitle
        "search": "Search",
        "date_from": "From",
        "date_to": "To",
        "updated_since": "Updated since",
    },
    "el": {
        "assessment": "Αξιολόγηση",
        "category": "Κατηγορία",
        "comment": "Σχόλιο",
        "course_code": "Κωδικός μαθήματος",
        "created_at": "Δημιουργήθηκε",
        "credits": "Διδακτικές μονάδες",
        "date": "Ημερομηνία",
        "date_of_birth": "Ημερομηνία γέννησης",
        "deleted_at": "Διαγράφηκε",
        "description": "Περιγραφή",
        "email": "Email",
        "enrolled_on": "Ημερομηνία εγγραφής",
        "final_score": "Τελικός βαθμός",
        "first_name": "Όνομα",
        "graded_on": "Ημερομηνία βαθμολόγησης",
        "kind": "Είδος",
        "last_name": "Επώνυμο",
        "max_score": "Μέγιστος βαθμός",
        "mentor_student_id": "Μέντορας (αριθμός μητρώου)",
        "note": "Σημείωση",
        "prerequisite_code": "Προαπαιτούμενο (κωδικός μαθήματος)",
        "score": "Βαθμός",
        "semester": "Εξάμηνο",
        "status": "Κατάσταση",
        "student_id": "Αριθμός μητρώου",
        "teacher": "Διδάσκων",
        "title": "Τίτλος",
        "updated_at": "Ενημερώθηκε",
        "weight": "Βάρος",
        "year_level": "Τάξη",
        "search": "Αναζήτηση",
        "date_from": "Από",
        "date_to": "Έως",
        "updated_since": "Ενημερωμένα από",
    },
}

ENTITIES: dict[str, dict[str, str]] = {
    "en": {
        "attendance": "Attendance",
        "courses": "Courses",
        "daily_performance": "Daily performance",
        "enrollments": "Enrollments",
        "grades": "Grades",
        "highlights": "Highlights",
        "students": "Students",
    },
    "el": {
        "attendance": "Παρουσίες",
        "courses": "Μαθήματα",
        "daily_performance": "Ημερήσια επίδοση",
        "enrollments": "Εγγραφές σε μαθήματα",
        "grades": "Βαθμοί",
        "highlights": "Διακρίσεις",
        "students": "Μαθητές",
    },
}

WORDS: dict[str, dict[str, str]] = {
    "en": {"filters": "Filters", "none": "none", "generated": "Generated", "page": "Page {n} of"},
    "el": {
        "filters": "Φίλτρα",
        "none": "κανένα",
        "generated": "Δημιουργήθηκε",
        "page": "Σελίδα {n} από",
    },
}


def check_language(language: str, field: str = "language") -> str:
    """`language` trimmed and lower-cased ("" for none: field names, English words);
    InvalidArgument (reason UNKNOWN_LANGUAGE) naming `field` for another."""
    lang = language.strip().lower()
    if lang and lang not in LANGUAGES:
        raise InvalidArgument(
            f"unknown {field} {language[:64]!r}; known: {', '.join(LANGUAGES)}",
            field=field,
            reason="UNKNOWN_LANGUAGE",
            metadata={"value": language, "known": ", ".join(LANGUAGES)},
        )
    return lang


def _fallback(name: str) -> str:
    return name.replace("_", " ").capitalize()


def field_label(name: str, language: str) -> str:
    """The column label of field `name` in `language` (English for ""; its name in words
    for a field no table knows)."""
    table = FIELDS.get(language or "en", FIELDS["en"])
    return table.get(name) or FIELDS["en"].get(name) or _fallback(name)


def entity_title(name: str, language: str) -> str:
    """The title of an export of entity `name` in `language`."""
    table = ENTITIES.get(language or "en", ENTITIES["en"])
    return table.get(name) or ENTITIES["en"].get(name) or _fallback(name)


def word(key: str, language: str) -> str:
    """One of the pdf's own words in `language`."""
    return WORDS.get(language or "en", WORDS["en"])[key]


def header_names() -> dict[str, str]:
    """Every label of every language -> its field name (an import reads either)."""
    return {label: name for table in FIELDS.values() for name, label in table.items()}


def cell(value: Any, kind: Kind, language: str) -> str:
    """A pdf cell for people in `language`: numbers with the locale's separators (69,97 in
    Greek), dates and UTC timestamps in its medium format."""
    if value is None:
        return ""
    loc = language or "en"
    if kind is Kind.FLOAT and isinstance(value, (int, float)):
        return str(babel_numbers.format_decimal(value, format="#,##0.###", locale=loc))
    if kind is Kind.INT and isinstance(value, int) and not isinstance(value, bool):
        return str(babel_numbers.format_decimal(value, format="0", locale=loc))
    if kind is Kind.TIMESTAMP and isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return str(babel_dates.format_datetime(aware, "short", tzinfo=dt.UTC, locale=loc)) + " UTC"
    if kind is Kind.DATE and isinstance(value, dt.date):
        return str(babel_dates.format_date(value, "medium", locale=loc))
    return str(value)


def widest_date(kind: Kind, language: str) -> str:
    """The widest a date or timestamp of `kind` is written in `language` (over a year's
    months), so its pdf column is never too narrow."""
    days = [dt.datetime(2026, m, 28, 23, 59, tzinfo=dt.UTC) for m in range(1, 13)]
    texts = [cell(d if kind is Kind.TIMESTAMP else d.date(), kind, language) for d in days]
    return max(texts, key=len)
