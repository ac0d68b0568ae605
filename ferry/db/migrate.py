"""Schema migrations (Alembic), run from code: `ferry db upgrade` and `ferry serve`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction for the migrations. On SQLite foreign keys are off meanwhile (as
    SQLite's own recipe for changing a table asks: rebuilding a table drops the old one,
    which with foreign keys on would delete or refuse for its children) and checked as a
    whole before the commit; a violation rolls everything back."""
    with engine.connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:  # before the transaction: the pragma is a no-op inside one
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()  # ends SQLAlchemy's autobegun transaction; SQLite began none
        try:
            with conn.begin():
                yield conn
                if sqlite:
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(
                            f"the migration leaves rows whose parent is missing: {broken[:5]}"
                        )
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Bring the database schema to `revision` (default: the newest)."""
    cfg = _config()
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


# Revisions whose way down would put several schools' rows into one (each refuses in its
# own downgrade too, when run alone).
ONE_SCHOOL_BELOW = frozenset({"0013", "0015", "0016"})


def downgrade(engine: Engine, revision: str) -> None:
    """Take the database schema back to `revision` (operators repairing a release).

    A way down through a revision that cannot hold several schools is refused while
    several exist, before any step runs: SQLite rebuilds tables outside its transaction,
    so a refusal by a later step would leave an earlier step's rebuild half-done."""
    cfg = _config()
    now = current(engine)
    if now is not None:
        steps = ScriptDirectory.from_config(cfg).iterate_revisions(now, revision)
        crossed = sorted(ONE_SCHOOL_BELOW & {s.revision for s in steps})
        if crossed:
            with engine.connect() as conn:
                schools = conn.exec_driver_sql("SELECT count(*) FROM schools").scalar_one()
            if schools > 1:
                raise RuntimeError(
                    f"this database holds {schools} schools; going back past revision "
                    f"{crossed[-1]} would put their rows into one: remove the other schools "
                    "first"
                )
    with _migrating(engine) as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


def revision(engine: Engine, message: str) -> None:
    """Autogenerate a new migration from the models (developers only)."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.revision(cfg, message=message, autogenerate=True)


def current(engine: Engine) -> str | None:
    """The revision(s) the database is at, comma-separated, or None when never migrated."""
    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ",".join(sorted(heads)) or None


def head() -> str | None:
    """The newest revision(s) this code knows, comma-separated."""
    heads = ScriptDirectory.from_config(_config()).get_heads()
    return ",".join(sorted(heads)) or None


def is_current(engine: Engine) -> bool:
    """True when the database schema is what this code expects."""
    return current(engine) == head()
