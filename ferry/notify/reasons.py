# ruff: noqa: RUF001, E501
"""Why an export job (a scheduled run or backup too) failed, in the mail's language.

A failed job keeps a machine reason (`error_reason`) and its values (`error_metadata`):
the runner stores `ferry.errors.reason_of(error)` for a FerryError (its own reason from
`ferry.errors.REASONS`, FIELD_INVALID, or its status code's name) and INTERNAL with a
reference for anything else; the reaper stores WORKER_LOST. `WORDS` words every one of
them in every mail language, its placeholders filled from the job's values, so a mail
never shows the server's English sentence (tests/notify/test_failure_reasons.py
enumerates the reasons a job can end with and fails on one without words here).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# {language: {reason: words}}; a placeholder {key} is filled from the job's metadata.
WORDS: dict[str, dict[str, str]] = {
    "en": {
        # ferry.errors.REASONS
        "FIELD_INVALID": "Ferry could not use what was asked (check {field})",
        "UNKNOWN_LANGUAGE": "Ferry writes in {known}, not {value}",
        "UNKNOWN_VALUE": "{field}: there is no {value}; known: {known}",
        "BAD_DATE": "{field}: {value} is not a date like 2026-09-01",
        "INTERNAL": "a server error (reference {reference})",
        "TOO_LARGE": "the file is over the size limit",
        "TOO_MANY_ROWS": "a PDF holds at most {max} rows; choose csv or xlsx, or narrow the filters",
        "WORKER_LOST": "the server running it stopped; start it again",
        # the status codes' own names (reason_of for an error without a reason)
        "INVALID_ARGUMENT": "Ferry could not use what was asked; check the choices you made",
        "NOT_FOUND": "something it needed could not be found; it may have been removed",
        "ALREADY_EXISTS": "this was already done",
        "UNAUTHENTICATED": "the sign-in behind it had ended; sign in and start it again",
        "PERMISSION_DENIED": "the account that started it is not allowed to do this",
        "RESOURCE_EXHAUSTED": "too much data or too many at once; wait a minute and start it again",
        "FAILED_PRECONDITION": "it could not be done at that moment",
        "UNAVAILABLE": "a part of Ferry was busy or restarting; start it again in a moment",
        "DEADLINE_EXCEEDED": "it took too long; start it again, or choose less data",
        "DATA_LOSS": "a file was damaged or incomplete",
        "OUT_OF_RANGE": "it read past the end of the data",
        "CANCELLED": "it was cancelled",
        "ABORTED": "someone else changed the same data at the same time; start it again",
        "UNIMPLEMENTED": "this is not available on this installation",
        "UNKNOWN": "something went wrong on the server",
    },
    "el": {
        "FIELD_INVALID": "το Ferry δεν μπόρεσε να χρησιμοποιήσει όσα ζητήθηκαν (ελέγξτε: {field})",
        "UNKNOWN_LANGUAGE": "το Ferry γράφει σε {known}, όχι σε {value}",
        "UNKNOWN_VALUE": "{field}: δεν υπάρχει {value}· υπάρχουν: {known}",
        "BAD_DATE": "{field}: το {value} δεν είναι ημερομηνία όπως 2026-09-01",
        "INTERNAL": "σφάλμα του διακομιστή (αριθμός αναφοράς {reference})",
        "TOO_LARGE": "το αρχείο ξεπερνά το όριο μεγέθους",
        "TOO_MANY_ROWS": "ένα PDF χωράει έως {max} γραμμές· επιλέξτε csv ή xlsx ή στενέψτε τα φίλτρα",
        "WORKER_LOST": "ο διακομιστής που την εκτελούσε σταμάτησε· ξεκινήστε την ξανά",
        "INVALID_ARGUMENT": "το Ferry δεν μπόρεσε να χρησιμοποιήσει όσα ζητήθηκαν· ελέγξτε τις επιλογές σας",
        "NOT_FOUND": "κάτι που χρειαζόταν δεν βρέθηκε· ίσως έχει αφαιρεθεί",
        "ALREADY_EXISTS": "αυτό έχει ήδη γίνει",
        "UNAUTHENTICATED": "η σύνδεση που την ξεκίνησε είχε λήξει· συνδεθείτε και ξεκινήστε την ξανά",
        "PERMISSION_DENIED": "ο λογαριασμός που την ξεκίνησε δεν επιτρέπεται να το κάνει αυτό",
        "RESOURCE_EXHAUSTED": "πάρα πολλά δεδομένα ή πάρα πολλές ταυτόχρονα· περιμένετε ένα λεπτό και ξεκινήστε την ξανά",
        "FAILED_PRECONDITION": "δεν μπορούσε να γίνει εκείνη τη στιγμή",
        "UNAVAILABLE": "ένα τμήμα του Ferry ήταν απασχολημένο ή επανεκκινούνταν· ξεκινήστε την ξανά σε λίγο",
        "DEADLINE_EXCEEDED": "κράτησε πολύ· ξεκινήστε την ξανά ή επιλέξτε λιγότερα δεδομένα",
        "DATA_LOSS": "ένα αρχείο ήταν κατεστραμμένο ή ελλιπές",
        "OUT_OF_RANGE": "διάβασε πέρα από το τέλος των δεδομένων",
        "CANCELLED": "ακυρώθηκε",
        "ABORTED": "κάποιος άλλος άλλαξε τα ίδια δεδομένα ταυτόχρονα· ξεκινήστε την ξανά",
        "UNIMPLEMENTED": "αυτό δεν είναι διαθέσιμο σε αυτή την εγκατάσταση",
        "UNKNOWN": "κάτι πήγε στραβά στον διακομιστή",
    },
}

# The words of a reason whose values are missing (an Internal error raised without a
# reference, say): the same reason without its placeholders, never a literal "{key}".
BARE: dict[str, dict[str, str]] = {
    "en": {
        "FIELD_INVALID": WORDS["en"]["INVALID_ARGUMENT"],
        "UNKNOWN_LANGUAGE": "Ferry does not write in the language asked for",
        "UNKNOWN_VALUE": "a value asked for does not exist",
        "BAD_DATE": "a date asked for is not a date like 2026-09-01",
        "INTERNAL": "a server error",
        "TOO_MANY_ROWS": "too many rows for a PDF; choose csv or xlsx, or narrow the filters",
    },
    "el": {
        "FIELD_INVALID": WORDS["el"]["INVALID_ARGUMENT"],
        "UNKNOWN_LANGUAGE": "το Ferry δεν γράφει στη γλώσσα που ζητήθηκε",
        "UNKNOWN_VALUE": "μια τιμή που ζητήθηκε δεν υπάρχει",
        "BAD_DATE": "μια ημερομηνία που ζητήθηκε δεν είναι ημερομηνία όπως 2026-09-01",
        "INTERNAL": "σφάλμα του διακομιστή",
        "TOO_MANY_ROWS": "πάρα πολλές γραμμές για PDF· επιλέξτε csv ή xlsx ή στενέψτε τα φίλτρα",
    },
}

_SLOT = re.compile(r"\{(\w+)\}")


def slots(text: str) -> set[str]:
    return set(_SLOT.findall(text))


def in_words(reason: object, details: object, language: str, fallback: object) -> str:
    """`reason` in `language` with its placeholders filled from `details` (the reason's
    bare words when a value is missing); `fallback` (the server's sentence) only for a
    reason no table words, which tests/notify/test_failure_reasons.py keeps from
    happening for any reason a job can end with."""
    # A Send caller's variables may be anything: a reason or values of the wrong type
    # read as none.
    table = WORDS.get(language, WORDS["en"])
    text = table.get(reason) if isinstance(reason, str) else None
    if text is None:
        return str(fallback)
    given = details if isinstance(details, Mapping) else {}
    values = {str(k): str(v) for k, v in given.items() if str(v).strip()}
    if not slots(text) <= set(values):
        return BARE.get(language, BARE["en"]).get(str(reason), str(fallback))
    return _SLOT.sub(lambda m: values[m.group(1)], text)
