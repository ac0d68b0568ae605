"""Ferry as an operator meets it: one process per service on real PostgreSQL, things that
can be killed, and a TCP proxy that can drop or delay what goes through it.

Every address is on loopback and every wait is bounded; a test that leaves a process
behind fails its teardown.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ferry.db.engine import make_engine

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
SCRATCH = "ferry_stage_"  # the merge's staging tables


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """`n` distinct free loopback ports (for replicas that must come back on theirs)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def connected_to(port: int) -> bool:
    """Whether some process on this machine holds an established TCP connection to
    127.0.0.1:`port` (here: the gateway's channel to a replica)."""
    with contextlib.suppress(OSError), open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            remote, state = cols[2], cols[3]
            if state == "01" and remote == f"0100007F:{port:04X}":  # 127.0.0.1, ESTABLISHED
                return True
    return False


@dataclass
class Proc:
    """One Ferry process (`ferry serve NAME` or `ferry gateway`)."""

    name: str
    popen: subprocess.Popen[str]
    port: int
    log: list[str] = field(default_factory=list)

    def signal(self, sig: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        self.signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None


def _drain(proc: Proc) -> None:
    """Keep reading the process's stderr so it never blocks on a full pipe."""
    assert proc.popen.stderr is not None
    for line in proc.popen.stderr:
        proc.log.append(line)


class Cluster:
    """Processes sharing one database, key folder and config."""

    def __init__(self, url: str, folder: Path, **env: str) -> None:
        self.url = url
        self.folder = folder
        self.env = {
            **os.environ,
            "FERRY_CONFIG": str(ROOT / "ferry.yaml"),
            "FERRY_DATABASE_URL": url,
            "FERRY_AUTH_SIGNING_KEY_FILE": str(folder / "signing.key"),
            "FERRY_METRICS_ENABLED": "false",
            "FERRY_PLUGINS_STORAGE_LOCAL_DIR": str(folder / "exports"),
            "FERRY_PLUGINS_STORAGE_LOCAL_ARCHIVE_DIR": str(folder / "archive"),
            "FERRY_SERVER_SHUTDOWN_DEREGISTER_WAIT_SECONDS": "0.2",
            "FERRY_LOG_LEVEL": "WARNING",
            **env,
        }
        self.procs: list[Proc] = []

    def ferry(self, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
        """Run a `ferry` command to its end; its stdout (stderr joined on failure)."""
        done = subprocess.run(
            [sys.executable, "-m", "ferry.cli.main", *args],
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ferry {' '.join(args)}: exit {done.returncode}: {done.stderr}")
        return done.stdout

    def token(self, role: str = "operator") -> str:
        """A token signed with the cluster's key, minted here: a `ferry token create
        --local` process per token cost a second or two each (tests/auth/test_cli.py tests
        that command)."""
        from tests.conftest import token_from_key_file

        return token_from_key_file(self.folder / "signing.key", role, f"system:{role}")

    def serve(self, service: str, port: int = 0, **env: str) -> Proc:
        """`ferry serve SERVICE` on `port` (0: a free one), once it says it is serving.
        `service` may name several, space-separated ("export import"): one process."""
        penv = {**self.env, "FERRY_SERVER_ADDRESS": f"127.0.0.1:{port}", **env}
        popen = subprocess.Popen(
            [sys.executable, "-m", "ferry.cli.main", "serve", *service.split()],
            env=penv, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        proc = Proc(service, popen, 0)
        threading.Thread(target=_drain, args=(proc,), daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and popen.poll() is None:
            for line in list(proc.log):
                m = re.search(r"gRPC\s+\S+:(\d+)", line)
                if m:
                    proc.port = int(m.group(1))
                    self.procs.append(proc)
                    return proc
            time.sleep(0.05)
        popen.kill()
        raise AssertionError(f"ferry serve {service} did not start: {''.join(proc.log)[-2000:]}")

    def gateway(self, targets: dict[str, str], **env: str) -> Proc:
        """`ferry gateway` calling each service at its target ({"export": "host:port"})."""
        port = free_port()
        services = ", ".join(f"{{name: {n}, target: '{t}'}}" for n, t in targets.items())
        penv = {
            **self.env,
            "FERRY_GATEWAY_PORT": str(port),
            "FERRY_CLIENT_SERVICES": f"[{services}]",
            "FERRY_GATEWAY_SERVICES": f"[{', '.join(targets)}]",
            **env,
        }
        popen = subprocess.Popen(
            [sys.executable, "-m", "ferry.cli.main", "gateway"],
            env=penv, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        proc = Proc("gateway", popen, port)
        threading.Thread(target=_drain, args=(proc,), daemon=True).start()
        self.procs.append(proc)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                return proc
            if popen.poll() is not None:
                break
            time.sleep(0.1)
        popen.kill()
        raise AssertionError(f"ferry gateway did not start: {''.join(proc.log)[-2000:]}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.alive:
                proc.kill()
        self.procs.clear()


def checksums(url: str) -> dict[str, str]:
    """A sha256 per table over every row and column, in primary-key order.

    The merge's scratch tables (`ferry_stage_*`, UNLOGGED, dropped and recreated by the next
    import) hold no data of the school and are left out, and so is `auth_tokens`, whose
    last-used time changes with every call a token makes."""
    engine = make_engine(url)
    out: dict[str, str] = {}
    try:
        meta = sa.MetaData()
        meta.reflect(engine)
        with engine.connect() as conn:
            for name, table in sorted(meta.tables.items()):
                if name in ("alembic_version", "auth_tokens") or name.startswith(SCRATCH):
                    continue
                order = list(table.primary_key.columns) or list(table.columns)
                h = hashlib.sha256()
                for row in conn.execute(sa.select(table).order_by(*order)):
                    h.update(repr(tuple(row)).encode())
                out[name] = h.hexdigest()
    finally:
        engine.dispose()
    return out


class TcpProxy:
    """A loopback TCP proxy in front of `target` that can pass, refuse or delay traffic."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = int(self.listener.getsockname()[1])
        self.mode = "pass"  # pass | drop | delay
        self.delay = 0.0
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def drop(self) -> None:
        """Cut every open connection and refuse new ones (the host is unreachable)."""
        self.mode = "drop"
        with self._lock:
            for c in self._conns:
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                    c.close()
            self._conns.clear()

    def restore(self) -> None:
        self.mode = "pass"

    def slow(self, seconds: float) -> None:
        self.mode, self.delay = "delay", seconds

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.mode == "drop":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data or self.mode == "drop":
                    break
                if self.mode == "delay":
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def close(self) -> None:
        self._stop.set()
        self.drop()
        self.listener.close()


@contextlib.contextmanager
def cluster(url: str, folder: Path, **env: str) -> Iterator[Cluster]:
    c = Cluster(url, folder, **env)
    try:
        yield c
    finally:
        c.close()


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    """A redis-server of this test's own on a free loopback port (never the machine's:
    other users share that one), no persistence; yields its port."""
    port = free_port()
    popen = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if popen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"redis-server did not start (exit {popen.poll()})")
            time.sleep(0.05)
        yield port
    finally:
        popen.kill()
        popen.wait(10)
