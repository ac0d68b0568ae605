"""The database: models, engines, migrations."""

from __future__ import annotations

import importlib
import pkgutil


def load_models() -> None:
    """Import every `ferry.db.*models` module so Base.metadata knows all tables
    (each service keeps its tables in its own module, e.g. export_models)."""
    for info in pkgutil.iter_modules(__path__):
        if info.name.endswith("models"):
            importlib.import_module(f"{__name__}.{info.name}")
