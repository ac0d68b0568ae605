"""`ferry serve` in a subprocess on free ports with a temporary SQLite database."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    proc: subprocess.Popen[str]
    grpc_port: int
    metrics_port: int
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    def output(self) -> str:
        return "".join(self.lines)


def serve_env(tmp: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
        "FERRY_DATABASE_URL": f"sqlite:///{tmp / 'ferry.db'}",
        "FERRY_AUTH_SIGNING_KEY_FILE": str(tmp / "signing.key"),
        "FERRY_PLUGINS_STORAGE_LOCAL_DIR": str(tmp / "exports"),
        "FERRY_PLUGINS_STORAGE_LOCAL_ARCHIVE_DIR": str(tmp / "archive"),
        "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
        "FERRY_METRICS_PORT": "0",
        "FERRY_GATEWAY_ENABLED": "false",
        "FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS": "0",
        "FERRY_EXPORT_POLL_SECONDS": "0.1",
        **extra,
    }


@contextmanager
def ferry_serve(tmp: Path, *services: str, **extra: str) -> Iterator[Served]:
    """`ferry serve [SERVICES]` until the block ends (then SIGTERM, kill after 20 s)."""
    env = serve_env(tmp, **extra)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ferry.cli.main", "serve", *services],
        env=env, cwd=tmp, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    grpc_port = metrics_port = 0
    deadline = time.monotonic() + 60
    try:
        while not (grpc_port and metrics_port) and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if m := re.search(r"gRPC\s+\S+:(\d+)", line):
                grpc_port = int(m.group(1))
            if m := re.search(r"metrics http://\S+:(\d+)/metrics", line):
                metrics_port = int(m.group(1))
        assert grpc_port and metrics_port, "".join(lines)
        # Keep reading stderr so the server never blocks on a full pipe.
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr or []), daemon=True)
        reader.start()
        served = Served(proc, grpc_port, metrics_port, env, lines)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
