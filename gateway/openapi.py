"""OpenAPI 3.1 from the same descriptors the routes come from: paths, parameters, and
request/response schemas of every message (proto field names, protobuf's JSON mapping)."""

from __future__ import annotations

import functools
from typing import Any

from google.protobuf import descriptor as _d

from gateway.routes import Route, all_routes, services
from gateway.transcode import RESERVED_QUERY, enum_of, message_of

_FD = _d.FieldDescriptor
_INT64 = {_FD.TYPE_INT64, _FD.TYPE_UINT64, _FD.TYPE_SINT64, _FD.TYPE_FIXED64,
          _FD.TYPE_SFIXED64}  # fmt: skip
_INT32 = {_FD.TYPE_INT32, _FD.TYPE_UINT32, _FD.TYPE_SINT32, _FD.TYPE_FIXED32,
          _FD.TYPE_SFIXED32}  # fmt: skip
_WKT: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
}
ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": "the gRPC status name, e.g. NOT_FOUND"},
        "reason": {
            "type": "string",
            "description": "the machine reason (google.rpc.ErrorInfo) a client translates",
        },
        "metadata": {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "the reason's values (field, value, known, ...)",
        },
        "message": {"type": "string", "description": "English, for logs and scripts"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
    "required": ["code", "reason", "metadata", "message", "details"],
}


def _ref(desc: _d.Descriptor) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{desc.full_name}"}


def _scalar(f: _d.FieldDescriptor) -> dict[str, Any]:
    if f.type == _FD.TYPE_MESSAGE:
        return _WKT.get(message_of(f).full_name) or _ref(message_of(f))
    if f.type == _FD.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in enum_of(f).values]}
    if f.type == _FD.TYPE_BOOL:
        return {"type": "boolean"}
    if f.type in _INT64:  # protobuf's JSON mapping writes 64-bit integers as strings
        return {"type": "string", "pattern": r"^-?\d+$", "format": "int64"}
    if f.type in _INT32:
        return {"type": "integer", "format": "int32"}
    if f.type in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return {"type": "number"}
    if f.type == _FD.TYPE_BYTES:
        return {"type": "string", "contentEncoding": "base64"}
    return {"type": "string"}


def _field_schema(f: _d.FieldDescriptor) -> dict[str, Any]:
    if f.message_type is not None and f.message_type.GetOptions().map_entry:
        value = f.message_type.fields_by_name["value"]
        return {"type": "object", "additionalProperties": _scalar(value)}
    if f.is_repeated:
        return {"type": "array", "items": _scalar(f)}
    return _scalar(f)


def _collect(desc: _d.Descriptor, out: dict[str, Any]) -> None:
    if desc.full_name in out or desc.full_name in _WKT:
        return
    out[desc.full_name] = {}  # placeholder: stops recursion on self-references
    props = {}
    for f in desc.fields:
        props[f.name] = _field_schema(f)
        if f.message_type is not None:
            inner = f.message_type
            if inner.GetOptions().map_entry:
                inner_value = inner.fields_by_name["value"].message_type
                if inner_value is not None:
                    _collect(inner_value, out)
            else:
                _collect(inner, out)
    out[desc.full_name] = {"type": "object", "properties": props, "additionalProperties": False}


def _query_params(desc: _d.Descriptor, skip: set[str], prefix: str = "") -> list[dict[str, Any]]:
    out = []
    for f in desc.fields:
        if f.name in skip and not prefix:
            continue
        if f.type == _FD.TYPE_MESSAGE and message_of(f).full_name not in _WKT:
            if not f.is_repeated and not message_of(f).GetOptions().map_entry:
                out += _query_params(message_of(f), set(), f"{prefix}{f.json_name}.")
            continue
        schema = _scalar(f)
        if f.type in _INT32:  # a query string is text; any integer is fine
            schema = {"type": "integer"}
        if f.is_repeated:
            schema = {"type": "array", "items": schema}
        out.append({"name": prefix + f.json_name, "in": "query", "required": False,
                    "schema": schema, "style": "form", "explode": True})  # fmt: skip
    return out


def _operation(route: Route, schemas: dict[str, Any]) -> dict[str, Any]:
    m = route.method
    _collect(m.input_type, schemas)
    _collect(m.output_type, schemas)
    params: list[dict[str, Any]] = [
        {"name": p.replace(".", "__"), "in": "path", "required": True, "schema": {"type": "string"}}
        for p in route.path_fields
    ]
    op: dict[str, Any] = {
        "operationId": f"{route.service.name}.{m.name}",
        "tags": [route.service.name],
        "parameters": params,
        "responses": {
            "default": {"description": "an error", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}},
        },
        "security": [{"bearer": []}],
    }  # fmt: skip
    if route.kind == "upload":
        opts = message_of(m.input_type.fields_by_name["options"])
        _collect(opts, schemas)
        params += _query_params(opts, {"filename"})
        op["requestBody"] = {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "file": {"type": "string", "format": "binary"}}}},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }}  # fmt: skip
        op["responses"]["200"] = {
            "description": "the import's result",
            "content": {"application/json": {"schema": _ref(m.output_type)}},
        }
        return op
    if route.body == "*":
        op["requestBody"] = {"content": {"application/json": {"schema": _ref(m.input_type)}}}
    else:
        params += _query_params(m.input_type, set(route.path_fields))
    ok: dict[str, Any]
    if route.kind == "unary":
        ok = {"description": "OK", "content": {"application/json": {"schema": _ref(m.output_type)}}}
    elif route.kind == "file":
        # The file's own media type (application/pdf, text/csv, application/zip, ...).
        ok = {"description": "the file", "content": {"*/*": {
            "schema": {"type": "string", "format": "binary"}}}}  # fmt: skip
    elif route.kind == "events":
        ok = {"description": "Server-Sent Events; each `data:` is a " + m.output_type.name,
              "content": {"text/event-stream": {"schema": {"type": "string"}}}}  # fmt: skip
    else:
        ok = {"description": "NDJSON; each line is a " + m.output_type.name,
              "content": {"application/x-ndjson": {"schema": {"type": "string"}}}}  # fmt: skip
    op["responses"]["200"] = ok
    return op


def _strip_reserved(params: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in params if p["name"] not in RESERVED_QUERY]


@functools.lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI document of the gateway's contract routes plus login."""
    schemas: dict[str, Any] = {"Error": ERROR}
    paths: dict[str, Any] = {}
    for route in all_routes():
        op = _operation(route, schemas)
        op["parameters"] = _strip_reserved(op["parameters"])
        op["summary"] = route.method.name
        paths.setdefault(route.path, {})[route.verb.lower()] = op
    paths["/api/v1/auth/login"] = {"post": {
        "operationId": "Gateway.Login", "tags": ["Gateway"], "summary": "Sign in",
        "requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "required": ["username", "password"],
            "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}}}},
        "responses": {
            "200": {"description": "a bearer token", "content": {"application/json": {
                "schema": {"type": "object", "properties": {
                    "token": {"type": "string"}, "role": {"type": "string"},
                    "expires_at": {"type": "string", "format": "date-time"},
                    "email": {"type": "string"}}}}}},
            "default": {"description": "an error", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Error"}}}},
        },
    }}  # fmt: skip
    names = ", ".join(s.name for s in services())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ferry gateway",
            "version": "v1",
            "description": f"REST routes of {names}, built from the protos' google.api.http "
            "options. Any unary RPC can also be called as POST /rpc/<Service>.<Method> with "
            "a JSON body. Errors are {code, message, details}.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
