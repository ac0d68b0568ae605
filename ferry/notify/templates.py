"""Notification texts: Jinja2 templates, one folder per language, English as fallback.

Each template `NAME` has `NAME.subject.txt`, `NAME.txt` (the plain text part) and
`NAME.html`. HTML is autoescaped; every template is strict about undefined variables, so
a missing variable is a clear INVALID_ARGUMENT at Send, never a mail with a hole in it.
Dates, numbers, sizes and durations are formatted for the language with Babel.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from babel import dates as babel_dates
from babel import numbers as babel_numbers

from ferry.errors import InvalidArgument
from ferry.notify import reasons

FOLDER = Path(__file__).resolve().parent / "templates"
LANGUAGES = ("en", "el")
FALLBACK = "en"
PLAIN = "plain"  # subject and body given by the caller
MAX_SUBJECT = 250


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def names() -> list[str]:
    """The templates a request may name (those in the English folder)."""
    return sorted(
        p.name.removesuffix(".subject.txt")
        for p in (FOLDER / FALLBACK).glob("*.subject.txt")
        if p.name != f"{PLAIN}.subject.txt"
    )


# The largest magnitude a number, size or duration variable may have: far past any count,
# byte size (about 888 TiB) or duration (about 31 years) Ferry announces, and well inside
# what Babel and timedelta can format (1e308 raised OverflowError, an INTERNAL).
MAX_NUMBER = 1e15
MAX_SECONDS = 1e9


def _number(v: Any, what: str, low: float = -MAX_NUMBER, high: float = MAX_NUMBER) -> float:
    """`v` as a finite float within [low, high]; ValueError saying what was expected."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        raise ValueError(f"{what} needs a number, got {type(v).__name__}")
    try:
        n = float(v)
    except (ValueError, OverflowError):
        raise ValueError(f"{what} needs a number, got {str(v)[:64]!r}") from None
    if not low <= n <= high:  # also NaN and the infinities
        raise ValueError(f"{what} needs a number from {low:g} to {high:g}, got {str(v)[:64]}")
    return n


def _to_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    return dt.datetime.fromisoformat(str(value))


@functools.cache
def _env(language: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(FOLDER / language), str(FOLDER / FALLBACK)]),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=False),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    loc = language

    def number(v: Any, digits: int = 0) -> str:
        fmt = "#,##0" + ("." + "0" * digits if digits else "")
        n = _number(v, "a count")
        return str(babel_numbers.format_decimal(n, format=fmt, locale=loc))

    def size(v: Any) -> str:
        n = _number(v, "a size in bytes", 0)
        for unit in ("B", "KB", "MB", "GB"):
            if n < 1024 or unit == "GB":
                digits = 0 if unit == "B" else 1
                return f"{number(n, digits)} {unit}"
            n /= 1024
        raise AssertionError("unreachable")

    def when(v: Any) -> str:
        return str(
            babel_dates.format_datetime(_to_datetime(v), "medium", tzinfo=dt.UTC, locale=loc)
        )

    def duration(v: Any) -> str:
        seconds = _number(v, "a duration in seconds", 0, MAX_SECONDS)
        if seconds < 1:
            return str(babel_dates.format_timedelta(dt.timedelta(seconds=1), locale=loc))
        return str(
            babel_dates.format_timedelta(dt.timedelta(seconds=seconds), threshold=1.5, locale=loc)
        )

    env.filters.update(number=number, size=size, when=when, duration=duration)
    # A failed job's machine reason and values in this language (ferry.notify.reasons).
    env.globals["why"] = lambda reason, details, error: reasons.in_words(
        reason, details, loc, error
    )
    return env


def render(
    template: str, variables: dict[str, Any], language: str, subject: str = "", body: str = ""
) -> Rendered:
    """The notification's subject, text and HTML in `language` (English when that language
    has no such template). InvalidArgument naming the field for any problem."""
    if language not in LANGUAGES:
        raise InvalidArgument(
            f"unknown language {language!r}; known: {', '.join(LANGUAGES)}", field="language"
        )
    if not template:
        if not subject.strip():
            raise InvalidArgument("give a template, or a subject and a body", field="subject")
        if not body.strip():
            raise InvalidArgument("body is required when no template is named", field="body")
        template, variables = PLAIN, {"subject": subject, "body": body}
    elif template not in names():
        raise InvalidArgument(
            f"unknown template {template!r}; known: {', '.join(names())}", field="template"
        )
    env = _env(language)
    try:
        out = Rendered(
            subject=" ".join(env.get_template(f"{template}.subject.txt").render(variables).split()),
            text=env.get_template(f"{template}.txt").render(variables).strip() + "\n",
            html=env.get_template(f"{template}.html").render(variables),
        )
    except jinja2.UndefinedError as e:
        raise InvalidArgument(f"template {template!r}: {e.message}", field="variables") from None
    except (TypeError, ValueError, ArithmeticError) as e:  # OverflowError, decimal's too
        raise InvalidArgument(
            f"template {template!r}: a variable has the wrong type or size ({e})",
            field="variables",
        ) from None
    if len(out.subject) > MAX_SUBJECT:
        raise InvalidArgument(f"subject is longer than {MAX_SUBJECT} characters", field="subject")
    return out
