# ruff: noqa: RUF001
"""The words of reports in each language they are written in (en, el): the at-risk
reasons, with the student's value and the threshold, and the counting policy."""

from __future__ import annotations

STUDENT_POLICY = (
    "Withdrawn or dropped courses are shown as W and left out of the GPA, credits "
    "attempted and every average; soft-deleted records never count, nor anything of a "
    "soft-deleted student, course or enrolment; a class average needs at least the "
    "configured number of graded students."
)

SEMESTER_POLICY = {
    "en": (
        "Withdrawn or dropped enrolments are counted apart and left out of every average "
        "and distribution; soft-deleted records never count, nor anything of a "
        "soft-deleted student, course or enrolment. A trend needs daily marks in at "
        "least {weeks} distinct weeks."
    ),
    "el": (
        "Οι εγγραφές με αποχώρηση ή διακοπή μετρώνται χωριστά και δεν μπαίνουν σε κανέναν "
        "μέσο όρο ή κατανομή· οι διαγραμμένες εγγραφές δεν μετρούν ποτέ, ούτε ό,τι ανήκει "
        "σε διαγραμμένο μαθητή, μάθημα ή εγγραφή. Μια τάση χρειάζεται ημερήσιους βαθμούς "
        "σε τουλάχιστον {weeks} διαφορετικές εβδομάδες."
    ),
}

REASONS = {
    "en": {
        "low_grade": "grade {value}% < {limit}%",
        "low_attendance": "attendance {value}% < {limit}%",
        "falling_trend": "falling trend {value} points/week ≤ -{limit}",
    },
    "el": {
        "low_grade": "βαθμός {value}% < {limit}%",
        "low_attendance": "παρουσίες {value}% < {limit}%",
        "falling_trend": "πτωτική τάση {value} μονάδες/εβδομάδα ≤ -{limit}",
    },
}
