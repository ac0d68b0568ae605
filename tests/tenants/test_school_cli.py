"""`ferry school add|list|show` (docs/tenants.md): bad input names its field and changes
nothing; SQLite, as `make run` has it, keeps its one school."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ferry.cli.main import cli
from ferry.db import migrate
from ferry.db.engine import make_engine
from tests.conftest import fresh_database


def ferry(args: list[str], url: str, tmp_path: Path) -> tuple[int, str]:
    env = {
        "FERRY_CONFIG": str(Path(__file__).parents[2] / "ferry.yaml"),
        "FERRY_DATABASE_URL": url,
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp_path / "signing.key"),
    }
    r = CliRunner().invoke(cli, args, env=env)
    return r.exit_code, r.stdout + r.stderr


def test_sqlite_lists_its_one_school_and_adds_none(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'one.db'}"
    code, out = ferry(["school", "list"], url, tmp_path)
    assert code == 1 and "ferry db upgrade" in out  # an unmigrated database is said so
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()

    code, out = ferry(["school", "list"], url, tmp_path)
    assert code == 0 and out.splitlines()[-1].split()[0] == "default", out
    code, out = ferry(["school", "add", "north"], url, tmp_path)
    assert code == 1 and "holds one school" in out
    code, out = ferry(["school", "show", "default"], url, tmp_path)
    assert code == 0 and "id:        1" in out


@pytest.mark.postgres
def test_school_add_list_show_and_bad_input(tmp_path: Path) -> None:
    with fresh_database("postgres", tmp_path) as url:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        add_list_show(url, tmp_path)


def add_list_show(url: str, tmp_path: Path) -> None:
    code, out = ferry(
        ["school", "add", "north-high", "--name", "North High", "--language", "el",
         "--time-zone", "Europe/Athens", "--sender", "office@north.example"],
        url, tmp_path,
    )  # fmt: skip
    assert code == 0 and "north-high added (id 2)" in out, out
    code, out = ferry(["school", "show", "north-high"], url, tmp_path)
    assert code == 0 and "Europe/Athens" in out and "office@north.example" in out
    assert "North High" in out

    for args, word in (
        (["north-high"], "exists"),
        (["North"], "code"),
        (["a/b"], "code"),
        (["x\x00y"], "code"),
        (["--", "-x"], "code"),
        (["south", "--language", "fr"], "language"),
        (["south", "--time-zone", "Mars/Olympus"], "time_zone"),
        (["south", "--sender", "not an address"], "sender"),
        (["south", "--name", "n\x00"], "name"),
    ):
        code, out = ferry(["school", "add", *args], url, tmp_path)
        assert code != 0 and word in out, (args, out)
        assert "Traceback" not in out and "SELECT" not in out
    code, out = ferry(["school", "list"], url, tmp_path)
    assert [line.split()[0] for line in out.splitlines()[2:]] == ["default", "north-high"], out
    code, out = ferry(["school", "show", "south"], url, tmp_path)
    assert code == 1 and "school 'south' not found" in out
