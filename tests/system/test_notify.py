"""Notifications through the gateway while the mail relay goes away and a notify process
is SIGKILLed in the middle of a delivery (the relay has taken the DATA, Ferry has no 250
yet), then started again.

The promise (docs/reliability.md, ferry/notify): at least once, recognisably. Pass: every
notification accepted by the gateway reaches the relay under its own Message-ID (one
distinct Message-ID per notification, and no other); copies beyond one per notification
are only resends of a delivery whose process was killed (at most one per kill, same
Message-ID); a Send retried with the same event_id is the same notification; every
notification ends SENT.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.notify.helpers import SmtpServer
from tests.system.harness import Cluster, cluster, free_ports

N_DOWN = 8  # sent while the relay is down
N_UP = 8  # sent after the notify process was killed and restarted


def _notify_env(smtp_port: int) -> dict[str, str]:
    return {
        "FERRY_NOTIFY_CHANNELS": "[smtp]",
        "FERRY_NOTIFY_DEFAULT_CHANNELS": "[smtp]",
        "FERRY_NOTIFY_POLL_SECONDS": "0.1",
        "FERRY_NOTIFY_LEASE_SECONDS": "3",
        "FERRY_NOTIFY_RETRY_SCHEDULE_SECONDS": "[0.5]",
        "FERRY_NOTIFY_RETRY_JITTER": "0",
        "FERRY_PLUGINS_CHANNELS_SMTP_PORT": str(smtp_port),
        "FERRY_PLUGINS_CHANNELS_SMTP_TIMEOUT_SECONDS": "10",
        "FERRY_PLUGINS_CHANNELS_SMTP_FROM_ADDRESS": "ferry@school.example",
    }


# Over the ~30 s a CI scenario may take on a loaded machine: slow (bounded, never skipped).
@pytest.mark.slow
def test_relay_down_then_back_and_notify_killed_mid_delivery_delivers_each_once(
    small_pg: str, tmp_path: Path
) -> None:
    smtp = SmtpServer()
    try:
        with cluster(small_pg, tmp_path) as system:
            _run(system, smtp)
    finally:
        smtp.stop()


def _run(system: Cluster, smtp: SmtpServer) -> None:
    env = _notify_env(smtp.port)
    operator = {"authorization": f"Bearer {system.token('operator')}"}
    # The process that replaces the killed one comes back on its port (a restarted pod
    # behind the same Service address).
    (port,) = free_ports(1)
    a = system.serve("notify", port=port, **env)
    gw = system.gateway({"notify": f"127.0.0.1:{port}"})
    client = httpx.Client(base_url=f"http://127.0.0.1:{gw.port}", timeout=60)
    run = uuid.uuid4().hex[:8]
    sent: dict[str, str] = {}  # notification id -> recipient

    def send(i: int) -> str:
        to = f"user{i}-{run}@school.example"
        body = {"recipients": [to], "subject": f"Notice {i}", "body": "Hello",
                "event_id": f"system-{run}-{i}"}  # fmt: skip
        r = client.post("/api/v1/notifications", json=body, headers=operator)
        assert r.status_code == 200, r.text[:300]
        nid = str(r.json()["notification"]["id"])
        sent[nid] = to
        return nid

    def status(nid: str) -> str:
        r = client.get(f"/api/v1/notifications/{nid}", headers=operator)
        assert r.status_code == 200, r.text[:300]
        return str(r.json()["notification"]["status"])

    def attempts(nid: str) -> int:
        r = client.get(f"/api/v1/notifications/{nid}", headers=operator)
        return int(r.json()["notification"]["attempts"])

    try:
        # The relay is down (nothing listens on its port): every attempt fails, and is
        # retried on the schedule.
        down = [send(i) for i in range(N_DOWN)]
        resend = {"recipients": [sent[down[0]]], "subject": "Notice 0", "body": "Hello",
                  "event_id": f"system-{run}-0"}  # fmt: skip
        again = client.post("/api/v1/notifications", json=resend, headers=operator)
        assert again.status_code == 200 and again.json()["created"] is False, again.text[:300]
        assert again.json()["notification"]["id"] == down[0]
        deadline = time.monotonic() + 30
        while not all(attempts(n) >= 2 for n in down):
            assert time.monotonic() < deadline, "no retries while the relay was down"
            time.sleep(0.2)
        assert {status(n) for n in down} == {"NOTIFICATION_STATUS_PENDING"}
        assert not smtp.inbox.messages

        # The relay is back, but slow to answer DATA: the notify process dies in the middle.
        smtp.inbox.data_delay = 3.0
        smtp.start()
        assert smtp.inbox.data_started.wait(30), "no delivery started once the relay was back"
        a.kill()
        killed = 1
        smtp.inbox.data_delay = 0.0
        system.procs.remove(a)
        # No call goes through the gateway until the new process serves: its channel,
        # idle since the connection broke, connects again on the next call.
        b = system.serve("notify", port=port, **env)
        up = [send(N_DOWN + i) for i in range(N_UP)]

        everything = down + up
        deadline = time.monotonic() + 60
        while not all(status(n) == "NOTIFICATION_STATUS_SENT" for n in everything):
            assert time.monotonic() < deadline, {n: status(n) for n in everything}
            time.sleep(0.3)
        time.sleep(1.0)  # a doubled delivery would arrive now
    finally:
        client.close()

    got = list(smtp.inbox.messages)
    ids = [m["Message-ID"] for m in got]
    by_id: dict[str, set[str]] = {}
    for m in got:
        by_id.setdefault(m["Message-ID"], set()).add(str(m["To"]))
    assert len(by_id) == len(sent), f"{len(by_id)} distinct Message-IDs for {len(sent)} sent"
    assert all(len(to) == 1 for to in by_id.values()), "one Message-ID, two recipients"
    assert sorted(to for (to,) in by_id.values()) == sorted(sent.values())
    for nid in sent:
        assert sum(nid in i for i in ids) >= 1, f"{nid} never reached the relay"
    extra = len(got) - len(sent)
    assert 0 <= extra <= killed, f"{extra} extra copies for {killed} kill: {sorted(ids)}"
    print(f"\nnotify faults: {len(sent)} notifications, {len(got)} copies at the relay "
          f"({extra} resend of the killed delivery)")  # fmt: skip
    b.terminate(30)
