"""`ferry report ...` against a real reports server."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

from click.testing import CliRunner
from pypdf import PdfReader

from ferry.app import App
from ferry.cli.main import cli
from tests.conftest import running
from tests.integration.test_cli import env_for


def test_report_commands(reports_app: App, tmp_path: Path) -> None:
    with running(reports_app, ["reports"]) as srv:
        env = env_for(reports_app, srv.port)
        run = CliRunner().invoke

        out = tmp_path / "s1.pdf"
        r = run(
            cli, ["report", "student", "S1", "--semester", "2026-fall", "-o", str(out)], env=env
        )
        assert r.exit_code == 0, r.output
        assert "S1_performance_2026-09-07_2026-09-22_en.pdf" in r.output
        assert "Ελένη" in PdfReader(out).pages[0].extract_text()

        # --language el: the file's own words are Greek (the default is English).
        el = tmp_path / "s1-el.pdf"
        r = run(
            cli,
            ["report", "student", "S1", "--language", "el", "-o", str(el)],
            env=env,
        )
        assert r.exit_code == 0, r.output
        assert "Αναφορά μαθητή" in PdfReader(el).pages[0].extract_text()
        assert "Αναφορά μαθητή" not in PdfReader(out).pages[0].extract_text()
        r = run(cli, ["report", "student", "S1", "--language", "fr", "-o", str(el)], env=env)
        assert r.exit_code == 2 and "'fr' is not one of 'en', 'el'" in r.output

        r = run(cli, ["report", "student", "S1", "--format", "json", "-o", "-"], env=env)
        assert r.exit_code == 0 and json.loads(r.stdout)["gpa"] == 3.33

        r = run(cli, ["report", "student", "S404", "-o", str(tmp_path / "x.pdf")], env=env)
        assert r.exit_code == 3 and "NOT_FOUND" in r.output
        assert not (tmp_path / "x.pdf").exists() and not (tmp_path / "x.pdf.part").exists()

        sem = tmp_path / "sem.csv"
        r = run(
            cli, ["report", "semester", "2026-fall", "--format", "csv", "-o", str(sem)], env=env
        )
        assert r.exit_code == 0 and "# At risk" in sem.read_text()
        sem_el = tmp_path / "sem-el.pdf"
        r = run(cli, ["report", "semester", "2026-fall", "--language", "el", "-o", str(sem_el)],
                env=env)  # fmt: skip
        assert r.exit_code == 0, r.output
        assert "Αναφορά" in PdfReader(sem_el).pages[0].extract_text()

        ids = tmp_path / "ids.txt"
        ids.write_text("# class 10b\nS1\n\nS2\nS404\n")
        z = tmp_path / "c.zip"
        r = run(
            cli,
            ["report", "bulk", "--students-file", str(ids), "--output", "zip", "-o", str(z)],
            env=env,
        )
        assert r.exit_code == 0, r.output
        names = zipfile.ZipFile(z).namelist()
        assert len(names) == 3 and names[-1] == "failures.csv"

        m = tmp_path / "m.pdf"
        r = run(
            cli, ["report", "bulk", "--course", "MATH", "--output", "pdf", "-o", str(m)], env=env
        )
        assert r.exit_code == 0 and len(PdfReader(io.BytesIO(m.read_bytes())).outline) == 5

        r = run(cli, ["report", "bulk", "--output", "zip", "-o", str(z)], env=env)
        assert r.exit_code == 2 and "exactly one" in r.output

        r = run(cli, ["report", "cache", "stats"], env=env)
        assert r.exit_code == 0 and "backend memory" in r.output and "hits" in r.output
        r = run(cli, ["report", "cache", "clear", "--student", "S1"], env=env)
        assert r.exit_code == 0 and "cleared student S1 (version 1)" in r.output
        r = run(cli, ["report", "cache", "clear"], env=env)
        assert r.exit_code == 0 and "cleared all reports" in r.output
