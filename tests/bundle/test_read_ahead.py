"""DownloadSession fetches rows on a thread of their own (session_events' read_ahead, on
PostgreSQL) so the database computes the next rows while the last ones are written: the
same events as the inline read; and a stopped download or a failing fetch leaves no
thread behind and hands its snapshot's connection back before the close returns."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from contextlib import closing
from typing import Any

import pytest

from ferry.bundle import events as events_module
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch, Header, Trailer
from ferry.bundle.scan import SessionRequest
from ferry.datasets.school import SCHOOL
from ferry.db.engine import make_engine
from tests.bundle.helpers import records_of

NOW = dt.datetime(2026, 9, 1, 8, 30, tzinfo=dt.UTC)
FETCH_THREAD = "bundle-fetch"


def _fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == FETCH_THREAD]


def test_read_ahead_gives_the_same_events(seeded_url: str) -> None:
    engine = make_engine(seeded_url)
    try:
        req = SessionRequest("2026-fall", include_deleted=True, batch_size=7)
        inline = list(session_events(engine, SCHOOL, req, NOW))
        ahead = list(session_events(engine, SCHOOL, req, NOW, read_ahead=2))
    finally:
        engine.dispose()
    assert isinstance(ahead[0], Header) and isinstance(ahead[-1], Trailer)
    assert ahead[0].metadata == inline[0].metadata
    assert ahead[-1] == inline[-1] and sum(ahead[-1].counts.values()) > 0
    assert [(e.entity, len(e.records)) for e in ahead if isinstance(e, Batch)] == [
        (e.entity, len(e.records)) for e in inline if isinstance(e, Batch)
    ]
    assert records_of(ahead) == records_of(inline)
    assert not _fetch_threads()


def test_a_stopped_download_ends_the_fetch_thread_and_frees_its_connection(
    seeded_url: str,
) -> None:
    engine = make_engine(seeded_url)
    try:
        req = SessionRequest("2026-fall", include_deleted=True, batch_size=3)
        with closing(session_events(engine, SCHOOL, req, NOW, read_ahead=1)) as events:
            assert isinstance(next(events), Header)
            assert isinstance(next(events), Batch)  # the fetch thread now waits to put
        assert not _fetch_threads()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_a_failing_fetch_reaches_the_writer_and_leaves_no_thread(
    seeded_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = events_module.fetcher
    calls = 0

    def failing(result: Any) -> Callable[[int], Sequence[Any]]:
        fetchmany = real(result)

        def fetch(n: int) -> Sequence[Any]:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise RuntimeError("the database went away")
            return fetchmany(n)

        return fetch

    monkeypatch.setattr(events_module, "fetcher", failing)
    engine = make_engine(seeded_url)
    try:
        req = SessionRequest("2026-fall", include_deleted=True, batch_size=5)
        got = []
        with pytest.raises(RuntimeError, match="went away"):
            for event in session_events(engine, SCHOOL, req, NOW, read_ahead=2):
                got.append(event)
        assert len([e for e in got if isinstance(e, Batch)]) == 2  # what came before
        assert not _fetch_threads()
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        engine.dispose()
