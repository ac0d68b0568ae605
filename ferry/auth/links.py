"""Link tokens: capabilities for one GET of one gateway path, never logins.

A browser link (<a href> download, EventSource, a mail's download link) cannot send a
header, so it carries a token in its URL. That token is not a bearer token:

- it has an audience of its own (`<auth.audience>:link`), so every bearer check refuses it
  ("wrong audience") and a bearer token is never accepted as a link;
- it names one HTTP method and one path (claims `mth`, `lnk`): the gateway accepts it on
  that request only;
- it names the one RPC that path calls and the request fields the path fixes (claims
  `rpc`, `arg`): the services' auth filter accepts it (as `authorization: Link …`) for
  that call with those fields only, so it can never call CreateLinkToken, mint a token
  or read another job;
- its role is the least the RPC needs, and the caller must have it;
- it is recorded in auth_tokens (kind `link`) under its user, so it is listed with the
  user's tokens, revocable by id, and revoked when the user is disabled.

Only GET routes that stream a file or progress events can be linked, and only when every
field they read from the path is a plain field of the request.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from google.api import annotations_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor_pool

from ferry.auth import Principal, parse_role
from ferry.auth.tokens import TokenVerifier, school_of
from ferry.errors import InvalidArgument, PermissionDenied, Unauthenticated
from ferry.v1 import options_pb2

if TYPE_CHECKING:
    from ferry.app import App

PATH_CLAIM = "lnk"
METHOD_CLAIM = "mth"
RPC_CLAIM = "rpc"
ARGS_CLAIM = "arg"
SCHEME = "link"  # authorization: Link <token>, from the gateway to a service
MAX_PATH = 512
_LINKABLE_STREAMS = (options_pb2.HTTP_STREAM_FILE, options_pb2.HTTP_STREAM_EVENTS)
_VAR = re.compile(r"\{([a-zA-Z0-9_]+)\}")


def audience(bearer_audience: str) -> str:
    """The audience of link tokens: never the bearer tokens' one."""
    return f"{bearer_audience}:link"


@dataclass(frozen=True)
class Target:
    """What a link path opens: the HTTP method, the RPC ('/pkg.Service/Method'), the
    request fields the path fixes, and the least role the RPC needs."""

    method: str
    rpc: str
    args: dict[str, str]
    min_role: int


@functools.lru_cache(maxsize=1)
def _templates() -> tuple[tuple[re.Pattern[str], tuple[str, ...], str, int], ...]:
    """(path regex, path fields, rpc, min_role) of every linkable route of the contract."""
    from ferry.rpc.methods import lookup  # the contract is registered by this import

    out = []
    pool = descriptor_pool.Default()
    for svc_name in ("ExportService", "ImportService", "ReportService", "NotifyService"):
        try:
            svc = pool.FindServiceByName(f"ferry.v1.{svc_name}")
        except KeyError:
            continue
        for m in svc.methods:
            opts = m.GetOptions()
            if m.client_streaming or not m.server_streaming:
                continue
            if opts.Extensions[options_pb2.http_stream] not in _LINKABLE_STREAMS:
                continue
            if not opts.HasExtension(annotations_pb2.http):
                continue
            rule = opts.Extensions[annotations_pb2.http]
            if rule.WhichOneof("pattern") != "get":
                continue
            template = rule.get
            fields = tuple(_VAR.findall(template))
            if "{" in _VAR.sub("", template):  # a nested or patterned variable: not linkable
                continue
            if any(m.input_type.fields_by_name.get(f) is None for f in fields):
                continue
            parts = ["([^/]+)" if _VAR.fullmatch(p) else re.escape(p) for p in template.split("/")]
            regex = "^" + "/".join(parts) + "$"
            rpc = f"/{svc.full_name}/{m.name}"
            out.append((re.compile(regex), fields, rpc, lookup(rpc).min_role))
    return tuple(out)


def target(path: str) -> Target:
    """What `path` opens; InvalidArgument naming `path` when no link can open it."""
    bad = any(ord(c) < 32 or ord(c) == 127 for c in path)
    if bad or not path.startswith("/api/") or len(path) > MAX_PATH or "?" in path:
        raise InvalidArgument(
            f"path must be a gateway path under /api/ of at most {MAX_PATH} characters, "
            "without a query or control characters",
            field="path",
        )
    for regex, fields, rpc, min_role in _templates():
        m = regex.match(path)
        if m is None:
            continue
        args = {f: unquote(v) for f, v in zip(fields, m.groups(), strict=True)}
        if any(not v or any(ord(c) < 32 for c in v) for v in args.values()):
            break
        return Target("GET", rpc, args, min_role)
    raise InvalidArgument(
        "path is not a route a link can open (a job's download or progress events, "
        "e.g. /api/v1/exports/<job id>/download)",
        field="path",
    )


def claims_for(t: Target, path: str) -> dict[str, Any]:
    return {PATH_CLAIM: path, METHOD_CLAIM: t.method, RPC_CLAIM: t.rpc, ARGS_CLAIM: t.args}


def verifier(app: App) -> TokenVerifier:
    """The process's verifier of link tokens (the link audience, the same public keys)."""
    found: TokenVerifier | None = app._extra.get("link_verifier")
    if found is None:
        v = app.verifier()
        found = TokenVerifier(v.keys, v.issuer, audience(v.audience))
        app._extra["link_verifier"] = found
    return found


def check_call(claims: dict[str, Any], rpc: str, request: Any) -> Principal:
    """The principal of a verified link token used for the call `rpc` with `request`;
    PermissionDenied unless the link names exactly that call and its fields."""
    named = claims.get(RPC_CLAIM)
    args = claims.get(ARGS_CLAIM)
    if named != rpc or not isinstance(args, dict):
        raise PermissionDenied(f"a link token opens only its own link, not {rpc.rsplit('/')[-1]}")
    for name, value in args.items():
        if request is None or str(getattr(request, str(name), None)) != str(value):
            raise PermissionDenied("a link token opens only its own link")
    try:
        role = parse_role(str(claims["role"]))
    except ValueError:
        raise Unauthenticated("invalid link token") from None
    return Principal(
        str(claims["sub"]), role, str(claims["jti"]), float(claims["exp"]), school_of(claims)
    )
