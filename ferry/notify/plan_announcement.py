"""Plans awaiting approval are announced (imports.approval: required).

A preview whose plan waits for an admin's approval writes a notification to
`imports.approvers` (mail addresses) into the notify outbox, in the transaction that
records the preview (ferry.merge.announce): it exists exactly when the plan does. The
event id `plan:<import id>` keeps it one notification.
"""

from __future__ import annotations

from sqlalchemy.engine import Connection

from ferry.app import App
from ferry.merge import ImportOutcome
from ferry.merge.announce import Write
from ferry.notify import store, templates


def plan_announcement(app: App) -> Write:
    """The announcement hook for previews made while approval is required."""
    settings = app.settings

    def write(conn: Connection, outcome: ImportOutcome) -> None:
        recipients = list(settings.imports.approvers)
        if outcome.approval.get("state") != "pending" or not recipients:
            return
        changed = ", ".join(
            f"{s.entity}: {s.created} new, {s.updated} changed, {s.deleted} removed"
            for s in outcome.summaries
            if s.created or s.updated or s.deleted
        )
        what = outcome.semester or outcome.entity or "a file"
        subject = f"A Ferry import plan awaits your approval: {what}"
        body = (
            f"{outcome.requested_by or 'Someone'} previewed an import of "
            f"{outcome.options.filename or what} ({outcome.options.strategy}).\n"
            f"It would change: {changed or 'nothing'}.\n"
            f"Approve or reject plan {outcome.id} on the Export Center page "
            f"(or ApprovePlan / RejectPlan); it expires at "
            f"{outcome.approval.get('expires_at') or 'never'}."
        )
        notify = settings.notify
        text = templates.render("", {}, notify.default_language, subject, body)
        channels = dict.fromkeys(notify.default_channels)
        store.create_many(
            conn,
            [
                store.NewNotification(
                    event_id=f"plan:{outcome.id}",
                    deliveries=[(c, r) for c in channels for r in recipients],
                    subject=text.subject,
                    text=text.text,
                    html=text.html,
                    template=templates.PLAIN,
                    language=notify.default_language,
                    variables={"subject": subject, "body": body},
                    requested_by="service:import",
                )
            ],
        )

    return write


def both(first: Write | None, second: Write | None) -> Write | None:
    """One hook calling both (either may be None)."""
    if first is None or second is None:
        return first or second

    def write(conn: Connection, outcome: ImportOutcome) -> None:
        first(conn, outcome)
        second(conn, outcome)

    return write
