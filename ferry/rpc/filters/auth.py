"""Auth filter: a bearer JWT on every call, and a role at least the method's min_role.

Health and reflection stay open. The role each RPC needs is declared once, in the protos
(`option (ferry.v1.min_role)`), and read here from the descriptors.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from prometheus_client import Gauge

from ferry.auth import bearer
from ferry.rpc.filters import Filter, RpcCall
from ferry.rpc.filters.client import TokenClient

if TYPE_CHECKING:
    from ferry.app import App

log = logging.getLogger("ferry.auth")
ENABLED = Gauge("ferry_auth_enabled", "1 when calls must carry a valid token, 0 when auth is off.")


class AuthFilter(Filter):
    """Always in a server's chain (the server adds it when ferry.yaml leaves it out); only
    `auth.enabled: false` turns it off, loudly."""

    # The half that runs on outgoing calls (client.filters).
    client = TokenClient

    def __init__(self, app: App) -> None:
        self.signer = app.signer()
        self.enabled = app.settings.auth.enabled
        ENABLED.set(1 if self.enabled else 0)
        if not self.enabled:
            log.warning(
                "auth.enabled is false: every call is served without a token",
                extra={"event": "auth_disabled"},
            )

    def start(self, call: RpcCall) -> None:
        if call.method.min_role == 0 or not self.enabled:
            return
        principal = self.signer.verify(bearer(call.metadata))
        call.caller, call.role = principal.subject, principal.role
        principal.require(call.method.min_role, call.method.name)
