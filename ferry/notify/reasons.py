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


# Why an import failed (ImportResult.error_reason, ferry.merge.reasons.IMPORT) and why
# each record was refused (RecordError.reason_code, ferry.merge.reasons.RECORD), in the
# `import_finished` mail's language. A FerryError's own reason (FIELD_INVALID, a status
# code's name, INTERNAL) has its words in WORDS above.
IMPORT_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "INVALID_RECORDS": "{count} invalid record(s); nothing was imported",
        "INTERRUPTED": "the import was interrupted; nothing was imported",
        "CHANGE_LIMIT": "it would change {count} of {base} {entity} records ({action}), over the limit of {max_percent}%; nothing was imported",
    },
    "el": {
        "INVALID_RECORDS": "{count} μη έγκυρες εγγραφές· δεν εισήχθη τίποτα",
        "INTERRUPTED": "η εισαγωγή διακόπηκε· δεν εισήχθη τίποτα",
        "CHANGE_LIMIT": "θα άλλαζε {count} από {base} εγγραφές ({entity}, {action}), πάνω από το όριο του {max_percent}%· δεν εισήχθη τίποτα",
    },
}
RECORD_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "MISSING": "a required field is missing",
        "NOT_TEXT": "a text was expected",
        "TOO_LONG": "longer than {max} characters",
        "NUL_CHARACTER": "contains a NUL character",
        "NOT_INTEGER": "not a whole number: {value}",
        "NOT_NUMBER": "not a number: {value}",
        "NOT_DATE": "not a date like 2026-09-01: {value}",
        "NOT_TIMESTAMP": "not a date and time (ISO-8601): {value}",
        "OUT_OF_RANGE": "out of range: {value} (allowed: {low} to {high})",
        "DUPLICATE_KEY": "the file holds this key {count} times",
        "ABSENT_FIELDS": "no such record exists here, and a new one needs {fields}, which the file does not carry",
        "PARENT_REJECTED": "the record it belongs to ({value}) was rejected",
        "PARENT_MISSING": "{value}, which it belongs to, exists neither here nor in the file",
        "RENAME_CONFLICT": "cannot rename {old} to {new}: {new} exists already",
        "REFUSED_BY_READER": "the file's reader refused this row",
        "INVALID_VALUE": "a value cannot be stored",
    },
    "el": {
        "MISSING": "λείπει υποχρεωτικό πεδίο",
        "NOT_TEXT": "αναμενόταν κείμενο",
        "TOO_LONG": "μεγαλύτερο από {max} χαρακτήρες",
        "NUL_CHARACTER": "περιέχει χαρακτήρα NUL",
        "NOT_INTEGER": "δεν είναι ακέραιος αριθμός: {value}",
        "NOT_NUMBER": "δεν είναι αριθμός: {value}",
        "NOT_DATE": "δεν είναι ημερομηνία όπως 2026-09-01: {value}",
        "NOT_TIMESTAMP": "δεν είναι ημερομηνία και ώρα (ISO-8601): {value}",
        "OUT_OF_RANGE": "εκτός ορίων: {value} (επιτρέπονται: {low} έως {high})",
        "DUPLICATE_KEY": "το αρχείο έχει αυτό το κλειδί {count} φορές",
        "ABSENT_FIELDS": "δεν υπάρχει τέτοια εγγραφή εδώ, και μια νέα χρειάζεται {fields}, που το αρχείο δεν περιέχει",
        "PARENT_REJECTED": "η εγγραφή στην οποία ανήκει ({value}) απορρίφθηκε",
        "PARENT_MISSING": "το {value}, στο οποίο ανήκει, δεν υπάρχει ούτε εδώ ούτε στο αρχείο",
        "RENAME_CONFLICT": "δεν μπορεί να μετονομαστεί το {old} σε {new}: το {new} υπάρχει ήδη",
        "REFUSED_BY_READER": "ο αναγνώστης του αρχείου απέρριψε αυτή τη γραμμή",
        "INVALID_VALUE": "μια τιμή δεν μπορεί να αποθηκευτεί",
    },
}
# A reason's words when one of its values is missing: the reason without them.
IMPORT_BARE: dict[str, dict[str, str]] = {
    "en": {
        "INVALID_RECORDS": "invalid records; nothing was imported",
        "CHANGE_LIMIT": "it would change more records than a limit allows; nothing was imported",
        "TOO_LONG": "too long",
        "NOT_INTEGER": "not a whole number",
        "NOT_NUMBER": "not a number",
        "NOT_DATE": "not a date like 2026-09-01",
        "NOT_TIMESTAMP": "not a date and time (ISO-8601)",
        "OUT_OF_RANGE": "out of range",
        "DUPLICATE_KEY": "the file holds this key more than once",
        "ABSENT_FIELDS": "no such record exists here, and the file does not carry all a new one needs",
        "PARENT_REJECTED": "the record it belongs to was rejected",
        "PARENT_MISSING": "what it belongs to exists neither here nor in the file",
        "RENAME_CONFLICT": "cannot rename it: the new key exists already",
    },
    "el": {
        "INVALID_RECORDS": "μη έγκυρες εγγραφές· δεν εισήχθη τίποτα",
        "CHANGE_LIMIT": "θα άλλαζε περισσότερες εγγραφές από όσες επιτρέπει ένα όριο· δεν εισήχθη τίποτα",
        "TOO_LONG": "πολύ μεγάλο",
        "NOT_INTEGER": "δεν είναι ακέραιος αριθμός",
        "NOT_NUMBER": "δεν είναι αριθμός",
        "NOT_DATE": "δεν είναι ημερομηνία όπως 2026-09-01",
        "NOT_TIMESTAMP": "δεν είναι ημερομηνία και ώρα (ISO-8601)",
        "OUT_OF_RANGE": "εκτός ορίων",
        "DUPLICATE_KEY": "το αρχείο έχει αυτό το κλειδί περισσότερες από μία φορές",
        "ABSENT_FIELDS": "δεν υπάρχει τέτοια εγγραφή εδώ, και το αρχείο δεν έχει όσα χρειάζεται μια νέα",
        "PARENT_REJECTED": "η εγγραφή στην οποία ανήκει απορρίφθηκε",
        "PARENT_MISSING": "αυτό στο οποίο ανήκει δεν υπάρχει ούτε εδώ ούτε στο αρχείο",
        "RENAME_CONFLICT": "δεν μπορεί να μετονομαστεί: το νέο κλειδί υπάρχει ήδη",
    },
}


def _fill(text: str, details: Mapping[str, str], bare: str) -> str:
    values = {str(k): str(v) for k, v in details.items() if str(v).strip()}
    if not slots(text) <= set(values):
        return bare
    return _SLOT.sub(lambda m: values[m.group(1)], text)


def import_failure(reason: str, details: Mapping[str, str], language: str) -> str:
    """Why an import failed, in `language`, from its machine reason: the import's own
    words (IMPORT_WORDS), else a FerryError's (WORDS), else the words for a server error
    of an unknown kind; never the server's English sentence."""
    lang = language if language in WORDS else "en"
    text = IMPORT_WORDS[lang].get(reason)
    if text is not None:
        return _fill(text, details, IMPORT_BARE[lang].get(reason, WORDS[lang]["UNKNOWN"]))
    if reason in WORDS[lang]:
        return in_words(reason, details, lang, WORDS[lang]["UNKNOWN"])
    return WORDS[lang]["UNKNOWN"]


def record_reason(code: str, details: Mapping[str, str], language: str) -> str:
    """Why a record was refused, in `language`, from its reason code (one this table
    does not know, a reader's own say: the words for a value that cannot be stored)."""
    lang = language if language in RECORD_WORDS else "en"
    text = RECORD_WORDS[lang].get(code)
    if text is None:
        return RECORD_WORDS[lang]["INVALID_VALUE"]
    return _fill(text, details, IMPORT_BARE[lang].get(code, RECORD_WORDS[lang]["INVALID_VALUE"]))
