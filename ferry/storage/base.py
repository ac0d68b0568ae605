"""The contract of a storage plugin (`ferry.storage`): `ferry.contracts.Storage`."""

from __future__ import annotations

from ferry.contracts import Storage

__all__ = ["Storage"]
