"""Typed bundle streams (BundleChunk messages) spooled to disk and verified.

The whole stream is received and checked before the merge engine sees a record: one
header first, record batches, one trailer last whose counts and sha256 (the same digest
as ferry.bundle.stream.batch_digest) match what arrived. So a damaged or truncated stream
is refused before any work, and the trailer's digest can serve as the source checksum
that idempotency keys are compared against.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from typing import IO

from ferry.errors import DataLoss, InvalidArgument
from ferry.imports.spool import Spool
from ferry.v1 import bundle_pb2 as pb

_FRAME = struct.Struct(">cI")  # kind (H, R or T), length
_HEADER, _RECORDS, _TRAILER = b"H", b"R", b"T"


class TypedUpload:
    """BundleChunks in arrival order -> a Spool of length-prefixed frames."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self.counts: dict[str, int] = {}
        self.records = 0
        self._sha = hashlib.sha256()
        self._header = False
        self._trailer: pb.BundleTrailer | None = None

    def add(self, chunk: pb.BundleChunk) -> None:
        """Store one chunk; raises InvalidArgument when it is out of order."""
        kind = chunk.WhichOneof("chunk")
        if self._trailer is not None:
            raise InvalidArgument(
                "bundle_chunk after the trailer: the trailer must be the last message",
                field="bundle_chunk",
            )
        if kind == "header":
            if self._header:
                raise InvalidArgument("a second bundle header", field="bundle_chunk.header")
            self._header = True
            self._frame(_HEADER, chunk.header.SerializeToString())
        elif not self._header:
            raise InvalidArgument(
                "the first bundle_chunk must be the header", field="bundle_chunk.header"
            )
        elif kind == "records":
            data = chunk.records.SerializeToString(deterministic=True)
            self._sha.update(data)
            for fd, values in chunk.records.ListFields():
                self.counts[fd.name] = self.counts.get(fd.name, 0) + len(values)
                self.records += len(values)
            self._frame(_RECORDS, data)
        elif kind == "trailer":
            self._trailer = chunk.trailer
            self._frame(_TRAILER, chunk.trailer.SerializeToString())
        else:
            raise InvalidArgument("an empty bundle_chunk", field="bundle_chunk")

    def _frame(self, kind: bytes, data: bytes) -> None:
        self.spool.write(_FRAME.pack(kind, len(data)))
        self.spool.write(data)

    def finish(self) -> str:
        """The verified trailer sha256 (the source checksum).

        InvalidArgument when the stream has no header or trailer (truncated); DataLoss
        when the trailer's counts or sha256 disagree with the records received.
        """
        if not self._header:
            raise InvalidArgument("no bundle header was sent", field="bundle_chunk.header")
        trailer = self._trailer
        if trailer is None:
            raise InvalidArgument(
                "the bundle stream ended without a trailer (truncated)",
                field="bundle_chunk.trailer",
            )
        actual = self._sha.hexdigest()
        if trailer.sha256.lower() != actual:
            raise DataLoss(
                f"the bundle's records hash to sha256 {actual} but its trailer says "
                f"{trailer.sha256 or '(empty)'}: records were lost or changed on the way",
                field="bundle_chunk.trailer.sha256",
            )
        claimed = {k: v for k, v in trailer.counts.items() if v}
        if claimed != self.counts:
            raise DataLoss(
                f"the trailer counts {dict(sorted(claimed.items()))} but "
                f"{dict(sorted(self.counts.items()))} records arrived",
                field="bundle_chunk.trailer.counts",
            )
        return actual


def replay(src: IO[bytes]) -> Iterator[pb.BundleChunk]:
    """The chunks a TypedUpload stored, read back one at a time."""
    src.seek(0)
    while head := src.read(_FRAME.size):
        kind, length = _FRAME.unpack(head)
        data = src.read(length)
        chunk = pb.BundleChunk()
        if kind == _HEADER:
            chunk.header.ParseFromString(data)
        elif kind == _RECORDS:
            chunk.records.ParseFromString(data)
        else:
            chunk.trailer.ParseFromString(data)
        yield chunk
