"""Auth filter: a bearer JWT on every call, and a role at least the method's min_role.

Health and reflection stay open, and so are RPCs declared with min_role ROLE_UNSPECIFIED
(AuthService.Login). The role each RPC needs is declared once, in the protos
(`option (ferry.v1.min_role)`), and read here from the descriptors. Tokens are checked
with the public key set only (this filter never sees a private key), and revoked token
ids are learned within `auth.revocation_refresh_seconds` (ferry.auth.revocation).

The school a call acts for (docs/tenants.md):
- a school's token (viewer, operator, admin, a link) acts for the school its `sch` claim
  names. Metadata `x-ferry-school` may name that same school; naming any other is
  NOT_FOUND, the answer for a school that does not exist, so a token learns nothing of
  other schools (never PERMISSION_DENIED, which would confirm one);
- a platform admin's token names the school in `x-ferry-school` on every call (the
  gateway's X-Ferry-School header): INVALID_ARGUMENT naming it when it is missing, NOT_FOUND
  for a school the installation lacks. Only WhoAmI and ListSchools (which read no school's
  data) may go without. Each platform admin call is written to the audit log
  (`ferry.audit`, event `platform_call`: who, which school, which RPC, the outcome).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

import grpc
from prometheus_client import Counter, Gauge

from ferry.auth import SCHOOL_HEADER, Principal, credentials, links
from ferry.auth.revocation import Revocations
from ferry.db import schools, tenant
from ferry.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from ferry.rpc.filters import Filter, FilterPlugin, RpcCall
from ferry.rpc.filters.client import ClientFilter, OutgoingCall

if TYPE_CHECKING:
    from ferry.app import App

log = logging.getLogger("ferry.auth")
audit = logging.getLogger("ferry.audit")
# RPCs a platform admin may call without naming a school: they read no school's data.
UNSCHOOLED = frozenset({"/ferry.v1.AuthService/WhoAmI", "/ferry.v1.AuthService/ListSchools"})
ENABLED = Gauge("ferry_auth_enabled", "1 when calls must carry a valid token, 0 when auth is off.")


REFUSED = Counter(
    "ferry_auth_refused_total",
    "Calls the auth filter refused, by reason: missing, invalid, expired, revoked, role, "
    "link (a link token used for a call it does not name), school (no school, or one "
    "the token may not act for).",
    ("reason",),
)


# Calls per school, only with metrics.school_label: true. Its `school` values are the codes
# of schools the installation has (a call is counted once its school was found), so the
# series are bounded by the schools table, never by what a caller sends.
SCHOOL_CALLS = Counter(
    "ferry_school_calls_total",
    "Calls that acted for a school, by school code and status code "
    "(only with metrics.school_label: true).",
    ("school", "code"),
)


class AuthFilter(Filter):
    """Always in a server's chain (the server adds it when ferry.yaml leaves it out); only
    `auth.enabled: false` turns it off, loudly."""

    def __init__(self, app: App) -> None:
        a = app.settings.auth
        self.enabled = a.enabled
        self.school_label = app.settings.metrics.school_label
        ENABLED.set(1 if self.enabled else 0)
        if not self.enabled:
            log.warning(
                "auth.enabled is false: every call is served without a token",
                extra={"event": "auth_disabled"},
            )
            return
        self.engine = app.engine
        self.verifier = app.verifier()
        self.link_verifier = links.verifier(app)
        # School code -> id (schools are added, never renamed nor removed).
        self._schools: dict[str, int] = {}
        self.revocations = Revocations(app.engine, app.redis(), a.revocation_refresh_seconds)

    def start(self, call: RpcCall) -> None:
        if call.method.min_role == 0 or not self.enabled:
            return
        try:
            scheme, token = credentials(call.metadata)
        except Unauthenticated:
            REFUSED.labels("missing").inc()
            raise
        try:
            if scheme == links.SCHEME:
                principal = self._link(call, token)
            else:
                principal = self.verifier.verify(token)
        except Unauthenticated as e:
            REFUSED.labels("expired" if e.message == "token expired" else "invalid").inc()
            raise
        except PermissionDenied:
            REFUSED.labels("link").inc()
            raise
        if self.revocations.is_revoked(principal.jti):
            REFUSED.labels("revoked").inc()
            raise Unauthenticated("token revoked")
        call.caller, call.role = principal.subject, principal.role
        call.attrs["principal"] = principal
        try:
            principal.require(call.method.min_role, call.method.name)
        except PermissionDenied:
            REFUSED.labels("role").inc()
            raise
        if principal.platform:  # audited whatever comes of it, refusals too
            call.attrs["platform_school"] = call.metadata.get(SCHOOL_HEADER, "").strip()[:64]
        try:
            code = self._acting_code(call, principal)
            school = None if code is None else self._school_id(code)
        except (InvalidArgument, NotFound) as e:
            REFUSED.labels("school").inc()
            if principal.platform:  # finish() runs only for a filter that started
                self._audit(call, e.code.name)
            raise
        if code is None:  # a platform admin's WhoAmI or ListSchools: no school's data
            call.attrs["principal"] = dataclasses.replace(principal, school="")
            call.attrs["platform_school"] = ""
            return
        if principal.platform:
            call.attrs["principal"] = dataclasses.replace(principal, school=code)
            call.attrs["platform_school"] = code
        # The call acts for that school: every transaction it opens sets it
        # (ferry.db.engine), and the row-level security policies hold it to that school.
        call.attrs["school"] = tenant.enter(school or 0)
        call.attrs["school_code"] = code

    def _acting_code(self, call: RpcCall, principal: Principal) -> str | None:
        """The code of the school `call` acts for (None: a platform admin's call that
        needs none); InvalidArgument or NotFound when it may act for none."""
        named = call.metadata.get(SCHOOL_HEADER, "").strip()
        if not principal.platform:
            if named and named != principal.school:
                # Exactly what a school that does not exist gets: nothing confirmed.
                raise NotFound(f"school {named[:64]!r} not found")
            return principal.school
        if not named:
            if call.method.full_name in UNSCHOOLED:
                return None
            raise InvalidArgument(
                f"{SCHOOL_HEADER}: a platform admin names the school each call acts for "
                f"(metadata {SCHOOL_HEADER}: <school code>; the gateway's X-Ferry-School "
                "header, the page's school picker)",
                field=SCHOOL_HEADER,
            )
        schools.check_code(named, SCHOOL_HEADER)
        return named

    def finish(self, call: RpcCall, code: grpc.StatusCode, details: str) -> None:
        token = call.attrs.pop("school", None)
        if token is not None:
            tenant.leave(token)
            if self.school_label:
                SCHOOL_CALLS.labels(call.attrs.get("school_code", ""), code.name).inc()
        if call.attrs.get("platform_school") is not None:
            self._audit(call, code.name)

    def _audit(self, call: RpcCall, outcome: str) -> None:
        """The audit line of a platform admin's call: who, which school, which RPC, how
        it ended."""
        named = str(call.attrs.get("platform_school", ""))
        audit.info(
            "platform admin %s called %s for school %s: %s",
            call.caller,
            call.method.full_name,
            named or "(none)",
            outcome,
            extra={
                "event": "platform_call",
                "caller": call.caller,
                "school": named,
                "method": call.method.full_name,
                "code": outcome,
                "peer": call.peer,
            },
        )

    def _school_id(self, code: str) -> int:
        """The id of school `code`; NotFound when there is none (a token of a school
        this installation does not have)."""
        found = self._schools.get(code)
        if found is None:
            try:
                found = schools.find(self.engine, code, field="sch").id
            except (InvalidArgument, NotFound):
                raise NotFound(f"school {code[:64]!r} not found") from None
            self._schools[code] = found
        return found

    def _link(self, call: RpcCall, token: str) -> Principal:
        """A link token (authorization: Link …) for exactly the call it names."""
        principal = links.check_call(
            self.link_verifier.claims(token), call.method.full_name, call.request
        )
        call.attrs["link"] = True
        return principal


class TokenClient(ClientFilter):
    """The bearer token of the calling client on every outgoing call that has none."""

    def start(self, call: OutgoingCall) -> None:
        if any(k == "authorization" for k, _ in call.metadata):
            return
        token = call.token()
        if token:
            call.metadata.append(("authorization", f"Bearer {token}"))


class AuthPlugin(FilterPlugin):
    """The `auth` filter: both halves."""

    server_half = AuthFilter
    client_half = TokenClient
