"""Announcing another service's work through the notify outbox.

ImportSession's `notify` is written into the outbox by the import itself, in the
transaction that records the run (`import_announcement`, through the hook in
ferry.merge.announce): an announcement cannot be lost between the import's commit and a
call to NotifyService, because there is no such call. The notify service's workers find
the row when they poll, like a row queued by another replica. A repeat is harmless: the
event id `import:<id>` is unique in the outbox.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.engine import Connection

from ferry.app import App
from ferry.merge.announce import Write
from ferry.merge.model import ImportOutcome
from ferry.notify import core, reasons, store

log = logging.getLogger("ferry.notify")


def import_announcement(app: App, recipients: list[str]) -> Write:
    """The import-announcement hook (ferry.merge.announce) for ImportSession's `notify`:
    the `import_finished` notification written into the outbox in the transaction that
    records the import, so it is delivered however the import's process or the notify
    service fare afterwards. The event id `import:<id>` keeps it one notification."""

    def write(conn: Connection, outcome: ImportOutcome) -> None:
        from ferry.imports import convert
        from ferry.users import language_of

        result = convert.result_proto(outcome)
        language = language_of(conn, recipients)  # the language the recipients use
        new = core.announcement(
            app.settings.notify,
            recipients,
            "import_finished",
            import_variables(result, outcome.options.filename, language),
            f"import:{outcome.id}",
            "service:import",
            language,
        )
        store.create_many(conn, [new])

    return write


def import_variables(result: Any, filename: str = "", language: str = "en") -> dict[str, Any]:
    """The `import_finished` template's variables for an ImportResult, the failure and
    each record error worded in `language` from their machine reasons (ferry.notify.
    reasons); an import recorded before reasons keeps its stored sentences."""
    from ferry.v1 import import_pb2 as ipb

    entities = [
        {
            "entity": s.entity,
            "created": s.created,
            "updated": s.updated,
            "unchanged": s.unchanged,
            "skipped": s.skipped,
            "errors": s.errors,
        }
        for s in result.summaries
    ]
    record_errors = [
        {
            "entity": e.entity,
            "key": e.natural_key,
            "field": e.field,
            "reason": (
                reasons.record_reason(e.reason_code, dict(e.details), language)
                if e.reason_code
                else e.reason
            ),
        }
        for e in list(result.errors)[:10]
    ]
    warnings = [f"{r['entity']} {r['key']}: {r['reason']}".strip() for r in record_errors]
    more = max(0, result.total_errors - len(record_errors))
    if more:
        warnings.append(f"{more} more records had errors")
    error = result.error_message
    if result.error_reason:
        error = reasons.import_failure(result.error_reason, dict(result.error_metadata), language)
    return {
        "import_id": result.id,
        "filename": filename or result.options.filename,
        "dry_run": result.status == ipb.IMPORT_STATUS_DRY_RUN,
        "failed": result.status == ipb.IMPORT_STATUS_FAILED,
        "error": error,
        "entities": entities,
        "record_errors": record_errors,
        "more_errors": more,
        # (the same lines as one sentence each, for a caller's own template)
        "warnings": warnings,
    }
