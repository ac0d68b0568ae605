"""docs/plugins.md, ferry.contracts and pyproject's entry points say the same thing: every
group, every built-in plugin and every contract method is documented, and every built-in
plugin, built the one way (`App.plugin`, as `factory(app)`), satisfies its contract."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

import pytest

from ferry import contracts, plugins
from ferry.app import App
from ferry.config import Settings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "plugins.md").read_text()
ENTRY_POINTS: dict[str, dict[str, str]] = tomllib.loads((ROOT / "pyproject.toml").read_text())[
    "project"
]["entry-points"]


def members(contract: type) -> list[str]:
    """The attributes and methods a contract asks for."""
    own = [n for n in vars(contract) if not n.startswith("_")]
    return sorted({*own, *getattr(contract, "__annotations__", {})} - {"_is_protocol"})


def row(group: str) -> str:
    m = re.search(rf"^\| `{re.escape(group)}` \|.*$", DOC, re.M)
    assert m, f"docs/plugins.md has no row for {group}"
    return m.group(0)


def test_every_group_is_a_contract_and_an_entry_point_group() -> None:
    assert set(plugins.GROUPS) == set(contracts.CONTRACTS)
    assert set(ENTRY_POINTS) == set(plugins.GROUPS)


@pytest.mark.parametrize("group", contracts.GROUPS)
def test_each_group_its_builtins_and_contract_methods_are_documented(group: str) -> None:
    line = row(group)
    contract = contracts.CONTRACTS[group]
    assert f"`{contract.__name__}`" in line, f"{group}: contract {contract.__name__} not named"
    for name in ENTRY_POINTS[group]:
        assert f"`{name}`" in line, f"{group}: built-in {name!r} missing from its row"
    section = DOC.split(f"### `{contract.__name__}`", 1)
    assert len(section) == 2, f"docs/plugins.md has no section for {contract.__name__}"
    body = section[1].split("\n### ", 1)[0]
    for member in members(contract):
        assert f"`{member}" in body, f"{contract.__name__}.{member} is not documented"


def test_contract_methods_are_precise() -> None:
    """No loose `*args` contract is left: every method names its parameters."""
    for contract in contracts.CONTRACTS.values():
        for name, fn in vars(contract).items():
            if name.startswith("_") or not callable(fn):
                continue
            kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
            assert inspect.Parameter.VAR_POSITIONAL not in kinds, f"{contract.__name__}.{name}"
            assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{contract.__name__}.{name}"


@pytest.mark.parametrize("group", contracts.GROUPS)
def test_every_builtin_satisfies_its_contract(group: str, tmp_path: Path) -> None:
    settings = Settings.model_validate(
        {
            "database": {"url": f"sqlite:///{tmp_path}/x.db"},
            "redis": {"url": "redis://127.0.0.1:1/0"},  # never reached: clients connect lazily
        }
    )
    app = App(settings)
    try:
        for name in ENTRY_POINTS[group]:
            assert name in plugins.names(group)
            if group == "ferry.datasets":
                obj = plugins.resolve(group, name)
            elif group == "ferry.services":
                obj = plugins.resolve(group, name, app)  # owned by a Server, not the app
            else:
                obj = app.plugin(group, name)
            assert isinstance(obj, contracts.CONTRACTS[group]), f"{group} {name}"
            if group == "ferry.filters":
                assert isinstance(obj.server(), contracts.ServerFilter), name
                half = obj.client()
                assert half is None or isinstance(half, contracts.ClientFilter), name
    finally:
        app.close()
