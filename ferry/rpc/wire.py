"""Responses sent in wire form: bytes a servicer already holds, framed by hand as protobuf
would frame them, and a response serializer that sends such bytes as they are.

StreamSession serializes each record batch once, for its trailer's sha256; sending those
bytes instead of the message saves serializing every batch a second time for the wire
(issue 27). The framing is three lines of the protobuf encoding (a tag, a varint length,
the payload); the protobuf runtime offers no public call that wraps bytes already
serialized, and parsing them into a message to serialize again is the cost avoided.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc

_LENGTH_DELIMITED = 2


def varint(n: int) -> bytes:
    """`n` (>= 0) as a protobuf base-128 varint."""
    if n < 0:
        raise ValueError(f"a varint here is not negative: {n}")
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def nested(numbers: Iterable[int], payload: bytes) -> bytes:
    """`payload` (a message's serialization) as the message field `numbers[-1]` of a
    message that is field `numbers[-2]` of ... of the outermost message, in wire form:
    nested((1, 2), batch) is {1: {2: batch}}, what protobuf writes for a message holding
    only that path."""
    heads: list[bytes] = []
    size = len(payload)
    for number in reversed(tuple(numbers)):
        head = varint(number << 3 | _LENGTH_DELIMITED) + varint(size)
        heads.append(head)
        size += len(head)
    heads.reverse()
    return b"".join((*heads, payload))


def passthrough(message: Any) -> bytes:
    """A response serializer: bytes already in wire form go as they are, messages are
    serialized."""
    if isinstance(message, bytes):
        return message
    data: bytes = message.SerializeToString()
    return data


class CaughtHandlers:
    """Stands in for a grpc.Server in a generated add_…_to_server, to catch the method
    handlers it registers and adjust them before they reach the real server."""

    def __init__(self) -> None:
        self.handlers: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        return None

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self.handlers = dict(handlers)

    def register(self, server: grpc.Server, service: str, wire_form: Iterable[str]) -> None:
        """Register the caught handlers on `server`, those of the methods `wire_form`
        with the passthrough serializer (their servicer may yield bytes)."""
        handlers = dict(self.handlers)
        for name in wire_form:
            handlers[name] = handlers[name]._replace(response_serializer=passthrough)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        server.add_registered_method_handlers(service, handlers)  # type: ignore[attr-defined]
