"""The `smtp` channel: mail through a relay with smtplib.

- An explicit socket timeout (smtplib's default is none: a silent relay would hang a
  worker forever), STARTTLS or implicit TLS, optional AUTH with the password read from an
  environment variable or a file (a Kubernetes Secret) at connect time: it is never in
  the settings, a log line or an error.
- `email.message.EmailMessage` with a plain text and an HTML part; the SMTP policy encodes
  Greek subjects and display names (RFC 2047) and lines end in CRLF.
- The Message-ID comes from the outbox row (`<notification.row@domain>`), so a resend
  after an unclear outcome (a crash between the relay's 250 and our commit) is the same
  message and a receiver can drop the copy.
- Reply codes decide: 4xx and connection trouble are retried, 5xx fails that recipient
  only. One connection per sending thread (a worker's, or each of its
  `notify.sends_per_worker` senders) is reused across messages and batches.
"""

from __future__ import annotations

import base64
import email.policy
import email.utils
import os
import smtplib
import ssl
import threading
import time
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from ferry.addresses import parse_address
from ferry.config import Strict
from ferry.notify.channels import mime
from ferry.notify.channels.base import Delivery, Health, Outcome, failed, retry, sent

# A reused connection idle longer than this is checked with NOOP before the next mail.
IDLE_CHECK_SECONDS = 10.0


class SmtpSettings(Strict):
    host: str = "127.0.0.1"
    port: int = Field(25, ge=1, le=65535)
    # none | starttls (upgrade on the plain port, usually 587) | tls (implicit, usually 465)
    security: Literal["none", "starttls", "tls"] = "none"
    username: str = ""
    # Where the password is: an environment variable's name, or a file (a mounted Secret).
    password_env: str = ""
    password_file: str = ""
    from_address: str = "ferry@localhost"
    from_name: str = "Ferry"
    # Seconds for connecting and for each reply (the standard library waits forever).
    timeout_seconds: float = Field(10.0, gt=0, le=600)
    # Right part of Message-IDs; empty: the from address's domain.
    message_id_domain: str = ""
    # Verify the relay's certificate (TLS and STARTTLS); a CA bundle file, if not the system's.
    verify_certificate: bool = True
    ca_file: str = ""


def _split(recipient: str) -> tuple[str, str]:
    name, addr = email.utils.parseaddr(recipient)
    return name, addr


class SmtpChannel:
    name = "smtp"
    # Deliveries may run on several threads at once (notify.sends_per_worker): each thread
    # has its own relay connection (threading.local), reused across its messages.
    concurrent = True
    settings_model: ClassVar[type[Strict]] = SmtpSettings

    def __init__(self, app: Any) -> None:
        self.settings: SmtpSettings = app.plugin_settings("ferry.channels", "smtp")
        self.base_dir = app.settings.path(".")
        s = self.settings
        try:
            parse_address(s.from_address)
        except ValueError:
            raise ValueError(
                f"plugins.channels.smtp.from_address: {s.from_address!r} is not a mail address"
            ) from None
        if s.username and not (s.password_env or s.password_file):
            raise ValueError(
                "plugins.channels.smtp.username is set but neither password_env nor "
                "password_file says where its password is"
            )
        if s.password_env and s.password_env not in os.environ:
            raise ValueError(
                f"plugins.channels.smtp.password_env: environment variable {s.password_env} "
                "is not set"
            )
        if s.password_file and not self._path(s.password_file).is_file():
            raise ValueError(
                f"plugins.channels.smtp.password_file: {s.password_file} is not a readable file"
            )
        self.domain = s.message_id_domain or s.from_address.rpartition("@")[2] or "ferry.local"
        _from_name, from_addr = _split(s.from_address)
        self._from_addr = from_addr  # parsed once, not for every mail
        # The fast path (ferry.notify.channels.mime) writes ASCII addresses only.
        self._from_line = (
            f"From: {mime.address(s.from_name, from_addr)}\r\n"
            if from_addr.isascii() and self.domain.isascii()
            else ""
        )
        self._local = threading.local()
        self._all: list[smtplib.SMTP] = []
        self._lock = threading.Lock()

    def _path(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else self.base_dir / q

    def _password(self) -> str:
        s = self.settings
        if s.password_env:
            return os.environ.get(s.password_env, "")
        return self._path(s.password_file).read_text(encoding="utf-8").strip()

    def validate_recipient(self, recipient: str) -> str:
        return parse_address(recipient)

    # --- the connection -----------------------------------------------------------

    def _context(self) -> ssl.SSLContext:
        s = self.settings
        ctx = ssl.create_default_context(cafile=s.ca_file or None)
        if not s.verify_certificate:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        conn: smtplib.SMTP
        if s.security == "tls":
            conn = smtplib.SMTP_SSL(
                s.host, s.port, timeout=s.timeout_seconds, context=self._context()
            )
        else:
            conn = smtplib.SMTP(s.host, s.port, timeout=s.timeout_seconds)
        try:
            conn.ehlo()
            if s.security == "starttls":
                conn.starttls(context=self._context())
                conn.ehlo()
            if s.username:
                _login(conn, s.username, self._password())
        except BaseException:
            _quietly_close(conn)
            raise
        with self._lock:
            self._all.append(conn)
        return conn

    def _connection(self) -> smtplib.SMTP:
        conn: smtplib.SMTP | None = getattr(self._local, "conn", None)
        if conn is not None and time.monotonic() - self._local.used > IDLE_CHECK_SECONDS:
            try:
                code, _ = conn.noop()
                if code != 250:
                    raise smtplib.SMTPServerDisconnected("noop refused")
            except (smtplib.SMTPException, OSError):
                self._drop()
                conn = None
        if conn is None:
            conn = self._connect()
            self._local.conn = conn
        self._local.used = time.monotonic()
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            _quietly_close(conn)
            with self._lock:
                if conn in self._all:
                    self._all.remove(conn)

    # --- messages -----------------------------------------------------------------

    def message(self, d: Delivery) -> EmailMessage:
        msg = EmailMessage(policy=email.policy.SMTP)
        msg["Subject"] = d.subject
        from_name, from_addr = self._sender(d)
        msg["From"] = Address(display_name=from_name, addr_spec=from_addr)
        name, addr = _split(d.recipient)
        msg["To"] = Address(display_name=name, addr_spec=addr) if name else addr
        msg["Message-ID"] = f"<{d.stable_id}@{self.domain}>"
        msg["Date"] = email.utils.formatdate(usegmt=True)
        msg["Auto-Submitted"] = "auto-generated"
        msg["X-Ferry-Event"] = d.event_id
        msg.set_content(d.text)
        if d.html:
            msg.add_alternative(d.html, subtype="html")
        return msg

    def wire(self, d: Delivery, to: tuple[str, str] | None = None) -> bytes | None:
        """The same mail as `message(d)` as wire bytes, built without EmailMessage (a
        fraction of its CPU); None when an address is not ASCII (that needs SMTPUTF8,
        which `message` and smtplib's send_message handle). `to`: the recipient as
        `_split` gives it, when the caller has it already."""
        name, addr = to or _split(d.recipient)
        from_line = self._from_line
        if d.sender:
            from_name, from_addr = self._sender(d)
            ok = from_addr.isascii() and self.domain.isascii()
            from_line = f"From: {mime.address(from_name, from_addr)}\r\n" if ok else ""
        if not from_line or not addr.isascii():
            return None
        headers = [
            mime.header("Subject", d.subject),
            from_line,
            f"To: {mime.address(name, addr)}\r\n",
            f"Message-ID: <{d.stable_id}@{self.domain}>\r\n",
            f"Date: {email.utils.formatdate(usegmt=True)}\r\n",
            "Auto-Submitted: auto-generated\r\n",
            mime.header("X-Ferry-Event", d.event_id),
        ]
        return mime.build(headers, d.text, d.html)

    def _sender(self, d: Delivery) -> tuple[str, str]:
        """(display name, address) a mail comes from: its school's sender when the school
        has one (its own display name, else from_name), else from_address."""
        if d.sender:
            name, addr = _split(d.sender)
            if addr:
                return name or self.settings.from_name, addr
        return self.settings.from_name, self._from_addr

    def send(self, deliveries: list[Delivery]) -> list[Outcome]:
        out: list[Outcome] = []
        for i, d in enumerate(deliveries):
            try:
                conn = self._connection()
            except (smtplib.SMTPException, OSError) as e:
                self._drop()
                why = f"cannot reach the mail relay: {_describe(e)}"
                out.extend(retry(why) for _ in deliveries[i:])
                return out
            out.append(self._send_one(conn, d))
        return out

    def _send_one(self, conn: smtplib.SMTP, d: Delivery) -> Outcome:
        to = _split(d.recipient)
        addr = to[1]
        try:
            raw = self.wire(d, to)
            envelope = self._sender(d)[1]
            if raw is None:
                conn.send_message(self.message(d), envelope, [addr])
            else:
                conn.sendmail(envelope, [addr], raw)
            return sent()
        except smtplib.SMTPRecipientsRefused as e:
            code, text = next(iter(e.recipients.values()), (0, b""))
            return _by_code(code, f"recipient refused: {code} {_text(text)}")
        except smtplib.SMTPSenderRefused as e:
            return _by_code(e.smtp_code, f"sender refused: {e.smtp_code} {_text(e.smtp_error)}")
        except smtplib.SMTPResponseException as e:
            # The transaction failed after RCPT (DATA): reset so the connection stays usable.
            _reset(conn, self._drop)
            return _by_code(e.smtp_code, f"message refused: {e.smtp_code} {_text(e.smtp_error)}")
        except (smtplib.SMTPException, OSError) as e:
            self._drop()
            return retry(f"mail relay connection lost: {_describe(e)}")

    def health(self) -> Health:
        s = self.settings
        try:
            conn = self._connect()
        except (smtplib.SMTPException, OSError) as e:
            return Health(False, f"{s.host}:{s.port}: {_describe(e)}")
        _quietly_close(conn)
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        return Health(True)

    def close(self) -> None:
        with self._lock:
            conns, self._all = self._all, []
        for c in conns:
            _quietly_close(c)


def _login(conn: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH; a user name or password outside ASCII goes as UTF-8 with AUTH PLAIN (RFC 4954),
    which smtplib's own login cannot encode."""
    if (username + password).isascii():
        conn.login(username, password)
        return
    conn.ehlo_or_helo_if_needed()
    if "plain" not in conn.esmtp_features.get("auth", "").lower().split():
        raise smtplib.SMTPException("the relay offers no AUTH PLAIN for a non-ASCII password")
    token = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode()).decode()
    code, resp = conn.docmd("AUTH", f"PLAIN {token}")
    if code != 235:
        raise smtplib.SMTPAuthenticationError(code, resp)


def _by_code(code: int, error: str) -> Outcome:
    if 400 <= code < 500:
        return retry(error)
    return failed(error)


def _text(raw: bytes | str) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return " ".join(text.split())[:300]


def _describe(e: BaseException) -> str:
    if isinstance(e, smtplib.SMTPAuthenticationError):
        return f"authentication failed ({e.smtp_code})"  # never the server's text or ours
    if isinstance(e, smtplib.SMTPResponseException):
        return f"{e.smtp_code} {_text(e.smtp_error)}"
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, ssl.SSLError):
        return f"TLS failed ({e.reason or type(e).__name__})"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return type(e).__name__


def _reset(conn: smtplib.SMTP, drop: Any) -> None:
    try:
        conn.rset()
    except (smtplib.SMTPException, OSError):
        drop()


def _quietly_close(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        conn.close()
