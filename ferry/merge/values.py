"""Checking and converting one record's values, per field kind, before it is staged.

Values arrive typed (bundle readers) or as strings (csv/xlsx rows passed straight through):
INT, FLOAT, DATE and TIMESTAMP fields accept strings too and are parsed here, so a bad cell
becomes a RecordError naming the row and column. Rules:
- a missing or None value is an error unless the field is nullable; "" counts as missing
  for INT, FLOAT, DATE and TIMESTAMP (an empty csv cell). Non-nullable TIMESTAMP fields
  (created_at, updated_at) are optional: missing means "now".
- STR: text only, no NUL characters, at most the column's length.
- INT: an integer (or integral text) within the column's range; booleans are refused.
- FLOAT: a finite number; NaN and infinities are refused (they compare unlike numbers).
- DATE: exactly YYYY-MM-DD and a real calendar day (or a datetime.date).
- TIMESTAMP: a datetime (naive is taken as UTC) or ISO-8601 text.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from typing import Any

from ferry.datasets.spec import Kind

Converter = Callable[[Any], Any]
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


class BadValue(ValueError):
    """A value that cannot be stored in its field; `reason` is for people (English),
    `code` and `details` for machines (ferry.merge.reasons: a mail words them in its
    language)."""

    def __init__(self, reason: str, code: str = "INVALID_VALUE", **details: object) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.details = {k: str(v) for k, v in details.items()}


def converter(
    kind: Kind,
    nullable: bool,
    length: int | None,
    bounds: tuple[int, int],
    sqlite: bool,
    span: tuple[Any, Any] | None = None,
) -> Converter:
    """A function checking one value of `kind` and returning what the staging table stores.
    `bounds`: an INT's range; `span`: a FLOAT's or DATE's (the dataset spec's)."""
    if kind is Kind.STR:
        return _str(nullable, length)
    if kind is Kind.INT:
        return _optional(_int(bounds), nullable)
    if kind is Kind.FLOAT:
        return _optional(_float if span is None else _float_in(*span), nullable)
    if kind is Kind.DATE:
        return _optional(_date_parser(sqlite, span), nullable)
    return _optional(_timestamp(sqlite), nullable)


def out_of_range(value: Any, low: Any, high: Any) -> BadValue:
    return BadValue(
        f"out of range: {value} (allowed: {low} to {high})",
        "OUT_OF_RANGE",
        value=value,
        low=low,
        high=high,
    )


def _optional(convert: Converter, nullable: bool) -> Converter:
    def check(value: Any) -> Any:
        if value is None or value == "":
            if nullable:
                return None
            raise BadValue("required field is missing", "MISSING")
        return convert(value)

    return check


def _str(nullable: bool, length: int | None) -> Converter:
    limit = length or 0

    def check(value: Any) -> Any:
        if value.__class__ is not str:
            if value is None:
                if nullable:
                    return None
                raise BadValue("required field is missing", "MISSING")
            raise BadValue(f"expected text, got {type(value).__name__}", "NOT_TEXT")
        if limit and len(value) > limit:
            raise BadValue(f"longer than {limit} characters", "TOO_LONG", max=limit)
        if "\x00" in value:
            raise BadValue("contains a NUL character", "NUL_CHARACTER")
        return value

    return check


def _int(bounds: tuple[int, int]) -> Converter:
    low, high = bounds

    def check(value: Any) -> Any:
        if value.__class__ is not int:
            if isinstance(value, str):
                try:
                    value = int(value.strip())
                except ValueError:
                    raise BadValue(
                        f"not an integer: {value[:40]!r}", "NOT_INTEGER", value=value[:40]
                    ) from None
            elif isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise BadValue(
                    f"expected an integer, got {type(value).__name__}", "NOT_INTEGER", value=value
                )
        if not low <= value <= high:
            raise out_of_range(value, low, high)
        return value

    return check


def _float(value: Any) -> Any:
    if value.__class__ is not float:
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise BadValue(
                    f"not a number: {value[:40]!r}", "NOT_NUMBER", value=value[:40]
                ) from None
        elif isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        else:
            raise BadValue(
                f"expected a number, got {type(value).__name__}", "NOT_NUMBER", value=value
            )
    if not math.isfinite(value):
        raise BadValue(f"not a finite number: {value}", "NOT_NUMBER", value=value)
    return value


def _float_in(low: float, high: float) -> Converter:
    def check(value: Any) -> Any:
        value = _float(value)
        if not low <= value <= high:
            raise out_of_range(value, low, high)
        return value

    return check


def _date_parser(sqlite: bool, span: tuple[Any, Any] | None = None) -> Converter:
    # Dates repeat a lot (every attendance row of a day): remember the ones seen.
    # SQLite stores the text; PostgreSQL's binary COPY wants date objects.
    seen: dict[str, Any] = {}

    def check(value: Any) -> Any:
        if value.__class__ is str:
            hit = seen.get(value)
            if hit is not None:
                return hit
            text = value.strip()
            if len(text) != 10 or text[4] != "-" or text[7] != "-" or not text[:4].isdigit():
                raise BadValue(
                    f"not a date (YYYY-MM-DD): {value[:40]!r}", "NOT_DATE", value=value[:40]
                )
            try:
                parsed = dt.date.fromisoformat(text)
            except ValueError:
                raise BadValue(
                    f"not a date (YYYY-MM-DD): {value[:40]!r}", "NOT_DATE", value=value[:40]
                ) from None
            if span is not None and not span[0] <= parsed <= span[1]:
                raise out_of_range(text, span[0].isoformat(), span[1].isoformat())
            day = parsed.isoformat() if sqlite else parsed
            if len(seen) < 100_000:
                seen[value] = day
            return day
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            if span is not None and not span[0] <= value <= span[1]:
                raise out_of_range(value.isoformat(), span[0].isoformat(), span[1].isoformat())
            return value.isoformat() if sqlite else value
        raise BadValue(
            f"expected a date (YYYY-MM-DD), got {type(value).__name__}", "NOT_DATE", value=value
        )

    return check


# SQLAlchemy's SQLite DateTime storage format: anything else would not compare equal.
SQLITE_TS = "%Y-%m-%d %H:%M:%S.%f"


def _timestamp(sqlite: bool) -> Converter:
    def check(value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = dt.datetime.fromisoformat(value.strip())
            except ValueError:
                raise BadValue(
                    f"not a timestamp (ISO-8601): {value[:40]!r}", "NOT_TIMESTAMP", value=value[:40]
                ) from None
        if not isinstance(value, dt.datetime):
            raise BadValue(
                f"expected a timestamp, got {type(value).__name__}", "NOT_TIMESTAMP", value=value
            )
        if value.tzinfo is not dt.UTC:
            value = (
                value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
            )
        return value.strftime(SQLITE_TS) if sqlite else value

    return check


def record_converter(
    cols: list[tuple[str, Kind, Converter, int | None, tuple[int, int], bool, Any]],
    sqlite: bool,
    carried: frozenset[str] | None = None,
) -> Callable[[dict[str, Any], int], tuple[Any, ...]]:
    """A function `convert(record, pos) -> staged row (pos, 1, values...)` for columns
    (name, kind, checking converter, text length, int bounds, staged as text, the FLOAT or
    DATE range), generated
    once per entity:
    the common case (a value of the right type) costs a type test, not a call; anything
    else goes through the checking converter, which converts or raises BadValue.
    `carried`: the fields the file carries (None: all); the others are staged as NULL
    unchecked, and the merge never writes them (see ferry.merge.shape.Shape.carried)."""
    lines = ["def convert(r, pos):", "    g = r.get"]
    ns: dict[str, Any] = {"_dt": dt.datetime, "_UTC": dt.UTC}
    names = []
    for i, (name, kind, conv, length, (low, high), as_text, span) in enumerate(cols):
        v = f"v{i}"
        names.append(v)
        ns[f"c{i}"] = conv
        if carried is not None and name not in carried:
            lines.append(f"    {v} = None")
            continue
        lines.append(f"    {v} = g({name!r})")
        if kind is Kind.STR:
            limit = f" or len({v}) > {length}" if length else ""
            test = f"{v}.__class__ is not str{limit} or '\\x00' in {v}"
        elif kind is Kind.INT:
            test = f"{v}.__class__ is not int or not {low} <= {v} <= {high}"
        elif kind is Kind.FLOAT and span is not None:
            # Out of the spec's range (NaN and infinities too) goes to the checker.
            test = f"{v}.__class__ is not float or not {span[0]!r} <= {v} <= {span[1]!r}"
        elif kind is Kind.FLOAT:
            test = f"{v}.__class__ is not float or {v} - {v} != 0.0"  # NaN and inf fail
        elif kind is Kind.DATE:
            # Days repeat (every attendance row of a day): checked once, then looked up.
            ns[f"d{i}"] = {}
            lines.append(f"    w = d{i}.get({v}) if {v}.__class__ is str else None")
            lines.append("    if w is None:")
            lines.append(f"        w = c{i}({v})")
            lines.append(f"        if {v}.__class__ is str and len(d{i}) < 100000:")
            lines.append(f"            d{i}[{v}] = w")
            lines.append(f"    {v} = w")
            continue
        elif sqlite or as_text:
            test = "True"
        else:
            test = f"{v}.__class__ is not _dt or {v}.tzinfo is not _UTC"
        lines.append(f"    if {test}:")
        lines.append(f"        {v} = c{i}({v})")
    lines.append(f"    return (pos, 1, {', '.join(names)})")
    exec(compile("\n".join(lines) + "\n", "<record_converter>", "exec"), ns)
    fn: Callable[[dict[str, Any], int], tuple[Any, ...]] = ns["convert"]
    return fn
