"""The outbox on each backend: leases never hand one row to two live workers, an expired
lease is taken over, a worker that lost its lease cannot overwrite the outcome, and the
retry schedule (backoff, jitter, give-up) is what the config says."""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from ferry.app import App
from ferry.config import NotifySettings
from ferry.db.notify_models import DEAD, PENDING, SENT, OutboxRow
from ferry.notify import retry, store
from ferry.notify.channels.base import failed, sent
from ferry.notify.channels.base import retry as retry_outcome


def queue(app: App, n: int, channel: str = "log") -> None:
    for i in range(n):
        store.create(
            app.engine,
            store.NewNotification(
                event_id=f"e{i}", deliveries=[(channel, f"u{i}@b.example")], subject="s", text="t"
            ),
        )


def test_concurrent_claims_never_share_a_row(notify_app: Callable[..., App]) -> None:
    app = notify_app(FERRY_NOTIFY_WORKERS="0")
    queue(app, 200)
    got: dict[str, list[int]] = {}
    lock = threading.Lock()

    def worker(name: str) -> None:
        mine: list[int] = []
        while True:
            batch = store.claim(app.engine, name, ["log"], 7, 60)
            if not batch:
                break
            mine += [d.row_id for d in batch]
        with lock:
            got[name] = mine

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [r for rows in got.values() for r in rows]
    assert len(every) == 200 and len(set(every)) == 200


def test_expired_lease_is_taken_over_and_the_old_owner_cannot_settle(
    notify_app: Callable[..., App],
) -> None:
    app = notify_app(FERRY_NOTIFY_WORKERS="0")
    queue(app, 1)
    # A lease long enough that a loaded machine cannot let it run out before the check
    # that it still holds (0.2 s did, once).
    first = store.claim(app.engine, "dead-worker", ["log"], 10, 1.5)
    assert len(first) == 1
    assert store.claim(app.engine, "other", ["log"], 10, 60) == []  # still leased
    time.sleep(1.6)
    second = store.claim(app.engine, "other", ["log"], 10, 60)
    assert [d.row_id for d in second] == [first[0].row_id]
    assert second[0].attempt == 2
    s = app.settings.notify
    assert store.settle(app.engine, "dead-worker", [(first[0], failed("late"))], s) == []
    done = store.settle(app.engine, "other", [(second[0], sent())], s)
    assert [x.status for x in done] == [SENT]
    view = store.get(app.engine, second[0].notification_id)
    assert view.notification.status == SENT and view.rows[0].last_error == ""


def test_retry_then_dead_on_schedule(notify_app: Callable[..., App]) -> None:
    app = notify_app(
        FERRY_NOTIFY_WORKERS="0",
        FERRY_NOTIFY_RETRY_SCHEDULE_SECONDS="[0.1]",
        FERRY_NOTIFY_GIVE_UP_AFTER_SECONDS="0.5",
    )
    queue(app, 1)
    s = app.settings.notify
    statuses = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        batch = store.claim(app.engine, "w", ["log"], 10, 60)
        if not batch:
            time.sleep(0.02)
            continue
        statuses += [
            x.status
            for x in store.settle(app.engine, "w", [(batch[0], retry_outcome("451 later"))], s)
        ]
        if statuses[-1] == DEAD:
            break
    assert statuses[-1] == DEAD and set(statuses[:-1]) == {PENDING} and len(statuses) >= 3
    with app.engine.connect() as c:
        row = c.execute(sa.select(OutboxRow.__table__)).one()
    assert row.status == DEAD and row.last_error == "451 later" and row.attempts == len(statuses)


def test_schedule_backoff_jitter_and_retry_after() -> None:
    s = NotifySettings()
    rng = random.Random(1)
    assert [
        round(retry.delay(s.model_copy(update={"retry_jitter": 0}), n)) for n in range(1, 7)
    ] == [
        60,
        300,
        1800,
        7200,
        7200,
        7200,
    ]
    jittered = [retry.delay(s, 1, rng) for _ in range(200)]
    assert min(jittered) >= 54 and max(jittered) <= 66 and len(set(jittered)) > 100
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    assert retry.next_attempt(s, 1, now, now, retry_after=7) == now + dt.timedelta(seconds=7)
    four_days_later = now + dt.timedelta(days=4)
    assert retry.next_attempt(s, 9, now, four_days_later - dt.timedelta(seconds=10)) is None
    assert retry.next_attempt(s, 9, now, now + dt.timedelta(days=3)) is not None


def test_group_commit_one_notification_per_event_under_concurrent_sends(
    notify_app: Callable[..., App],
) -> None:
    """Sends from 16 threads share transactions (store.GroupCommit); every event id, sent
    three times from different threads, is one notification with one outbox row, created
    once, and each caller gets that notification back."""
    app = notify_app(FERRY_NOTIFY_WORKERS="0")
    writer = store.GroupCommit(app.engine)
    got: list[tuple[str, str, bool, int]] = []
    lock = threading.Lock()
    events = [f"g{i % 40}" for i in range(120)]
    random.Random(7).shuffle(events)

    def send(chunk: list[str]) -> None:
        for e in chunk:
            view, created = writer.create(
                store.NewNotification(
                    event_id=e, deliveries=[("log", f"{e}@b.example")], subject=e, text="t"
                )
            )
            with lock:
                got.append((e, view.notification.id, created, len(view.rows)))

    threads = [threading.Thread(target=send, args=(events[i::16],)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(got) == 120
    by_event: dict[str, set[str]] = {}
    for e, nid, _created, nrows in got:
        by_event.setdefault(e, set()).add(nid)
        assert nrows == 1
    assert all(len(ids) == 1 for ids in by_event.values()) and len(by_event) == 40
    assert sorted(e for e, _n, created, _r in got if created) == sorted(by_event)
    with app.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(OutboxRow)).scalar_one() == 40


def test_create_many_in_the_callers_transaction_rolls_back_with_it(
    notify_app: Callable[..., App],
) -> None:
    app = notify_app(FERRY_NOTIFY_WORKERS="0")
    new = store.NewNotification(
        event_id="tx-1", deliveries=[("log", "a@b.example")], subject="s", text="t"
    )
    with app.engine.connect() as conn:
        ((view, created),) = store.create_many(conn, [new])
        assert created and view.rows[0].id
        conn.rollback()
    with app.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(OutboxRow)).scalar_one() == 0
    with app.engine.begin() as conn:
        store.create_many(conn, [new])
    (a, a_created), (b, b_created) = store.create_many(app.engine, [new, new])
    assert not a_created and not b_created and a.notification.id == b.notification.id
    assert a.notification.event_id == "tx-1" and len(a.rows) == 1


def test_sends_within_the_linger_go_out_in_one_batch(
    notify_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker woken by a Send waits `notify.linger_seconds` before it claims, so the
    Sends that arrive meanwhile share its claim (one transaction for many rows)."""
    from ferry.notify import store as notify_store
    from ferry.notify.core import Notify, SendInput
    from ferry.notify.worker import Workers

    app = notify_app(
        FERRY_NOTIFY_WORKERS="1", FERRY_NOTIFY_POLL_SECONDS="30",
        FERRY_NOTIFY_LINGER_SECONDS="0.5",
    )  # fmt: skip
    claimed: list[int] = []
    claim = notify_store.Claimer.claim

    def counting(*args: Any, **kwargs: Any) -> Any:
        out = claim(*args, **kwargs)
        if out[0]:
            claimed.append(len(out[0]))
        return out

    monkeypatch.setattr(notify_store.Claimer, "claim", counting)
    workers: Workers | None = None
    notify = Notify(app, on_queued=lambda: workers.wake() if workers else None)
    workers = Workers(app, notify)
    workers.start()
    try:
        time.sleep(0.2)  # the worker's first poll found nothing; it now waits to be woken
        for i in range(5):
            notify.send(SendInput(channels=["log"], recipients=[f"u{i}@school.example"],
                                  subject="s", body="b", event_id=f"linger-{i}"))  # fmt: skip
        deadline = time.monotonic() + 10
        while sum(claimed) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        workers.stop()
    assert claimed == [5]  # one claim for the five Sends of the linger window


def test_sent_many_settles_rows_together_and_only_those_still_held(
    notify_app: Callable[..., App],
) -> None:
    """The worker settles the sends that completed together in one statement
    (store.SentSettler.sent_many). Rows of one notification settled together make it
    sent (each one's "other rows" must not count its batch-mates as pending); one whose
    other row is still pending stays pending; a row whose lease went to another worker is
    neither settled nor reported, and its notification stays pending."""
    app = notify_app(FERRY_NOTIFY_WORKERS="0")
    two, _ = store.create(
        app.engine,
        store.NewNotification(
            event_id="two",
            deliveries=[("log", "a@b.example"), ("log", "b@b.example")],
            subject="s",
            text="t",
        ),
    )
    half, _ = store.create(
        app.engine,
        store.NewNotification(
            event_id="half",
            deliveries=[("log", "c@b.example"), ("log", "d@b.example")],
            subject="s",
            text="t",
        ),
    )
    queue(app, 1)  # e0, claimed by another worker below
    mine = store.claim(app.engine, "me", ["log"], 100, 60)
    assert len(mine) == 5
    other = next(d for d in mine if d.event_id == "e0")
    with app.engine.begin() as conn:  # e0's lease ran out and another worker took it
        conn.execute(
            sa.update(OutboxRow).where(OutboxRow.id == other.row_id).values(lease_owner="them")
        )
    kept = next(d for d in mine if d.recipient == "d@b.example")  # still in flight
    settler = store.SentSettler(app.engine, "me")
    try:
        done = settler.sent_many([d for d in mine if d is not kept])
        assert settler.sent_many([]) == []
    finally:
        settler.close()
    assert sorted(x.delivery.recipient for x in done) == ["a@b.example", "b@b.example",
                                                          "c@b.example"]  # fmt: skip
    assert all(x.status == SENT and x.created_at is not None for x in done)
    assert store.get(app.engine, two.notification.id).notification.status == SENT
    view = store.get(app.engine, half.notification.id)
    assert view.notification.status == PENDING
    assert {r.recipient: r.status for r in view.rows} == {
        "c@b.example": SENT,
        "d@b.example": PENDING,
    }
    lost = store.get(app.engine, other.notification_id)
    assert lost.notification.status == PENDING and lost.rows[0].lease_owner == "them"
    # The last row of `half` settled alone completes it.
    settler = store.SentSettler(app.engine, "me")
    try:
        assert settler.sent(kept) is not None
    finally:
        settler.close()
    assert store.get(app.engine, half.notification.id).notification.status == SENT


@pytest.mark.parametrize("backend", [pytest.param("postgres", marks=pytest.mark.postgres)])
def test_a_new_schools_rows_are_found_by_the_next_pass_after_an_idle_one(
    backend: str, notify_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A busy worker keeps the list of schools it read (worker.SCHOOLS_SECONDS), but a
    pass that finds nothing anywhere reads it again: a school added meanwhile is served
    by the very next pass, however long the list would otherwise be kept."""
    from ferry.db import schools, tenant
    from ferry.notify import worker
    from ferry.notify.core import Notify

    monkeypatch.setattr(worker, "SCHOOLS_SECONDS", 3600.0)
    app = notify_app()
    workers = worker.Workers(app, Notify(app))  # not started: passes run by hand
    queue(app, 1)
    assert workers.run_once("w") == 1  # the list of schools read and kept
    north = schools.add(app.engine, "north")
    with tenant.acting_for(north.id):
        store.create(
            app.engine,
            store.NewNotification(
                event_id="n1", deliveries=[("log", "a@north.example")], subject="s", text="t"
            ),
        )
    handled = [workers.run_once("w") for _ in range(2)]
    assert sum(handled) == 1  # the kept list missed it once at most, the next found it
    with app.engine.connect() as conn:
        status = conn.execute(
            sa.text("SELECT status FROM notify_outbox WHERE school_id = :s"), {"s": north.id}
        ).scalar_one()
    assert status == SENT
