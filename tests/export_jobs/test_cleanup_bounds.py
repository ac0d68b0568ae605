"""CleanupExports with a huge older_than_days (the hostile fuzz's 1e15) is a clear
INVALID_ARGUMENT naming the field, not a date overflow answered as INTERNAL."""

from __future__ import annotations

from typing import Any

import pytest

from ferry.errors import InvalidArgument
from ferry.export_jobs.cleanup import MAX_DAYS, cleanup


@pytest.mark.parametrize("days", [-1, MAX_DAYS + 1, 10**15])
def test_out_of_range_days_are_refused_naming_the_field(days: int) -> None:
    untouched: Any = object()  # neither the database nor the storage is reached
    with pytest.raises(InvalidArgument) as e:
        cleanup(untouched, untouched, days, 30)
    assert e.value.field == "older_than_days"
