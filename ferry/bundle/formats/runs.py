"""Runs of records checked in one C call: what the json scanner and the line formats share.

A run is about RUN_BYTES of an entity's records as compact JSON. `run_decoder` builds the
msgspec decoder that checks a run against a struct per entity (known fields only, strict
types, text lengths, integer ranges, RFC 3339 instants with a zone); a run that passes,
and that msgspec encodes back to exactly the same bytes, becomes a RawBatch that goes to
the database unparsed. The document scanner (jsonscan) and the line gatherer (lineruns)
each cut runs their own way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any

import msgspec

from ferry.bundle.formats.base import BundleLimits, FieldRule
from ferry.datasets.query import Column
from ferry.datasets.spec import Kind

RUN_BYTES = 2 * 1024 * 1024  # records per RawBatch: about this many bytes
MAX_RUN_BYTES = 16 * 1024 * 1024  # a longer run (or an unfinished one) goes the slow way


def _type(col: Column, rule: FieldRule | None, limits: BundleLimits) -> Any:
    kind = col.kind
    if kind is Kind.STR:
        cap = limits.max_string_chars
        if rule is not None and rule.max_length:
            cap = min(cap, rule.max_length)
        t: Any = Annotated[str, msgspec.Meta(max_length=cap)]
    elif kind is Kind.INT:
        low, high = rule.bounds if rule is not None and rule.bounds else (-(2**31), 2**31 - 1)
        t = Annotated[int, msgspec.Meta(ge=low, le=high)]
    elif kind is Kind.FLOAT and rule is not None and rule.span is not None:
        t = Annotated[float, msgspec.Meta(ge=rule.span[0], le=rule.span[1])]
    elif kind is Kind.FLOAT:
        t = float  # JSON has no NaN or infinity; msgspec refuses numbers beyond a double
    elif kind is Kind.DATE:
        t = dt.date
    else:
        t = Annotated[dt.datetime, msgspec.Meta(tz=True)]
    nullable = col.nullable and (rule is None or rule.nullable)
    return t | None if nullable else t


def run_decoder(
    cols: Mapping[str, Column], rules: Mapping[str, FieldRule], limits: BundleLimits
) -> msgspec.json.Decoder[Any]:
    """A decoder of a JSON array of records with exactly `cols` (sorted, as written)."""
    fields = []
    for name in sorted(cols):
        t = _type(cols[name], rules.get(name), limits)
        fields.append((name, t, None) if cols[name].nullable else (name, t))
    # kw_only: required and optional fields may interleave, so they keep sorted order.
    struct: Any = msgspec.defstruct(
        "Run", fields, forbid_unknown_fields=True, gc=False, kw_only=True
    )
    runs: Any = list.__class_getitem__(struct)
    return msgspec.json.Decoder(runs)
