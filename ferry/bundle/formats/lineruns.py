"""Record lines of a line format (jsonl, the members of tar.gz) gathered into runs.

A run that passes the check of ferry.bundle.formats.runs becomes a RawBatch; one that does
not has each of its lines read by the format's own per-line reader, in order, with its
errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from ferry.bundle.formats import runs
from ferry.bundle.formats.base import BundleLimits, Event, FieldRules
from ferry.bundle.formats.decode import Decoder


class LineRuns:
    """Record lines of a line format, gathered into runs of about RUN_BYTES per entity
    and checked as one (see the module doc).

    The reader `add`s each record line with the record's JSON (`body`, the line itself
    or the part of it that holds the record) and `flush`es before anything that is not
    a record line of the current run is read or refused, so events and errors come in
    line order. A run that fails the check goes, line by line, to `slow(number, line)`:
    the format's own reader, which names what is wrong.
    """

    def __init__(
        self,
        dec: Decoder,
        limits: BundleLimits,
        rules: FieldRules,
        slow: Callable[[int, bytes], Iterator[Event]],
    ) -> None:
        self._dec = dec
        self._limits = limits
        self._rules = rules
        self._slow = slow
        self._entity = ""
        self._lines: list[tuple[int, bytes]] = []
        self._bodies: list[bytes] = []
        self._size = 0
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._encoder = msgspec.json.Encoder()

    def add(self, entity: str, number: int, line: bytes, body: bytes) -> Iterator[Event]:
        if entity != self._entity or self._size >= runs.RUN_BYTES:
            yield from self.flush()
            self._entity = entity
        self._lines.append((number, line))
        self._bodies.append(body)
        self._size += len(body)

    def flush(self) -> Iterator[Event]:
        if not self._lines:
            return
        entity, lines, bodies = self._entity, self._lines, self._bodies
        self._lines, self._bodies, self._size = [], [], 0
        body = b",".join(bodies)
        rows = self._passes(entity, body, len(bodies))
        if rows is not None:
            yield from self._dec.raw(entity, body, len(bodies), rows)
        else:
            for number, line in lines:
                yield from self._slow(number, line)

    def _passes(self, entity: str, body: bytes, count: int) -> list[Any] | None:
        """The run as its check decoded it (see RawBatch.rows) when it is exactly `count`
        canonical records of a known entity, each passing its struct and rules (so it
        needs no checking record by record); else None."""
        cols = self._dec.fields.get(entity)
        if cols is None or self._dec.steps or self._dec.header is None:
            return None  # the slow reader names the entity, upgrades, refuses
        decoder = self._decoders.get(entity)
        if decoder is None:
            decoder = runs.run_decoder(cols, self._rules.get(entity, {}), self._limits)
            self._decoders[entity] = decoder
        text = b"[" + body + b"]"
        try:
            records = decoder.decode(text)
        except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError included
            return None
        # Canonical and the same count: each line held exactly one record.
        if (
            len(records) == count
            and b"\\u0000" not in text
            and self._encoder.encode(records) == text
        ):
            return list(records)
        return None
