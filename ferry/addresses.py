"""Mail addresses, checked the one way: a user's `email`, an announcement's recipients
(StartExport's and ImportSession's `notify`, a schedule's `notify:` in ferry.yaml) and the
smtp and log channels' recipients all go through `parse_address`."""

from __future__ import annotations

import email.utils

from ferry.errors import InvalidArgument

# At most this many addresses in one announcement's `notify`.
MAX_ANNOUNCED = 50


def parse_address(recipient: str) -> str:
    """`a@b.c` or `Name <a@b.c>` as given (trimmed), or ValueError saying why not."""
    value = recipient.strip()
    if not value or len(value) > 254 or "\n" in value or "\r" in value:
        raise ValueError(f"{recipient!r} is not a mail address")
    _name, addr = email.utils.parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain.strip(".") or " " in addr:
        raise ValueError(f"{recipient!r} is not a mail address")
    return value


def parse_recipients(recipients: list[str], field: str = "notify") -> list[str]:
    """Mail addresses for an announcement, trimmed; ValueError naming the entry
    (`field[i]`) and quoting the address (at most 64 characters of it)."""
    out = []
    for i, r in enumerate(recipients):
        try:
            out.append(parse_address(r))
        except ValueError:
            shown = r if len(r) <= 64 else r[:64] + "…"
            raise ValueError(f"{field}[{i}]: {shown!r} is not a mail address") from None
    if len(out) > MAX_ANNOUNCED:
        raise ValueError(f"{field}: at most {MAX_ANNOUNCED} addresses")
    return out


def check_recipients(recipients: list[str], field: str) -> list[str]:
    """Mail addresses for an announcement, trimmed; InvalidArgument naming the entry and
    the address. Every place that takes announcement addresses checks them here, where
    they enter: StartExport's and ImportSession's `notify`, schedules in ferry.yaml."""
    try:
        return parse_recipients(recipients, field)
    except ValueError as e:
        name = str(e).partition(":")[0]
        raise InvalidArgument(str(e), field=name) from None
