"""The `json` bundle: one document, written and read incrementally.

    {"metadata": {...},
     "courses": [{...}, ...], "students": [...], ... one array per entity in bundle order,
     "trailer": {"counts": {...}, "total_records": N, "sha256": "<records checksum>"}}

Keys are snake_case bundle field names; dates are "YYYY-MM-DD"; instants RFC 3339 UTC
("2026-09-01T08:30:00Z"). `trailer.sha256` is the records checksum of
ferry.bundle.formats.common. Reading streams: a compact bundle goes through the fast
scanner (ferry.bundle.formats.jsonscan), anything it does not plainly accept through the
precise ijson (yajl2_c) event parser; memory stays flat either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

import ijson  # type: ignore[import-untyped]
import orjson

from ferry.bundle.formats.base import (
    Batch,
    BundleLimits,
    Event,
    FieldRules,
    JsonLines,
    RawBatch,
)
from ferry.bundle.formats.common import DIGEST_OPTS, JSON_OPTS, Encoder, metadata_dict
from ferry.bundle.formats.decode import Decoder
from ferry.bundle.formats.jsonscan import Scanner, Source
from ferry.errors import InvalidArgument
from ferry.tabular.limits import CappedReader

SCALARS = ("string", "number", "null", "boolean")


class JsonBundle:
    name = "json"
    extension = "json"
    content_type = "application/json"
    # Takes JsonLines events (records the database encoded: ferry.bundle.pgjson).
    writes_lines = True

    def __init__(self, app: object = None) -> None:
        """Built as `factory(app)`; it takes no settings from the app."""

    def write(self, events: Iterable[Event], out: IO[bytes]) -> None:
        """Write the bundle as one JSON document, one batch at a time."""
        enc = Encoder()
        it = iter(events)
        header = enc.start(next(it, None))  # type: ignore[arg-type]
        out.write(b'{"metadata":' + orjson.dumps(metadata_dict(header), option=JSON_OPTS))
        order = enc.order()
        opened: list[str] = []
        first = True

        def open_until(entity: str) -> None:
            nonlocal first
            if opened:
                out.write(b"]")
            for name in order[len(opened) : order.index(entity) + 1]:
                if name != entity:
                    out.write(b',"' + name.encode() + b'":[]')
                opened.append(name)
            out.write(b',"' + entity.encode() + b'":[')
            first = True

        for event in it:
            if isinstance(event, Batch):
                # Sorted keys: the bytes written are the bytes the checksum covers.
                body = orjson.dumps(event.records, option=DIGEST_OPTS)[1:-1]
                enc.batch(event, body)
                if not opened or opened[-1] != event.entity:
                    open_until(event.entity)
                if not event.records:
                    continue
                out.write(body if first else b"," + body)
                first = False
            elif isinstance(event, JsonLines):
                # The same bytes: the records and a comma after each, the last left off.
                joined = enc.lines(event)
                if not opened or opened[-1] != event.entity:
                    open_until(event.entity)
                if not event.count:
                    continue
                if not first:
                    out.write(b",")
                out.write(memoryview(joined)[:-1])
                first = False
            else:
                break
        if opened:
            out.write(b"]")
        for name in order[len(opened) :]:
            out.write(b',"' + name.encode() + b'":[]')
        out.write(b',"trailer":' + orjson.dumps(enc.trailer()) + b"}")

    def read(self, src: IO[bytes], limits: BundleLimits) -> Iterator[Event]:
        """Parse a json bundle, checking every record; see Decoder for the errors."""
        dec = Decoder(limits)
        for event in self._read(src, limits, dec, {}):
            yield dec.expand(event) if isinstance(event, RawBatch) else event

    def read_raw(self, src: IO[bytes], limits: BundleLimits, rules: FieldRules) -> Iterator[Event]:
        """Like read, but runs of records that pass `rules` come as RawBatches, their
        JSON left unparsed (see ferry.bundle.formats.jsonscan)."""
        return self._read(src, limits, Decoder(limits), rules)

    def _read(
        self, src: IO[bytes], limits: BundleLimits, dec: Decoder, rules: FieldRules
    ) -> Iterator[Event]:
        capped = CappedReader(src, limits.max_bytes)
        scanner = Scanner(capped, dec, limits, rules)
        yield from scanner.events()
        if scanner.handover is not None:
            rest = scanner.handover
            where = rest.last_key or "the document"
            yield from _parse(rest.stream, limits, dec, rest.seen_metadata, where)


def _parse(
    src: Source,
    limits: BundleLimits,
    dec: Decoder,
    seen_metadata: bool,
    where: str = "the document",
) -> Iterator[Event]:
    """The precise event parser: every check, every error named. It reads a document
    from its start, or the rest of one the fast scanner began (`seen_metadata`; the
    section it stopped in continues at the Decoder's position; `where` is the last key
    it read)."""
    try:
        events = ijson.basic_parse(src, use_float=True)
        _expect(next(events, None), "start_map", "the document must be an object")
        trailer: Any = None
        for ev, value in events:
            if ev == "end_map":
                break
            key = value
            where = str(key)
            if key == "metadata":
                yield dec.start(_value(events, limits, 1, "metadata"))
                seen_metadata = True
            elif key == "trailer":
                trailer = _value(events, limits, 1, "trailer")
            elif not seen_metadata:
                raise InvalidArgument("the document must start with metadata", field=key)
            else:
                _expect(next(events, None), "start_array", f"{key} must be an array", key)
                for position, (ev2, _) in enumerate(events, dec.position(key)):
                    if ev2 == "end_array":
                        break
                    where = f"{key}[{position}]"
                    if ev2 != "start_map":
                        raise InvalidArgument(
                            f"{key} record {position} must be an object", field=where
                        )
                    yield from dec.record(key, _object(events, limits, 2, where))
        if next(events, None) is not None:
            raise InvalidArgument("data after the end of the document", field="document")
    except ijson.IncompleteJSONError as e:
        raise InvalidArgument(f"truncated or malformed JSON in {where}: {e}", field=where) from None
    except ijson.JSONError as e:
        raise InvalidArgument(f"malformed JSON in {where}: {e}", field=where) from None
    yield from dec.finish(trailer, "trailer")


def _expect(item: Any, event: str, message: str, field: str = "document") -> None:
    if item is None or item[0] != event:
        raise InvalidArgument(message, field=field)


def _value(events: Iterator[Any], limits: BundleLimits, depth: int, where: str) -> Any:
    ev, value = next(events)
    if ev == "start_map":
        return _object(events, limits, depth + 1, where)
    if ev == "start_array":
        return _array(events, limits, depth + 1, where)
    return value


def _deep(limits: BundleLimits, depth: int, where: str) -> None:
    if depth > limits.max_depth:
        raise InvalidArgument(
            f"JSON nested deeper than {limits.max_depth} levels in {where}", field=where
        )


def _object(events: Iterator[Any], limits: BundleLimits, depth: int, where: str) -> dict[str, Any]:
    """The object whose start_map was just read (records are flat: the fast path)."""
    _deep(limits, depth, where)
    out: dict[str, Any] = {}
    for ev, key in events:
        if ev == "end_map":
            return out
        ev, value = next(events)
        if ev in SCALARS:
            out[key] = value
        elif ev == "start_map":
            out[key] = _object(events, limits, depth + 1, f"{where}.{key}")
        else:
            out[key] = _array(events, limits, depth + 1, f"{where}.{key}")
    raise ijson.IncompleteJSONError("the document ends inside an object")


def _array(events: Iterator[Any], limits: BundleLimits, depth: int, where: str) -> list[Any]:
    _deep(limits, depth, where)
    out: list[Any] = []
    for ev, value in events:
        if ev == "end_array":
            return out
        if ev == "start_map":
            out.append(_object(events, limits, depth + 1, where))
        elif ev == "start_array":
            out.append(_array(events, limits, depth + 1, where))
        else:
            out.append(value)
    raise ijson.IncompleteJSONError("the document ends inside an array")
