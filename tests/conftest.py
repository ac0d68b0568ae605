"""Shared fixtures: real databases (SQLite file and PostgreSQL), apps and servers.

Every DB test runs on both backends. PostgreSQL is 127.0.0.1:5432 (database `test` is the
admin entry point; each test gets its own throwaway database). Under CI=true a missing
PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import settings as hypothesis_settings
from sqlalchemy.engine import Engine

from ferry import config
from ferry.app import App
from ferry.auth import parse_role
from ferry.db import migrate
from ferry.db.engine import make_engine
from ferry.rpc.server import Server

# No per-example deadline: on a shared 2-core machine a slow example is the load, not a
# bug (DeadlineExceeded failed unit tests under load); a test that proves speed is a bench.
hypothesis_settings.register_profile("ferry", deadline=None)
hypothesis_settings.load_profile("ferry")

PG_ADMIN = os.environ.get("FERRY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


REDIS = (os.environ.get("FERRY_TEST_REDIS_HOST", "127.0.0.1"), 6379)


def _redis_reachable() -> str:
    """'' when Redis answers PING, else why not (a raw RESP exchange; no client needed)."""
    import socket

    try:
        with socket.create_connection(REDIS, timeout=3) as sock:
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as e:
        return str(e)
    return "" if reply.startswith(b"+PONG") else f"unexpected reply {reply!r}"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI=true the machine's PostgreSQL and Redis must be up: fail, never skip."""
    if not IN_CI:
        return
    problems = [f"PostgreSQL at {PG_ADMIN}: {err}" for err in [_pg_reachable()] if err]
    problems += [f"Redis at {REDIS[0]}:{REDIS[1]}: {err}" for err in [_redis_reachable()] if err]
    if problems:
        pytest.exit("CI=true but services are down: " + "; ".join(problems), returncode=3)


_SKIPPED: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember every skipped test (xfails aside); with xdist these reach the controller too."""
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        _SKIPPED.append(f"{report.nodeid}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Drop the session's templates and wait for the last test databases' drops.

    Under CI=true a skipped test fails the run: a skip there means a part of the machine
    (Chromium, Prometheus, psql, a service) is missing, and what it tests went untested.
    `make test` sets the machine up (scripts/machine-setup.sh) so that nothing skips."""
    _finish_drops()
    if not IN_CI or hasattr(session.config, "workerinput") or not _SKIPPED:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(f"CI=true: {len(_SKIPPED)} test(s) skipped, which fails the run:")
        for line in _SKIPPED[:50]:
            reporter.write_line(f"  SKIPPED {line}")
    if session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _pg_reachable() -> str:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return ""
    except psycopg.Error as e:
        return str(e)


_PG_ERROR: str | None = None


def require_postgres() -> None:
    """Skip (or, under CI=true, fail) when PostgreSQL is not reachable."""
    global _PG_ERROR
    if _PG_ERROR is None:
        _PG_ERROR = _pg_reachable()
    if _PG_ERROR:
        message = f"PostgreSQL at {PG_ADMIN} is unreachable: {_PG_ERROR}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@contextmanager
def fresh_database(backend: str, folder: Path) -> Iterator[str]:
    """The URL of a new, empty database on `backend`, dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'ferry-{uuid.uuid4().hex[:8]}.db'}"
        return
    require_postgres()
    name = f"ferry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        _test_settings(conn, name)
    owner = os.getpid()
    try:
        yield _pg_url(name)
    finally:
        _drop_later(name, owner)


def _test_settings(conn: psycopg.Connection[Any], name: str) -> None:
    """A test database's commits return before their WAL reaches the disk
    (synchronous_commit off, for every connection to it, the servers' and workers' in
    other processes too). What the tests attack stays the same: a commit is still atomic
    and visible at once, and a killed process loses nothing it committed (the WAL is in the
    server's memory); only a crash of the whole machine could lose the last commits, which
    no test makes. It spares the fsync of every commit: 3.7 ms against 0.24 ms a commit on
    this disk (FERRY_TEST_SYNC_COMMIT=on keeps the server's default)."""
    if os.environ.get("FERRY_TEST_SYNC_COMMIT", "off") == "off":
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off')


def _pg_url(name: str) -> str:
    base = sa.make_url(PG_ADMIN.replace("postgresql://", "postgresql+psycopg://", 1))
    return base.set(database=name).render_as_string(hide_password=False)


# A PostgreSQL DROP DATABASE waits for a checkpoint of the whole server (a second or more on
# a busy machine), so a test's database is dropped on a thread of its own while the next
# test runs; the session waits for the last drops at its end.
_DROPPER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drop-database")
_DROPS: list[Future[None]] = []


def _drop(name: str) -> None:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _drop_later(name: str, owner: int) -> None:
    """Drop `name` on the dropper's thread, only in the process that made it: a child
    forked while a test held it (a kill test, a worker pool) ends with that test's
    suspended fixtures, and its exit must not drop the parent's databases (or templates)."""
    if os.getpid() == owner:
        _DROPS.append(_DROPPER.submit(_drop, name))


def after_drops(statement: str) -> None:
    """Run `statement` as the admin on the dropper's thread, after the drops queued before
    it: a role that owns a test database's tables can go only after that database."""

    def run() -> None:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(statement)

    _DROPS.append(_DROPPER.submit(run))


def _finish_drops() -> None:
    """Wait for every pending DROP DATABASE; a failed one is reported, not ignored."""
    _TEMPLATE_STACK.close()
    _DROPPER.shutdown(wait=True)
    failed = [f.exception() for f in _DROPS if f.exception() is not None]
    if failed:
        print(f"\n{len(failed)} test database(s) were not dropped: {failed[0]}")


# Templates: a database built once per process (migrated; or migrated and seeded) and
# copied for every test that asks for one (a file copy on SQLite, CREATE DATABASE ...
# TEMPLATE on PostgreSQL). The migrations and seeds are deterministic, so a copy is the
# database the build would have made again, in a fraction of the time; what the migrations
# themselves do is tested on databases of their own (tests/unit/test_migrations*.py).
_TEMPLATES: dict[tuple[str, str], str] = {}
_TEMPLATE_STACK = ExitStack()


def _template(backend: str, key: str, build: Callable[[str], None]) -> str:
    """The URL of this process's template `key` on `backend`, built by build(url) on first
    use and dropped when the session ends. build must close every connection it opens."""
    if (backend, key) not in _TEMPLATES:
        # Not a TemporaryDirectory: its finalizer would remove the folder at the exit of
        # any child forked from this process too (see _drop_later).
        folder = Path(tempfile.mkdtemp(prefix="ferry-template-"))
        owner = os.getpid()
        _TEMPLATE_STACK.callback(
            lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True)
        )
        url = _TEMPLATE_STACK.enter_context(fresh_database(backend, folder))
        build(url)
        if backend == "sqlite":
            with sqlite3.connect(sa.make_url(url).database or "") as con:
                con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
        else:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                # No connection may reach a template while it is copied.
                conn.execute(
                    f'ALTER DATABASE "{sa.make_url(url).database}" WITH ALLOW_CONNECTIONS false'
                )
        _TEMPLATES[backend, key] = url
    return _TEMPLATES[backend, key]


@contextmanager
def copied_database(
    backend: str, folder: Path, key: str, build: Callable[[str], None]
) -> Iterator[str]:
    """The URL of a new database on `backend` holding what build(url) makes of an empty
    database (build runs once per process and key), dropped afterwards."""
    template = sa.make_url(_template(backend, key, build)).database or ""
    if backend == "sqlite":
        path = folder / f"ferry-{uuid.uuid4().hex[:8]}.db"
        folder.mkdir(parents=True, exist_ok=True)  # as make_engine would for a new file
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    name = f"ferry_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        _test_settings(conn, name)
    owner = os.getpid()
    try:
        yield _pg_url(name)
    finally:
        _drop_later(name, owner)


@contextmanager
def migrated_database(backend: str, folder: Path) -> Iterator[str]:
    """The URL of a new database on `backend` at the newest migration, empty (a copy of a
    template), dropped afterwards: what fresh_database plus migrate.upgrade gives."""
    with copied_database(backend, folder, "migrated", migrated) as url:
        yield url


def migrated(url: str) -> None:
    """Build step: the schema at the newest migration."""
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def migrated_and_seeded(scale: str, seed_number: int) -> Callable[[str], None]:
    """Build step: the schema at the newest migration and the `scale` demo data."""

    def build(url: str) -> None:
        from ferry.demo.seed import Scale, seed

        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
            seed(engine, Scale(scale), seed=seed_number)
        finally:
            engine.dispose()

    return build


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def empty_url(backend: str, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database on each backend (a copy of a template)."""
    with migrated_database(backend, tmp_path) as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def seeded_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A database with the `small` demo data, shared read-only by the session's tests."""
    from ferry.demo.seed import Scale, seed

    with fresh_database(str(request.param), tmp_path_factory.mktemp("seeded")) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        seed(engine, Scale.SMALL, seed=7)
        engine.dispose()
        yield url


def make_settings(url: str, folder: Path, **overrides: Any) -> config.Settings:
    """Settings for a test: the given database, a private signing key, no metrics port."""
    env = {
        "FERRY_DATABASE_URL": url,
        "FERRY_AUTH_SIGNING_KEY_FILE": str(folder / "signing.key"),
        "FERRY_METRICS_ENABLED": "false",
        "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
        # Files the services write (export jobs, backups before imports) stay with the test.
        "FERRY_PLUGINS_STORAGE_LOCAL_DIR": str(folder / "exports"),
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return config.load(Path(__file__).resolve().parent.parent / "ferry.yaml", env)


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def make(url: str, **overrides: Any) -> App:
        app = App(make_settings(url, tmp_path, **overrides))
        apps.append(app)
        return app

    yield make
    for app in apps:
        app.close()


@contextmanager
def running(app: App, services: list[str] | None = None) -> Iterator[Server]:
    """A real server on a free loopback port, stopped afterwards."""
    server = Server(app, services)
    server.start()
    try:
        yield server
    finally:
        server.stop(grace=0, deregister_wait=0)


def token(app: App, role: str = "admin", subject: str = "tester", ttl: float = 300) -> str:
    return app.issuer().issue(subject, parse_role(role), dt.timedelta(seconds=ttl)).token


def token_from_key_file(
    key_file: Path,
    role: str,
    subject: str = "tester",
    ttl: dt.timedelta = dt.timedelta(minutes=10),
    issued_at: dt.datetime | None = None,
) -> str:
    """A token signed with the private key at `key_file` (created with its key set beside
    it when missing), for processes started with FERRY_AUTH_SIGNING_KEY_FILE=key_file.
    `issued_at` in the past with a short `ttl`: a token that expired long ago."""
    from ferry.auth.keys import ensure_keys
    from ferry.auth.tokens import TokenIssuer

    key = ensure_keys(key_file, key_file.with_name("public-keys.json"))
    issued = TokenIssuer(key, "ferry", "ferry").issue(subject, parse_role(role), ttl, now=issued_at)
    return issued.token


def auth(app: App, role: str = "admin") -> list[tuple[str, str]]:
    """Call metadata carrying a token with `role`."""
    return [("authorization", f"Bearer {token(app, role)}")]


def engine_for(url: str) -> Engine:
    return make_engine(url)
