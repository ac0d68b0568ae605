"""One generic handler per kind of route, built from a Route's descriptors: unary JSON,
file downloads, NDJSON record streams and Server-Sent Events."""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import grpc
import orjson
from google.protobuf import descriptor_pb2, message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ferry.errors import InvalidArgument, NotFound
from gateway import calls, language
from gateway.auth import LinkToken
from gateway.context import Gateway, Handler, guarded, json_body, parse_json, read_body
from gateway.errors import stream_error
from gateway.routes import Route, method_by_name, service_key
from gateway.transcode import build_request, message_class, parse, to_json

log = logging.getLogger("ferry.gateway")
_EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


def _path_params(request: Request) -> dict[str, str]:
    return {k.replace("__", "."): str(v) for k, v in request.path_params.items()}


async def _request_message(route: Route, request: Request) -> message.Message:
    body = await json_body(request) if route.body else None
    msg = build_request(
        route.method.input_type,
        _path_params(request),
        request.query_params.multi_items(),
        body,
        route.body,
    )
    language.fill(msg, request.headers.get("accept-language", ""))
    return msg


_render = JSONResponse(None).render  # exactly the bytes a JSONResponse of it would send
_JSON = JSONResponse.media_type


class JsonMemo:
    """The JSON body of recent responses of read-only RPCs, keyed by the response's wire
    bytes: the same bytes always make the same JSON, so a cached report asked for again
    skips protobuf's (slow, pure-Python) JSON mapping. Bounded by entries and bytes."""

    def __init__(self, max_bytes: int = 32 * 1024 * 1024, max_value: int = 1024 * 1024):
        self.max_bytes = max_bytes
        self.max_value = max_value
        self._data: OrderedDict[tuple[str, bytes], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, rpc: str, wire: bytes) -> bytes | None:
        with self._lock:
            body = self._data.get((rpc, wire))
            if body is not None:
                self._data.move_to_end((rpc, wire))
            return body

    def put(self, rpc: str, wire: bytes, body: bytes) -> None:
        cost = len(wire) + len(body)
        if cost > self.max_value:
            return
        with self._lock:
            if (rpc, wire) in self._data:
                return
            self._data[(rpc, wire)] = body
            self._size += cost
            while self._size > self.max_bytes:
                (_, old), old_body = self._data.popitem(last=False)
                self._size -= len(old) + len(old_body)


_MEMO = JsonMemo()
_NO_SIDE_EFFECTS = descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS


class RequestMemo:
    """Request messages built from the same HTTP parts (body bytes, path parameters, raw
    query string) for the same RPC: a repeated request skips JSON parsing and protobuf's
    JSON mapping. Only requests that built without error are kept; the messages are only
    ever serialized, never changed."""

    MAX_PART = 16 * 1024

    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[tuple[Any, ...], message.Message] = OrderedDict()
        self._lock = threading.Lock()

    async def build(self, route: Route, request: Request) -> message.Message:
        raw = await read_body(request) if route.body else b""
        query: bytes = request.scope.get("query_string", b"")
        lang = request.headers.get("accept-language", "")
        params = request.scope.get("path_params")
        key = (route.rpc, raw, query, tuple(params.items()) if params else (), lang)
        with self._lock:
            msg = self._data.get(key)
            if msg is not None:
                self._data.move_to_end(key)
                return msg
        msg = build_request(
            route.method.input_type,
            _path_params(request),
            request.query_params.multi_items(),
            parse_json(raw) if route.body else None,
            route.body,
        )
        language.fill(msg, lang)
        if len(raw) <= self.MAX_PART and len(query) <= self.MAX_PART:
            with self._lock:
                self._data[key] = msg
                while len(self._data) > self.max_entries:
                    self._data.popitem(last=False)
        return msg


_REQUESTS = RequestMemo()


def unary_handler(gw: Gateway, route: Route) -> Handler:
    """Path + query + body -> request; response message -> JSON."""
    out = message_class(route.method.output_type)
    # Only reads are remembered: what Login or CreateToken answer is never kept.
    memo = _MEMO if route.method.GetOptions().idempotency_level == _NO_SIDE_EFFECTS else None

    requests = _REQUESTS
    rpc, service = route.rpc, route.service_key  # computed once, not per request

    async def handle(request: Request) -> Response:
        msg = await requests.build(route, request)
        timeout = calls.deadline(gw.settings.deadlines, "unary", request.headers)
        call = gw.channels.method(service, rpc, route.method, raw=True)
        wire = await call(msg, timeout=timeout, metadata=calls.metadata(gw.token(request)))
        body = memo.get(rpc, wire) if memo is not None else None
        if body is None:
            body = _render(to_json(out.FromString(wire)))
            if memo is not None:
                memo.put(rpc, wire, body)
        return Response(body, media_type=_JSON)

    return guarded(handle)


def procedure_handler(gw: Gateway) -> Handler:
    """POST /rpc/<Service>.<Method>: a JSON body calls any unary RPC."""

    async def handle(request: Request) -> Response:
        name = request.path_params["procedure"]
        found = method_by_name(name)
        if found is None:
            raise NotFound(f"no procedure {name!r}; see /openapi.json for the list")
        svc, method = found
        if method.client_streaming or method.server_streaming:
            raise InvalidArgument(
                f"{name} streams; call its REST route instead (see /openapi.json)",
                field="procedure",
            )
        msg = parse(method.input_type, await json_body(request) or {})
        timeout = calls.deadline(gw.settings.deadlines, "unary", request.headers)
        call = gw.channels.method(service_key(svc), f"/{svc.full_name}/{method.name}", method)
        resp = await call(msg, timeout=timeout, metadata=calls.metadata(gw.token(request)))
        return JSONResponse(to_json(resp))

    return guarded(handle)


async def _first(stream: Any) -> Any:
    """The stream's first message (None when it is empty); errors surface here, before
    any HTTP status has been sent."""
    item = await stream.read()
    return None if item is _EOF else item


async def _rest(stream: Any) -> AsyncIterator[Any]:
    while True:
        item = await stream.read()
        if item is _EOF:
            return
        yield item


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback and the exact UTF-8 name (RFC 6266)."""
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in filename)
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


# Job downloads know their file before it streams: size and sha256 come from the job, so
# Range requests get an exact Content-Range and the response an ETag. (HTTP needs this;
# the file RPC itself has no "stat".)
_FILE_INFO = {
    "ferry.v1.ExportService.DownloadExport": ("GetExportJob", "job_id", "job"),
}


def _parse_range(value: str) -> tuple[int, int | None]:
    unit, _, spec = value.partition("=")
    start, _, end = spec.strip().partition("-")
    if unit.strip() != "bytes" or "," in spec or not start.strip().isdigit():
        raise InvalidArgument(
            f"unsupported Range {value!r}; use bytes=N- or bytes=N-M", field="Range"
        )
    last = int(end) if end.strip().isdigit() else None
    return int(start), last


def file_handler(gw: Gateway, route: Route) -> Handler:
    """A stream of FileChunk -> a file download (Content-Type and Content-Disposition from
    the first chunk; Range and ETag where the file's size and sha256 are known)."""

    async def handle(request: Request) -> Response:
        msg = await _request_message(route, request)
        token = gw.token(request)
        md = calls.metadata(token)
        timeout = calls.deadline(gw.settings.deadlines, "download", request.headers)
        headers: dict[str, str] = {}
        status = 200
        stop_after: int | None = None
        # A link opens the one call it names, so a download by link goes without the
        # job's size and checksum up front (no Range, no ETag; the last chunk still
        # carries the sha256).
        info = None if isinstance(token, LinkToken) else _FILE_INFO.get(route.method.full_name)
        if info is not None:
            get_name, key, field = info
            get = route.service.methods_by_name[get_name]
            get_req = parse(get.input_type, {key: getattr(msg, key)})
            call = gw.channels.method(
                route.service_key, f"/{route.service.full_name}/{get_name}", get
            )
            described = getattr(await call(get_req, timeout=timeout, metadata=md), field)
            size = int(described.file_size_bytes)
            if described.sha256:
                headers["ETag"] = f'"{described.sha256}"'
                headers["X-Content-SHA256"] = described.sha256
            headers["Accept-Ranges"] = "bytes"
            if rng := request.headers.get("range"):
                start, last = _parse_range(rng)
                if start >= size or (last is not None and last < start):
                    return Response(status_code=416, headers={"Content-Range": f"bytes */{size}"})
                last = size - 1 if last is None else min(last, size - 1)
                msg.offset = start  # type: ignore[attr-defined]
                stop_after = last - start + 1
                status = 206
                headers["Content-Range"] = f"bytes {start}-{last}/{size}"
                headers["Content-Length"] = str(stop_after)
            elif size:
                headers["Content-Length"] = str(size)
        stream = gw.channels.method(route.service_key, route.rpc, route.method)(
            msg, timeout=timeout, metadata=md
        )
        first = await _first(stream)
        chunk = first.chunk if first is not None else None
        media = (chunk.content_type if chunk is not None else "") or "application/octet-stream"
        if chunk is not None and chunk.filename:
            headers["Content-Disposition"] = content_disposition(chunk.filename)
        if chunk is not None and chunk.sha256:  # a one-chunk file knows its checksum now
            headers.setdefault("X-Content-SHA256", chunk.sha256)

        async def body() -> AsyncIterator[bytes]:
            left = stop_after
            try:
                pieces: list[Any] = [first] if first is not None else []
                async for item in _chain(pieces, _rest(stream)):
                    data = item.chunk.data
                    if left is not None:
                        data = data[:left]
                        left -= len(data)
                    if data:
                        yield data
                    if left == 0:
                        stream.cancel()
                        return
            except grpc.RpcError as e:
                # Headers are gone: all HTTP can do now is cut the response short.
                log.warning(
                    "download %s failed mid-stream: %s",
                    route.rpc,
                    e,
                    extra={"event": "gateway_stream_failed"},
                )
                raise

        return StreamingResponse(body(), status_code=status, media_type=media, headers=headers)

    return guarded(handle)


async def _chain(first: list[Any], rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    for item in first:
        yield item
    async for item in rest:
        yield item


def records_handler(gw: Gateway, route: Route) -> Handler:
    """A stream of typed messages -> NDJSON, one JSON object per line."""

    async def handle(request: Request) -> Response:
        msg = await _request_message(route, request)
        timeout = calls.deadline(gw.settings.deadlines, "download", request.headers)
        stream = gw.channels.method(route.service_key, route.rpc, route.method)(
            msg, timeout=timeout, metadata=calls.metadata(gw.token(request))
        )
        first = await _first(stream)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for item in _chain([first] if first is not None else [], _rest(stream)):
                    yield orjson.dumps(to_json(item)) + b"\n"
            except grpc.RpcError as e:
                # The 200 is gone: a last line says the stream failed, so it never looks
                # like a complete one.
                yield orjson.dumps({"error": stream_error(e)}) + b"\n"

        return StreamingResponse(body(), media_type="application/x-ndjson")

    return guarded(handle)


def events_handler(gw: Gateway, route: Route) -> Handler:
    """A progress stream -> Server-Sent Events: one `message` event per update, then an
    `end` event (so EventSource clients close instead of reconnecting), or an `error`
    event carrying the JSON error when the stream fails after it started."""

    async def handle(request: Request) -> Response:
        msg = await _request_message(route, request)
        timeout = calls.deadline(gw.settings.deadlines, "events", request.headers)
        stream = gw.channels.method(route.service_key, route.rpc, route.method)(
            msg, timeout=timeout, metadata=calls.metadata(gw.token(request))
        )
        first = await _first(stream)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for item in _chain([first] if first is not None else [], _rest(stream)):
                    yield b"data: " + orjson.dumps(to_json(item)) + b"\n\n"
            except grpc.RpcError as e:
                err = stream_error(e)
                yield b"event: error\ndata: " + orjson.dumps(err) + b"\n\n"
                return
            yield b"event: end\ndata: {}\n\n"

        return StreamingResponse(
            body(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    return guarded(handle)
