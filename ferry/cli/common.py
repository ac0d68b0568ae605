"""What every CLI verb shares: settings, the App, gRPC error reporting, durations."""

from __future__ import annotations

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


def load_app(ctx: click.Context) -> App:
    """The App for this invocation (settings from --config/FERRY_CONFIG/ferry.yaml + env)."""
    obj = ctx.ensure_object(dict)
    if "app" not in obj:
        path = obj.get("config")
        try:
            settings = config.load(Path(path) if path else None)
        except config.ConfigError as e:
            raise click.ClickException(str(e)) from None
        obj["app"] = App(settings)
        ctx.call_on_close(obj["app"].close)
    app: App = obj["app"]
    return app


def clients(app: App) -> Clients:
    """Clients carrying the CLI's token (FERRY_TOKEN or one signed with the local key)."""
    from ferry.rpc import tls

    token = app.local_token()
    try:
        creds = tls.channel_credentials(app.settings)
    except tls.TlsError as e:
        raise click.ClickException(str(e)) from None
    return Clients(app.settings.client, lambda: token, creds, tls.channel_options(app.settings, []))


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
