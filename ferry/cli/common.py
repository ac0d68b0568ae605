"""What every CLI verb shares: settings, the App, gRPC error reporting, durations."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
import grpc

from ferry import config
from ferry.app import App
from ferry.rpc.client import Clients

T = TypeVar("T")


# The folder the `ferry` package was installed from: the repository for `make run`'s
# editable install (site-packages, which holds no ferry.yaml, otherwise).
INSTALL_DIR = Path(__file__).resolve().parents[2]

NO_CONFIG = (
    "no ferry.yaml found (FERRY_CONFIG, then ./ferry.yaml, then {install}/ferry.yaml); "
    "set FERRY_CONFIG to the ferry.yaml of the Ferry to use, or FERRY_TOKEN to a token from "
    "`ferry token create` (and FERRY_TARGET to its address)"
)


def find_config(explicit: str | None) -> tuple[Path | None, str]:
    """Which ferry.yaml the CLI uses and why: --config/FERRY_CONFIG, else ./ferry.yaml,
    else the one in the folder Ferry was installed from, else none (built-in defaults)."""
    if explicit:
        return Path(explicit), "--config/FERRY_CONFIG"
    here = Path.cwd() / "ferry.yaml"
    if here.is_file():
        return here, "the current folder"
    installed = INSTALL_DIR / "ferry.yaml"
    if installed.is_file():
        return installed, "the folder Ferry was installed from"
    return None, "none found: built-in defaults"


def load_app(ctx: click.Context) -> App:
    """The App for this invocation (settings from `find_config` + FERRY_* environment).

    Without any ferry.yaml the CLI never creates a key pair: keys made in whatever folder
    it runs in would sign tokens no server knows ("unknown key id")."""
    obj = ctx.ensure_object(dict)
    if "app" not in obj:
        path, _ = find_config(obj.get("config"))
        env: dict[str, str] = dict(os.environ)
        if path is None:
            env["FERRY_AUTH_CREATE_KEYS"] = "false"
        try:
            settings = config.load(path, env)
        except config.ConfigError as e:
            raise click.ClickException(str(e)) from None
        obj["app"] = App(settings)
        obj["config_path"] = path
        ctx.call_on_close(obj["app"].close)
    app: App = obj["app"]
    return app


# The metadata naming the school a platform admin's call acts for (docs/tenants.md).
SCHOOL_METADATA = "x-ferry-school"


def _set_school(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value:
        from ferry.db.schools import check_code
        from ferry.errors import InvalidArgument

        try:
            check_code(value, "--school")
        except InvalidArgument as e:
            raise click.BadParameter(e.message.partition(": ")[2], param_hint="--school") from None
        ctx.find_root().ensure_object(dict)["school"] = value
    return value


def school_option(fn: Callable[..., T]) -> Callable[..., T]:
    """`--school CODE` on a command that acts on data: the command acts for that school.
    Over gRPC the CLI's own token is signed for it (or, with FERRY_TOKEN, the call names
    it in `x-ferry-school`, a platform admin's per-call school); a school the installation
    lacks is an error naming it, exit code 2, and nothing changes."""
    return click.option(
        "--school",
        metavar="CODE",
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_set_school,
        help="Act for this school (its code; default: the token's, else the default school).",
    )(fn)


def school_named() -> str:
    """The school this invocation's --school named ("" none)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return ""
    return str(ctx.find_root().ensure_object(dict).get("school") or "")


@contextmanager
def acting_for_named(app: App) -> Iterator[None]:
    """For commands on the database directly: act for the --school named (the default
    school when none); a school the installation lacks is an error naming it, exit 2."""
    from ferry.db import schools, tenant
    from ferry.errors import NotFound

    code = school_named()
    if not code:
        yield
        return
    try:
        found = schools.find(app.engine, code, field="--school")
    except NotFound as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(2)
    with tenant.acting_for(found.id):
        yield


class _SchoolMetadata(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """`x-ferry-school: CODE` on every call (FERRY_TOKEN given, --school named)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def _details(self, details: Any) -> Any:
        metadata = [*(details.metadata or ()), (SCHOOL_METADATA, self.code)]
        return details._replace(metadata=metadata)

    def intercept_unary_unary(self, cont: Any, details: Any, request: Any) -> Any:
        return cont(self._details(details), request)

    def intercept_unary_stream(self, cont: Any, details: Any, request: Any) -> Any:
        return cont(self._details(details), request)

    def intercept_stream_unary(self, cont: Any, details: Any, requests: Any) -> Any:
        return cont(self._details(details), requests)

    def intercept_stream_stream(self, cont: Any, details: Any, requests: Any) -> Any:
        return cont(self._details(details), requests)


class _SchoolClients(Clients):
    """Clients whose calls name the school (see _SchoolMetadata)."""

    school = ""

    def channel(self, service: str) -> grpc.Channel:
        target, timeout = self.settings.for_service(service)
        key = f"{target}|{timeout}|school"
        if key not in self._channels:
            self._channels[key] = grpc.intercept_channel(
                super().channel(service), _SchoolMetadata(self.school)
            )
        return self._channels[key]


def clients(app: App) -> Clients:
    """Clients carrying the CLI's token (FERRY_TOKEN or one signed with the local key),
    acting for the school --school named (see school_option)."""
    from ferry.rpc import tls

    school = school_named()
    given = bool(os.environ.get("FERRY_TOKEN"))
    token = app.local_token(school=school)
    if token is None and app.settings.auth.enabled:
        ctx = click.get_current_context(silent=True)
        found = ctx is not None and ctx.find_root().ensure_object(dict).get("config_path")
        if not found:
            raise click.ClickException(NO_CONFIG.format(install=INSTALL_DIR))
    try:
        creds = tls.channel_credentials(app.settings)
    except tls.TlsError as e:
        raise click.ClickException(str(e)) from None
    made = (_SchoolClients if school and given else Clients)(
        app.settings.client, lambda: token, creds, tls.channel_options(app.settings, []), app
    )
    if isinstance(made, _SchoolClients):
        made.school = school
    return made


@contextmanager
def rpc_errors() -> Iterator[None]:
    """Turn a failed RPC into a one-line error and a non-zero exit."""
    try:
        yield
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else None
        name = code.name if code is not None else "UNKNOWN"
        details = e.details() if hasattr(e, "details") else str(e)
        click.echo(f"error: {name}: {details}", err=True)
        school = school_named()
        if name == "NOT_FOUND" and school and f"school {school!r} not found" in (details or ""):
            sys.exit(2)  # --school named a school the installation lacks: a bad argument
        sys.exit(_EXIT.get(name, 1))


# Distinct exit codes let a CronJob's logs say at a glance what kind of failure it was.
_EXIT = {
    "INVALID_ARGUMENT": 2,
    "NOT_FOUND": 3,
    "UNAUTHENTICATED": 4,
    "PERMISSION_DENIED": 4,
    "UNAVAILABLE": 5,
    "DEADLINE_EXCEEDED": 5,
}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in '90', '90s', '15m', '1h' or '7d'."""
    m = _DURATION.match(text)
    if not m:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 15m, 1h or 7d")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def table(
    rows: list[list[Any]], headers: list[str], echo: Callable[[str], None] = click.echo
) -> None:
    """Print a plain aligned table."""
    cells = [headers, *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for i, r in enumerate(cells):
        echo(
            "  ".join(
                c.ljust(w) if j == 0 else c.rjust(w)
                for j, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
        if i == 0:
            echo("  ".join("-" * w for w in widths))
