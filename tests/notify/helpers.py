"""Real servers for the notify tests: an aiosmtpd SMTP server and an HTTP endpoint that
verifies Standard Webhooks signatures, both in the test process."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from standardwebhooks import Webhook

SECRET = "whsec_" + "dGVzdC1zZWNyZXQtZm9yLWZlcnJ5LXdlYmhvb2tzIQ=="


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """An aiosmtpd handler that keeps what it accepts and can answer with scripted
    replies: per recipient at RCPT, and a queue of replies for DATA before it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self.raw: list[bytes] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_replies: deque[str] = deque()
        self.data_delay = 0.0
        self.data_started = threading.Event()
        self.lock = threading.Lock()
        self.connections = 0

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.data_started.set()
        if self.data_delay:
            import asyncio

            await asyncio.sleep(self.data_delay)
        with self.lock:
            if self.data_replies:
                return self.data_replies.popleft()
            msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
            assert isinstance(msg, EmailMessage)
            self.messages.append(msg)
            self.raw.append(bytes(envelope.original_content or envelope.content))
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        return "250 Message accepted for delivery"

    def wait_for(self, n: int, timeout: float = 15.0) -> list[EmailMessage]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages) >= n:
                return list(self.messages)
            time.sleep(0.02)
        raise AssertionError(f"expected {n} mails, got {len(self.messages)}")


class SmtpServer:
    """aiosmtpd on a free port; with `password`, AUTH (over plain SMTP, as tests need) is
    required and only user `ferry` with that password gets in."""

    def __init__(self, port: int | None = None, password: str = "") -> None:
        self.port = port or free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None
        self.password = password
        self.logins: list[tuple[str, bool]] = []

    def _authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> Any:
        from aiosmtpd.smtp import AuthResult

        ok = data.login == b"ferry" and data.password == self.password.encode()
        self.logins.append((data.login.decode(), ok))
        return AuthResult(success=ok, handled=False)

    def start(self) -> SmtpServer:
        kw: dict[str, Any] = {}
        if self.password:
            kw = {
                "authenticator": self._authenticate,
                "auth_required": True,
                "auth_require_tls": False,
            }
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port, **kw)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


class WebhookReceiver:
    """A local HTTP server; each POST is verified with the standardwebhooks library.
    `replies` scripts the status codes (and headers) of the next answers."""

    def __init__(self, secret: str = SECRET) -> None:
        self.verifier = Webhook(secret)
        self.received: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.bad: list[str] = []
        self.replies: deque[tuple[int, dict[str, str]]] = deque()
        self.paths: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                outer.paths.append(self.path)
                status, headers = outer.replies.popleft() if outer.replies else (204, {})
                if status < 300:
                    try:
                        payload = outer.verifier.verify(body, dict(self.headers.items()))
                    except Exception as e:
                        outer.bad.append(str(e))
                        status = 400
                    else:
                        outer.received.append(payload)
                        outer.ids.append(self.headers["webhook-id"])
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def eventually(check: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def as_json(value: Any) -> str:
    return json.dumps(value)
