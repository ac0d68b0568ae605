"""Uploads: a multipart form or a raw body streamed into a client-streaming RPC.

The first message carries the options (from the query string, e.g. `merge_strategy` and
`dry_run`), then the file follows as FileChunk messages of at most 1 MiB. The body is read
as it arrives and never held whole; past `gateway.max_upload_bytes` the call is cancelled
and the client gets 413."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
from python_multipart import MultipartParser
from python_multipart.multipart import parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ferry.errors import FerryError, InvalidArgument
from gateway import calls
from gateway.context import Gateway, Handler, TooLarge, guarded
from gateway.routes import Route
from gateway.transcode import message_class, message_of, parse, query_to_dict, to_json

CHUNK = 1024 * 1024


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for piece in request.stream():
        seen += len(piece)
        if seen > limit:
            raise TooLarge(f"the file is larger than the limit of {limit // (1024 * 1024)} MiB")
        yield piece


async def _multipart_file(
    body: AsyncIterator[bytes], boundary: bytes, names: list[str]
) -> AsyncIterator[bytes]:
    """The data of the first file part; its filename is appended to `names`."""
    state: dict[str, Any] = {
        "field": b"",
        "value": b"",
        "headers": {},
        "in_file": False,
        "done": False,
        "out": [],
    }

    def on_header_field(data: bytes, start: int, end: int) -> None:
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        state["value"] += data[start:end]

    def on_header_end() -> None:
        state["headers"][state["field"].decode("latin-1").lower()] = state["value"]
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        _, params = parse_options_header(state["headers"].get("content-disposition", b""))
        filename = params.get(b"filename")
        if filename is not None and not state["done"] and not names:
            names.append(filename.decode("utf-8", "replace"))
            state["in_file"] = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["in_file"]:
            state["out"].append(data[start:end])

    def on_part_end() -> None:
        if state["in_file"]:
            state["in_file"], state["done"] = False, True
        state["headers"] = {}

    parser = MultipartParser(boundary, {
        "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end,
    })  # fmt: skip
    async for piece in body:
        parser.write(piece)
        out, state["out"] = state["out"], []
        for data in out:
            yield data
    parser.finalize()
    if not names:
        raise InvalidArgument("the form has no file; send it in a file field", field="file")


async def _rechunk(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    buf = bytearray()
    async for piece in body:
        buf += piece
        while len(buf) >= CHUNK:
            yield bytes(buf[:CHUNK])
            del buf[:CHUNK]
    if buf:
        yield bytes(buf)


def upload_handler(gw: Gateway, route: Route) -> Handler:
    """Options from the query string, then the uploaded file, into the client stream."""
    req_desc = route.method.input_type
    options_desc = message_of(req_desc.fields_by_name["options"])
    chunk_cls = message_class(message_of(req_desc.fields_by_name["file_chunk"]))
    request_cls = message_class(req_desc)

    async def handle(request: Request) -> Response:
        options_data = query_to_dict(options_desc, request.query_params.multi_items())
        ctype, params = parse_options_header(request.headers.get("content-type", ""))
        body = _limited(request, gw.settings.max_upload_bytes)
        names: list[str] = []
        if ctype == b"multipart/form-data":
            if b"boundary" not in params:
                raise InvalidArgument("multipart upload without a boundary", field="Content-Type")
            data = _multipart_file(body, params[b"boundary"], names)
        else:
            data = body
            _, disp = parse_options_header(request.headers.get("content-disposition", ""))
            if b"filename" in disp:
                names.append(disp[b"filename"].decode("utf-8", "replace"))
        timeout = calls.deadline(gw.settings.deadlines, "upload", request.headers)
        call = gw.channels.method(route.service_key, route.rpc, route.method)(
            timeout=timeout, metadata=calls.metadata(gw.token(request))
        )
        try:
            offset, first = 0, True
            digest = hashlib.sha256()
            held: Any = None  # one chunk behind, so the last can carry the file's sha256
            async for piece in _rechunk(data):
                if first:
                    if names and "filename" not in options_data:
                        options_data["filename"] = names[0]
                    options = parse(options_desc, options_data)
                    await call.write(request_cls(options=options))
                chunk: Any = chunk_cls(data=piece, offset=offset)
                if first:
                    if ctype != b"multipart/form-data":
                        chunk.content_type = request.headers.get("content-type", "")
                    chunk.filename = options.filename  # type: ignore[attr-defined]
                first = False
                digest.update(piece)
                if held is not None:
                    await call.write(request_cls(file_chunk=held))
                held = chunk
                offset += len(piece)
            if held is None:
                raise InvalidArgument("the uploaded file is empty", field="file")
            # The sha256 on the last chunk marks the upload whole: the service tells it
            # from one a cancel cut off, and checks that no byte changed on the way.
            held.sha256 = digest.hexdigest()
            await call.write(request_cls(file_chunk=held))
            await call.done_writing()
        except FerryError:
            call.cancel()
            raise
        except grpc.aio.UsageError:
            pass  # the service ended the call early; its status is what awaiting it gives
        except Exception:
            if call.done():
                pass  # likewise: a write after the service finished
            else:
                call.cancel()
                raise
        resp = await call
        return JSONResponse(to_json(resp))

    return guarded(handle)
