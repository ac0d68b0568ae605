"""The application scope alone (docs/tenants.md, the first wall): the notify outbox, users,
tokens and links run here as the SUPERUSER, whom row-level security does not bind, with
two schools holding the same event id, the same addresses and tokens. Every read,
claim, change and count acting for one school finds nothing of the other."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
import sqlalchemy as sa

from ferry import users
from ferry.app import App
from ferry.auth import Principal, issuing, parse_role
from ferry.auth import store as token_store
from ferry.config import NotifySettings
from ferry.db import tenant
from ferry.errors import NotFound
from ferry.notify import store
from ferry.notify.channels.base import Outcome
from ferry.notify.store import NewNotification
from tests.conftest import make_settings
from tests.tenants.conftest import Tenancy

pytestmark = pytest.mark.postgres


def _superuser_rls_off(t: Tenancy) -> None:
    """The premise: the engine used here is a superuser, whom the policies do not bind."""
    with t.platform.connect() as conn:
        assert conn.execute(
            sa.text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user")
        ).scalar_one()


def test_the_outbox_walls_schools_apart_without_row_level_security(tenancy: Tenancy) -> None:
    t = tenancy
    _superuser_rls_off(t)
    engine = t.platform
    north, south = t.schools["north"], t.schools["south"]
    with t.platform.begin() as conn:
        conn.execute(
            sa.text("UPDATE schools SET sender = 'n@north.example' WHERE id = :i"), {"i": north}
        )
    made = {}
    for school in (north, south):
        with tenant.acting_for(school):
            new = NewNotification(
                "same-event", [("log", "office@school.example")], f"For {school}", "text"
            )
            view, created = store.create(engine, new)
            assert created  # the same event id in the other school is not this one
            made[school] = view.notification.id
    for school, other in ((north, south), (south, north)):
        with tenant.acting_for(school):
            with pytest.raises(NotFound):
                store.get(engine, made[other])
            with pytest.raises(NotFound):
                store.retry(engine, made[other])
            page = store.list_page(engine, 50)
            assert [v.notification.id for v in page.items] == [made[school]] and page.total == 1
            assert store.depth(engine) == {"log": 1}
            claimed = store.claim(engine, f"w-{school}", ["log"], 50, 30)
            assert [d.notification_id for d in claimed] == [made[school]]
            assert claimed[0].sender == ("n@north.example" if school == north else "")
            settled = store.settle(
                engine, f"w-{school}", [(claimed[0], Outcome("sent"))], NotifySettings()
            )
            assert len(settled) == 1
            assert store.get(engine, made[school]).notification.status == "sent"
    with t.platform.connect() as conn:  # the oracle: both sent, each once, in its school
        rows = conn.execute(
            sa.text("SELECT school_id, status, attempts FROM notify_outbox ORDER BY school_id")
        ).all()
    assert [tuple(r) for r in rows] == [(north, "sent", 1), (south, "sent", 1)]


def test_users_tokens_and_links_walled_without_row_level_security(
    tenancy: Tenancy, tmp_path: Path
) -> None:
    t = tenancy
    _superuser_rls_off(t)
    app = App(make_settings(t.platform.url.render_as_string(hide_password=False), tmp_path))
    north, south = t.schools["north"], t.schools["south"]
    try:
        engine = app.engine
        for school, name in ((north, "nora"), (south, "sam")):
            users.create_user(engine, name, "password-1", "admin", f"{name}@x.example", school)
            with engine.begin() as conn:
                conn.execute(
                    sa.text("UPDATE users SET language = 'el' WHERE username = :n"), {"n": name}
                )
        tokens = {}
        for school in (north, south):
            with tenant.acting_for(school):
                tokens[school] = issuing.create_token(app, parse_role("viewer"), "cron", 600, "t")
        for school, other, mine, theirs in (
            (north, south, "nora", "sam"),
            (south, north, "sam", "nora"),
        ):
            with tenant.acting_for(school):
                assert [u.username for u in users.list_users(engine)] == [mine]
                for fn in (users.disable_user, users.set_email):
                    with pytest.raises(NotFound):
                        fn(engine, theirs, "") if fn is users.set_email else fn(engine, theirs)
                assert users.email_of(engine, theirs) == ""
                with engine.connect() as conn:
                    langs = users.languages_by_address(conn, ["nora@x.example", "sam@x.example"])
                assert langs == {f"{mine}@x.example": "el"}
                listed = token_store.list_tokens(engine)
                assert [x.jti for x in listed] == [tokens[school].jti]
                assert token_store.get(engine, tokens[other].jti) is None
                with pytest.raises(NotFound):
                    token_store.revoke(engine, tokens[other].jti)
                assert token_store.revoke_subject(engine, "cron").keys() == {tokens[school].jti}
                link = issuing.link_token(
                    app, "/api/v1/exports/j1/download", 60, Principal("svc", 3)
                )
                claims = jwt.decode(link.token, options={"verify_signature": False})
                assert claims["sch"] == ("north" if school == north else "south")
        with engine.connect() as conn:  # the oracle: nobody of either school was disabled
            assert conn.execute(sa.text("SELECT count(*) FROM users WHERE disabled")).scalar() == 0
    finally:
        app.close()
