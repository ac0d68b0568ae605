"""Calls spread over every pod behind a headless Service: two real `ferry serve export`
processes share one DNS name (a tiny DNS server answers it with both addresses, as cluster
DNS answers a headless Service with every ready pod), and a client with `round_robin`
reaches both. With the default policy the calls stay on one process: what a ClusterIP
Service and a long-lived HTTP/2 connection do."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ferry.config import ClientSettings
from ferry.rpc.client import Clients
from ferry.v1 import export_pb2
from tests.conftest import token_from_key_file
from tests.deploy.serving import Served, ferry_serve

NAME = "ferry-export.ferry.svc.test"
ADDRESSES = ("127.0.0.1", "127.0.0.2")  # two pods; the whole 127/8 is loopback


@contextmanager
def dns_server(name: str, addresses: tuple[str, ...]) -> Iterator[int]:
    """A UDP DNS server on 127.0.0.1 answering A queries for `name` with `addresses` and
    everything else with no records; yields its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def answer(query: bytes) -> bytes:
        (qid,) = struct.unpack("!H", query[:2])
        i, labels = 12, []
        while query[i]:
            labels.append(query[i + 1 : i + 1 + query[i]].decode().lower())
            i += 1 + query[i]
        qtype, _qclass = struct.unpack("!HH", query[i + 1 : i + 5])
        question = query[12 : i + 5]
        records = b""
        count = 0
        if ".".join(labels) == name and qtype == 1:
            for a in addresses:
                records += struct.pack("!HHHIH", 0xC00C, 1, 1, 5, 4) + socket.inet_aton(a)
                count += 1
        return struct.pack("!HHHHHH", qid, 0x8180, 1, count, 0, 0) + question + records

    def run() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(512)
            except TimeoutError:
                continue
            sock.sendto(answer(data), peer)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        sock.close()


def free_port_on_both() -> int:
    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind((ADDRESSES[0], 0))
            port = a.getsockname()[1]
            try:
                b.bind((ADDRESSES[1], port))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no port free on both loopback addresses")


def handled(served: Served) -> float:
    text = httpx.get(f"http://127.0.0.1:{served.metrics_port}/metrics").text
    return sum(
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == "ferry_rpc_server_handled_total"
        and s.labels.get("grpc_method") == "ListSemesters"
    )


@pytest.fixture
def two_pods(tmp_path: Path) -> Iterator[tuple[list[Served], str, str]]:
    """Two `ferry serve export` processes on the same port of two addresses, one DNS name
    for both; (processes, dns:/// target, token)."""
    key_file = tmp_path / "signing.key"
    token = token_from_key_file(key_file, "viewer", "lb-test")
    port = free_port_on_both()
    with ExitStack() as stack:
        pods = []
        for i, address in enumerate(ADDRESSES):
            folder = tmp_path / f"pod{i}"
            folder.mkdir()
            pods.append(
                stack.enter_context(
                    ferry_serve(
                        folder, "export",
                        FERRY_SERVER_ADDRESS=f"{address}:{port}",
                        FERRY_AUTH_SIGNING_KEY_FILE=str(key_file),
                    )
                )
            )  # fmt: skip
        dns = stack.enter_context(dns_server(NAME, ADDRESSES))
        yield pods, f"dns://127.0.0.1:{dns}/{NAME}:{port}", token


def call_many(target: str, token: str, policy: str, n: int = 20) -> None:
    settings = ClientSettings(target=target, load_balancing_policy=policy, timeout_seconds=10)
    clients = Clients(settings, lambda: token)
    try:
        stub = clients.export()
        for _ in range(n):
            stub.ListSemesters(export_pb2.ListSemestersRequest(), wait_for_ready=True)
    finally:
        clients.close()


@pytest.mark.slow
def test_round_robin_sends_calls_to_both_processes_behind_one_name(
    two_pods: tuple[list[Served], str, str],
) -> None:
    pods, target, token = two_pods
    before = [handled(p) for p in pods]
    call_many(target, token, "round_robin")
    got = [handled(p) - b for p, b in zip(pods, before, strict=True)]
    assert sum(got) == 20
    assert all(n >= 5 for n in got), got  # spread, not pinned


@pytest.mark.slow
def test_without_a_policy_one_connection_takes_every_call(
    two_pods: tuple[list[Served], str, str],
) -> None:
    pods, target, token = two_pods
    before = [handled(p) for p in pods]
    call_many(target, token, "")
    got = sorted(handled(p) - b for p, b in zip(pods, before, strict=True))
    assert got == [0, 20]
