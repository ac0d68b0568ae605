"""Which reader an upload needs: from the caller's explicit format, else the filename,
else (a bundle whose name does not tell, such as `roster.zip`) the file's content."""

from __future__ import annotations

import zipfile
from typing import IO, Any

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


def bundle_format(
    explicit: str,
    filename: str,
    field: str = "options.bundle_format",
    content: IO[bytes] | None = None,
) -> Any:
    """The bundle format plugin (an instance with read/write) for an upload.

    `content`, when given, is the whole uploaded file (seekable): a name that does not
    tell the format is then told by what the file holds (sniff_bundle_format). Raises
    InvalidArgument naming the known formats when nothing names one.
    """
    known = plugins.names(BUNDLE_GROUP)
    name = explicit.strip().lower() or format_from_filename(filename, known)
    if not name and content is not None:
        name = sniff_bundle_format(content)
    if not name:
        raise InvalidArgument(
            f"cannot tell the bundle format of {filename!r}: set {field} "
            f"or use a file name ending in one of {', '.join('.' + k for k in known)}",
            field=field,
        )
    return plugins.from_request(BUNDLE_GROUP, name, field)


def named_bundle_format(explicit: str, filename: str) -> Any:
    """The bundle format the caller or the file's name gives, or None when neither does
    (the format is then told by the content, once the file is in: bundle_format)."""
    known = plugins.names(BUNDLE_GROUP)
    if not explicit.strip() and not format_from_filename(filename, known):
        return None
    return bundle_format(explicit, filename)


# A OneRoster 1.2 CSV package is a zip whose manifest.csv is at its root or in one folder.
_ONEROSTER_MANIFEST = "manifest.csv"


def sniff_bundle_format(f: IO[bytes]) -> str:
    """The bundle format a file's content shows, or "": a zip holding a OneRoster
    `manifest.csv` is "oneroster", one holding `xl/workbook.xml` is "xlsx". Reads only
    the zip's central directory (nothing is inflated) and leaves `f` at its start."""
    try:
        with zipfile.ZipFile(f) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        names = []
    finally:
        f.seek(0)
    if "xl/workbook.xml" in names:
        return "xlsx"
    for name in names:
        parts = name.split("/")
        if parts[-1] == _ONEROSTER_MANIFEST and len(parts) <= 2:
            return "oneroster"
    return ""


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
