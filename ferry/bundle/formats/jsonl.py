"""The `jsonl` bundle: one JSON document per line.

    {"type":"header","metadata":{...}}
    {"type":"record","entity":"courses","record":{...}}      one line per record
    {"type":"trailer","counts":{...},"total_records":N,"sha256":"<records checksum>"}

Records come entity by entity in bundle order. Values are written as in the json bundle.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

import orjson

from ferry.bundle.formats.base import Batch, BundleLimits, Event, FieldRules, JsonLines
from ferry.bundle.formats.common import (
    JSON_OPTS,
    Encoder,
    metadata_dict,
    prefixed,
    record_lines,
)
from ferry.bundle.formats.decode import Decoder
from ferry.bundle.formats.lineruns import LineRuns
from ferry.errors import InvalidArgument, ResourceExhausted

# Room for a record of max_string_chars in each of a few fields, escaped.
LINE_SLACK = 64 * 1024
# How a record line starts as the writer below writes it.
RECORD_PREFIX = b'{"type":"record","entity":"'


class JsonlBundle:
    name = "jsonl"
    extension = "jsonl"
    content_type = "application/x-ndjson"
    # Takes JsonLines events (records the database encoded: ferry.bundle.pgjson).
    writes_lines = True

    def __init__(self, app: object = None) -> None:
        """Built as `factory(app)`; it takes no settings from the app."""

    def write(self, events: Iterable[Event], out: IO[bytes]) -> None:
        """Write a header line, one line per record, and a trailer line."""
        enc = Encoder()
        it = iter(events)
        header = enc.start(next(it, None))  # type: ignore[arg-type]
        line = {"type": "header", "metadata": metadata_dict(header)}
        out.write(orjson.dumps(line, option=JSON_OPTS) + b"\n")
        for event in it:
            if isinstance(event, JsonLines):
                enc.lines(event)
                out.write(prefixed(event.lines, _prefix(event.entity), b"}"))
                continue
            if not isinstance(event, Batch):
                break
            body, lines = record_lines(event.records, _prefix(event.entity), b"}")
            enc.batch(event, body)
            out.write(lines)
        out.write(orjson.dumps({"type": "trailer", **enc.trailer()}) + b"\n")

    def read(self, src: IO[bytes], limits: BundleLimits) -> Iterator[Event]:
        """Parse a jsonl bundle line by line; see Decoder for the errors."""
        return _Reader(limits, None).read(src)

    def read_raw(self, src: IO[bytes], limits: BundleLimits, rules: FieldRules) -> Iterator[Event]:
        """Like read, but runs of record lines that pass `rules` come as RawBatches,
        their JSON left unparsed (see ferry.bundle.formats.lineruns)."""
        return _Reader(limits, rules).read(src)


def _prefix(entity: str) -> bytes:
    return RECORD_PREFIX + entity.encode() + b'","record":'


class _Reader:
    """One read of a jsonl bundle. With rules, record lines written the way Ferry writes
    them (`RECORD_PREFIX`, the entity, `","record":`, the record, `}`) go to LineRuns;
    every other line, and every line of a run that fails its check, is read by `_line`."""

    def __init__(self, limits: BundleLimits, rules: FieldRules | None) -> None:
        self.limits = limits
        self.dec = Decoder(limits)
        self.trailer: Any = None
        self.runs = None if rules is None else LineRuns(self.dec, limits, rules, self._line)
        self._prefixes: dict[bytes, tuple[str, int]] = {}

    def read(self, src: IO[bytes]) -> Iterator[Event]:
        limits = self.limits
        max_line = limits.max_string_chars * 6 + LINE_SLACK
        number = 0
        read = 0
        while raw := src.readline(max_line + 1):
            number += 1
            read += len(raw)
            if self.runs is not None:
                record = self._record_line(raw) if number > 1 else None
                if record is not None and len(raw) <= max_line and read <= limits.max_bytes:
                    yield from self.runs.add(record[0], number, raw, record[1])
                    continue
                yield from self.runs.flush()
            if len(raw) > max_line:
                raise ResourceExhausted(f"line {number} is longer than {max_line} bytes")
            if read > limits.max_bytes:
                raise ResourceExhausted(f"bundle is larger than {limits.max_bytes} bytes")
            yield from self._line(number, raw)
        if self.runs is not None:
            yield from self.runs.flush()
        if self.trailer is None:
            raise InvalidArgument(
                "the bundle ends without a trailer line: it is truncated", field="trailer"
            )
        yield from self.dec.finish(self.trailer, "trailer")

    def _record_line(self, raw: bytes) -> tuple[str, bytes] | None:
        """(entity, the record's JSON) of a record line as Ferry writes it, else None."""
        if not raw.startswith(RECORD_PREFIX) or self.trailer is not None:
            return None
        cut = raw.find(b'","record":', len(RECORD_PREFIX))
        if cut < 0:
            return None
        key = raw[: cut + 11]
        known = self._prefixes.get(key)
        if known is None:
            try:
                entity = raw[len(RECORD_PREFIX) : cut].decode()
            except UnicodeDecodeError:
                return None
            if not entity.isidentifier():
                return None
            known = self._prefixes[key] = (entity, len(key))
        end = len(raw) - 1 if raw.endswith(b"\n") else len(raw)
        if end - known[1] < 3 or raw[end - 2 : end] != b"}}":
            return None
        return known[0], raw[known[1] : end - 1]

    def _line(self, number: int, raw: bytes) -> Iterator[Event]:
        """Read one line that is not blank or too long: every check, every error named."""
        if not raw.strip():
            return
        if self.trailer is not None:
            raise InvalidArgument(f"line {number}: data after the trailer", field="trailer")
        try:
            doc = orjson.loads(raw)
        except orjson.JSONDecodeError as e:
            raise InvalidArgument(
                f"line {number}: malformed or truncated JSON: {e}", field=f"line {number}"
            ) from None
        kind = doc.get("type") if isinstance(doc, dict) else None
        if number == 1 and kind != "header":
            raise InvalidArgument("line 1 must be the header", field="line 1")
        if kind == "record":
            entity = doc.get("entity")
            if not isinstance(entity, str):
                raise InvalidArgument(f"line {number}: record without entity")
            record = doc.get("record")
            _flat(record, self.limits, f"{entity} (line {number})")
            yield from self.dec.record(entity, record)
        elif kind == "header" and number == 1:
            _depth(doc, self.limits, "header", 1)
            yield self.dec.start(doc.get("metadata"))
        elif kind == "trailer":
            _depth(doc, self.limits, "trailer", 1)
            self.trailer = doc
        else:
            raise InvalidArgument(
                f"line {number}: unknown line type {kind!r}", field=f"line {number}"
            )


def _flat(record: Any, limits: BundleLimits, where: str) -> None:
    """Records are flat; a nested value is named, or reported as too deep."""
    if isinstance(record, dict):
        for key, value in record.items():
            if isinstance(value, dict | list):
                _depth(value, limits, f"{where}.{key}", 3)
                raise InvalidArgument(
                    f"{where}, field {key!r}: must be a single value", field=f"{where}.{key}"
                )


def _depth(value: Any, limits: BundleLimits, where: str, depth: int) -> None:
    if depth > limits.max_depth:
        raise InvalidArgument(
            f"JSON nested deeper than {limits.max_depth} levels in {where}", field=where
        )
    if isinstance(value, dict):
        for v in value.values():
            _depth(v, limits, where, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _depth(v, limits, where, depth + 1)
