"""The CLI knows where it is: it finds ferry.yaml by FERRY_CONFIG, then the current folder,
then the folder Ferry was installed from; `-v` says which; and without any ferry.yaml it
never makes a key pair of its own (which would sign tokens no server knows)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ferry.cli import common
from ferry.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder outside the repository with no ferry.yaml, as the working directory."""
    for var in ("FERRY_CONFIG", "FERRY_TOKEN", "FERRY_AUTH_SIGNING_KEY_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def where(*args: str) -> str:
    r = CliRunner().invoke(cli, ["-v", *args, "notify", "--help"])
    assert r.exit_code == 0, r.output
    return r.stderr.strip()


def test_the_install_folder_is_found_from_anywhere(elsewhere: Path) -> None:
    assert where() == f"config: {ROOT / 'ferry.yaml'} (the folder Ferry was installed from)"


def test_the_current_folder_comes_before_the_install_folder(elsewhere: Path) -> None:
    (elsewhere / "ferry.yaml").write_text("server: {address: 127.0.0.1:50999}\n")
    assert where() == f"config: {elsewhere / 'ferry.yaml'} (the current folder)"


def test_ferry_config_comes_first(elsewhere: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (elsewhere / "ferry.yaml").write_text("server: {address: 127.0.0.1:50999}\n")
    other = elsewhere / "other.yaml"
    other.write_text("{}\n")
    monkeypatch.setenv("FERRY_CONFIG", str(other))
    assert where() == f"config: {other} (--config/FERRY_CONFIG)"


def test_without_any_ferry_yaml_no_keys_are_made_and_the_error_says_what_to_set(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the CLI made ./var/auth here and its token was refused by the real server
    with "token signed by unknown key id"."""
    monkeypatch.setattr(common, "INSTALL_DIR", elsewhere / "site-packages")
    monkeypatch.setenv("FERRY_TARGET", "127.0.0.1:9")  # nothing is ever called
    assert where() == "config: - (none found: built-in defaults)"
    r = CliRunner().invoke(cli, ["export", "semesters"])
    assert r.exit_code == 1
    assert "no ferry.yaml found" in r.stderr
    assert "FERRY_CONFIG" in r.stderr and "FERRY_TOKEN" in r.stderr
    assert not (elsewhere / "var").exists()
    assert list(elsewhere.iterdir()) == []
