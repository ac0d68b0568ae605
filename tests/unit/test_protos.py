"""The committed generated code is what `make protos` produces from protos/ now."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "protos.py"), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    fresh = {p.name: p.read_text() for p in (tmp_path / "ferry" / "v1").iterdir() if p.is_file()}
    committed = {
        p.name: p.read_text()
        for p in (ROOT / "ferry" / "v1").iterdir()
        if p.is_file() and p.name != "__init__.py"
    }
    assert fresh.keys() == committed.keys(), "run `make protos`: generated files differ"
    stale = [name for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"run `make protos` and commit: stale {stale}"


def test_every_rpc_declares_its_role_and_idempotency() -> None:
    from ferry.v1 import export_pb2, options_pb2

    for service in export_pb2.DESCRIPTOR.services_by_name.values():
        for method in service.methods:
            opts = method.GetOptions()
            assert opts.HasExtension(options_pb2.min_role), method.full_name
