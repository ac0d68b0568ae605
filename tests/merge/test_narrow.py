"""The strategy, undo and error tests again, every entity resolved narrow (statuses in a
table of their own, the resolved rows a view over the staged ones: what a re-import of a
big bundle does on PostgreSQL, see ferry.merge.plan.resolve)."""

from __future__ import annotations

import pytest

from ferry.merge import plan
from tests.merge.test_errors import *  # noqa: F403
from tests.merge.test_strategies import *  # noqa: F403
from tests.merge.test_undo_and_dry_run import *  # noqa: F403


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    """PostgreSQL only: SQLite always resolves wide."""
    return str(request.param)


@pytest.fixture(autouse=True)
def narrow_always(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan, "NARROW_MIN_ROWS", 0)
