"""The smtp channel over STARTTLS and implicit TLS to a real aiosmtpd with a certificate
from a throwaway CA (trustme); an untrusted certificate is retried, never sent in clear."""

from __future__ import annotations

import ssl
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme
from aiosmtpd.controller import Controller

from ferry.app import App
from ferry.v1 import notify_pb2 as pb
from tests.notify.conftest import serving
from tests.notify.helpers import Inbox, eventually, free_port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    # A context usable both ways: aiosmtpd's controller also connects with it to check
    # that its server is up.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
def tls_relay(ca: trustme.CA) -> Iterator[Callable[[str], tuple[int, Inbox]]]:
    controllers: list[Controller] = []

    def start(mode: str) -> tuple[int, Inbox]:
        inbox = Inbox()
        port = free_port()
        ctx = server_context(ca)
        if mode == "starttls":
            c = Controller(
                inbox, hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True
            )
        else:
            c = Controller(inbox, hostname="127.0.0.1", port=port, ssl_context=ctx)
        c.start()
        controllers.append(c)
        return port, inbox

    yield start
    for c in controllers:
        c.stop()


@pytest.mark.parametrize("mode", ["starttls", "tls"])
def test_mail_over_tls(
    mode: str,
    notify_app: Callable[..., App],
    tls_relay: Callable[[str], tuple[int, Inbox]],
    ca: trustme.CA,
    tmp_path: Path,
) -> None:
    port, inbox = tls_relay(mode)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    app = notify_app(
        smtp_port=port,
        FERRY_PLUGINS_CHANNELS_SMTP_SECURITY=mode,
        FERRY_PLUGINS_CHANNELS_SMTP_CA_FILE=str(tmp_path / "ca.pem"),
    )
    with serving(app) as (_srv, c):
        n = c.send(channels=["smtp"], recipients=["a@school.example"], subject="s", body="b")
        assert c.wait(n.notification.id).status == pb.NOTIFICATION_STATUS_SENT
    assert len(inbox.wait_for(1)) == 1


def test_untrusted_certificate_is_retried_not_sent(
    notify_app: Callable[..., App], tls_relay: Callable[[str], tuple[int, Inbox]]
) -> None:
    port, inbox = tls_relay("starttls")
    app = notify_app(smtp_port=port, FERRY_PLUGINS_CHANNELS_SMTP_SECURITY="starttls")
    with serving(app) as (_srv, c):
        nid = c.send(
            channels=["smtp"], recipients=["a@school.example"], subject="s", body="b"
        ).notification.id
        pending = eventually(lambda: (x := c.get(nid)).deliveries[0].last_error and x)
    assert pending.status == pb.NOTIFICATION_STATUS_PENDING
    assert pending.deliveries[0].last_error.startswith("cannot reach the mail relay: TLS failed")
    assert inbox.messages == []
