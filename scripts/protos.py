"""Regenerate ferry/v1 from protos/ with the pinned grpcio-tools (`make protos`).

`python scripts/protos.py OUT_DIR` writes into OUT_DIR instead of the repository, which is
how the staleness test compares fresh output with the committed code.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
# google/api/{annotations,http,httpbody}.proto, vendored from googleapis (Apache-2.0).
GOOGLEAPIS = ROOT / "third_party" / "googleapis"


def generate(out: Path) -> None:
    """Generate *_pb2.py, *_pb2_grpc.py and .pyi stubs for every proto into `out`."""
    files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    bindir = Path(sys.executable).parent
    builtin = str(resources.files("grpc_tools") / "_proto")
    (out / "ferry" / "v1").mkdir(parents=True, exist_ok=True)
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{GOOGLEAPIS}",
        f"-I{builtin}",
        f"--plugin=protoc-gen-mypy={bindir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bindir / 'protoc-gen-mypy_grpc'}",
        f"--python_out={out}",
        f"--grpc_python_out={out}",
        f"--mypy_out={out}",
        f"--mypy_grpc_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT)
