"""The contract of every plugin group, in one file (datasette's `hookspecs.py`).

Every `ferry.*` plugin but a dataset is built the same way: `App.plugin(group, name)` calls
the entry point as `factory(app)` once per app, after the plugins it lists in `depends_on`,
with its settings (its `settings_model`) read from `plugins.<group>.<name>` in ferry.yaml,
and closes it (`close()`, when it has one) in reverse order when the app closes. A dataset
is data: its entry point is the `Dataset` itself.

The registry (`ferry.plugins`) checks each built plugin against `CONTRACTS[group]`, the
server uses `Service` and `FilterPlugin`, and docs/plugins.md documents every method named
here (tests/unit/test_plugins_doc.py holds the two together).

Only names are imported here at run time: the types the methods take live with the code
that uses them, so this module sits at the bottom of the import graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import IO, TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import grpc

    from ferry.bundle.formats.base import BundleLimits, Event
    from ferry.datasets.spec import Entity
    from ferry.notify.channels.base import Delivery, Health, Outcome
    from ferry.rpc.filters import RpcCall
    from ferry.rpc.filters.client import OutgoingCall
    from ferry.tabular.base import Progress, ReadLimits, Table


@runtime_checkable
class Service(Protocol):
    """`ferry.services`: the gRPC face of one service."""

    full_name: str  # the full proto name, "ferry.v1.ExportService"

    def register(self, server: grpc.Server) -> None:
        """Add the servicer to `server`."""
        ...

    def start(self) -> None:
        """Start background work (within server.setup_timeout_seconds)."""
        ...

    def stop(self) -> None:
        """Stop background work, after the server drained its calls."""
        ...


@runtime_checkable
class ServerFilter(Protocol):
    """The server half of a filter: runs around every incoming call of its chain."""

    def start(self, call: RpcCall) -> None:
        """The call starts; raising a FerryError refuses it with that status."""
        ...

    def message(self, call: RpcCall) -> None:
        """Each message a server stream sends."""
        ...

    def received(self, call: RpcCall) -> None:
        """Each message a client stream receives; raising ends the call there."""
        ...

    def finish(self, call: RpcCall, code: grpc.StatusCode, details: str) -> None:
        """The call ended with `code`."""
        ...


@runtime_checkable
class ClientFilter(Protocol):
    """The client half of a filter: runs around every outgoing call (`client.filters`)."""

    def start(self, call: OutgoingCall) -> None:
        """The call is about to go out; may change its timeout and metadata."""
        ...

    def finish(self, call: OutgoingCall, code: grpc.StatusCode) -> None:
        """The call ended with `code`."""
        ...


@runtime_checkable
class FilterPlugin(Protocol):
    """`ferry.filters`: both halves of a filter, from one module."""

    def server(self) -> ServerFilter:
        """The server half (built once per plugin instance, on first use)."""
        ...

    def client(self) -> ClientFilter | None:
        """The client half, or None when the filter has none."""
        ...


@runtime_checkable
class TabularFormat(Protocol):
    """`ferry.formats`: an export file format that streams rows."""

    name: str  # "csv"
    extension: str  # "csv"
    content_type: str  # "text/csv; charset=utf-8"

    def write(
        self,
        out: IO[bytes],
        table: Table,
        rows: Iterable[Sequence[Any]],
        progress: Progress | None = None,
    ) -> int:
        """Write the table to `out`; returns the rows written. `progress(rows_written)`
        is called every few thousand rows and may raise to stop."""
        ...


@runtime_checkable
class TabularReader(Protocol):
    """A `ferry.formats` plugin that can also be imported from (csv, xlsx, json)."""

    def read(self, src: IO[bytes], limits: ReadLimits) -> Iterator[dict[str, str | None]]:
        """Rows as {header: raw text}; InvalidArgument naming row and column for
        malformed input, ResourceExhausted when a limit is passed."""
        ...


@runtime_checkable
class BundleFormat(Protocol):
    """`ferry.bundle_formats`: a whole semester (or database) as one file."""

    name: str  # "json"
    extension: str  # "json", "tar.gz"
    content_type: str  # "application/json"

    def write(self, events: Iterable[Event], out: IO[bytes]) -> None:
        """Write a bundle; `out` only needs write() (it may be a network stream)."""
        ...

    def read(self, src: IO[bytes], limits: BundleLimits) -> Iterator[Event]:
        """Parse a bundle; InvalidArgument naming entity, record and field where it can,
        DataLoss on a checksum mismatch, ResourceExhausted on a limit."""
        ...


@runtime_checkable
class Cache(Protocol):
    """`ferry.caches`: bytes by key with a time to live (the reports cache's backend)."""

    def get(self, key: str) -> bytes | None:
        """The value under `key`, or None (absent or expired)."""
        ...

    def set(self, key: str, value: bytes, ttl_seconds: float) -> None:
        """Store `value` under `key` for `ttl_seconds`."""
        ...

    def entries(self) -> int:
        """How many entries it holds (a gauge)."""
        ...

    def ping(self) -> None:
        """Raise when the backend cannot be reached."""
        ...

    def lock(self, key: str, timeout: float, blocking_timeout: float) -> Any:
        """A lock over `key` (one builder of a value across processes), or None."""
        ...


@runtime_checkable
class Storage(Protocol):
    """`ferry.storage`: files by key. A key holds a whole file or nothing."""

    def writer(self, key: str) -> AbstractContextManager[IO[bytes]]:
        """A file to write `key` into; visible under `key` only when the block ends
        without an exception, otherwise removed (no partial file ever)."""
        ...

    def open(self, key: str) -> IO[bytes]:
        """The file at `key` for reading, seekable. FileNotFoundError if absent."""
        ...

    def size(self, key: str) -> int | None:
        """Size of the file at `key` in bytes, or None when there is none."""
        ...

    def delete(self, key: str) -> int:
        """Remove the file at `key`; returns the bytes freed (0 when it was absent)."""
        ...

    def archive(self, key: str) -> int:
        """Move the file at `key` to the archive; returns its size (0 when absent)."""
        ...

    def sweep_temp(self, older_than_seconds: float) -> int:
        """Remove temp files a killed process left behind; returns how many."""
        ...


@runtime_checkable
class Channel(Protocol):
    """`ferry.channels`: delivers notifications (settings in plugins.channels.<name>).

    `send` never raises for a delivery's own trouble: a refused recipient is `failed`, a
    server that is down is `retry`; whatever it raises anyway retries the whole batch.
    """

    name: str

    def validate_recipient(self, recipient: str) -> str:
        """The recipient as stored, or ValueError saying what is wrong with it."""
        ...

    def send(self, deliveries: list[Delivery]) -> list[Outcome]:
        """One Outcome per delivery, in order."""
        ...

    def health(self) -> Health:
        """Whether the channel can deliver now."""
        ...


@runtime_checkable
class Dataset(Protocol):
    """`ferry.datasets`: the entities Ferry moves (a `ferry.datasets.spec.Dataset`)."""

    name: str
    entities: Sequence[Entity]


CONTRACTS: dict[str, type] = {
    "ferry.services": Service,
    "ferry.filters": FilterPlugin,
    "ferry.formats": TabularFormat,
    "ferry.bundle_formats": BundleFormat,
    "ferry.caches": Cache,
    "ferry.storage": Storage,
    "ferry.channels": Channel,
    "ferry.datasets": Dataset,
}

GROUPS: tuple[str, ...] = tuple(CONTRACTS)
