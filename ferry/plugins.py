"""One registry over Ferry's entry-point groups.

Built-in plugins are entry points in our own pyproject.toml, exactly like a third party's.
A name in config is looked up in its group; a full `module:attr` path works too. Tests
register and unregister plugins in fixtures with `register`/`unregister`.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Any

GROUPS = (
    "ferry.services",
    "ferry.filters",
    "ferry.formats",
    "ferry.bundle_formats",
    "ferry.caches",
    "ferry.storage",
    "ferry.channels",
    "ferry.datasets",
)

_registered: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}


class PluginError(LookupError):
    """A plugin that is unknown, cannot be imported, or failed its setup."""


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise PluginError(f"unknown plugin group {group!r}; groups: {', '.join(GROUPS)}")


def names(group: str) -> list[str]:
    """Every plugin name known in `group` (installed and registered), sorted."""
    _check_group(group)
    return sorted({ep.name for ep in entry_points(group=group)} | set(_registered[group]))


def load(group: str, name: str) -> Any:
    """The object registered as `name` in `group`, or at the path `module:attr`."""
    _check_group(group)
    if name in _registered[group]:
        return _registered[group][name]
    matches = [ep for ep in entry_points(group=group) if ep.name == name]
    if matches:
        try:
            return matches[0].load()
        except Exception as e:  # an installed plugin that cannot import is a setup error
            raise PluginError(f"plugin {name!r} in {group} failed to load: {e}") from e
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        except (ImportError, AttributeError) as e:
            raise PluginError(f"cannot load {name!r} for {group}: {e}") from e
    known = ", ".join(names(group)) or "none"
    kind = group.removeprefix("ferry.")
    raise PluginError(f"unknown {kind} plugin {name!r}; known: {known}")


def register(group: str, name: str, obj: Any) -> None:
    """Make `obj` available as `name` in `group` (tests and embedding)."""
    _check_group(group)
    _registered[group][name] = obj


def unregister(group: str, name: str) -> None:
    _check_group(group)
    _registered[group].pop(name, None)


def setup_all(steps: Iterable[tuple[str, Callable[[], None]]], timeout: float) -> None:
    """Run each named setup step in order, each within `timeout` seconds.

    A step that raises or hangs stops start-up with an error naming it, so a bad plugin
    fails start-up clearly instead of leaving a half-started server.
    """
    for name, step in steps:
        error: list[BaseException] = []

        def run(step: Callable[[], None] = step, error: list[BaseException] = error) -> None:
            try:
                step()
            except BaseException as e:  # re-raised in the caller's thread below
                error.append(e)

        t = threading.Thread(target=run, name=f"setup-{name}", daemon=True)
        t.start()
        t.join(timeout)
        if t.is_alive():
            raise PluginError(f"setup of {name} did not finish within {timeout:g}s")
        if error:
            raise PluginError(f"setup of {name} failed: {error[0]}") from error[0]
