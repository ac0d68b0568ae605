"""`ferry serve` in its own process for benchmarks: a real server on free ports, so
figures include the wire and the server's peak RSS can be read from /proc."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from bench.common import vm_hwm_mb
from ferry.auth import TokenIssuer
from ferry.auth.keys import ensure_keys
from ferry.v1 import options_pb2

ROOT = Path(__file__).resolve().parents[1]


class FerryServer:
    """`ferry serve SERVICES` (all of them, gateway included, when empty) on `url`."""

    def __init__(
        self,
        url: str,
        workdir: Path,
        services: Sequence[str] = ("export",),
        env: Mapping[str, str] | None = None,
    ) -> None:
        full_env = {
            # FERRY_BENCH_* steer the benchmark, not Ferry (its config would refuse them).
            **{k: v for k, v in os.environ.items() if not k.startswith("FERRY_BENCH_")},
            "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
            "FERRY_DATABASE_URL": url,
            "FERRY_SERVER_ADDRESS": "127.0.0.1:0",
            "FERRY_GATEWAY_PORT": "0",
            "FERRY_METRICS_ENABLED": "false",
            "FERRY_AUTH_SIGNING_KEY_FILE": str(workdir / "signing.key"),
            "FERRY_LOG_LEVEL": "WARNING",
            "FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS": "0",
            **(env or {}),
        }
        self.key = ensure_keys(workdir / "signing.key", workdir / "public-keys.json")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ferry.cli.main", "serve", *services],
            env=full_env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.port = self.web_port = 0
        want_web = not services  # `ferry serve` alone also starts the gateway
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (self.port and (self.web_port or not want_web)):
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                break
            if m := re.search(r"gRPC\s+\S+:(\d+)", line):
                self.port = int(m.group(1))
            if m := re.search(r"web\s+http://\S+:(\d+)/", line):
                self.web_port = int(m.group(1))
        if not self.port or (want_web and not self.web_port):
            self.proc.kill()
            raise RuntimeError(f"ferry serve {' '.join(services)} did not start")
        # Keep reading its log so a chatty server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        for _ in self.proc.stderr or []:
            pass

    def token(self, role: int = options_pb2.ROLE_ADMIN) -> str:
        return TokenIssuer(self.key).issue("bench", role, dt.timedelta(hours=1)).token

    def rss_mb(self) -> float:
        """The server's peak resident set so far (VmHWM)."""
        return vm_hwm_mb(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(60)
