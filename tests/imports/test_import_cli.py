"""`ferry import FILE`, `ferry import list|show|undo` against a real server."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from tests.imports.helpers import download, fingerprint, seed_small, serving

ROOT = Path(__file__).resolve().parents[2]


def _env(app: App, port: int) -> dict[str, str]:
    return {
        "FERRY_DATABASE_URL": app.settings.database.url,
        "FERRY_AUTH_SIGNING_KEY_FILE": app.settings.auth.signing_key_file,
        "FERRY_TARGET": f"127.0.0.1:{port}",
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
    }


def test_cli_imports_a_file_lists_shows_and_undoes_it(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    seed_small(empty_url)
    app = make_app(empty_url)
    with serving(app) as stubs:
        bundle = tmp_path / "fall.json"
        bundle.write_bytes(download(stubs))
        before = fingerprint(empty_url)
        run = CliRunner()
        env = _env(app, stubs.port)
        dry = run.invoke(cli, ["import", str(bundle), "--dry-run"], env=env)
        assert dry.exit_code == 0, dry.output
        assert re.search(r"students\s+0\s+0\s+\d+", dry.output)
        assert "dry run (nothing changed)" in dry.output
        assert fingerprint(empty_url) == before

        real = run.invoke(
            cli, ["import", "--strategy", "update", str(bundle), "--idempotency-key", "x"], env=env
        )
        assert real.exit_code == 0, real.output
        import_id = re.search(r"import (\S+) of 2026-fall: completed", real.output)
        assert import_id, real.output

        listed = run.invoke(cli, ["import", "list"], env=env)
        assert listed.exit_code == 0, listed.output
        assert import_id.group(1) in listed.output

        shown = run.invoke(cli, ["import", "show", import_id.group(1)], env=env)
        assert shown.exit_code == 0 and "strategy update" in shown.output, shown.output

        undone = run.invoke(cli, ["import", "undo", import_id.group(1)], env=env)
        assert undone.exit_code == 0 and ": undone" in undone.output, undone.output

        missing = run.invoke(cli, ["import", "show", "no-such-import"], env=env)
        assert missing.exit_code == 3 and "NOT_FOUND" in missing.output
    assert fingerprint(empty_url) == before


def test_cli_import_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["import", str(tmp_path / "absent.json")])
    assert result.exit_code == 2 and "does not exist" in result.output
    helped = CliRunner().invoke(cli, ["import", "--help"])
    assert helped.exit_code == 0 and "list" in helped.output and "undo" in helped.output


def test_cli_imports_a_csv_of_one_entity_with_a_column_mapping(
    empty_url: str, make_app: Callable[..., App], tmp_path: Path
) -> None:
    app = make_app(empty_url)
    path = tmp_path / "students.csv"
    path.write_text(
        "Student ID,First name,Last name,Mail,Year level,Status\n"
        "S1,Ada,L,ada@example.org,9,active\n"
    )
    with serving(app) as stubs:
        args = ["import", str(path), "--entity", "students", "--map", "Mail=email"]
        result = CliRunner().invoke(cli, args, env=_env(app, stubs.port))
        bad = CliRunner().invoke(cli, [*args[:4], "--map", "Mail"], env=_env(app, stubs.port))
    assert result.exit_code == 0, result.output
    assert re.search(r"students\s+1\s+0\s+0", result.output)
    assert "of students: completed" in result.output
    assert bad.exit_code == 2 and "HEADER=FIELD" in bad.output
