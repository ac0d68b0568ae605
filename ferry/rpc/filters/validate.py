"""Validate filter: every string a call receives is checked at the edge, before any servicer.

A NUL byte or another control character in an id, a name, a query or a list entry is
INVALID_ARGUMENT naming the field (`student_ids[1]`, `filters.search`,
`variables.subject`), never a database error and never INTERNAL. Fields that hold prose
(a description, a mail body, a note, template variables) may carry tab and newline (and
the carriage return of a CRLF); nothing may carry NUL, another C0 control or DEL. The
message quotes nothing of the input, so it can never grow past gRPC's metadata limit.

Gateway callers and gRPC callers meet the same check: the filter is in every server's chain
(the server adds it when ferry.yaml leaves it out, as it does `auth`). Two kinds of
field are left out, because one bad entry must not fail the rest: the student ids of a
bulk report (the reports service lists each bad one as failed) and the records of a typed
import (data for the merge, which judges each record on its own).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from google.protobuf import descriptor as _d

from ferry.errors import InvalidArgument
from ferry.rpc.filters import Filter, FilterPlugin, RpcCall

if TYPE_CHECKING:
    from ferry.app import App

# Fields (by name) that hold prose: tab, newline and carriage return are allowed there.
TEXT_FIELDS = frozenset(
    {"body", "comment", "description", "note", "title", "variables", "password", "search"}
)
# Fields checked by their servicer, entry by entry (full field names).
CHECKED_BY_SERVICE = frozenset(
    {
        "ferry.v1.BulkStudentReportsRequest.student_ids",
        "ferry.v1.BundleChunk.records",
    }
)
_TEXT_OK = frozenset("\t\n\r")
# Wrapper fields of google.protobuf.Struct that a field name leaves out: a template
# variable is `variables.subject`, not `variables.fields.subject.string_value`.
_TRANSPARENT = frozenset(
    {
        "google.protobuf.Struct.fields",
        "google.protobuf.Value.string_value",
        "google.protobuf.Value.struct_value",
        "google.protobuf.Value.list_value",
        "google.protobuf.ListValue.values",
    }
)
_STRING = _d.FieldDescriptor.TYPE_STRING
_MESSAGE = _d.FieldDescriptor.TYPE_MESSAGE


def bad_character(value: str, text: bool = False) -> int:
    """The index of the first character `value` may not hold (-1 when none): C0 controls
    and DEL; in prose (`text`) tab, newline and carriage return are allowed."""
    if value.isprintable():  # the common case, in C: nothing to look at
        return -1
    for i, c in enumerate(value):
        o = ord(c)
        if (o < 32 or o == 127) and not (text and c in _TEXT_OK):
            return i
    return -1


def check_string(value: str, field: str, text: bool = False) -> None:
    """InvalidArgument naming `field` when `value` holds a character it may not."""
    i = bad_character(value, text)
    if i >= 0:
        raise InvalidArgument(
            f"{field} contains a control character (U+{ord(value[i]):04X} at position {i}); "
            f"{'only tab and newline are allowed there' if text else 'none is allowed there'}",
            field=field,
        )


@functools.lru_cache(maxsize=512)
def _plan(desc: _d.Descriptor) -> bool:
    """Whether messages of `desc` can hold a string at all (else they are skipped)."""
    return _has_strings(desc, set())


def _has_strings(desc: _d.Descriptor, seen: set[str]) -> bool:
    if desc.full_name in seen:
        return False
    seen.add(desc.full_name)
    for f in desc.fields:
        if f.full_name in CHECKED_BY_SERVICE:
            continue
        if f.type == _STRING:
            return True
        if f.message_type is not None and _has_strings(f.message_type, seen):
            return True
    return False


def check_message(msg: Any, prefix: str = "", text: bool = False) -> None:
    """Check every string of `msg` (nested messages, lists and maps too)."""
    if not _plan(msg.DESCRIPTOR):
        return
    for f, value in msg.ListFields():
        if f.full_name in CHECKED_BY_SERVICE:
            continue
        name = prefix.rstrip(".") if f.full_name in _TRANSPARENT else f"{prefix}{f.name}"
        prose = text or f.name in TEXT_FIELDS
        if f.type == _STRING:
            if f.is_repeated:
                for i, v in enumerate(value):
                    check_string(v, f"{name}[{i}]", prose)
            else:
                check_string(value, name, prose)
        elif f.type == _MESSAGE:
            entry = f.message_type
            if entry.GetOptions().map_entry:
                key_f, value_f = entry.fields_by_name["key"], entry.fields_by_name["value"]
                for i, (k, v) in enumerate(value.items()):
                    if key_f.type == _STRING:
                        check_string(k, f"{name} key {i}", False)
                    label = f"{name}.{k}" if bad_character(str(k)) < 0 else f"{name}[{i}]"
                    label = label if len(label) <= 128 else f"{name}[{i}]"
                    if value_f.type == _STRING:
                        check_string(v, label, prose)
                    elif value_f.type == _MESSAGE:
                        check_message(v, f"{label}.", prose)
            elif f.is_repeated:
                for i, v in enumerate(value):
                    check_message(v, f"{name}[{i}].", prose)
            else:
                check_message(value, f"{name}.", prose)


class ValidateFilter(Filter):
    """Always in a server's chain: refuse control characters before any servicer runs."""

    def __init__(self, app: App | None = None) -> None:
        return None

    def start(self, call: RpcCall) -> None:
        if call.request is not None:
            check_message(call.request)

    def received(self, call: RpcCall) -> None:
        if call.request is not None:
            check_message(call.request)


class ValidatePlugin(FilterPlugin):
    """The `validate` filter: a server half only."""

    server_half = ValidateFilter
