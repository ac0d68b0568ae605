"""The `webhook` channel: a JSON POST per delivery, signed per the Standard Webhooks spec.

- Endpoints come only from ferry.yaml (`plugins.channels.webhook.endpoints.<name>`); a
  request names an endpoint, never a URL. Each endpoint's secret (`whsec_…`) is read from
  an environment variable or a file, never from the settings themselves.
- `webhook-id` is the outbox row's stable id (the same on every retry, so a receiver can
  drop a duplicate); `webhook-timestamp` and `webhook-signature` are made per attempt with
  the `standardwebhooks` package.
- Redirects are not followed (a 3xx fails: fix the URL). 2xx delivers; 410 Gone fails and
  switches the endpoint off until an admin retries one of its notifications; 429 and 503
  are retried after their Retry-After; other 5xx and connection trouble are retried; other
  4xx fail.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import os
from pathlib import Path
from typing import Any, ClassVar

import httpx
import orjson
from pydantic import Field, field_validator
from standardwebhooks import Webhook

from ferry.config import Strict
from ferry.notify.channels.base import Delivery, Health, Outcome, failed, retry, sent


class Endpoint(Strict):
    url: str
    # Where the endpoint's `whsec_…` secret is: an environment variable's name or a file.
    secret_env: str = ""
    secret_file: str = ""

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        u = httpx.URL(v)
        if u.scheme not in ("http", "https") or not u.host:
            raise ValueError(f"expected an http(s) URL, got {v!r}")
        return v


class WebhookSettings(Strict):
    endpoints: dict[str, Endpoint] = {}
    # Seconds for connecting and for the endpoint's answer.
    timeout_seconds: float = Field(10.0, gt=0, le=300)


def retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())


class WebhookChannel:
    name = "webhook"
    # Deliveries may run on several threads at once (notify.sends_per_worker): one
    # httpx.Client (thread-safe, pooled connections) serves them all.
    concurrent = True
    settings_model: ClassVar[type[Strict]] = WebhookSettings

    def __init__(self, app: Any) -> None:
        self.settings: WebhookSettings = app.plugin_settings("ferry.channels", "webhook")
        base = app.settings.path(".")
        self.signers: dict[str, Webhook] = {}
        for name, ep in self.settings.endpoints.items():
            key = f"plugins.channels.webhook.endpoints.{name}"
            secret = ""
            if ep.secret_env:
                secret = os.environ.get(ep.secret_env, "")
                if not secret:
                    raise ValueError(
                        f"{key}.secret_env: environment variable {ep.secret_env} is not set"
                    )
            elif ep.secret_file:
                path = Path(ep.secret_file)
                path = path if path.is_absolute() else base / path
                try:
                    secret = path.read_text(encoding="utf-8").strip()
                except OSError:
                    raise ValueError(f"{key}.secret_file: cannot read {ep.secret_file}") from None
            else:
                raise ValueError(f"{key}: give secret_env or secret_file (the signing secret)")
            try:
                self.signers[name] = Webhook(secret)
            except Exception:
                raise ValueError(f"{key}: the secret is not a whsec_ base64 secret") from None
        self.client = httpx.Client(
            timeout=self.settings.timeout_seconds,
            follow_redirects=False,
            headers={"user-agent": "ferry-notify"},
        )

    def default_recipients(self) -> list[str]:
        return list(self.settings.endpoints)

    def validate_recipient(self, recipient: str) -> str:
        if recipient not in self.settings.endpoints:
            known = ", ".join(self.settings.endpoints) or "none"
            raise ValueError(f"unknown webhook endpoint {recipient!r}; configured: {known}")
        return recipient

    def payload(self, d: Delivery) -> bytes:
        return orjson.dumps(
            {
                "type": f"ferry.{d.template or 'notification'}",
                "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "data": {
                    "notification_id": d.notification_id,
                    "event_id": d.event_id,
                    "template": d.template,
                    "language": d.language,
                    "subject": d.subject,
                    "text": d.text,
                    "variables": d.variables,
                },
            }
        )

    def send(self, deliveries: list[Delivery]) -> list[Outcome]:
        return [self._send_one(d) for d in deliveries]

    def _send_one(self, d: Delivery) -> Outcome:
        ep = self.settings.endpoints.get(d.recipient)
        if ep is None:
            return failed(f"webhook endpoint {d.recipient!r} is no longer configured")
        body = self.payload(d)
        now = dt.datetime.now(dt.UTC)
        signature = self.signers[d.recipient].sign(d.stable_id, now, body.decode())
        headers = {
            "content-type": "application/json",
            "webhook-id": d.stable_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        try:
            r = self.client.post(ep.url, content=body, headers=headers)
        except httpx.TimeoutException:
            return retry(f"endpoint {d.recipient} timed out")
        except httpx.HTTPError as e:
            return retry(f"cannot reach endpoint {d.recipient}: {type(e).__name__}")
        code = r.status_code
        if 200 <= code < 300:
            return sent()
        where = f"endpoint {d.recipient} answered {code}"
        if code == 410:
            return failed(
                f"{where} (gone); endpoint switched off", disable=f"webhook/{d.recipient}"
            )
        if code in (429, 503):
            return retry(where, retry_after(r.headers.get("retry-after")))
        if 300 <= code < 400:
            return failed(f"{where} (a redirect, not followed; fix the URL in ferry.yaml)")
        if code >= 500:
            return retry(where)
        return failed(where)

    def health(self) -> Health:
        if not self.settings.endpoints:
            return Health(False, "no endpoints configured (plugins.channels.webhook.endpoints)")
        return Health(True)

    def close(self) -> None:
        self.client.close()
