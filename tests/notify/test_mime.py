"""The smtp channel's wire bytes (ferry.notify.channels.mime) read back as EmailMessage's.

Every case is built both ways and parsed with the standard library's parser: the headers a
reader sees, the parts and their decoded text must be the same; the wire form must be
ASCII, CRLF-terminated, with lines of at most 998 octets.
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from ferry.notify.channels import mime
from ferry.notify.channels.base import Delivery
from ferry.notify.channels.smtp import SmtpChannel, SmtpSettings

GREEK = "Η εξαγωγή είναι έτοιμη: students (csv), 1.234 εγγραφές"  # noqa: RUF001 (Greek)


class _App:
    class settings:  # stands in for App.settings
        @staticmethod
        def path(p: str) -> Path:
            return Path(p)

    def __init__(self, **kw: Any) -> None:
        self.kw = kw

    def plugin_settings(self, group: str, name: str) -> SmtpSettings:
        return SmtpSettings(from_address="ferry@school.example", **self.kw)


def _d(**kw: Any) -> Delivery:
    base: dict[str, Any] = dict(
        row_id=7,
        notification_id="0b7e1c2a-1111-2222-3333-444455556666",
        event_id="export:j1:completed",
        channel="smtp",
        recipient="a@school.example",
        attempt=1,
        subject="Your export is ready",
        text="Hello\nThe file is ready.\n",
        html="<p>Hello</p>",
    )
    base.update(kw)
    return Delivery(**base)


CASES = {
    "ascii": _d(),
    "text only": _d(html=""),
    "greek": _d(
        recipient="Γιώργος Παπαδόπουλος <giorgos@school.example>",
        subject=GREEK,
        text="Εγγραφές: 1.234\nΓεια σας\n",  # noqa: RUF001 (Greek)
        html="<p>Γεια σας</p>",
    ),
    "greek short line text only": _d(subject="Γεια", text="Γεια", html=""),
    "long ascii subject": _d(subject=" ".join(["word"] * 60)),
    "long greek subject": _d(subject=GREEK * 4),
    "name needing quotes": _d(recipient='"Smith, J. (Admin)" <j@school.example>'),
    "name with a quote": _d(recipient='"Jo \\"JJ\\" Smith" <j@school.example>'),
    "encoded-word lookalike": _d(subject="=?utf-8?q?not_encoded?= really"),
    "lines starting with dots": _d(text=".\n..\n.hidden\n", html=".x"),
    "long text line": _d(text="x" * 2000, html="<p>" + "y" * 3000 + "</p>"),
    "crlf and cr": _d(text="a\r\nb\rc\n\nd"),
    "no final newline": _d(text="last line"),
    "empty text": _d(text="", html=""),
    "long event id": _d(event_id="import:" + "x" * 120),
    "long words": _d(subject="see " + "y" * 300 + " and " + "z" * 1200),
}


def _parse(raw: bytes) -> EmailMessage:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def _seen(msg: EmailMessage) -> dict[str, Any]:
    """What a reader of the mail sees."""
    out: dict[str, Any] = {
        h: str(msg[h])
        for h in ("Subject", "Message-ID", "Auto-Submitted", "X-Ferry-Event", "MIME-Version")
    }
    for h in ("From", "To"):
        out[h] = [(a.display_name, a.addr_spec) for a in msg[h].addresses]
    out["type"] = msg.get_content_type()
    parts = list(msg.iter_parts()) if msg.is_multipart() else [msg]
    out["parts"] = [
        (p.get_content_type(), p.get_content_charset(), p.get_content().replace("\r\n", "\n"))
        for p in parts
    ]
    assert not msg.defects and all(not p.defects for p in parts)
    return out


@pytest.mark.parametrize("case", list(CASES))
def test_wire_reads_as_email_message(case: str) -> None:
    ch = SmtpChannel(_App())
    d = CASES[case]
    raw = ch.wire(d)
    assert raw is not None
    assert raw.isascii()
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    seen = _seen(_parse(raw))
    # What was sent, word for word (EmailMessage itself drops a space when it folds a
    # long Greek subject, and sends "=?...?=" in a subject as is, so a reader decodes it).
    assert seen.pop("Subject") == " ".join(d.subject.split())
    assert seen.pop("X-Ferry-Event") == d.event_id
    reference = _seen(_parse(ch.message(d).as_bytes(policy=email.policy.SMTP)))
    del reference["Subject"], reference["X-Ferry-Event"]
    assert seen == reference


def test_header_injection_becomes_spaces() -> None:
    ch = SmtpChannel(_App())
    raw = ch.wire(_d(subject="Hi\r\nBcc: victim@example.org", event_id="e\nX-Evil: 1"))
    assert raw is not None
    msg = _parse(raw)
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["Subject"] == "Hi Bcc: victim@example.org"


def test_greek_from_name_is_encoded() -> None:
    ch = SmtpChannel(_App(from_name="Σχολείο Ferry"))
    raw = ch.wire(_d())
    assert raw is not None and raw.isascii()
    assert _parse(raw)["From"].addresses[0].display_name == "Σχολείο Ferry"


def test_non_ascii_address_falls_back_to_email_message() -> None:
    ch = SmtpChannel(_App())
    assert ch.wire(_d(recipient="γιώργος@σχολείο.example")) is None


def test_boundary_never_in_a_part() -> None:
    headers = [mime.header("Subject", "s")]
    for _ in range(20):
        raw = mime.build(headers, "text", "<p>html</p>")
        boundary = re.search(rb'boundary="([^"]+)"', raw)
        assert boundary is not None
        assert raw.count(b"--" + boundary.group(1)) == 3  # two parts and the end


def test_wire_costs_a_fraction_of_email_message() -> None:
    """The reason the fast path exists: CPU per mail (the notify bench's largest item)."""
    ch = SmtpChannel(_App())
    d = CASES["greek"]

    def cpu(f: Any, n: int = 200) -> float:
        t = time.process_time()
        for _ in range(n):
            f()
        return time.process_time() - t

    slow = cpu(lambda: ch.message(d).as_bytes(policy=email.policy.SMTP))
    fast = cpu(lambda: ch.wire(d))
    assert fast < slow / 3, (fast, slow)
