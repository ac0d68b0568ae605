"""Machine reasons of an import's failure and of its record errors, beside the English
sentences (`ImportOutcome.error_message`, `RecordError.reason`) that logs and the CLI
show: a page or mail words the reason in its own language from these codes and their
values (ferry.notify.reasons.IMPORT_WORDS / RECORD_WORDS; tests/merge/test_import_reasons.py
holds every code here worded in every mail language).

Stored in `imports.error_reason` / `error_metadata` (migration 0017) and, per record
error, inside `imports.errors` (code, details); on the wire ImportResult.error_reason /
error_metadata and RecordError.reason_code / details.
"""

from __future__ import annotations

# {reason: the values it carries}. A FerryError's own reason (reason_of: FIELD_INVALID,
# a status code's name, CHANGE_LIMIT...) is an import's reason too.
IMPORT: dict[str, tuple[str, ...]] = {
    "INVALID_RECORDS": ("count",),  # on_error abort with invalid records
    "INTERRUPTED": (),  # the run was stopped (KeyboardInterrupt, a cancelled thread)
    "INTERNAL": ("reference",),  # a database or other unexpected error, logged under it
}
RECORD: dict[str, tuple[str, ...]] = {
    "MISSING": (),
    "NOT_TEXT": (),
    "TOO_LONG": ("max",),
    "NUL_CHARACTER": (),
    "NOT_INTEGER": ("value",),
    "NOT_NUMBER": ("value",),
    "NOT_DATE": ("value",),
    "NOT_TIMESTAMP": ("value",),
    "OUT_OF_RANGE": ("value", "low", "high"),
    "DUPLICATE_KEY": ("count",),
    "ABSENT_FIELDS": ("fields",),
    "PARENT_REJECTED": ("parent", "value"),
    "PARENT_MISSING": ("parent", "field", "value"),
    "RENAME_CONFLICT": ("old", "new", "field"),
    "REFUSED_BY_READER": (),  # a reader's refusal without a reason of its own
    "INVALID_VALUE": (),
}
