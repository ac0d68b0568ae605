"""Which reader an upload needs: from the caller's explicit format, else the filename."""

from __future__ import annotations

from typing import Any

from ferry import plugins
from ferry.errors import InvalidArgument

BUNDLE_GROUP = "ferry.bundle_formats"
TABULAR_GROUP = "ferry.formats"
# Formats ImportEntities can read (the others in ferry.formats only write).
TABULAR_READABLE = ("csv", "xlsx", "json")


def format_from_filename(filename: str, known: list[str]) -> str:
    """The longest known extension `filename` ends with ("x.tar.gz" -> "tar.gz"), or ""."""
    lower = filename.lower()
    for name in sorted(known, key=len, reverse=True):
        if lower.endswith("." + name):
            return name
    return ""


def _instance(obj: Any) -> Any:
    # Entry points name classes; a registered test plugin may be an instance already.
    return obj() if isinstance(obj, type) else obj


def bundle_format(explicit: str, filename: str, field: str = "options.bundle_format") -> Any:
    """The bundle format plugin (an instance with read/write) for an upload.

    Raises InvalidArgument naming the known formats when neither `explicit` nor the
    filename's extension names one.
    """
    known = plugins.names(BUNDLE_GROUP)
    name = explicit.strip().lower() or format_from_filename(filename, known)
    if not name:
        raise InvalidArgument(
            f"cannot tell the bundle format of {filename!r}: set {field} "
            f"or use a file name ending in one of {', '.join('.' + k for k in known)}",
            field=field,
        )
    return plugins.from_request(BUNDLE_GROUP, name, field)


def tabular_reader(explicit: str, filename: str, field: str = "options.format") -> Any:
    """The csv/xlsx/json reader plugin (an instance with read) for an ImportEntities upload."""
    name = explicit.strip().lower() or format_from_filename(filename, list(TABULAR_READABLE))
    if not name:
        raise InvalidArgument(
            f"cannot tell the format of {filename!r}: set {field} to csv, xlsx or json, "
            "or use a file name ending in .csv, .xlsx or .json",
            field=field,
        )
    if name not in TABULAR_READABLE:
        raise InvalidArgument(
            f"cannot import from {name!r}; readable formats: {', '.join(TABULAR_READABLE)}",
            field=field,
        )
    reader = plugins.from_request(TABULAR_GROUP, name, field)
    if not hasattr(reader, "read"):
        raise InvalidArgument(f"format {name!r} cannot be read", field=field)
    return reader
