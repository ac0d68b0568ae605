"""HTTP <-> protobuf: path parameters, query strings and JSON bodies become a request
message with protobuf's JSON mapping; messages become JSON with proto field names."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import descriptor as _d
from google.protobuf import json_format, message, message_factory

from ferry.errors import InvalidArgument

_FD = _d.FieldDescriptor
_INTS = {
    _FD.TYPE_INT32, _FD.TYPE_INT64, _FD.TYPE_UINT32, _FD.TYPE_UINT64, _FD.TYPE_SINT32,
    _FD.TYPE_SINT64, _FD.TYPE_FIXED32, _FD.TYPE_FIXED64, _FD.TYPE_SFIXED32, _FD.TYPE_SFIXED64,
}  # fmt: skip
# Query parameters the gateway itself reads; they never reach a request message.
RESERVED_QUERY = frozenset({"link", "sig", "exp", "access_token"})


def message_of(field: _d.FieldDescriptor) -> _d.Descriptor:
    """The message type of a message field."""
    if field.message_type is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return field.message_type


def enum_of(field: _d.FieldDescriptor) -> _d.EnumDescriptor:
    """The enum type of an enum field."""
    if field.enum_type is None:
        raise TypeError(f"{field.full_name} is not an enum field")
    return field.enum_type


def message_class(desc: _d.Descriptor) -> type[message.Message]:
    return message_factory.GetMessageClass(desc)


def to_json(msg: message.Message) -> dict[str, Any]:
    """The message as a JSON object: proto field names, enums by name, zero values shown."""
    return json_format.MessageToDict(
        msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def find_field(desc: _d.Descriptor, name: str) -> _d.FieldDescriptor | None:
    """The field called `name` by its proto name or its JSON name."""
    f = desc.fields_by_name.get(name)
    if f is not None:
        return f
    for f in desc.fields:
        if f.json_name == name:
            return f
    return None


def _scalar(field: _d.FieldDescriptor, raw: str, where: str) -> Any:
    """A query-string value as the JSON value the field's type expects."""
    if field.type == _FD.TYPE_BOOL:
        low = raw.strip().lower()
        if low in ("true", "1", "yes", ""):
            return True
        if low in ("false", "0", "no"):
            return False
        raise InvalidArgument(f"{where}: expected true or false, got {raw!r}", field=where)
    if field.type in _INTS:
        text = raw.strip()
        if not text.lstrip("-").isdigit():
            raise InvalidArgument(f"{where}: expected an integer, got {raw!r}", field=where)
        return text
    if field.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        try:
            return float(raw)
        except ValueError:
            raise InvalidArgument(f"{where}: expected a number, got {raw!r}", field=where) from None
    if field.type == _FD.TYPE_ENUM:
        return _enum(enum_of(field), raw, where)
    return raw  # strings, bytes (base64), Timestamp (RFC 3339)


def _enum(enum: _d.EnumDescriptor, raw: str, where: str) -> str | int:
    """An enum value by full name (MERGE_STRATEGY_SKIP), short name (skip) or number."""
    text = raw.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    names = [v.name for v in enum.values]
    prefix = _common_prefix(names)
    for name in (text, prefix + text.upper()):
        if name in enum.values_by_name:
            return name
    short = ", ".join(n.removeprefix(prefix).lower() for n in names[1:])
    raise InvalidArgument(f"{where}: {raw!r} is not one of {short}", field=where)


def _common_prefix(names: list[str]) -> str:
    """MERGE_STRATEGY_ for MergeStrategy's values (up to the last underscore)."""
    first = names[0]
    i = 0
    while i < len(first) and all(len(n) > i and n[i] == first[i] for n in names):
        i += 1
    return first[: first.rfind("_", 0, i) + 1] if i else ""


def query_to_dict(desc: _d.Descriptor, items: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Query parameters (`a=1`, `filters.status=x`, repeated keys for repeated fields) as a
    JSON object for `desc`; an unknown parameter is InvalidArgument naming it."""
    out: dict[str, Any] = {}
    for key, raw in items:
        if key in RESERVED_QUERY:
            continue
        node, d = out, desc
        parts = key.split(".")
        for i, part in enumerate(parts):
            f = find_field(d, part)
            if f is None:
                raise InvalidArgument(f"unknown parameter {key!r}", field=key)
            last = i == len(parts) - 1
            is_msg = f.type == _FD.TYPE_MESSAGE
            wkt = is_msg and message_of(f).full_name.startswith("google.protobuf.")
            if last:
                if is_msg and not wkt:
                    raise InvalidArgument(
                        f"{key!r} is a message; name one of its fields", field=key
                    )
                value = raw if wkt else _scalar(f, raw, key)
                if f.is_repeated:
                    node.setdefault(f.name, []).append(value)
                else:
                    node[f.name] = value
            else:
                if not is_msg or f.is_repeated or wkt:
                    raise InvalidArgument(f"unknown parameter {key!r}", field=key)
                node = node.setdefault(f.name, {})
                d = message_of(f)
    return out


def build_request(
    desc: _d.Descriptor,
    path_params: Mapping[str, str],
    query: Iterable[tuple[str, str]],
    body: Any,
    body_field: str,
) -> message.Message:
    """The request message from the HTTP parts (path wins over body, body over query), as
    google.api.http defines; InvalidArgument naming the field when something does not fit."""
    data: dict[str, Any] = query_to_dict(desc, query) if body_field != "*" else {}
    if body_field == "*":
        if body is not None and not isinstance(body, dict):
            raise InvalidArgument("the request body must be a JSON object", field="body")
        data = dict(body or {})
    elif body_field:
        data[body_field] = body
    for name, value in path_params.items():
        node, d = data, desc
        parts = name.split(".")
        for part in parts[:-1]:
            f = find_field(d, part)
            assert f is not None and f.message_type is not None  # checked by the template
            node = node.setdefault(f.name, {})
            d = f.message_type
        f = find_field(d, parts[-1])
        if f is None:
            raise InvalidArgument(f"unknown path parameter {name!r}", field=name)
        node[f.name] = _scalar(f, value, name)
    return parse(desc, data)


def parse(desc: _d.Descriptor, data: Any) -> message.Message:
    """`data` (JSON) as a `desc` message; unknown fields and bad values are InvalidArgument
    naming the field."""
    msg = message_class(desc)()
    try:
        json_format.ParseDict(data, msg, ignore_unknown_fields=False)
    except json_format.ParseError as e:
        text = str(e).split("\n", 1)[0].strip()
        raise InvalidArgument(text, field=_field_in(text)) from None
    return msg


def _field_in(text: str) -> str:
    """The field a protobuf ParseError blames ('... has no field named "x"', '... field x')."""
    if 'field named "' in text:
        return text.split('field named "', 1)[1].split('"', 1)[0]
    if "Failed to parse " in text and " field:" in text:
        return text.split("Failed to parse ", 1)[1].split(" field:", 1)[0]
    return ""
