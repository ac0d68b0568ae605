"""The page's language on a request: `Accept-Language` fills a request's empty `language`
field (StartExport, reports), so files, mails and labels come in the language of the page
that asked. A `language` the caller set itself always wins."""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor as _d

LANGUAGES = ("en", "el")


def accepted(header: str) -> str:
    """The preferred language of an Accept-Language header that Ferry writes ("" when it
    names none): `el-GR,el;q=0.9,en;q=0.8` -> el."""
    best, best_q = "", 0.0
    for part in header.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        q = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                q = float(params[2:])
            except ValueError:
                q = 0.0
        if primary in LANGUAGES and q > best_q:
            best, best_q = primary, q
    return best


def has_language(desc: Any) -> bool:
    """Whether requests of this type carry a `language` text field."""
    f = desc.fields_by_name.get("language")
    return f is not None and f.type == _d.FieldDescriptor.TYPE_STRING


def fill(msg: Any, header: str) -> None:
    """Set `msg.language` from `header` when the request has that field and left it empty."""
    if has_language(msg.DESCRIPTOR) and not msg.language:
        lang = accepted(header)
        if lang:
            msg.language = lang
