"""Issue 24, item 2: one Send to recipients who read different languages writes each
their mail in their own language (as SendBulk does), through a real SMTP server; a
request that names a language keeps it for all; nothing is sent twice, even when the same
event is sent again after someone changed their language."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.db.notify_models import Notification, OutboxRow
from ferry.notify.core import MAX_EVENT_ID, sibling_event_id
from ferry.users import create_user, set_language
from tests.notify.conftest import serving
from tests.notify.helpers import SmtpServer
from tests.notify.test_recipient_language import GREEK_READY, PASSWORD
from tests.notify.test_send import counts
from tests.notify.test_templates import VARS

ELENI, JOHN = "eleni@school.example", "john@school.example"


def _users(app: App) -> None:
    create_user(app.engine, "eleni", PASSWORD, "operator", email=ELENI)
    create_user(app.engine, "john", PASSWORD, "operator", email=JOHN)
    set_language(app.engine, "eleni", "el")
    set_language(app.engine, "john", "en")


def _rows(app: App) -> list[tuple[str, str, str, str]]:
    """(recipient, channel, the notification's language, its event id) of every outbox row,
    read with plain SQL."""
    with app.engine.connect() as conn:
        q = (
            sa.select(OutboxRow.recipient, OutboxRow.channel, Notification.language,
                      Notification.event_id)
            .join(Notification, Notification.id == OutboxRow.notification_id)
            .order_by(OutboxRow.recipient)
        )  # fmt: skip
        return [tuple(r) for r in conn.execute(q)]  # type: ignore[misc]


def test_one_send_writes_each_recipient_in_their_language(
    notify_app: Callable[..., App], smtp: SmtpServer
) -> None:
    app = notify_app(smtp_port=smtp.port)
    _users(app)
    variables = VARS["export_completed"]
    with serving(app) as (_srv, c):
        r = c.send(channels=["smtp"], recipients=[ELENI, JOHN], template="export_completed",
                   variables=variables, event_id="weekly")  # fmt: skip
        assert r.created and r.notification.language == "el"  # the first recipient's
        assert list(r.notification.recipients) == [ELENI]
        mails = smtp.inbox.wait_for(2)
        # The same event again, also after Eleni switched to English: nothing more.
        again = c.send(channels=["smtp"], recipients=[ELENI, JOHN], template="export_completed",
                       variables=variables, event_id="weekly")  # fmt: skip
        assert not again.created and again.notification.id == r.notification.id
        set_language(app.engine, "eleni", "en")
        third = c.send(channels=["smtp"], recipients=[JOHN, ELENI], template="export_completed",
                       variables=variables, event_id="weekly")  # fmt: skip
        assert not third.created and third.notification.id == r.notification.id
        time.sleep(1.0)  # the workers poll every few tenths of a second (FAST)
        assert len(smtp.inbox.messages) == 2
    by_to = {m["To"].addresses[0].addr_spec: m for m in mails}
    assert sorted(by_to) == [ELENI, JOHN]
    assert by_to[ELENI]["Subject"].startswith(GREEK_READY)
    assert "Κατεβάστε" in by_to[ELENI].get_body(("plain",)).get_content()
    assert by_to[JOHN]["Subject"].startswith("Export ready")
    assert "Download" in by_to[JOHN].get_body(("plain",)).get_content()
    # One outbox row per recipient, each under the notification in their language.
    rows = _rows(app)
    base = rows[0][3]  # the caller's event id under its scope
    assert base.startswith("~") and base.endswith("/weekly")
    assert rows == [(ELENI, "smtp", "el", base), (JOHN, "smtp", "en", base + ":en")]
    assert counts(app) == (2, 2)


def test_a_request_that_names_a_language_keeps_it_for_all(
    notify_app: Callable[..., App], smtp: SmtpServer
) -> None:
    app = notify_app(smtp_port=smtp.port)
    _users(app)
    with serving(app) as (_srv, c):
        r = c.send(channels=["smtp"], recipients=[ELENI, JOHN], template="export_completed",
                   variables=VARS["export_completed"], language="en")  # fmt: skip
        assert r.created and list(r.notification.recipients) == [ELENI, JOHN]
        mails = smtp.inbox.wait_for(2)
    assert all(m["Subject"].startswith("Export ready") for m in mails)
    assert counts(app) == (1, 2)
    assert {row[2] for row in _rows(app)} == {"en"}


def test_a_taken_language_event_id_changes_nothing(
    notify_app: Callable[..., App], smtp: SmtpServer
) -> None:
    """A caller's own event `w:en` sent before: a mixed Send of `w` would need it for its
    English recipients, so it is refused naming event_id and writes nothing."""
    app = notify_app(smtp_port=smtp.port)
    _users(app)
    with serving(app) as (_srv, c):
        c.send(channels=["smtp"], recipients=[JOHN], subject="s", body="b", event_id="w:en")
        before = counts(app)
        with pytest.raises(grpc.RpcError) as e:
            c.send(channels=["smtp"], recipients=[ELENI, JOHN], template="export_completed",
                   variables=VARS["export_completed"], event_id="w")  # fmt: skip
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        assert "event_id" in e.value.details()  # type: ignore[attr-defined]
        assert counts(app) == before == (1, 1)


def test_a_language_event_id_stays_within_the_limit() -> None:
    long = "~" + "a" * 16 + "/" + "x" * (MAX_EVENT_ID - 18)
    assert len(long) == MAX_EVENT_ID
    one, other = sibling_event_id(long, "el"), sibling_event_id(long[:-1] + "y", "el")
    assert len(one) <= MAX_EVENT_ID and one.endswith(":el") and one != other
    assert sibling_event_id("weekly", "el") == "weekly:el"
