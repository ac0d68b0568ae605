"""Sending through NotifyService from another service, without waiting for it.

`background(app).send(request)` hands a SendRequest to one daemon thread per process that
calls Send through the typed client (ferry.rpc.client) with a deadline
(notify.send_timeout_seconds). The caller never blocks and never sees an error: a
notification must never hold up or fail the work it announces. The event id in the
request makes a repeated send harmless.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

import grpc

from ferry.app import App
from ferry.errors import InvalidArgument

log = logging.getLogger("ferry.notify")


def check_recipients(recipients: list[str], field: str) -> list[str]:
    """Mail addresses for an announcement, trimmed; InvalidArgument naming `field`."""
    from ferry.notify.channels.smtp import parse_address

    out = []
    for i, r in enumerate(recipients):
        try:
            out.append(parse_address(r))
        except ValueError as e:
            raise InvalidArgument(f"{field}[{i}]: {e}", field=field) from None
    if len(out) > 50:
        raise InvalidArgument(f"{field}: at most 50 addresses", field=field)
    return out


class BackgroundSender:
    def __init__(self, app: App, subject: str) -> None:
        self.app = app
        self.subject = subject  # the token's subject, e.g. service:import
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=10_000)
        self._clients: Any = None
        self._thread = threading.Thread(target=self._run, name="notify-sender", daemon=True)
        self._thread.start()

    def send(self, request: Any) -> None:
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            log.warning(
                "notify queue full; dropped %s",
                request.event_id,
                extra={"event": "notify_dropped", "event_id": request.event_id},
            )

    def _run(self) -> None:
        while True:
            req = self._queue.get()
            try:
                self.send_now(req)
            except grpc.RpcError as e:
                log.warning(
                    "notification %s not queued: %s",
                    req.event_id,
                    e.code().name if hasattr(e, "code") else "error",
                    extra={"event": "notify_send_failed", "event_id": req.event_id},
                )
            except Exception:
                log.exception(
                    "notification %s not queued",
                    req.event_id,
                    extra={"event": "notify_send_failed"},
                )

    def send_now(self, request: Any) -> Any:
        if self._clients is None:
            from ferry.rpc.client import Clients

            self._clients = Clients(
                self.app.settings.client,
                token=lambda: self.app.local_token(self.subject, role=2),
            )
        return self._clients.notify().Send(
            request, timeout=self.app.settings.notify.send_timeout_seconds, wait_for_ready=True
        )


def background(app: App, subject: str) -> BackgroundSender:
    """The process's background sender for `app` (created on first use)."""
    key = f"notify_sender:{subject}"
    s: BackgroundSender | None = app._extra.get(key)
    if s is None:
        s = BackgroundSender(app, subject)
        app._extra[key] = s
    return s


def import_request(result: Any, recipients: list[str], filename: str = "") -> Any:
    """The SendRequest announcing an ImportResult with the `import_finished` template."""
    from ferry.v1 import import_pb2 as ipb
    from ferry.v1 import notify_pb2

    entities = [
        {
            "entity": s.entity,
            "created": s.created,
            "updated": s.updated,
            "unchanged": s.unchanged,
            "skipped": s.skipped,
            "errors": s.errors,
        }
        for s in result.summaries
    ]
    warnings = [f"{e.entity} {e.natural_key}: {e.reason}".strip() for e in list(result.errors)[:10]]
    if result.total_errors > len(warnings):
        warnings.append(f"{result.total_errors - len(warnings)} more records had errors")
    req = notify_pb2.SendRequest(
        recipients=recipients, template="import_finished", event_id=f"import:{result.id}"
    )
    req.variables.update(
        {
            "import_id": result.id,
            "filename": filename or result.options.filename,
            "dry_run": result.status == ipb.IMPORT_STATUS_DRY_RUN,
            "failed": result.status == ipb.IMPORT_STATUS_FAILED,
            "error": result.error_message,
            "entities": entities,
            "warnings": warnings,
        }
    )
    return req
