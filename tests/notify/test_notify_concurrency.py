"""Concurrent delivery (notify.sends_per_worker): one worker keeps several mails in flight
on relay connections of its own, never more than the setting, each mail delivered exactly
once with its outcome (sent, failed, retried) recorded per row; a SIGKILL resends at most
the mails in flight."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ferry.app import App
from ferry.db.notify_models import FAILED, PENDING, SENT
from ferry.notify import store
from tests.notify.conftest import serving
from tests.notify.helpers import Inbox, SmtpServer, eventually
from tests.notify.test_processes import _kill_at_random_moments


class Overlap(Inbox):
    """An inbox that takes `data_delay` per mail and notes how many DATA commands it held
    at once (the most seen)."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.most = 0
        self.guard = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.guard:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            await self.hold()
            return await super().handle_DATA(server, session, envelope)
        finally:
            with self.guard:
                self.active -= 1

    async def hold(self) -> None:
        await asyncio.sleep(0.001)  # yield, so overlapping DATA commands are seen


@pytest.fixture
def relay() -> Any:
    server = SmtpServer()
    server.inbox = Overlap()
    server.start()
    yield server
    server.stop()


def _queue(app: App, recipients: list[str]) -> list[str]:
    ids = []
    for i, r in enumerate(recipients):
        view, _ = store.create(
            app.engine,
            store.NewNotification(
                event_id=f"conc-{i}", deliveries=[("smtp", r)], subject=f"N {i}", text="Hello"
            ),
        )
        ids.append(view.notification.id)
    return ids


def _statuses(app: App, ids: list[str]) -> list[tuple[str, int, str]]:
    rows = [store.get(app.engine, n).rows[0] for n in ids]
    return [(r.status, r.attempts, r.last_error) for r in rows]


@pytest.mark.parametrize("width", [1, 4])
def test_one_worker_keeps_at_most_sends_per_worker_mails_in_flight(
    notify_app: Callable[..., App], relay: SmtpServer, width: int
) -> None:
    inbox = relay.inbox
    assert isinstance(inbox, Overlap)
    inbox.data_delay = 0.1
    app = notify_app(
        smtp_port=relay.port,
        FERRY_NOTIFY_WORKERS="1",
        FERRY_NOTIFY_BATCH_SIZE="20",
        FERRY_NOTIFY_SENDS_PER_WORKER=str(width),
    )
    ids = _queue(app, [f"u{i}@school.example" for i in range(40)])  # two batches
    with serving(app):
        eventually(lambda: all(s[0] == SENT for s in _statuses(app, ids)), 30)
        time.sleep(0.3)  # a doubled send would arrive now
    assert inbox.most == width  # overlapping, and never more than the setting
    assert sorted(str(m["To"]) for m in inbox.messages) == sorted(
        f"u{i}@school.example" for i in range(40)
    )
    assert len({m["Message-ID"] for m in inbox.messages}) == 40
    # Each sending thread reuses its connection across mails and batches.
    assert inbox.connections <= width
    assert all(attempts == 1 for _s, attempts, _e in _statuses(app, ids))


def test_concurrent_outcomes_are_recorded_per_row(
    notify_app: Callable[..., App], relay: SmtpServer
) -> None:
    """Refused (550: failed, not retried) and deferred (451: retried on the schedule)
    recipients among accepted ones, all in one batch sent 4 at a time."""
    inbox = relay.inbox
    inbox.data_delay = 0.02
    recipients = [f"u{i}@school.example" for i in range(12)]
    inbox.rcpt_replies = {
        "u3@school.example": "550 5.1.1 no such user",
        "u7@school.example": "451 4.3.0 try later",
    }
    app = notify_app(
        smtp_port=relay.port, FERRY_NOTIFY_WORKERS="1", FERRY_NOTIFY_SENDS_PER_WORKER="4"
    )
    ids = _queue(app, recipients)
    with serving(app):

        def settled() -> bool:
            st = _statuses(app, ids)
            return st[3][0] == FAILED and st[7][1] >= 2 and all(
                s[0] == SENT for i, s in enumerate(st) if i not in (3, 7)
            )

        eventually(settled, 30)
        st = _statuses(app, ids)
    assert st[3][:2] == (FAILED, 1) and "550" in st[3][2]
    assert st[7][0] == PENDING and "451" in st[7][2]  # deferred: tried again, still pending
    got = sorted(str(m["To"]) for m in inbox.messages)
    assert got == sorted(r for i, r in enumerate(recipients) if i not in (3, 7))


class Stall(Inbox):
    """An inbox that accepts the first `accept` mails and then holds every DATA without an
    answer until it is stopped (a relay going down in the middle of a burst)."""

    def __init__(self, accept: int) -> None:
        super().__init__()
        self.accept = accept
        self.held = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            stall = len(self.messages) >= self.accept
            self.held += stall
        if stall:
            await asyncio.Event().wait()  # cancelled when the server stops
        return await super().handle_DATA(server, session, envelope)


class Gate(Overlap):
    """An inbox that holds every DATA unanswered until `opened` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = threading.Event()

    async def hold(self) -> None:
        while not self.opened.is_set():
            await asyncio.sleep(0.01)


def test_a_worker_claims_its_next_rows_while_its_last_ones_are_in_flight(
    notify_app: Callable[..., App],
) -> None:
    """One worker, batches of 4, 4 in flight: while the relay holds the first batch's 4
    mails unanswered, the worker has claimed the next batch already (leased to it, one
    attempt counted, nothing sent: its senders take them as slots free), and the relay
    never holds more than 4 at once. Released, all 8 go once each."""
    server = SmtpServer()
    server.inbox = gate = Gate()
    server.start()
    try:
        app = notify_app(
            smtp_port=server.port,
            FERRY_NOTIFY_WORKERS="1",
            FERRY_NOTIFY_BATCH_SIZE="4",
            FERRY_NOTIFY_SENDS_PER_WORKER="4",
        )
        ids = _queue(app, [f"u{i}@school.example" for i in range(8)])
        with serving(app):
            eventually(lambda: gate.active == 4, 30)

            def all_claimed() -> bool:
                rows = [store.get(app.engine, n).rows[0] for n in ids]
                return all(r.lease_owner and r.attempts == 1 for r in rows)

            eventually(all_claimed, 30)
            assert gate.messages == [] and gate.most == 4
            gate.opened.set()
            eventually(lambda: all(s[0] == SENT for s in _statuses(app, ids)), 30)
            time.sleep(0.3)  # a doubled send would arrive now
        assert gate.most == 4
        assert sorted(str(m["To"]) for m in gate.messages) == sorted(
            f"u{i}@school.example" for i in range(8)
        )
        assert all(attempts == 1 for _s, attempts, _e in _statuses(app, ids))
    finally:
        server.stop()


def test_relay_down_mid_burst_is_retried_and_nothing_is_lost_or_doubled(
    notify_app: Callable[..., App],
) -> None:
    """Two workers, four mails in flight each: the relay takes 10 mails, holds the next
    ones unanswered, then goes away. The held mails and the rest are retried on the
    schedule (pending, saying why) and, once a relay listens on the port again, each of the
    60 reaches it exactly once, under its own Message-ID."""
    first = SmtpServer()
    first.inbox = Stall(accept=10)
    first.start()
    app = notify_app(
        smtp_port=first.port,
        FERRY_NOTIFY_WORKERS="2",
        FERRY_NOTIFY_BATCH_SIZE="10",
        FERRY_NOTIFY_SENDS_PER_WORKER="4",
    )
    ids = _queue(app, [f"u{i}@school.example" for i in range(60)])
    second = SmtpServer(first.port)
    try:
        with serving(app):
            inbox = first.inbox
            assert isinstance(inbox, Stall)
            eventually(lambda: inbox.held >= 1, 30)  # mails in flight, unanswered
            first.stop()

            def retried() -> bool:
                st = _statuses(app, ids)
                return sum(s[0] == PENDING and s[1] >= 1 and bool(s[2]) for s in st) >= 8

            eventually(retried, 30)
            waiting = [s for s in _statuses(app, ids) if s[0] == PENDING and s[2]]
            assert all("relay" in s[2] for s in waiting), waiting
            second.start()
            eventually(lambda: all(s[0] == SENT for s in _statuses(app, ids)), 60)
            time.sleep(0.3)  # a doubled send would arrive now
        st = _statuses(app, ids)
    finally:
        first.stop()
        second.stop()
    got = [str(m["Message-ID"]) for m in [*first.inbox.messages, *second.inbox.messages]]
    assert len(first.inbox.messages) == 10
    assert len(got) == 60 and len(set(got)) == 60  # each once, none lost, none doubled
    want = {f"<{n}.{store.get(app.engine, n).rows[0].id}@school.example>" for n in ids}
    assert set(got) == want
    assert max(attempts for _s, attempts, _e in st) >= 2  # the held ones went again


@pytest.mark.slow
def test_sigkill_with_four_in_flight_resends_at_most_those(empty_url: str, tmp_path: Path) -> None:
    _kill_at_random_moments(empty_url, tmp_path, 3, seed=int(time.time()), width=4)
