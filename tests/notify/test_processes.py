"""Notify processes that die or run side by side: a `ferry serve notify` SIGKILLed in the
middle of a delivery delivers it after a restart, and two processes on one PostgreSQL
outbox send 500 notifications exactly once each."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa

from ferry.db.engine import make_engine
from ferry.db.notify_models import SENT
from ferry.notify import store
from ferry.v1 import export_pb2, export_pb2_grpc, import_pb2_grpc
from tests.conftest import fresh_database
from tests.notify.helpers import SmtpServer, eventually, free_port

ROOT = Path(__file__).resolve().parents[2]


class Served(subprocess.Popen[str]):
    port: int


@contextmanager
def notify_process(
    url: str, folder: Path, smtp_port: int, services: tuple[str, ...] = ("notify",), **env: str
) -> Iterator[Served]:
    """`ferry serve SERVICES` (notify) in its own process (smtp channel, short lease),
    stopped after; `.port` is its gRPC port."""
    full = {
        **os.environ,
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        "FERRY_DATABASE_URL": url,
        "FERRY_AUTH_SIGNING_KEY_FILE": str(folder / "signing.key"),
        "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
        "FERRY_METRICS_ENABLED": "false",
        "FERRY_NOTIFY_CHANNELS": "[smtp]",
        "FERRY_NOTIFY_POLL_SECONDS": "0.1",
        "FERRY_NOTIFY_LEASE_SECONDS": "3",
        "FERRY_NOTIFY_RETRY_SCHEDULE_SECONDS": "[0.5]",
        "FERRY_PLUGINS_CHANNELS_SMTP_PORT": str(smtp_port),
        "FERRY_PLUGINS_CHANNELS_SMTP_TIMEOUT_SECONDS": "2",
        "FERRY_PLUGINS_CHANNELS_SMTP_FROM_ADDRESS": "ferry@school.example",
        "FERRY_LOG_LEVEL": "WARNING",
        **env,
    }
    proc = Served(
        [sys.executable, "-m", "ferry.cli.main", "serve", *services],
        env=full,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    started = None
    while time.monotonic() < deadline and not started:
        line = proc.stderr.readline()
        started = re.search(r"gRPC\s+\S+:(\d+)", line)
        if not line and proc.poll() is not None:
            break
    if not started:
        proc.kill()
        raise AssertionError(f"ferry serve {' '.join(services)} did not start")
    proc.port = int(started.group(1))
    # Keep reading its stderr so a chatty process never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stderr or []], daemon=True).start()
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def queue(url: str, n: int) -> list[str]:
    engine = make_engine(url)
    try:
        ids = []
        for i in range(n):
            view, _ = store.create(
                engine,
                store.NewNotification(
                    event_id=f"bulk-{i}",
                    deliveries=[("smtp", f"user{i}@school.example")],
                    subject=f"Notification {i}",
                    text="Hello",
                ),
            )
            ids.append(view.notification.id)
        return ids
    finally:
        engine.dispose()


@pytest.mark.slow
def test_sigkill_mid_delivery_is_delivered_after_restart(empty_url: str, tmp_path: Path) -> None:
    smtp = SmtpServer().start()
    smtp.inbox.data_delay = 3.0  # the relay takes its time to answer DATA
    try:
        (nid,) = queue(empty_url, 1)
        with notify_process(empty_url, tmp_path, smtp.port) as proc:
            assert smtp.inbox.data_started.wait(20)
            proc.send_signal(signal.SIGKILL)  # mid-DATA: the relay has the mail, we have no 250
            proc.wait(10)
        engine = make_engine(empty_url)
        try:
            view = store.get(engine, nid)
            assert view.rows[0].status == "pending" and view.rows[0].lease_owner
            smtp.inbox.data_delay = 0.0
            with notify_process(empty_url, tmp_path, smtp.port):
                eventually(lambda: store.get(engine, nid).notification.status == SENT, 30)
            row = store.get(engine, nid).rows[0]
        finally:
            engine.dispose()
        assert row.attempts == 2
        # At least once: the relay may hold the killed attempt too, but every copy is the
        # same message (one Message-ID), so a receiver can tell.
        got = smtp.inbox.wait_for(1)
        assert {m["Message-ID"] for m in got} == {f"<{nid}.{row.id}@school.example>"}
    finally:
        smtp.stop()


@pytest.mark.slow
@pytest.mark.postgres
def test_two_processes_on_one_postgres_outbox_send_500_exactly_once(tmp_path: Path) -> None:
    from ferry.db import migrate

    with fresh_database("postgres", tmp_path) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        ids = queue(url, 500)
        smtp = SmtpServer().start()
        try:
            with notify_process(url, tmp_path, smtp.port), notify_process(url, tmp_path, smtp.port):
                got = smtp.inbox.wait_for(500, timeout=120)
                time.sleep(1.0)  # anything doubled would arrive now
            assert len(smtp.inbox.messages) == 500
            assert len({m["Message-ID"] for m in got}) == 500
            assert sorted(m["To"] for m in got) == sorted(
                f"user{i}@school.example" for i in range(500)
            )
            engine = make_engine(url)
            try:
                assert store.list_page(engine, 1, status=SENT).total == len(ids)
            finally:
                engine.dispose()
        finally:
            smtp.stop()


@pytest.mark.slow
def test_import_announced_although_its_process_is_killed_and_notify_was_down(
    empty_url: str, tmp_path: Path
) -> None:
    """ImportSession with notify while no notify service runs; the import's process is
    SIGKILLed as soon as the import has answered. The announcement commits with the
    import (an outbox row), so a notify service started afterwards mails the summary,
    once. (Announcing by a Send after the commit loses it here: nobody was listening,
    and the process that would have retried is gone.)"""
    from ferry.db.import_models import Import
    from tests.conftest import token_from_key_file
    from tests.imports.helpers import file_requests, seed_small

    seed_small(empty_url)
    smtp = SmtpServer().start()
    md = [("authorization", f"Bearer {token_from_key_file(tmp_path / 'signing.key', 'admin')}")]
    nowhere = free_port()  # where the import process looks for notify: nothing listens
    shared = {
        "FERRY_NOTIFY_DEFAULT_CHANNELS": "[smtp]",
        "FERRY_CLIENT_TARGET": f"127.0.0.1:{nowhere}",
        "FERRY_PLUGINS_STORAGE_LOCAL_DIR": str(tmp_path / "exports"),
    }
    try:
        with (
            notify_process(
                empty_url, tmp_path, smtp.port, services=("export", "import"), **shared
            ) as proc,
            grpc.insecure_channel(f"127.0.0.1:{proc.port}") as ch,
        ):
            export = export_pb2_grpc.ExportServiceStub(ch)
            data = b"".join(
                m.chunk.data
                for m in export.DownloadSession(
                    export_pb2.DownloadSessionRequest(semester="2026-fall", bundle_format="json"),
                    metadata=md,
                    timeout=60,
                )
            )
            result = (
                import_pb2_grpc.ImportServiceStub(ch)
                .ImportSession(
                    file_requests(data, "fall.json", notify=["registrar@school.example"]),
                    metadata=md,
                    timeout=60,
                )
                .result
            )
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        engine = make_engine(empty_url)
        try:
            with engine.connect() as c:
                status = c.execute(
                    sa.select(Import.status).where(Import.id == result.id)
                ).scalar_one()
            assert status == "completed"
        finally:
            engine.dispose()
        assert smtp.inbox.messages == []
        with notify_process(empty_url, tmp_path, smtp.port, **shared):
            (mail,) = smtp.inbox.wait_for(1, timeout=30)
            time.sleep(1.0)  # a second copy would arrive now
        assert len(smtp.inbox.messages) == 1
        assert mail["Subject"] == "Import finished: fall.json"
        assert mail["X-Ferry-Event"] == f"import:{result.id}"
        text = mail.get_body(("plain",)).get_content()
        assert f"Import: {result.id}" in text
    finally:
        smtp.stop()


def _kill_at_random_moments(url: str, folder: Path, kills: int, seed: int, width: int = 1) -> None:
    """`kills` notify processes (one worker, batches of 20, `width` sends in flight)
    SIGKILLed at random moments while they deliver 60 notifications to a relay that takes
    10 ms per mail, then one that finishes; every copy the relay took is counted per
    Message-ID."""
    import random
    from collections import Counter

    rng = random.Random(seed)
    smtp = SmtpServer().start()
    smtp.inbox.data_delay = 0.01
    env = {"FERRY_NOTIFY_WORKERS": "1", "FERRY_NOTIFY_BATCH_SIZE": "20",
           "FERRY_NOTIFY_LEASE_SECONDS": "1.5",
           "FERRY_NOTIFY_SENDS_PER_WORKER": str(width)}  # fmt: skip
    try:
        ids = queue(url, 60)
        done_kills = 0
        in_flight: Counter[str] = Counter()
        for _ in range(kills):
            before = len(smtp.inbox.messages)
            if before >= 60:
                break
            with notify_process(url, folder, smtp.port, **env) as proc:
                # Once the worker is delivering, at a random moment within ~half a batch.
                eventually(lambda b=before: len(smtp.inbox.messages) > b, 30)
                time.sleep(rng.uniform(0, 0.15))
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                done_kills += 1
                # The mails in flight, if any: the last `width` the relay took from this
                # worker (one still in the relay's DATA wait is taken after the kill).
                time.sleep(0.1)
                for m in smtp.inbox.messages[-width:]:
                    in_flight[str(m["Message-ID"])] += 1
        engine = make_engine(url)
        try:
            with notify_process(url, folder, smtp.port, **env):
                try:
                    eventually(lambda: all(store.get(engine, n).notification.status == SENT
                                           for n in ids), 60)  # fmt: skip
                except AssertionError:
                    left = [
                        (r.status, r.attempts, r.last_error, r.lease_owner)
                        for n in ids
                        for r in store.get(engine, n).rows
                        if r.status != SENT
                    ]
                    raise AssertionError(f"not sent: {left[:5]} ({len(left)})") from None
            rows = {n: store.get(engine, n).rows[0] for n in ids}
        finally:
            engine.dispose()
        copies: dict[str, int] = {}
        for m in smtp.inbox.messages:
            copies[str(m["Message-ID"])] = copies.get(str(m["Message-ID"]), 0) + 1
        want = {f"<{n}.{r.id}@school.example>" for n, r in rows.items()}
        assert set(copies) == want  # every notification reached the relay, under its own id
        extra = sum(c - 1 for c in copies.values())
        # At most the mails in flight per kill (one worker, `width` sends): settling a batch
        # at its end resent every mail of it the relay had taken (4 of 10, 6 of 10 in two
        # runs). Each extra copy is of a mail that was in flight at a kill, at most once per
        # such kill (the same mail can be in flight at two kills running: two extras).
        assert extra <= done_kills * width, (
            seed, done_kills, sorted(c for c in copies.values() if c > 1)
        )  # fmt: skip
        for mid, c in copies.items():
            assert c - 1 <= in_flight[mid], (seed, mid, c, in_flight[mid])
    finally:
        smtp.stop()


@pytest.mark.slow
def test_sigkill_at_random_moments_resends_at_most_the_mail_in_flight(
    empty_url: str, tmp_path: Path
) -> None:
    _kill_at_random_moments(empty_url, tmp_path, 3, seed=int(time.time()))


@pytest.mark.long
def test_twenty_random_sigkills_resend_at_most_one_mail_each(
    empty_url: str, tmp_path: Path
) -> None:
    _kill_at_random_moments(empty_url, tmp_path, 20, seed=int(time.time()))
