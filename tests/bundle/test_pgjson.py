"""DownloadSession's json, jsonl and tar.gz on PostgreSQL take each record's JSON from
the database (ferry.bundle.pgjson): every field form is the one orjson writes, and a
bundle so written is byte for byte the Python path's, with the same records checksum,
whatever the values (control characters, quotes, backslashes, Greek, emoji, extreme and
negative-zero floats, NaN, NULL in every nullable column, instants before 1970 and with
microseconds); soft-deleted rows stay out unless asked for; an instant orjson cannot
write fails the download as it does on the Python path."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
import random
import struct
import tarfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from ferry.bundle import pgjson
from ferry.bundle.bundlefile import bundle_format, download_session
from ferry.bundle.events import session_events
from ferry.bundle.formats.base import Batch, Event, JsonLines, Trailer
from ferry.bundle.formats.common import DIGEST_OPTS
from ferry.bundle.pipe import chunks
from ferry.bundle.scan import SessionRequest
from ferry.datasets.query import Column
from ferry.datasets.school import SCHOOL
from ferry.datasets.spec import Kind
from ferry.db.engine import make_engine
from tests.bundle.helpers import decode
from tests.conftest import copied_database, migrated_and_seeded

NOW = dt.datetime(2026, 9, 1, 8, 30, tzinfo=dt.UTC)
FORMATS = ["json", "jsonl", "tar.gz"]
UTC = dt.UTC

# Every character below 0x80 (NUL aside: PostgreSQL text cannot hold it) and beyond.
TEXTS = [
    "".join(chr(c) for c in range(1, 0x80)),
    'quote " backslash \\ slash / \\u0041 \\\\n',
    "Ελληνικά κείμενα",
    "emoji 😀👩‍👩‍👧 and U+2028 \u2028 U+2029 \u2029 U+FEFF \ufeff U+FFFF \uffff",
    "},{",
    'a},{"b":1}\n',
    "\t\r\n\b\f\x0b\x1f\x7f",
    "",
    " ",
]
FLOATS = [
    0.0,
    -0.0,
    0.1,
    -0.1,
    1.0,
    100.0,
    96.5,
    1e308,
    -1e308,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    1e15,
    1e15 - 1,
    1e15 + 0.5,
    999999999999999.9,
    1234567890123456.8,
    9999999999999998.0,
    1e16,
    1e16 + 2,
    1e17,
    1e21,
    1e22,
    1e23,
    2.0**53,
    2.0**53 + 2,
    2.0**63,
    1e-4,
    0.00012,
    9.999999999999999e-5,
    1e-5,
    1.2345678e-5,
    9.99e-6,
    1e-6,
    1.5e-7,
    123e-20,
    1 / 3,
    2 / 3,
    math.pi,
    -math.e * 1e200,
]
# Instants: before 1970, microseconds, whole seconds, the first and last orjson writes.
INSTANTS = [
    dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
    dt.datetime(1970, 1, 1, tzinfo=UTC),
    dt.datetime(1900, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
    dt.datetime(1, 1, 1, tzinfo=UTC),
    dt.datetime(5, 3, 4, 1, 2, 3, 4, tzinfo=UTC),
    dt.datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    dt.datetime(2000, 2, 29, 12, 0, 0, 100000, tzinfo=UTC),
    dt.datetime(2026, 9, 1, 8, 30, tzinfo=UTC),
    dt.datetime(2038, 1, 19, 3, 14, 8, 999999, tzinfo=UTC),
]


def _random_floats(n: int) -> list[float]:
    """Doubles from random bit patterns (every exponent) and short decimals at every
    scale: the shortest digits of both writers must agree on each."""
    rng = random.Random(27)
    out: list[float] = []
    while len(out) < n:
        x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(x):
            out.append(x)
    for exp in range(-30, 30):
        for digits in (1, 15, 99, 12345, 123456789, 1234567890123456789):
            out.append(digits * 10.0**exp)
            out.append(-float(f"{digits}e{exp}"))
    return out


def _field_sql(kind: Kind, sql_type: Any) -> str:
    expr = pgjson.record_json([Column("x", kind, True)], [sa.column("x", sql_type)])
    return str(expr.compile(dialect=postgresql.dialect()))


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL database with the `small` demo data (this module's own copy)."""
    build = migrated_and_seeded("small", 7)
    folder = tmp_path_factory.mktemp("pgjson")
    with copied_database("postgres", folder, "seeded-small-7", build) as url:
        yield url


def _dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _records(url: str, kind: Kind, sql_type: Any, array: str, values: list[Any]) -> list[bytes]:
    """Each value as the record {"x": value} the database path writes (its SQL, then
    the Python side's re-encoding of marked records)."""
    sql = f"SELECT {_field_sql(kind, sql_type)} FROM unnest(%s::{array}) WITH ORDINALITY AS v(x, i)"
    with psycopg.connect(_dsn(url)) as conn:
        conn.execute("SET TIME ZONE 'UTC'")  # as every scan's snapshot does
        conn.execute("SET DateStyle = 'ISO'")
        rows = [r[0].encode() for r in conn.execute(sql + " ORDER BY i", (values,))]
    return pgjson._joined(rows).split(b"\n")[:-1]


def _orjson(values: list[Any]) -> list[bytes]:
    return [orjson.dumps({"x": v}, option=DIGEST_OPTS) for v in values]


@pytest.mark.postgres
def test_every_field_form_is_the_one_orjson_writes(pg: str) -> None:
    floats = [*FLOATS, *_random_floats(100_000), math.nan, math.inf, -math.inf, None]
    got = _records(pg, Kind.FLOAT, sa.Float(), "float8[]", floats)
    want = _orjson(floats)
    bad = [(x, g, w) for x, g, w in zip(floats, got, want, strict=True) if g != w]
    assert not bad, bad[:10]
    for form in (b"1e+308", b"5e-324", b"-0.0", b"0.1", b"1e+23", b"null"):
        assert b'{"x":' + form + b"}" in got

    texts = [*TEXTS, None]
    assert _records(pg, Kind.STR, sa.Text(), "text[]", texts) == _orjson(texts)

    instants = [*INSTANTS, None]
    got = _records(pg, Kind.TIMESTAMP, sa.DateTime(timezone=True), "timestamptz[]", instants)
    assert got == _orjson(instants)
    naive = [t.replace(tzinfo=None) for t in INSTANTS]  # orjson: naive is UTC
    assert _records(pg, Kind.TIMESTAMP, sa.DateTime(), "timestamp[]", naive) == _orjson(naive)

    ints = [0, -1, 1, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63), None]
    assert _records(pg, Kind.INT, sa.BigInteger(), "int8[]", ints) == _orjson(ints)

    dates = [dt.date(1, 1, 1), dt.date(1969, 12, 31), dt.date(9999, 12, 31), None]
    got = _records(pg, Kind.DATE, sa.Date(), "date[]", dates)
    assert got == _orjson([d.isoformat() if d else None for d in dates])


def test_a_marked_record_is_written_again_by_orjson_the_rest_as_it_came() -> None:
    plain = b'{"a":"\\u0001\xce\xb5","x":0.1}'
    marked = b'\x01{"a":"\\u0001\xce\xb5","x":9.999999999999999e+22}'
    lines = pgjson._joined([plain, marked, plain])
    assert lines == plain + b"\n" + b'{"a":"\\u0001\xce\xb5","x":1e+23}\n' + plain + b"\n"
    assert pgjson._joined([plain, plain]) == plain + b"\n" + plain + b"\n"


@pytest.mark.postgres
@pytest.mark.parametrize("instant", ["infinity", "-infinity", "10000-01-01 00:00:00+00"])
def test_an_instant_orjson_cannot_write_fails_the_query(pg: str, instant: str) -> None:
    sql = _field_sql(Kind.TIMESTAMP, sa.DateTime(timezone=True))
    with psycopg.connect(_dsn(pg)) as conn, pytest.raises(psycopg.DataError, match="1-9999"):
        conn.execute(f"SELECT {sql} FROM (SELECT %s::timestamptz AS x) v", (instant,))


def test_only_the_types_it_writes_as_orjson_does_take_the_database_path() -> None:
    col = Column("x", Kind.FLOAT, True)
    assert pgjson.supported([col], [sa.column("x", sa.Float())])
    assert pgjson.supported([col], [sa.column("x", sa.Double())])
    for other in (sa.REAL(), sa.Float(precision=24), sa.Numeric(), sa.Integer(), sa.Text()):
        assert not pgjson.supported([col], [sa.column("x", other)]), other
    stamp = Column("t", Kind.TIMESTAMP, True)
    assert not pgjson.supported([stamp], [sa.column("t", sa.Date())])
    assert not pgjson.supported([Column("d", Kind.DATE, True)], [sa.column("d", sa.DateTime())])
    assert not pgjson.supported([Column("s", Kind.STR, True)], [sa.column("s", sa.Integer())])
    assert not pgjson.supported([Column("i", Kind.INT, True)], [sa.column("i", sa.Float())])


# ---- whole bundles ----------------------------------------------------------------


def _nasty(url: str) -> dict[str, Any]:
    """Write awkward values over a few rows of the semester 2026-fall (and soft-delete
    some); returns what the checks below look for."""
    floats = [1e308, 5e-324, -0.0, 0.1, 1e15 + 0.5, 1.5e-7, 2.5e-5, -1e16]
    with psycopg.connect(_dsn(url)) as conn:
        course_ids = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM courses WHERE semester = '2026-fall' AND deleted_at IS NULL "
                "ORDER BY id LIMIT 2"
            )
        ]
        conn.execute(
            "UPDATE courses SET title = %s, description = %s, teacher = %s, prerequisite_id = NULL,"
            " created_at = %s, updated_at = %s WHERE id = %s",
            (TEXTS[0], TEXTS[1], TEXTS[3], INSTANTS[0], INSTANTS[2], course_ids[0]),
        )
        enrollments = [
            r[0]
            for r in conn.execute(
                # live enrollments of live students: in the bundle without deleted rows
                "SELECT e.id FROM enrollments e JOIN students s ON s.id = e.student_ref"
                " WHERE e.course_ref = ANY(%s) AND e.deleted_at IS NULL AND s.deleted_at IS NULL"
                " ORDER BY e.id LIMIT 8",
                (course_ids,),
            )
        ]
        students = [
            r[0]
            for r in conn.execute(
                "SELECT student_ref FROM enrollments WHERE id = ANY(%s)", (enrollments,)
            )
        ]
        conn.execute(
            "UPDATE students SET first_name = %s, last_name = %s, email = %s,"
            " date_of_birth = NULL, mentor_id = NULL, created_at = %s WHERE id = %s",
            (TEXTS[2], TEXTS[4], TEXTS[5], INSTANTS[4], students[0]),
        )
        conn.execute(
            "UPDATE enrollments SET enrolled_on = NULL, final_score = NULL WHERE id = %s",
            (enrollments[0],),
        )
        for eid, x in zip(enrollments[1:], (math.nan, -math.inf, math.inf), strict=False):
            # orjson writes null for these, so the database JSON does (a nullable field)
            conn.execute("UPDATE enrollments SET final_score = %s WHERE id = %s", (x, eid))
        grades = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM grades WHERE enrollment_ref = ANY(%s) AND deleted_at IS NULL"
                " ORDER BY id LIMIT 10",
                (enrollments,),
            )
        ]
        for gid, x in zip(grades, floats, strict=False):
            conn.execute(
                "UPDATE grades SET score = %s, max_score = %s, weight = %s, graded_on = NULL,"
                " comment = %s WHERE id = %s",
                (x, -x, x / 3, TEXTS[6], gid),
            )
        conn.execute("UPDATE grades SET comment = NULL WHERE id = %s", (grades[-1],))
        deleted_grade = grades[-2]
        conn.execute(
            "UPDATE grades SET deleted_at = %s WHERE id = %s", (INSTANTS[7], deleted_grade)
        )
        attendance = [
            r[0]
            for r in conn.execute(
                "SELECT id FROM attendance WHERE enrollment_ref = ANY(%s) AND deleted_at IS NULL"
                " ORDER BY id LIMIT 4",
                (enrollments,),
            )
        ]
        conn.execute(
            "UPDATE attendance SET note = %s, created_at = %s, updated_at = %s WHERE id = %s",
            (TEXTS[5], INSTANTS[5], INSTANTS[1], attendance[0]),
        )
        conn.execute("UPDATE attendance SET note = NULL WHERE id = %s", (attendance[1],))
        conn.execute(
            "UPDATE attendance SET deleted_at = %s WHERE id = %s", (INSTANTS[8], attendance[2])
        )
        conn.execute(
            "UPDATE daily_performance SET score = %s, note = %s WHERE id = "
            "(SELECT min(id) FROM daily_performance WHERE enrollment_ref = ANY(%s))",
            (5e-324, TEXTS[3], enrollments),
        )
        return {
            "course": course_ids[0],
            "deleted": {"grades": deleted_grade, "attendance": attendance[2]},
            "grades": grades[:-2],
        }


def _bundle(engine: sa.Engine, fmt_name: str, req: SessionRequest, lines: bool) -> bytes:
    """The bundle file as DownloadSession writes it (events, the format's writer, the
    pipe), through the database's JSON (`lines`) or the Python path."""
    fmt = bundle_format(fmt_name)
    seen: list[Event] = []

    def events() -> Iterator[Event]:
        with closing(session_events(engine, SCHOOL, req, NOW, 2, lines)) as ev:
            for event in ev:
                seen.append(event)
                yield event

    def write(out: Any) -> None:
        fmt.write(events(), out)

    data = b"".join(chunks(write))
    kinds = {type(e) for e in seen}
    records = sum(e.count if isinstance(e, JsonLines) else 0 for e in seen)
    assert isinstance(seen[-1], Trailer) and records == (
        sum(seen[-1].counts.values()) if lines else 0
    )
    assert (JsonLines in kinds) == lines and (Batch in kinds) != lines
    return data


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
        return out


@pytest.mark.postgres
def test_bundles_from_the_database_json_are_the_python_paths_byte_for_byte(
    tmp_path: Path,
) -> None:
    build = migrated_and_seeded("small", 7)
    with copied_database("postgres", tmp_path, "seeded-small-7", build) as url:
        marks = _nasty(url)
        engine = make_engine(url)
        try:
            requests = [
                SessionRequest("2026-fall", batch_size=3),
                SessionRequest("2026-fall", include_deleted=True, batch_size=500),
                SessionRequest("", scope="all", include_deleted=True, batch_size=2000),
                SessionRequest("2026-fall", updated_since=INSTANTS[2]),
            ]
            for req in requests:
                for name in FORMATS:
                    new = _bundle(engine, name, req, lines=True)
                    old = _bundle(engine, name, req, lines=False)
                    if name == "tar.gz":  # members the same bytes, then the archive
                        assert _members(new) == _members(old), (req, name)
                    assert new == old, (req, name)
                    events = decode(name, new)  # the reader checks the records checksum
                    trailer = events[-1]
                    assert isinstance(trailer, Trailer) and trailer.sha256
                    assert trailer.sha256 == decode(name, old)[-1].sha256  # type: ignore[union-attr]
                    _check_records(url, req, name, events, marks)
        finally:
            engine.dispose()


def _check_records(
    url: str, req: SessionRequest, name: str, events: list[Event], marks: dict[str, Any]
) -> None:
    """The oracle: the records as plain SQL reads them (values, soft-deleted rows)."""
    got: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if isinstance(e, Batch):
            got.setdefault(e.entity, []).extend(e.records)
    with psycopg.connect(_dsn(url)) as conn:
        for entity, row_id in marks["deleted"].items():
            key = conn.execute(
                f"SELECT created_at, deleted_at FROM {entity} WHERE id = %s", (row_id,)
            ).fetchone()
            assert key is not None
            deleted = [r for r in got.get(entity, []) if r["deleted_at"] == key[1]]
            assert bool(deleted) == req.with_deleted, (entity, req, name)
        if req.updated_since is not None:
            return
        scores = conn.execute(
            "SELECT score, max_score, weight, comment FROM grades WHERE id = ANY(%s)",
            (marks["grades"],),
        ).fetchall()
        written = {(r["score"], r["max_score"], r["weight"], r["comment"]) for r in got["grades"]}
        assert scores and all(row in written for row in scores)
        # The four final scores set to NULL, NaN and infinities above are all null.
        assert sum(r["final_score"] is None for r in got["enrollments"]) >= 4
        title = conn.execute("SELECT title FROM courses WHERE id = %s", (marks["course"],))
        (stored,) = title.fetchone() or ("",)
        assert stored == TEXTS[0] and any(r["title"] == stored for r in got["courses"])


@pytest.mark.postgres
def test_download_session_takes_the_database_json_and_signs_the_same_file(pg: str) -> None:
    engine = make_engine(pg)
    try:
        req = SessionRequest("2026-fall")
        for name in FORMATS:
            pieces = list(download_session(engine, SCHOOL, req, name, NOW))
            data = b"".join(p.data for p in pieces)
            assert pieces[-1].sha256 == hashlib.sha256(data).hexdigest()
            assert data == _bundle(engine, name, req, lines=False)
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_a_stopped_download_cancels_its_query_and_frees_its_connection(pg: str) -> None:
    engine = make_engine(pg)
    try:
        req = SessionRequest("2026-fall", batch_size=2)
        with closing(session_events(engine, SCHOOL, req, NOW, 1, True)) as events:
            for event in events:
                if isinstance(event, JsonLines):
                    break
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        # The connection went back to the pool usable, outside any transaction.
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_an_unwritable_instant_fails_the_download_as_on_the_python_path(tmp_path: Path) -> None:
    build = migrated_and_seeded("small", 7)
    with copied_database("postgres", tmp_path, "seeded-small-7", build) as url:
        with psycopg.connect(_dsn(url)) as conn:
            conn.execute(
                "UPDATE attendance SET updated_at = 'infinity' WHERE id = (SELECT min(id) "
                "FROM attendance)"
            )
        engine = make_engine(url)
        try:
            req = SessionRequest("", scope="all")
            for lines in (False, True):
                # psycopg's error; SQLAlchemy wraps it on the Python path's first fetch
                with pytest.raises((psycopg.DataError, sa.exc.DataError)):
                    _bundle(engine, "jsonl", req, lines)
                assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            engine.dispose()
