import threading

import pytest

from ferry import plugins
from ferry.datasets.school import SCHOOL
from ferry.rpc.filters.logging import LoggingPlugin


def test_builtin_plugins_are_entry_points() -> None:
    assert "export" in plugins.names("ferry.services")
    assert {"logging", "metrics", "auth", "deadline"} <= set(plugins.names("ferry.filters"))
    assert plugins.load("ferry.datasets", "school") is SCHOOL
    assert plugins.load("ferry.filters", "logging") is LoggingPlugin


def test_unknown_plugin_names_the_known_ones() -> None:
    with pytest.raises(
        plugins.PluginError, match=r"unknown filters plugin 'logg'; known: .*auth.*logging"
    ):
        plugins.load("ferry.filters", "logg")


def test_unknown_group_is_an_error() -> None:
    with pytest.raises(plugins.PluginError, match="unknown plugin group"):
        plugins.names("ferry.nope")


def test_full_path_works_only_where_config_allows_it() -> None:
    path = "ferry.rpc.filters.logging:LoggingPlugin"
    assert plugins.load("ferry.filters", path, allow_path=True) is LoggingPlugin
    with pytest.raises(plugins.PluginError, match="cannot load"):
        plugins.load("ferry.filters", "ferry.rpc.filters.logging:Nope", allow_path=True)
    with pytest.raises(plugins.PluginError, match="unknown filters plugin"):
        plugins.load("ferry.filters", path)


def test_registered_plugin_is_found_then_gone() -> None:
    marker = object()
    plugins.register("ferry.formats", "test-fmt", marker)
    try:
        assert plugins.load("ferry.formats", "test-fmt") is marker
        assert "test-fmt" in plugins.names("ferry.formats")
    finally:
        plugins.unregister("ferry.formats", "test-fmt")
    with pytest.raises(plugins.PluginError):
        plugins.load("ferry.formats", "test-fmt")


def test_setup_that_fails_or_hangs_stops_startup_naming_it() -> None:
    def boom() -> None:
        raise RuntimeError("no database")

    with pytest.raises(plugins.PluginError, match="setup of cache failed: no database"):
        plugins.setup_all([("cache", boom)], timeout=1)
    release = threading.Event()
    with pytest.raises(plugins.PluginError, match=r"setup of slow did not finish within 0.2s"):
        plugins.setup_all([("slow", lambda: release.wait(5) and None)], timeout=0.2)
    release.set()
    ran: list[str] = []
    plugins.setup_all([("a", lambda: ran.append("a")), ("b", lambda: ran.append("b"))], timeout=1)
    assert ran == ["a", "b"]


# --- request names never import, settings belong to plugins, lifecycle ------------------

import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, ClassVar  # noqa: E402

from ferry import config  # noqa: E402
from ferry.config import Strict  # noqa: E402
from ferry.errors import InvalidArgument  # noqa: E402


def test_a_request_name_with_a_path_imports_nothing() -> None:
    sys.modules.pop("this", None)
    with pytest.raises(InvalidArgument, match=r"unknown format 'this:s'; known: .*csv") as e:
        plugins.from_request("ferry.formats", "this:s", "format")
    assert e.value.field == "format"
    assert "this" not in sys.modules


class _BucketSettings(Strict):
    bucket: str
    region: str = "eu-west-1"
    retries: int = 3


class _BucketStorage:
    """A third party's storage plugin with its own settings section."""

    settings_model: ClassVar[type[Strict]] = _BucketSettings
    closed: ClassVar[list[str]] = []

    def __init__(self, app: Any) -> None:
        self.settings = app.plugin_settings("ferry.storage", "bucket")

    def writer(self, key: str) -> Any:
        raise NotImplementedError

    def open(self, key: str) -> Any:
        raise NotImplementedError

    def delete(self, key: str) -> int:
        return 0

    def size(self, key: str) -> int | None:
        return None

    def archive(self, key: str) -> int:
        return 0

    def sweep_temp(self, older_than_seconds: float) -> int:
        return 0

    def close(self) -> None:
        self.closed.append("bucket")


@pytest.fixture
def bucket_plugin() -> Any:
    plugins.register("ferry.storage", "bucket", _BucketStorage)
    yield _BucketStorage
    plugins.unregister("ferry.storage", "bucket")


def test_third_party_settings_are_validated_and_overridable(
    bucket_plugin: Any, tmp_path: Path
) -> None:
    cfg = tmp_path / "ferry.yaml"
    cfg.write_text("plugins: {storage: {bucket: {bucket: exports}}}\n")
    s = config.load(cfg, env={"FERRY_PLUGINS_STORAGE_BUCKET_RETRIES": "5"})
    from ferry.app import App

    app = App(s)
    inst = app.plugin("ferry.storage", "bucket")
    assert inst.settings == _BucketSettings(bucket="exports", retries=5)
    assert app.plugin("ferry.storage", "bucket") is inst  # one instance per app
    app.close()
    assert _BucketStorage.closed[-1] == "bucket"


def test_a_bad_plugin_key_or_value_is_refused_naming_its_path(
    bucket_plugin: Any, tmp_path: Path
) -> None:
    cfg = tmp_path / "ferry.yaml"
    cfg.write_text("plugins: {storage: {bucket: {bucket: x, regoin: eu}}}\n")
    with pytest.raises(config.ConfigError, match=r"plugins\.storage\.bucket\.regoin: unknown key"):
        config.load(cfg, env={})
    cfg.write_text("plugins: {storage: {bucket: {bucket: x}}}\n")
    with pytest.raises(config.ConfigError, match=r"plugins\.storage\.bucket\.retries: "):
        config.load(cfg, env={"FERRY_PLUGINS_STORAGE_BUCKET_RETRIES": "many"})
    with pytest.raises(config.ConfigError, match="FERRY_PLUGINS_STORAGE_BUCKET_NOPE"):
        config.load(cfg, env={"FERRY_PLUGINS_STORAGE_BUCKET_NOPE": "1"})
    cfg.write_text("plugins: {storage: {buckt: {bucket: x}}}\n")
    with pytest.raises(config.ConfigError, match=r"plugins\.storage\.buckt: unknown .*bucket"):
        config.load(cfg, env={})


def test_local_storage_settings_live_under_its_plugin(tmp_path: Path) -> None:
    s = config.load(None, env={"FERRY_PLUGINS_STORAGE_LOCAL_DIR": str(tmp_path / "x")})
    from ferry.app import App

    storage = App(s).storage()
    assert storage.root == tmp_path / "x"  # type: ignore[attr-defined]
    with pytest.raises(
        config.ConfigError, match="FERRY_EXPORT_STORAGE_DIR does not name a setting"
    ):
        config.load(None, env={"FERRY_EXPORT_STORAGE_DIR": "x"})


def test_dependencies_set_up_first_and_a_cycle_is_named() -> None:
    graph = {("ferry.caches", "a"): [("ferry.caches", "b")], ("ferry.caches", "b"): []}
    for name in ("a", "b"):
        plugins.register("ferry.caches", name, object())
    try:
        order = plugins.dependency_order([("ferry.caches", "a")], lambda n: graph[n])
        assert order == [("ferry.caches", "b"), ("ferry.caches", "a")]
        graph[("ferry.caches", "b")] = [("ferry.caches", "a")]
        with pytest.raises(
            plugins.PluginError, match=r"cycle: caches\.a -> caches\.b -> caches\.a"
        ):
            plugins.dependency_order([("ferry.caches", "a")], lambda n: graph[n])
        graph[("ferry.caches", "b")] = [("ferry.caches", "zz")]
        with pytest.raises(plugins.PluginError, match="depends on missing caches plugin 'zz'"):
            plugins.dependency_order([("ferry.caches", "a")], lambda n: graph[n])
    finally:
        for name in ("a", "b"):
            plugins.unregister("ferry.caches", name)


def test_an_object_outside_its_contract_is_refused() -> None:
    plugins.register("ferry.formats", "nothing", lambda app: object())
    plugins.register("ferry.formats", "inert", object())
    try:
        with pytest.raises(plugins.PluginError, match="does not provide the formats contract"):
            plugins.resolve("ferry.formats", "nothing")
        with pytest.raises(plugins.PluginError, match="is not a factory"):
            plugins.resolve("ferry.formats", "inert")
    finally:
        plugins.unregister("ferry.formats", "nothing")
        plugins.unregister("ferry.formats", "inert")


def test_installed_plugins_are_read_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scanning installed metadata costs milliseconds; a lookup per RPC must not repeat it
    (it was about 60% of ListSemesters when every call resolved its dataset)."""
    scans = []
    real = plugins.entry_points

    def counting(**kw: Any) -> Any:
        scans.append(kw)
        return real(**kw)

    monkeypatch.setattr(plugins, "entry_points", counting)
    plugins._installed.cache_clear()
    try:
        for _ in range(5):
            plugins.resolve("ferry.datasets", "school")
            plugins.names("ferry.datasets")
        assert scans == [{"group": "ferry.datasets"}]
    finally:
        plugins._installed.cache_clear()
