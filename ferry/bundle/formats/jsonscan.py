"""The json reader's fast path: a compact bundle scanned into runs of records, checked in C.

A bundle as Ferry writes it is compact JSON with sorted keys: `{"metadata":{...},
"courses":[{...},{...}],...,"trailer":{...}}`. Building a Python dict per record through
an event parser costs far more than the database spends storing it, so this path never
builds records at all. It cuts each entity's array into runs of about RUN_BYTES at a
`},{` or `}]` and has msgspec check a run in one C call against a struct per entity
(known fields only, strict types, text lengths, integer ranges, RFC 3339 instants with a
zone). A cut inside a string or a nested value makes the run malformed, so the cut moves
on to the next candidate. A run that passes, and that msgspec encodes back to exactly the
same bytes (so the bytes are what the records checksum covers), becomes a RawBatch.

A well-formed run that fails the struct or is not canonical (a value outside its
FieldRule, an int written as a float, another key order, a NUL) is parsed by orjson and
checked record by record by the Decoder, as the precise parser would, and the scan goes
on. Anything else (whitespace between tokens, nested values, an old format version, a
malformed or hostile document) is not decided here: the scanner hands the rest of the
document, from the last record boundary it reached, to the precise event parser in
ferry.bundle.formats.json, which accepts what it accepts and names what it refuses
exactly as if it had read the whole document itself.

Line formats gather their record lines into runs the same way (ferry.bundle.formats.lineruns);
the run check both use is in ferry.bundle.formats.runs.
"""

from __future__ import annotations

import io
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import orjson

from ferry.bundle.formats import runs
from ferry.bundle.formats.base import BundleLimits, Event, FieldRules
from ferry.bundle.formats.decode import Decoder

BLOCK = 4 * 1024 * 1024
MAX_HEAD_BYTES = 1024 * 1024  # metadata or trailer


class Source(Protocol):
    def read(self, size: int = -1, /) -> bytes | None: ...


@dataclass
class Handover:
    """Where the scanner stopped: the slow parser goes on from `stream`, in which the
    document continues as if from its start (see ferry.bundle.formats.json)."""

    stream: Source
    seen_metadata: bool
    last_key: str  # the last top-level key read, for naming where the document broke


class _Chain(io.RawIOBase):
    """`head` followed by the rest of `src`."""

    def __init__(self, head: bytes, src: Source) -> None:
        self._head = memoryview(head)
        self._src = src

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._src.read(len(buffer)) or b""
        buffer[: len(data)] = data
        return len(data)


class Scanner:
    """Reads a compact json bundle from `src` into RawBatches through `dec`; see the
    module doc. Iterate `events()`; afterwards `handover` says where the slow parser
    must go on (None when the scanner read the whole document)."""

    def __init__(self, src: Source, dec: Decoder, limits: BundleLimits, rules: FieldRules) -> None:
        self._src = src
        self._dec = dec
        self._limits = limits
        self._rules = rules
        self._buf = b""
        self._pos = 0
        self._eof = False
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._encoder = msgspec.json.Encoder()
        self.handover: Handover | None = None
        self._last_key = ""

    # ---- buffer -------------------------------------------------------------------

    def _fill(self, upto: int) -> None:
        """Make buf hold at least `upto` bytes past pos (or all that is left)."""
        while len(self._buf) - self._pos < upto and not self._eof:
            data = self._src.read(max(BLOCK, upto - len(self._buf) + self._pos)) or b""
            if not data:
                self._eof = True
            self._buf += data

    def _compact(self) -> None:
        """Drop what was consumed (only between runs: offsets into buf move)."""
        if self._pos > BLOCK:
            self._buf = self._buf[self._pos :]
            self._pos = 0

    def _literal(self, text: bytes) -> bool:
        self._fill(len(text))
        if self._buf.startswith(text, self._pos):
            self._pos += len(text)
            return True
        return False

    def _stop(self, head: bytes, seen_metadata: bool) -> None:
        """Hand over: the slow parser reads `head`, what is buffered past pos, then src."""
        rest = head + self._buf[self._pos :]
        self._buf = b""
        self.handover = Handover(_Chain(rest, self._src), seen_metadata, self._last_key)

    def _stop_between(self) -> None:
        """Hand over between two top-level keys (pos at the `,` before the next one, or
        at whatever stands there instead)."""
        self._fill(64)
        rest = self._buf[self._pos :].lstrip()
        self._buf, self._pos = (rest[1:] if rest.startswith(b",") else rest), 0
        self._stop(b"{", True)

    # ---- document -----------------------------------------------------------------

    def events(self) -> Iterator[Event]:
        if not self._literal(b'{"metadata":'):
            self._stop(b"", False)
            return
        meta = self._object(b',"')
        if meta is None:
            self._stop(b'{"metadata":', False)
            return
        yield self._dec.start(meta)
        if self._dec.steps:  # an older format version: its records need upgrading
            self._stop_between()
            return
        while True:
            self._compact()
            start = self._pos
            key = self._key()
            if key == "trailer":
                trailer = self._object(b"")
                if trailer is not None:
                    yield from self._dec.finish(trailer, "trailer")
                    return
            elif key in self._dec.fields and self._literal(b"["):
                if self._literal(b"]"):
                    continue
                if (yield from self._records(key)):
                    continue
                return
            self._pos = start
            self._stop_between()
            return

    def _key(self) -> str:
        """The next top-level key (`,"key":` at pos), or "" when something else is there."""
        self._fill(72)
        buf, pos = self._buf, self._pos
        if not buf.startswith(b',"', pos):
            return ""
        end = buf.find(b'":', pos + 2, pos + 72)
        if end < 0:
            return ""
        self._pos = end + 2
        self._last_key = buf[pos + 2 : end].decode("ascii", "replace")
        return self._last_key

    def _object(self, follow: bytes) -> Any:
        """A small object (metadata, trailer) at pos, followed by `follow` (or by the end
        of the document when empty); None when it is not plainly one."""
        self._fill(MAX_HEAD_BYTES)
        buf, pos = self._buf, self._pos
        if follow:
            cut = buf.find(b"}" + follow, pos, pos + MAX_HEAD_BYTES)
            while cut >= 0:
                try:
                    value = orjson.loads(buf[pos : cut + 1])
                except orjson.JSONDecodeError:
                    cut = buf.find(b"}" + follow, cut + 1, pos + MAX_HEAD_BYTES)
                    continue
                if not _flat(value, 3):
                    return None
                self._pos = cut + 1
                return value
            return None
        if not self._eof:
            return None
        text = buf[pos:].rstrip()
        if not text.endswith(b"}"):
            return None
        try:
            value = orjson.loads(text[:-1])
        except orjson.JSONDecodeError:
            return None
        if not _flat(value, 3):
            return None
        self._pos = len(buf)
        return value

    # ---- records ------------------------------------------------------------------

    def _records(self, entity: str) -> Generator[Event, None, bool]:
        """Read `entity`'s array from its first record; True when it was read to its `]`,
        False after handing over."""
        decoder = self._decoders.get(entity)
        if decoder is None:
            rules = self._rules.get(entity, {})
            decoder = runs.run_decoder(self._dec.fields[entity], rules, self._limits)
            self._decoders[entity] = decoder
        while True:
            self._compact()
            start = self._pos
            run = self._run(start, decoder)
            if run is None:
                self._stop(b'{"' + entity.encode() + b'":[', True)
                return False
            end, passed, parsed = run
            if passed:
                yield from self._dec.raw(entity, self._buf[start:end], len(parsed), parsed)
            else:  # records to check one by one (a value outside the rules, a NUL, ...)
                for record in parsed:
                    yield from self._dec.record(entity, record)
            self._pos = end + 1
            if self._buf[end] == ord("]"):
                return True

    def _run(
        self, start: int, decoder: msgspec.json.Decoder[Any]
    ) -> tuple[int, bool, list[Any]] | None:
        """The records from `start` up to the separator at `end` (the `,` or `]` after a
        record): (end, True, structs) when they passed and are canonical (the structs
        the check decoded, see RawBatch.rows); (end, False, records) parsed when they are
        well-formed flat JSON that did not pass (the Decoder checks them one by one);
        None when they must go to the precise parser.

        Candidates: the first `}]` (the array may end before runs.RUN_BYTES) and the first
        `},{` past runs.RUN_BYTES. A candidate inside a string or a nested value makes the
        run malformed, and the next candidate of its kind is tried."""
        # Optimistic: the array does not end inside this run (its `}]` is only looked
        # for past runs.RUN_BYTES); if the run turns out malformed, look from its start.
        next_comma = next_end = start + runs.RUN_BYTES
        whole = False
        while True:
            self._fill(next_comma + 3 - self._pos)
            buf = self._buf
            a = buf.find(b"},{", next_comma) if next_comma < len(buf) else -1
            # (an array's end is only looked for before the next `},{`: a run is not
            # searched to the end of the buffer each time)
            b = buf.find(b"}]", next_end, a + 2 if a >= 0 else len(buf))
            cut = min(a, b) if a >= 0 and b >= 0 else max(a, b)
            if cut < 0 or cut + 2 - start > runs.MAX_RUN_BYTES:
                if not whole:
                    whole, next_comma, next_end = True, start + runs.RUN_BYTES, start
                    continue
                if self._eof or len(buf) - start > runs.MAX_RUN_BYTES:
                    return None
                next_comma = max(next_comma, len(buf) - 2)
                next_end = max(next_end, len(buf) - 1)
                self._fill(len(buf) - self._pos + BLOCK)
                continue
            text = b"[" + buf[start : cut + 1] + b"]"
            try:
                records = decoder.decode(text)
            except msgspec.ValidationError:
                if not whole:  # it may have stopped before finding the run malformed
                    whole, next_comma, next_end = True, start + runs.RUN_BYTES, start
                    continue
                return _parsed(cut + 1, text)
            except UnicodeDecodeError:
                return None
            except msgspec.DecodeError:
                if not whole:
                    whole, next_comma, next_end = True, start + runs.RUN_BYTES, start
                elif cut == a:
                    next_comma = cut + 1
                else:
                    next_end = cut + 1
                continue
            if b"\\u0000" in text or self._encoder.encode(records) != text:
                return _parsed(cut + 1, text)
            return cut + 1, True, records


def _parsed(end: int, text: bytes) -> tuple[int, bool, list[Any]] | None:
    """(end, records) of a well-formed run whose records are flat objects; None when a
    record holds an object or array (the precise parser names how deep it goes)."""
    try:
        records = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    for record in records:
        if not isinstance(record, dict) or not _flat(record, 1):
            return None
    return end, False, records


def _flat(value: Any, depth: int) -> bool:
    """Nested at most `depth` levels (metadata and trailer are shallow)."""
    if depth < 0:
        return False
    if isinstance(value, dict):
        return all(_flat(v, depth - 1) for v in value.values())
    if isinstance(value, list):
        return all(_flat(v, depth - 1) for v in value)
    return True
