import threading

import pytest

from ferry import plugins
from ferry.datasets.school import SCHOOL
from ferry.rpc.filters.logging import LoggingFilter


def test_builtin_plugins_are_entry_points() -> None:
    assert "export" in plugins.names("ferry.services")
    assert {"logging", "metrics", "auth", "deadline"} <= set(plugins.names("ferry.filters"))
    assert plugins.load("ferry.datasets", "school") is SCHOOL
    assert plugins.load("ferry.filters", "logging") is LoggingFilter


def test_unknown_plugin_names_the_known_ones() -> None:
    with pytest.raises(
        plugins.PluginError, match=r"unknown filters plugin 'logg'; known: .*auth.*logging"
    ):
        plugins.load("ferry.filters", "logg")


def test_unknown_group_is_an_error() -> None:
    with pytest.raises(plugins.PluginError, match="unknown plugin group"):
        plugins.names("ferry.nope")


def test_full_path_works_like_a_name() -> None:
    assert plugins.load("ferry.filters", "ferry.rpc.filters.logging:LoggingFilter") is LoggingFilter
    with pytest.raises(plugins.PluginError, match="cannot load"):
        plugins.load("ferry.filters", "ferry.rpc.filters.logging:Nope")


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
