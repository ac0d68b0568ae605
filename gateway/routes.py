"""The REST routes the contract declares: every RPC's google.api.http option, read from the
descriptors of the generated modules (nothing here names an RPC)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from google.api import annotations_pb2, http_pb2  # type: ignore[import-untyped]
from google.protobuf import descriptor as _d

from ferry.rpc.methods import CONTRACT
from ferry.rpc.methods import service_key as _service_key
from ferry.v1 import options_pb2

FILE_CHUNK = "ferry.v1.FileChunk"
_TEMPLATE_VAR = re.compile(r"\{([a-zA-Z0-9_.]+)(?:=[^}]*)?\}")


@dataclass(frozen=True)
class Route:
    service: _d.ServiceDescriptor
    method: _d.MethodDescriptor
    verb: str  # GET, POST, PUT, PATCH, DELETE
    template: str  # as written in the proto, e.g. /api/v1/exports/{job_id}
    path: str  # the same with plain {field} placeholders (Starlette syntax)
    path_fields: tuple[str, ...]
    body: str  # "" (no body), "*" (the whole request) or a field name
    kind: str  # unary | file | events | records | upload

    # cached_property: asked on every request (a frozen dataclass still has a __dict__)
    @functools.cached_property
    def rpc(self) -> str:
        """'/ferry.v1.ExportService/ListSemesters', the gRPC method path."""
        return f"/{self.service.full_name}/{self.method.name}"

    @functools.cached_property
    def service_key(self) -> str:
        """The service's name in ferry.yaml: ExportService -> export."""
        return service_key(self.service)

    @property
    def deadline_class(self) -> str:
        """Which configured deadline applies (gateway.deadlines.<class>)."""
        return {"unary": "unary", "file": "download", "records": "download"}.get(
            self.kind, "events" if self.kind == "events" else "upload"
        )


def service_key(service: _d.ServiceDescriptor) -> str:
    return _service_key(service.full_name)


def services() -> list[_d.ServiceDescriptor]:
    """Every service of the contract."""
    return [s for m in CONTRACT for s in m.DESCRIPTOR.services_by_name.values()]


_STREAM_KINDS = {
    options_pb2.HTTP_STREAM_FILE: "file",
    options_pb2.HTTP_STREAM_RECORDS: "records",
    options_pb2.HTTP_STREAM_EVENTS: "events",
}


def _kind(method: _d.MethodDescriptor, template: str) -> str:
    """What the RPC becomes over HTTP: declared in the proto, never guessed from a path."""
    if method.client_streaming:
        return "upload"
    if not method.server_streaming:
        return "unary"
    declared = method.GetOptions().Extensions[options_pb2.http_stream]
    kind = _STREAM_KINDS.get(declared)
    if kind is None:
        raise ValueError(
            f"{method.full_name} streams to {template} but declares no "
            "(ferry.v1.http_stream) option"
        )
    if kind == "file":
        out = method.output_type
        only = out.fields[0] if len(out.fields) == 1 else None
        if only is None or only.message_type is None or only.message_type.full_name != FILE_CHUNK:
            raise ValueError(f"{method.full_name} is HTTP_STREAM_FILE but sends no FileChunk")
    return kind


def _binding(rule: http_pb2.HttpRule) -> tuple[str, str]:
    pattern = rule.WhichOneof("pattern")
    if pattern is None or pattern == "custom":
        raise ValueError("custom HTTP verbs are not supported")
    return pattern.upper(), getattr(rule, pattern)


def _segments_key(path: str) -> tuple[int, ...]:
    """Literal segments sort before templates: GET /exports/stats wins over /exports/{id}."""
    return tuple(1 if seg.startswith("{") else 0 for seg in path.strip("/").split("/"))


@functools.lru_cache(maxsize=1)
def all_routes() -> tuple[Route, ...]:
    """Every annotated RPC (and its additional_bindings), literal paths first."""
    out: list[Route] = []
    for svc in services():
        for m in svc.methods:
            opts = m.GetOptions()
            if not opts.HasExtension(annotations_pb2.http):
                continue
            rule = opts.Extensions[annotations_pb2.http]
            for r in [rule, *rule.additional_bindings]:
                verb, template = _binding(r)
                fields = tuple(_TEMPLATE_VAR.findall(template))
                path = _TEMPLATE_VAR.sub(
                    lambda g: "{" + g.group(1).replace(".", "__") + "}", template
                )
                out.append(Route(svc, m, verb, template, path, fields, r.body, _kind(m, template)))
    out.sort(key=lambda r: (_segments_key(r.path), r.path))
    return tuple(out)


def method_by_name(name: str) -> tuple[_d.ServiceDescriptor, _d.MethodDescriptor] | None:
    """'ExportService.ListSemesters' (or 'ferry.v1.ExportService.ListSemesters') -> the
    service and method descriptors, or None when the contract has no such method."""
    svc_name, _, method = name.rpartition(".")
    for svc in services():
        if svc_name in (svc.name, svc.full_name) and method in svc.methods_by_name:
            return svc, svc.methods_by_name[method]
    return None
