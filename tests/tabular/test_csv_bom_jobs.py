"""Entity export jobs write csv with a UTF-8 byte-order mark by default, so Excel on
Windows shows Greek names intact; `plugins.formats.csv.bom: false` turns it off. Through
real services and the CLI, against the demo data (whose names are Greek)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from ferry.app import App
from ferry.cli.main import cli
from tests.conftest import running
from tests.integration.test_cli import env_for

BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("bom", [None, "false"])
def test_an_entity_csv_carries_a_bom_unless_turned_off(
    seeded_url: str, make_app: Callable[..., App], tmp_path: Path, bom: str | None
) -> None:
    app = make_app(seeded_url, **({"FERRY_PLUGINS_FORMATS_CSV_BOM": bom} if bom else {}))
    with app.engine.connect() as conn:
        last_names = {r[0] for r in conn.execute(sa.text("SELECT last_name FROM students"))}
    out = tmp_path / "students.csv"
    with running(app, ["export"]) as srv:
        r = CliRunner().invoke(
            cli,
            ["export", "start", "--type", "students", "--format", "csv", "--wait", "-o", str(out)],
            env=env_for(app, srv.port),
        )
    assert r.exit_code == 0, r.output
    data = out.read_bytes()
    assert data.startswith(BOM) is (bom is None)
    text = data.decode("utf-8-sig")
    assert text.startswith("student_id,") or ",student_id," in text.splitlines()[0]
    greek = [n for n in last_names if any("\u0370" <= ch <= "\u03ff" for ch in n)]
    assert greek and all(n in text for n in greek)
