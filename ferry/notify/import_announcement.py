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
from ferry.notify import core, store

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
        new = core.announcement(
            app.settings.notify,
            recipients,
            "import_finished",
            import_variables(result, outcome.options.filename),
            f"import:{outcome.id}",
            "service:import",
            language_of(conn, recipients),  # in the language the recipients use
        )
        store.create_many(conn, [new])

    return write


def import_variables(result: Any, filename: str = "") -> dict[str, Any]:
    """The `import_finished` template's variables for an ImportResult."""
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
    warnings = [f"{e.entity} {e.natural_key}: {e.reason}".strip() for e in list(result.errors)[:10]]
    if result.total_errors > len(warnings):
        warnings.append(f"{result.total_errors - len(warnings)} more records had errors")
    return {
        "import_id": result.id,
        "filename": filename or result.options.filename,
        "dry_run": result.status == ipb.IMPORT_STATUS_DRY_RUN,
        "failed": result.status == ipb.IMPORT_STATUS_FAILED,
        "error": result.error_message,
        "entities": entities,
        "warnings": warnings,
    }
