"""Auth filter: a bearer JWT on every call, and a role at least the method's min_role.

Health and reflection stay open. The role each RPC needs is declared once, in the protos
(`option (ferry.v1.min_role)`), and read here from the descriptors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferry.auth import bearer
from ferry.rpc.filters import Filter, RpcCall

if TYPE_CHECKING:
    from ferry.app import App


class AuthFilter(Filter):
    def __init__(self, app: App) -> None:
        self.signer = app.signer()
        self.enabled = app.settings.auth.enabled

    def start(self, call: RpcCall) -> None:
        if call.method.min_role == 0 or not self.enabled:
            return
        principal = self.signer.verify(bearer(call.metadata))
        call.caller, call.role = principal.subject, principal.role
        principal.require(call.method.min_role, call.method.name)
