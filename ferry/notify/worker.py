"""The notify service's background threads: outbox workers.

Each worker claims a batch of due rows with a lease (ferry.notify.store.claim), hands each
channel its share, settles each delivered row as soon as its relay accepted it (so a
worker killed at any moment resends at most the mails in flight), and the other outcomes
with the batch. A worker keeps up to `notify.sends_per_worker` deliveries in flight at
once on channels that wait for the other side (smtp, webhook: `concurrent = True`), each
on a thread of its own pool with its own relay connection. The sends that complete
together are settled together (one statement) before their senders take the next rows, so
a SIGKILL resends at most `sends_per_worker` mails per worker. When every row it claimed
is in flight, a worker claims the next ones of the same school while the relay works (up
to TOPUPS times before the other schools' turn), so its senders never stand idle through
a claim. A Send in this process wakes a worker at once; other replicas find new rows when
they poll. A worker that dies leaves its rows leased; once the lease ends any replica
takes them again, so pending and abandoned rows are delivered after a restart (a row
claimed but not yet handed to a sender was never sent: it is delayed, not doubled).
"""

from __future__ import annotations

import logging
import os
import queue
import socket
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ferry.app import App
from ferry.db import schools, tenant
from ferry.db.notify_models import DEAD, FAILED, PENDING, SENT
from ferry.notify import metrics, store
from ferry.notify.channels.base import Delivery, Outcome, failed, retry
from ferry.notify.core import Notify

log = logging.getLogger("ferry.notify")
DEPTH_SECONDS = 1.0  # the outbox depth gauge is refreshed at most this often
# Claims a worker adds to its batch while its last rows are in flight (_run_batch) before
# it gives the other schools their turn.
TOPUPS = 8
# A busy worker reads the list of schools at most this often (a pass that finds no work
# reads it again at once), not once per batch: a new school's rows wait at most this long.
SCHOOLS_SECONDS = 1.0
# The per-school attempt counter's outcome of each settled status (metrics.school_label).
_OUTCOMES = {SENT: "sent", PENDING: "retried", FAILED: "failed", DEAD: "dead"}


class Workers:
    def __init__(self, app: App, notify: Notify) -> None:
        self.app = app
        self.notify = notify
        self.settings = app.settings.notify
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._stopping = threading.Event()
        # Wake-ups owed to idle workers: a Send wakes one of them, not all (a woken
        # worker that finds nothing has cost a claim transaction for nothing).
        self._cond = threading.Condition()
        self._wakes = 0
        self._threads: list[threading.Thread] = []
        self._depth_at = 0.0
        self._turn = 0  # the school a claim starts with, so no school starves the others
        # metrics.school_label: the school codes the per-school series are labelled with
        # (id -> code, read from the schools table when one is missing).
        self.school_label = app.settings.metrics.school_label
        self._codes: dict[int, str] = {}
        # (time.monotonic() when read, the schools' ids): see SCHOOLS_SECONDS.
        self._schools: tuple[float, list[int]] = (0.0, [])
        # Each worker's senders (sends_per_worker > 1), kept for its life so each sending
        # thread keeps its relay connection across batches.
        self._pools: dict[str, ThreadPoolExecutor] = {}

    def start(self) -> None:
        for i in range(self.settings.workers):
            t = threading.Thread(
                target=self._loop,
                name=f"notify-worker-{i}",
                args=(f"{self.name}/{i}",),
                daemon=True,
            )
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        with self._cond:
            pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            pool.shutdown(wait=False)

    def _pool(self, worker_id: str) -> ThreadPoolExecutor | None:
        """`worker_id`'s senders; None when it sends one at a time."""
        width = self.settings.sends_per_worker
        if width <= 1:
            return None
        with self._cond:
            pool = self._pools.get(worker_id)
            if pool is None:
                name = f"notify-send-{worker_id.rsplit('/', 1)[-1]}"
                pool = self._pools[worker_id] = ThreadPoolExecutor(width, name)
            return pool

    def wake(self) -> None:
        """Wake one idle worker (rows were queued in this process)."""
        with self._cond:
            self._wakes = min(self._wakes + 1, max(1, len(self._threads)))
            self._cond.notify()

    def _idle(self) -> bool:
        """Wait until woken (True) or poll_seconds have passed (False)."""
        with self._cond:
            if not self._wakes and not self._stopping.is_set():
                self._cond.wait(self.settings.poll_seconds)
            if self._wakes:
                self._wakes -= 1
                return True
        return False

    def _loop(self, worker_id: str) -> None:
        while not self._stopping.is_set():
            try:
                n = self.run_once(worker_id)
            except Exception:  # a database hiccup must not kill the worker
                log.exception("notify worker error", extra={"event": "notify_worker_error"})
                n = 0
            if n >= self.settings.batch_size:
                self.wake()  # a full batch: there may be more, another idle worker helps
            if n == 0:
                self._update_depth()
                if self._idle():
                    # Woken by a Send: let the Sends arriving with it join one batch
                    # (one claim and one settle for many rows, not one per row).
                    time.sleep(self.settings.linger_seconds)

    def _update_depth(self) -> None:
        now = time.monotonic()
        if now - self._depth_at < DEPTH_SECONDS:
            return
        self._depth_at = now
        depth: dict[str, int] = {}
        per_school: dict[int, dict[str, int]] = {}
        try:
            for school in schools.ids(self.app.engine):
                with tenant.acting_for(school):
                    per_school[school] = store.depth(self.app.engine)
                    for name, n in per_school[school].items():
                        depth[name] = depth.get(name, 0) + n
        except Exception:
            return
        for name in self.settings.channels:
            metrics.DEPTH.labels(name).set(depth.get(name, 0))
        if self.school_label:
            for school, counted in per_school.items():
                code = self._code(school)
                for name in self.settings.channels:
                    metrics.SCHOOL_DEPTH.labels(code, name).set(counted.get(name, 0))

    def _code(self, school: int) -> str:
        """The code of school `school` (metrics.school_label), from the schools table."""
        code = self._codes.get(school)
        if code is None:
            self._codes = {s.id: s.code for s in schools.all_schools(self.app.engine)}
            code = self._codes.get(school, "")
        return code

    def run_once(self, worker_id: str) -> int:
        """Claim one batch of some school and deliver it, acting for that school (each
        school in turn: a transaction sees one school's rows, docs/tenants.md); the
        number of rows handled."""
        at, found = self._schools
        if not found or time.monotonic() - at > SCHOOLS_SECONDS:
            found = schools.ids(self.app.engine)
            self._schools = (time.monotonic(), found)
        with self._cond:
            start = self._turn % max(len(found), 1)
            self._turn += 1
        for school in found[start:] + found[:start]:
            with tenant.acting_for(school):
                handled = self._run_batch(worker_id)
            if handled:
                return handled
        self._schools = (0.0, [])  # nothing anywhere: the next pass reads the schools again
        return 0

    def _run_batch(self, worker_id: str) -> int:
        claimer = store.Claimer(self.app.engine, worker_id)
        try:
            return self._batch(worker_id, claimer)
        finally:
            claimer.close()

    def _batch(self, worker_id: str, claimer: store.Claimer) -> int:
        s = self.settings
        channels = self.notify.channels
        claimed = 0
        todo: deque[Delivery] = deque()
        results: list[tuple[Delivery, Outcome]] = []

        def claim() -> int:
            """Claim up to batch_size rows into `todo` (those of a switched-off channel or
            endpoint straight into `results`); how many were claimed."""
            batch, off = claimer.claim(list(channels), s.batch_size, s.lease_seconds)
            for d in batch:
                key = next((k for k in (d.channel, f"{d.channel}/{d.recipient}") if k in off), "")
                if key:
                    results.append((d, failed(f"{key} is switched off: {off[key]}")))
                else:
                    todo.append(d)
            return len(batch)

        claimed = claim()
        if not claimed:
            return 0
        # The lease is renewed while the batch is worked through, so a slow relay never lets
        # it run out under our feet (another replica would then send the same rows).
        renewed = time.monotonic()
        lost: set[int] = set()
        # Delivered rows are settled as soon as their sends return, before their senders
        # take the next (see store.SentSettler): a SIGKILL at any moment resends at most
        # the mails in flight (sends_per_worker), not the batch.
        early: list[store.Settled] = []
        settler = store.SentSettler(self.app.engine, worker_id)
        pool = self._pool(worker_id)
        width = s.sends_per_worker if pool is not None else 1
        # In flight on the senders, by row id; each sender puts its (delivery, outcome)
        # into `landed` as it returns (cheaper per mail than waiting on futures).
        flying: dict[int, Delivery] = {}
        landed: queue.SimpleQueue[tuple[Delivery, Outcome]] = queue.SimpleQueue()
        topups = TOPUPS

        def finish(done: list[tuple[Delivery, Outcome]]) -> None:
            now_sent = []
            for d, out in done:
                if out.status == SENT and getattr(channels[d.channel], "settle_each", True):
                    now_sent.append(d)
                else:
                    results.append((d, out))
            early.extend(settler.sent_many(now_sent))

        finished = False
        try:
            while todo or flying:
                if time.monotonic() - renewed > s.lease_seconds / 3:
                    rest = [x.row_id for x in (*flying.values(), *todo)]
                    held = store.renew(self.app.engine, worker_id, rest, s.lease_seconds)
                    lost |= set(rest) - held
                    renewed = time.monotonic()
                while todo and len(flying) < width:
                    d = todo.popleft()
                    if d.row_id in lost:
                        continue
                    channel = channels[d.channel]
                    if pool is None or not getattr(channel, "concurrent", False):
                        finish([(d, self._send(channel, d))])  # here, one at a time
                        break  # the lease is looked at between any two sends
                    pool.submit(self._send_into, landed, channel, d)
                    flying[d.row_id] = d  # only this thread takes from `landed`
                if flying and not todo and topups and not self._stopping.is_set():
                    # Everything claimed is in flight: claim the next rows of this school
                    # while the relay works on those, so the senders never wait for a
                    # claim between batches (a few turns, then the other schools' turn).
                    topups -= 1
                    got = claim()
                    claimed += got
                    if not got:
                        topups = 0
                    continue  # send the new rows first, then wait
                if flying:
                    left = s.lease_seconds / 3 - (time.monotonic() - renewed)
                    try:
                        ready = [landed.get(timeout=max(left, 0.0))]
                    except queue.Empty:
                        continue  # time to renew the lease
                    while not landed.empty():  # and every other send that completed
                        ready.append(landed.get_nowait())
                    for d, _out in ready:
                        flying.pop(d.row_id, None)
                    finish(ready)
            finished = True
        finally:
            while not finished and flying:  # an error (the database): let the sends end
                # before the next batch; unsettled rows go again once their lease ends
                flying.pop(landed.get()[0].row_id, None)
            settler.close()
        later = store.settle(self.app.engine, worker_id, results, s) if results else []
        for done in [*early, *later]:
            self._count(done)
        return claimed

    def _send_into(
        self, landed: queue.SimpleQueue[tuple[Delivery, Outcome]], channel: Any, d: Delivery
    ) -> None:
        """`_send` on a sender thread, its outcome put into `landed` whatever happens."""
        out = retry(f"channel {d.channel} failed")
        try:
            out = self._send(channel, d)
        finally:
            landed.put((d, out))

    def _send(self, channel: Any, d: Delivery) -> Outcome:
        try:
            outs = channel.send([d])
            if len(outs) != 1:
                raise RuntimeError(f"channel {d.channel} answered {len(outs)} outcomes for 1")
            out: Outcome = outs[0]
            return out
        except Exception as e:
            log.exception("channel %s failed", d.channel, extra={"event": "notify_channel_error"})
            return retry(f"channel {d.channel} failed: {type(e).__name__}")

    def _count(self, done: store.Settled) -> None:
        ch = done.delivery.channel
        if self.school_label:  # acting for the batch's school (run_once)
            code = self._code(tenant.school_id())
            if code:
                metrics.SCHOOL_ATTEMPTS.labels(code, ch, _OUTCOMES.get(done.status, "")).inc()
        if done.status == SENT:
            metrics.SENT.labels(ch).inc()
            if done.created_at is not None:
                from ferry.db.models import utcnow

                metrics.LATENCY.labels(ch).observe((utcnow() - done.created_at).total_seconds())
        elif done.status == PENDING:
            metrics.RETRIED.labels(ch).inc()
        elif done.status == FAILED:
            metrics.FAILED.labels(ch).inc()
        elif done.status == DEAD:
            metrics.DEAD.labels(ch).inc()
        if done.status != SENT:
            log.info(
                "notification %s to %s: %s",
                done.delivery.notification_id,
                done.delivery.recipient,
                done.status,
                extra={
                    "event": "notify_attempt",
                    "notification_id": done.delivery.notification_id,
                    "channel": ch,
                    "status": done.status,
                    "attempt": done.delivery.attempt,
                },
            )
