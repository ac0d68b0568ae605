"""What every writer shares: a progress callback that raises stops it at once."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest

from ferry import plugins
from ferry.tabular.base import Table
from tests.tabular.conftest import student_rows


class Cancelled(Exception):
    pass


@pytest.mark.parametrize("name", ["csv", "xlsx", "pdf", "json"])
def test_progress_that_raises_stops_the_writer_and_propagates(table: Table, name: str) -> None:
    pulled = 0

    def rows() -> Iterator[tuple[object, ...]]:
        nonlocal pulled
        for row in student_rows(100) * 1_000:  # 100,000 rows, far more than one report
            pulled += 1
            yield row

    def cancel(n: int) -> None:
        raise Cancelled(n)

    fmt = plugins.load("ferry.formats", name)()
    with pytest.raises(Cancelled):
        fmt.write(io.BytesIO(), table, rows(), cancel)
    assert pulled < 10_000
