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


def clients(app: App) -> Clients:
    """Clients carrying the CLI's token (FERRY_TOKEN or one signed with the local key)."""
    from ferry.rpc import tls

    token = app.local_token()
    if token is None and app.settings.auth.enabled:
        ctx = click.get_current_context(silent=True)
        found = ctx is not None and ctx.find_root().ensure_object(dict).get("config_path")
        if not found:
            raise click.ClickException(NO_CONFIG.format(install=INSTALL_DIR))
    try:
        creds = tls.channel_credentials(app.settings)
    except tls.TlsError as e:
        raise click.ClickException(str(e)) from None
    return Clients(
        app.settings.client, lambda: token, creds, tls.channel_options(app.settings, []), app
    )


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
