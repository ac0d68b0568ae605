# Greek letters here are meant, not look-alikes of Latin ones.
# ruff: noqa: RUF001
"""Name lists and fixed texts for the demo seed: English and Greek people, subjects, notes.

Greek names are written in real Greek letters (with tonos) so exports, reports and
collation are exercised with non-ASCII text; `ascii_slug` transliterates them for emails.
Some texts deliberately start with `=`, `+`, `-` or `@` so spreadsheet exports must
neutralise formula injection.
"""

from __future__ import annotations

import unicodedata

# Compact lists read better than one name per line.
# fmt: off
ENGLISH_MALE = (
    "James", "Oliver", "Jack", "Harry", "George", "Noah", "Leo", "Thomas", "Daniel", "Samuel",
    "William", "Henry", "Lucas", "Ethan", "Adam", "Joseph", "Max", "Isaac", "Ryan", "Owen",
)
ENGLISH_FEMALE = (
    "Olivia", "Amelia", "Emily", "Isla", "Ava", "Sophie", "Grace", "Lily", "Chloe", "Ella",
    "Charlotte", "Mia", "Hannah", "Lucy", "Ruby", "Evie", "Freya", "Alice", "Zoe", "Megan",
)
ENGLISH_LAST = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
    "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
    "Jackson", "Clarke", "Hughes", "Edwards", "Turner", "Collins", "Parker", "Morgan",
    "O'Brien", "Murphy", "Kelly", "Baker",
)
GREEK_MALE = (
    "Γιώργος", "Δημήτρης", "Κωνσταντίνος", "Νίκος", "Γιάννης", "Παναγιώτης", "Χρήστος",
    "Βασίλης", "Αλέξανδρος", "Σπύρος", "Θανάσης", "Μιχάλης", "Άγγελος", "Στέλιος", "Ηλίας",
)
GREEK_FEMALE = (
    "Μαρία", "Ελένη", "Αικατερίνη", "Βασιλική", "Σοφία", "Αγγελική", "Δήμητρα", "Ευαγγελία",
    "Γεωργία", "Χριστίνα", "Ιωάννα", "Δέσποινα", "Ζωή", "Φωτεινή", "Αναστασία",
)
# (masculine, feminine): Greek surnames change form with gender; genitive-style ones don't.
GREEK_LAST = (
    ("Παπαδόπουλος", "Παπαδοπούλου"), ("Κωνσταντίνου", "Κωνσταντίνου"),
    ("Παπαδάκης", "Παπαδάκη"), ("Γεωργίου", "Γεωργίου"), ("Οικονόμου", "Οικονόμου"),
    ("Νικολάου", "Νικολάου"), ("Παπαγεωργίου", "Παπαγεωργίου"), ("Βασιλείου", "Βασιλείου"),
    ("Ιωάννου", "Ιωάννου"), ("Μακρής", "Μακρή"), ("Αλεξίου", "Αλεξίου"),
    ("Δημητρίου", "Δημητρίου"), ("Αθανασίου", "Αθανασίου"), ("Καραγιάννης", "Καραγιάννη"),
    ("Πετρόπουλος", "Πετροπούλου"), ("Σταθόπουλος", "Σταθοπούλου"), ("Μάρκου", "Μάρκου"),
    ("Λαμπράκης", "Λαμπράκη"), ("Χατζής", "Χατζή"), ("Ζαχαρίου", "Ζαχαρίου"),
)

# (code, name): 20 subjects x 20 course numbers = the 400 distinct codes a bench semester needs.
SUBJECTS = (
    ("MATH", "Mathematics"), ("PHYS", "Physics"), ("CHEM", "Chemistry"), ("BIO", "Biology"),
    ("ENG", "English Literature"), ("GRK", "Νέα Ελληνικά"), ("ANC", "Αρχαία Ελληνικά"),
    ("HIST", "History"), ("GEO", "Geography"), ("CS", "Computer Science"),
    ("ECON", "Economics"), ("ART", "Visual Arts"), ("MUS", "Music"),
    ("PE", "Physical Education"), ("PHIL", "Philosophy"), ("LAT", "Latin"),
    ("FRE", "French"), ("GER", "German"), ("DRA", "Drama"), ("REL", "Religious Studies"),
)
ROMAN = ("", "I", "II", "III", "IV")
VARIANTS = ("", " Honours", " Lab", " Workshop", " Online")
COURSE_BLURBS = (
    "Weekly problem sets and a final project.",
    "Lectures, seminars and two written exams.",
    "Hands-on sessions; bring a notebook.",
    "Μαθήματα με έμφαση στην κατανόηση κειμένων.",
    "Continuous assessment; no final exam.",
    "-5 points per late assignment, no exceptions.",
)

ASSESSMENTS = (
    "Quiz 1", "Homework 1", "Lab report", "Midterm", "Quiz 2", "Essay", "Homework 2",
    "Project", "Final exam",
)
WEIGHTS = ((0.2, 0.3, 0.5), (0.25, 0.25, 0.5), (0.3, 0.3, 0.4), (0.1, 0.4, 0.5))
GRADE_COMMENTS = (
    "Excellent work", "Good effort", "Needs to show working", "Late submission",
    "Πολύ καλή δουλειά", "Χρειάζεται περισσότερη προσπάθεια", "=SUM(A1:A2)",
    "-2 for missing references", "+1 bonus question", "Resubmitted after feedback",
)
ABSENT_NOTES = ("Sick", "Family emergency", "Ασθένεια", "@nurse office", None, None)
EXCUSED_NOTES = ("Doctor's note", "School trip", "Σχολική εκδρομή", "Sports competition")
PERFORMANCE_CATEGORIES = ("participation", "homework", "behaviour", "focus")
PERFORMANCE_NOTES = (
    "Asked great questions", "Distracted today", "Helped a classmate", "Forgot homework",
    "Εξαιρετική συμμετοχή", "=1+1 written on the board", "+ extra credit worksheet",
)
# (title, kind): titles are the natural key together with student and semester.
HIGHLIGHTS = (
    ("Student of the month", "award"), ("Science fair winner", "award"),
    ("Perfect attendance", "award"), ("Βραβείο αριστείας", "award"),
    ("Math olympiad finalist", "achievement"), ("Debate team captain", "achievement"),
    ("Reading challenge completed", "achievement"), ("Robotics club build", "achievement"),
    ("Art exhibition piece", "achievement"), ("Most improved", "achievement"),
    ("Πρώτη θέση στον διαγωνισμό", "achievement"), ("@home project", "note"),
    ("Parent meeting", "note"), ("Helped organise the fair", "note"),
    ("Needs reading support", "note"), ("Συνάντηση με γονείς", "note"),
)
HIGHLIGHT_DESCRIPTIONS = (
    "Recognised at the assembly.", "Shared with parents by email.",
    "-5 points for talking during the test", "Η επίδοση ήταν εξαιρετική.",
    "+ certificate handed out", "Follow up next term.", "",
)

_GREEK_TO_LATIN = {
    "α": "a", "β": "v", "γ": "g", "δ": "d", "ε": "e", "ζ": "z", "η": "i", "θ": "th",
    "ι": "i", "κ": "k", "λ": "l", "μ": "m", "ν": "n", "ξ": "x", "ο": "o", "π": "p",
    "ρ": "r", "σ": "s", "ς": "s", "τ": "t", "υ": "y", "φ": "f", "χ": "ch", "ψ": "ps",
    "ω": "o",
}
# Greeklish spells these pairs as one sound ("Κωνσταντίνου" -> "konstantinou").
_DIGRAPHS = (("ου", "ou"), ("αυ", "av"), ("ευ", "ev"), ("γγ", "ng"), ("μπ", "mp"))
# fmt: on


def ascii_slug(name: str) -> str:
    """`name` in lower-case ASCII letters for an email local part ("Γιώργος" -> "giorgos")."""
    # NFD splits accented letters into base letter + combining mark; marks are dropped.
    plain = "".join(
        ch for ch in unicodedata.normalize("NFD", name.lower()) if not unicodedata.combining(ch)
    )
    for digraph, latin in _DIGRAPHS:
        plain = plain.replace(digraph, latin)
    return "".join(
        _GREEK_TO_LATIN.get(ch, ch if ch.isascii() and ch.isalnum() else "") for ch in plain
    )
