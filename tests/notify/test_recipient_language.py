"""Issue 24, one language per person: a user's mails come in the language they use the page
in. Signing in through the gateway remembers the page's language (Accept-Language); a
notification that names no language is then written in its recipient's, through a real SMTP
server: Send, SendBulk (each recipient their own), and the import announcement. A recipient
who is no user gets notify.default_language; a request's own language always wins.

On the code before this issue every such mail was in the default language."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.db.user_models import User
from ferry.users import create_user
from gateway.app import create_app
from gateway.calls import ServiceChannels
from tests.conftest import running
from tests.imports.helpers import Stubs, download, import_file, seed_small
from tests.notify.conftest import FAST, serving
from tests.notify.helpers import SmtpServer, free_port
from tests.notify.test_templates import VARS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
GREEK_READY = "\u0397 εξαγωγή είναι έτοιμη"  # its first letter: Greek capital eta


def _language(app: App, username: str) -> str:
    with app.engine.connect() as conn:
        return str(
            conn.execute(sa.select(User.language).where(User.username == username)).scalar_one()
        )


def test_signing_in_remembers_the_pages_language(
    make_app: Callable[..., App], empty_url: str
) -> None:
    app = make_app(empty_url)
    create_user(app.engine, "eleni", PASSWORD, "operator", email="eleni@school.example")
    assert _language(app, "eleni") == ""
    with running(app, ["auth"]) as srv:
        asgi = create_app(app, ServiceChannels(app.settings.client, f"127.0.0.1:{srv.port}"))
        with TestClient(asgi, raise_server_exceptions=False) as gw:
            body = {"username": "eleni", "password": PASSWORD}
            for header, want in (("el-GR,el;q=0.9", "el"), ("fr", "el"), ("en-GB", "en")):
                r = gw.post("/api/v1/auth/login", json=body, headers={"Accept-Language": header})
                assert r.status_code == 200, r.text
                assert _language(app, "eleni") == want, header  # French is not remembered
            wrong = gw.post("/api/v1/auth/login", headers={"Accept-Language": "el"},
                            json={**body, "password": "wrong password!"})  # fmt: skip
            assert wrong.status_code == 401 and _language(app, "eleni") == "en"


def test_send_and_send_bulk_write_in_each_recipients_language(
    notify_app: Callable[..., App], smtp: SmtpServer
) -> None:
    from ferry.users import set_language

    app = notify_app(smtp_port=smtp.port)
    create_user(app.engine, "eleni", PASSWORD, "operator", email="Eleni@school.example")
    set_language(app.engine, "eleni", "el")
    variables = VARS["export_completed"]
    with serving(app) as (_srv, c):
        greek = c.send(channels=["smtp"], recipients=["Ελένη <eleni@school.example>"],
                       template="export_completed", variables=variables).notification  # fmt: skip
        english = c.send(channels=["smtp"], recipients=["office@school.example"],
                         template="export_completed", variables=variables).notification  # fmt: skip
        asked = c.send(channels=["smtp"], recipients=["eleni@school.example"], language="en",
                       template="export_completed", variables=variables,
                       event_id="asked-in-english").notification  # fmt: skip
        assert (greek.language, english.language, asked.language) == ("el", "en", "en")
        for n in (greek, english, asked):
            c.wait(n.id)
        from ferry.v1 import notify_pb2 as pb

        bulk = c.stub.SendBulk(
            pb.SendBulkRequest(channels=["smtp"], template="export_completed", event_id="b",
                               recipients=["eleni@school.example", "office@school.example"],
                               variables=variables),
            metadata=c.md, timeout=10,
        )  # fmt: skip
        langs = {r.recipient: r.notification.language for r in bulk.results}
        assert langs == {"eleni@school.example": "el", "office@school.example": "en"}
        mails = smtp.inbox.wait_for(5)
    by_to = {}
    for m in mails:
        by_to.setdefault(m["To"].addresses[0].addr_spec, []).append(m["Subject"])
    assert sum(s.startswith(GREEK_READY) for s in by_to["eleni@school.example"]) == 2
    assert sum(s.startswith("Export ready") for s in by_to["eleni@school.example"]) == 1
    assert all(s.startswith("Export ready") for s in by_to["office@school.example"])


@pytest.mark.parametrize("backend", ["sqlite"])
def test_the_import_announcement_speaks_the_recipients_language(
    empty_url: str, make_app: Callable[..., App], smtp: SmtpServer
) -> None:
    from ferry.users import set_language

    seed_small(empty_url)
    port = free_port()
    app = make_app(
        empty_url, **FAST,
        FERRY_SERVER_ADDRESS=f"127.0.0.1:{port}", FERRY_CLIENT_TARGET=f"127.0.0.1:{port}",
        FERRY_NOTIFY_CHANNELS="[smtp]", FERRY_NOTIFY_DEFAULT_CHANNELS="[smtp]",
        FERRY_PLUGINS_CHANNELS_SMTP_PORT=str(smtp.port),
    )  # fmt: skip
    create_user(app.engine, "eleni", PASSWORD, "operator", email="eleni@school.example")
    set_language(app.engine, "eleni", "el")
    with running(app, ["export", "import", "notify"]) as srv:
        stubs = Stubs(app, srv.port)
        try:
            import_file(stubs, download(stubs), "fall.json", notify=["eleni@school.example"])
        finally:
            stubs.channel.close()
        (mail,) = smtp.inbox.wait_for(1)
    assert mail["Subject"] == "Εισαγωγή ολοκληρώθηκε: fall.json"
