"""One registry over Ferry's entry-point groups, and the one lookup in the code.

Built-in plugins are entry points in our own pyproject.toml, exactly like a third party's.

- `load(group, name)` resolves a registered name. A `module:attr` path is accepted only with
  `allow_path=True`, which the code passes for names read from ferry.yaml and never for a
  name that arrived in a request or an uploaded file.
- `from_request(group, name, field)` is the lookup for names from requests and files: a name
  that is not registered is InvalidArgument naming the field and the known names, and
  nothing is imported.
- `resolve(group, name, app)` builds a plugin as `factory(app)` and checks it against its
  group's contract (`ferry.contracts`); `App.plugin` is the caller that caches and closes.
- A plugin may declare `settings_model` (a pydantic model); its settings are the
  `plugins.<group without "ferry.">.<name>` section of ferry.yaml (see `validate_settings`),
  and `depends_on` (other `(group, name)` plugins it needs set up first); `App.plugin`
  builds, caches and closes instances in that order.

Tests register and unregister plugins in fixtures with `register`/`unregister`.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import BaseModel, ValidationError

from ferry import contracts

GROUPS = contracts.GROUPS
CONTRACTS = contracts.CONTRACTS

_registered: dict[str, dict[str, Any]] = {g: {} for g in GROUPS}

# A dataset is data: its entry point is the spec itself, never called.
DATA_GROUPS = frozenset({"ferry.datasets"})


class PluginError(LookupError):
    """A plugin that is unknown, cannot be imported, or failed its setup."""


def short(group: str) -> str:
    """`ferry.caches` -> `caches`: the group's key under `plugins:` in ferry.yaml."""
    return group.removeprefix("ferry.")


def _check_group(group: str) -> None:
    if group not in GROUPS:
        raise PluginError(f"unknown plugin group {group!r}; groups: {', '.join(GROUPS)}")


@functools.cache
def _installed(group: str) -> dict[str, EntryPoint]:
    """The entry points installed in `group`, by name, read once per process.

    Reading them scans every installed distribution's metadata on disk: that cost about
    60% of an RPC that resolved its dataset on each call (py-spy, ListSemesters). What is
    installed does not change under a running process; `register` is for the rest.
    """
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep)
    return found


def names(group: str) -> list[str]:
    """Every plugin name known in `group` (installed and registered), sorted."""
    _check_group(group)
    return sorted(set(_installed(group)) | set(_registered[group]))


def _unknown(group: str, name: str) -> PluginError:
    known = ", ".join(names(group)) or "none"
    return PluginError(f"unknown {short(group)} plugin {name!r}; known: {known}")


def load(group: str, name: str, *, allow_path: bool = False) -> Any:
    """The object registered as `name` in `group`.

    With `allow_path` (names from ferry.yaml only), `module:attr` imports that object.
    """
    _check_group(group)
    if name in _registered[group]:
        return _registered[group][name]
    ep = _installed(group).get(name)
    if ep is not None:
        try:
            return ep.load()
        except Exception as e:  # an installed plugin that cannot import is a setup error
            raise PluginError(f"plugin {name!r} in {group} failed to load: {e}") from e
    if allow_path and ":" in name:
        module, _, attr = name.partition(":")
        try:
            obj = importlib.import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        except (ImportError, AttributeError) as e:
            raise PluginError(f"cannot load {name!r} for {group}: {e}") from e
    raise _unknown(group, name)


def resolve(group: str, name: str, app: Any = None, *, allow_path: bool = False) -> Any:
    """`name` in `group` built as `factory(app)` and checked against its contract.

    This is the one way a plugin is built; `App.plugin` calls it once per app (and caches
    and closes what it built). A dataset is returned as it is (see `DATA_GROUPS`).
    """
    obj = load(group, name, allow_path=allow_path)
    if group not in DATA_GROUPS:
        if not callable(obj):
            raise PluginError(f"{short(group)} plugin {name!r} is not a factory(app)")
        obj = obj(app)
    contract = CONTRACTS[group]
    if not isinstance(obj, contract):
        raise PluginError(
            f"{short(group)} plugin {name!r} does not provide the {short(group)} contract "
            f"(ferry.contracts.{contract.__name__})"
        )
    return obj


def from_request(group: str, name: str, field: str, app: Any = None) -> Any:
    """The plugin for a name that came in a request or a file: registered names only,
    built by `app.plugin` when an app is given (else `factory(None)`: a codec used outside
    a running app, such as the CLI's file conversions).

    Anything else is InvalidArgument naming `field` and the known names; nothing is imported.
    """
    from ferry.errors import InvalidArgument

    known = names(group)
    if name not in known:
        raise InvalidArgument(
            f"unknown {field} {name!r}; known: {', '.join(known) or 'none'}", field=field
        )
    try:
        if app is not None:
            return app.plugin(group, name)
        return resolve(group, name, None)
    except PluginError as e:
        raise InvalidArgument(str(e), field=field) from None


def register(group: str, name: str, obj: Any) -> None:
    """Make `obj` available as `name` in `group` (tests and embedding)."""
    _check_group(group)
    _registered[group][name] = obj


def unregister(group: str, name: str) -> None:
    _check_group(group)
    _registered[group].pop(name, None)


# --- settings ------------------------------------------------------------------------


def settings_model(group: str, name: str) -> type[BaseModel] | None:
    """The pydantic model a plugin declares for its settings, if any."""
    model = getattr(load(group, name, allow_path=True), "settings_model", None)
    if model is None:
        return None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        raise PluginError(f"{short(group)} plugin {name!r}: settings_model is not a model")
    return model


def parse_settings(group: str, name: str, raw: Mapping[str, Any] | None) -> BaseModel | None:
    """The plugin's settings model validated from `raw`; errors name the full path."""
    path = f"plugins.{short(group)}.{name}"
    model = settings_model(group, name)
    if model is None:
        if raw:
            raise PluginError(f"{path}: {short(group)} plugin {name!r} takes no settings")
        return None
    try:
        return model.model_validate(dict(raw or {}))
    except ValidationError as e:
        parts = []
        for err in e.errors():
            key = ".".join([path, *(str(p) for p in err["loc"])])
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            parts.append(f"{key}: {msg}")
        raise PluginError("bad plugin settings: " + "; ".join(parts)) from None


def validate_settings(sections: Mapping[str, Mapping[str, Any]]) -> None:
    """Check every `plugins.<group>.<name>` section against its plugin's model."""
    groups = {short(g): g for g in GROUPS}
    for key, by_name in sections.items():
        if key not in groups:
            raise PluginError(
                f"plugins.{key}: unknown plugin group; groups: {', '.join(sorted(groups))}"
            )
        group = groups[key]
        for name, raw in (by_name or {}).items():
            if name not in names(group):
                raise PluginError(
                    f"plugins.{key}.{name}: unknown {key} plugin; "
                    f"known: {', '.join(names(group)) or 'none'}"
                )
            parse_settings(group, name, raw)


def env_path(words: list[str]) -> tuple[str, ...] | None:
    """FERRY_PLUGINS_STORAGE_LOCAL_DIR's words after PLUGINS -> ("storage", "local", "dir").

    The group and the plugin name are matched against the known ones (a name's `.`/`-` are
    `_` in a variable), the rest against the plugin's settings model.
    """
    for g in GROUPS:
        gw = short(g).split("_")
        if words[: len(gw)] != gw:
            continue
        rest = words[len(gw) :]
        for n in sorted(names(g), key=len, reverse=True):
            nw = n.replace(".", "_").replace("-", "_").lower().split("_")
            if rest[: len(nw)] != nw or len(rest) == len(nw):
                continue
            keys = model_path(settings_model(g, n), rest[len(nw) :])
            if keys is not None:
                return (short(g), n, *keys)
    return None


def model_path(model: type[BaseModel] | None, words: list[str]) -> list[str] | None:
    """The field path `words` spells in `model` (FERRY_SERVER_MAX_WORKERS's words ->
    ["server", "max_workers"]), longest field name first at each level; None when it
    names no field. Settings variables and plugin-settings variables both use it."""
    keys: list[str] = []
    i = 0
    while i < len(words):
        if model is None:
            return None
        for j in range(len(words), i, -1):  # longest field name first
            name = "_".join(words[i:j])
            if name in model.model_fields:
                keys.append(name)
                ann = model.model_fields[name].annotation
                model = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
                i = j
                break
        else:
            return None
    return keys


# --- lifecycle -----------------------------------------------------------------------


def dependency_order(
    roots: Iterable[tuple[str, str]], deps: Callable[[tuple[str, str]], Iterable[tuple[str, str]]]
) -> list[tuple[str, str]]:
    """`roots` and what they depend on, dependencies first; a cycle is a PluginError."""
    order: list[tuple[str, str]] = []
    state: dict[tuple[str, str], int] = {}  # 1 visiting, 2 done

    def visit(node: tuple[str, str], path: list[tuple[str, str]]) -> None:
        if state.get(node) == 2:
            return
        if state.get(node) == 1:
            cycle = " -> ".join(f"{short(g)}.{n}" for g, n in [*path, node])
            raise PluginError(f"plugin dependency cycle: {cycle}")
        state[node] = 1
        for dep in deps(node):
            _check_group(dep[0])
            if dep[1] not in names(dep[0]):
                raise PluginError(
                    f"{short(node[0])} plugin {node[1]!r} depends on missing "
                    f"{short(dep[0])} plugin {dep[1]!r}"
                )
            visit(dep, [*path, node])
        state[node] = 2
        order.append(node)

    for root in roots:
        visit(root, [])
    return order


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


def build_within(node: tuple[str, str], app: Any, timeout: float) -> Any:
    """`resolve(group, name, app)` (a `module:attr` path allowed: names from ferry.yaml)
    within `timeout` seconds: a plugin that hangs or fails in its factory stops start-up
    with an error naming it."""
    built: list[Any] = []
    group, name = node
    setup_all(
        [
            (
                f"{short(group)} plugin {name!r}",
                lambda: built.append(resolve(group, name, app, allow_path=True)),
            )
        ],
        timeout,
    )
    return built[0]
