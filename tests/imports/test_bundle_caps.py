"""A bundle's size caps follow what the operator allows, and Ferry reads back what it wrote.

Found by the 10M scale bench: the readers' payload cap was a fixed 2 GiB, so an import of a
larger file failed with RESOURCE_EXHAUSTED even with `imports.max_upload_bytes` at 4 GiB,
and a backup of more than ~9M records could not be restored by Ferry.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest

from ferry.app import App
from ferry.bundle.formats.base import BundleLimits
from ferry.bundle.formats.json import JsonBundle
from ferry.errors import ResourceExhausted
from ferry.imports.upload import upload_limits
from tests.bundle.helpers import COURSE, encode, events_of

GIB = 1024**3


def test_an_upload_may_carry_as_much_as_the_operator_allows(
    make_app: Callable[..., App], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'caps.db'}"
    raised = make_app(url, FERRY_IMPORTS_MAX_UPLOAD_BYTES=str(5 * GIB))
    assert upload_limits(raised).max_bytes == 5 * GIB
    # A smaller upload cap never lowers the payload cap below the default (a gzip
    # upload expands past its compressed size, within max_ratio).
    small = make_app(url, FERRY_IMPORTS_MAX_UPLOAD_BYTES=str(1024 * 1024))
    assert upload_limits(small).max_bytes == BundleLimits().max_bytes == 2 * GIB
    # The other hostile-file caps are the defaults, whatever the upload cap.
    assert upload_limits(raised).max_depth == BundleLimits().max_depth
    assert upload_limits(raised).max_ratio == BundleLimits().max_ratio


def test_ferrys_own_backups_are_read_back_at_any_size() -> None:
    own = BundleLimits.own_backup()
    assert own.max_bytes > 1024 * GIB
    assert own.max_records > 10**15
    # What guards against a damaged file stays.
    assert own.max_depth == BundleLimits().max_depth
    assert own.max_string_chars == BundleLimits().max_string_chars


def _bundle() -> bytes:
    return encode("json", events_of({"courses": [dict(COURSE, title="\u039d" * 40)] * 50}))


def test_the_reader_holds_the_cap_it_is_given() -> None:
    """The cap is the reader's: one byte under the file's size is refused with
    RESOURCE_EXHAUSTED, the file's own size is read whole."""
    data = _bundle()
    with pytest.raises(ResourceExhausted):
        list(JsonBundle().read(io.BytesIO(data), BundleLimits(max_bytes=len(data) - 1)))
    events = list(JsonBundle().read(io.BytesIO(data), BundleLimits(max_bytes=len(data))))
    assert sum(len(getattr(e, "records", [])) for e in events) == 50
