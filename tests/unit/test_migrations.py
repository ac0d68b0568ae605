"""The migrations create exactly the models' schema, on both backends."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ferry.db import load_models, migrate
from ferry.db.engine import make_engine
from ferry.db.models import Base


def test_migrated_schema_matches_models(empty_url: str) -> None:
    load_models()
    engine = make_engine(empty_url)
    try:
        assert migrate.current(engine) == migrate.head()
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata
            )
        assert diff == []
    finally:
        engine.dispose()
