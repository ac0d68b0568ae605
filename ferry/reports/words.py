# ruff: noqa: RUF001
"""The words of reports in each language they are written in (en, el): the at-risk
reasons, with the student's value and the threshold, the counting policy, and the
printed words of the PDFs."""

from __future__ import annotations

LANGUAGES = ("en", "el")

STUDENT_POLICY = {
    "en": (
        "Withdrawn or dropped courses are shown as W and left out of the GPA, credits "
        "attempted and every average; soft-deleted records never count, nor anything of a "
        "soft-deleted student, course or enrolment; a class average needs at least the "
        "configured number of graded students."
    ),
    "el": (
        "Τα μαθήματα με αποχώρηση ή διακοπή εμφανίζονται ως W και δεν μπαίνουν στον μέσο "
        "όρο βαθμών (GPA), στις μονάδες ή σε κανέναν μέσο όρο· οι διαγραμμένες εγγραφές δεν "
        "μετρούν ποτέ, ούτε ό,τι ανήκει σε διαγραμμένο μαθητή, μάθημα ή εγγραφή· ο μέσος "
        "όρος τάξης χρειάζεται τον ελάχιστο ορισμένο αριθμό βαθμολογημένων μαθητών."
    ),
}

EMPTY_NOTE = {
    "en": "No grades, attendance or performance recorded for {what}.",
    "el": "Δεν υπάρχουν βαθμοί, παρουσίες ή επιδόσεις για {what}.",
}
ANY_DAY = {"en": "any day", "el": "καμία ημέρα"}

# The privacy note under a student's courses; {n} is reports.class_size.
CLASS_NOTE = "Class averages are shown only for classes with at least {n} graded students."

# The printed words of the PDFs: English text -> its Greek. Words missing here print in
# English (a test checks none is missing).
GREEK = {
    "Page {n}": "Σελίδα {n}",
    "Course results (%)": "Αποτελέσματα μαθημάτων (%)",
    "Attendance (days)": "Παρουσίες (ημέρες)",
    "Performance by week": "Επίδοση ανά εβδομάδα",
    "not enough data": "ανεπαρκή δεδομένα",
    "rising": "ανοδική",
    "falling": "πτωτική",
    "steady": "σταθερή",
    "present": "παρών",
    "late": "καθυστέρηση",
    "absent": "απών",
    "excused": "δικαιολογημένη",
    "Student report: {name}": "Αναφορά μαθητή: {name}",
    "Student report {id}": "Αναφορά μαθητή {id}",
    "year {n}": "τάξη {n}",
    "all data": "όλα τα δεδομένα",
    "{a} to {b}": "{a} έως {b}",
    "Overall": "Συνολικά",
    "GPA": "Μέσος όρος βαθμών (GPA)",
    "Credits": "Μονάδες",
    "{earned} earned of {attempted}": "{earned} από {attempted}",
    "Attendance": "Παρουσίες",
    "{rate}% of {days} days": "{rate}% σε {days} ημέρες",
    "Performance": "Επίδοση",
    "{avg} average, not enough data for a trend": ("μέσος όρος {avg}, ανεπαρκή δεδομένα για τάση"),
    "{avg} average, {trend} trend ({slope}/week)": (
        "μέσος όρος {avg}, {trend} τάση ({slope}/εβδομάδα)"
    ),
    "Summary": "Σύνοψη",
    "Student": "Μαθητής",
    "Class average": "Μέσος όρος τάξης",
    "Courses": "Μαθήματα",
    "Course": "Μάθημα",
    "Teacher": "Εκπαιδευτικός",
    "Result %": "Αποτέλεσμα %",
    "Letter": "Βαθμός",
    "Class avg %": "Μ.Ο. τάξης %",
    "Attendance %": "Παρουσίες %",
    "Days": "Ημέρες",
    "Week starting": "Εβδομάδα από",
    "Average": "Μέσος όρος",
    "Average %": "Μέσος όρος %",
    "Marks": "Βαθμοί",
    "Assessments": "Αξιολογήσεις",
    "Assessment": "Αξιολόγηση",
    "Score": "Βαθμός",
    "Max": "Μέγιστο",
    "Weight": "Βάρος",
    "Graded on": "Ημερομηνία",
    "Comment": "Σχόλιο",
    "Highlights": "Διακρίσεις",
    "Semester": "Εξάμηνο",
    "Title": "Τίτλος",
    "Kind": "Είδος",
    "Description": "Περιγραφή",
    "Grading scale": "Κλίμακα βαθμολογίας",
    "{pts} pts": "{pts} μον.",
    CLASS_NOTE: (
        "Ο μέσος όρος τάξης εμφανίζεται μόνο σε τάξεις με τουλάχιστον {n} βαθμολογημένους μαθητές."
    ),
    "Semester report: {s}": "Αναφορά εξαμήνου: {s}",
    "Semester report {s}": "Αναφορά εξαμήνου {s}",
    "{c} courses · {n} students · average {a}% · attendance {r}%": (
        "{c} μαθήματα · {n} μαθητές · μέσος όρος {a}% · παρουσίες {r}%"
    ),
    "Grade distribution (students per letter, all courses)": (
        "Κατανομή βαθμών (μαθητές ανά βαθμό, όλα τα μαθήματα)"
    ),
    "Students": "Μαθητές",
    "Enrolled": "Εγγεγραμμένοι",
    "Withdrawn": "Αποχωρήσεις",
    "Students at risk ({n})": "Μαθητές σε κίνδυνο ({n})",
    "Below {p}% overall (low_grade), below {a}% attendance (low_attendance), or daily "
    "performance falling by {t} or more a week over marks in at least {w} distinct weeks "
    "(falling_trend).": (
        "Κάτω από {p}% συνολικά (low_grade), κάτω από {a}% παρουσίες (low_attendance) ή "
        "ημερήσια επίδοση που πέφτει κατά {t} ή περισσότερο την εβδομάδα, με βαθμούς σε "
        "τουλάχιστον {w} διαφορετικές εβδομάδες (falling_trend)."
    ),
    "Name": "Όνομα",
    "Overall %": "Συνολικά %",
    "Trend/week": "Τάση/εβδομάδα",
    "Reasons": "Λόγοι",
    "Semester {s}": "Εξάμηνο {s}",
}


def words(lang: str) -> Words:
    return Words(lang)


class Words:
    """`w("Text {x}", x=1)`: the text in the language, formatted."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.missing: set[str] = set()  # asked for in Greek, not in GREEK (tests read it)

    def __call__(self, text: str, **values: object) -> str:
        if self.lang == "el":
            if text in GREEK:
                text = GREEK[text]
            else:
                self.missing.add(text)
        return text.format(**values) if values else text


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
