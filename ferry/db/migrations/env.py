"""Alembic environment: migrates the engine handed over by ferry.db.migrate."""

from __future__ import annotations

from alembic import context

from ferry.db import load_models
from ferry.db.models import Base

load_models()
config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
