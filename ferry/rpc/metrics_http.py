"""`/metrics` over HTTP for Prometheus."""

from __future__ import annotations

from typing import Any

from prometheus_client import disable_created_metrics, start_http_server


def serve_metrics(address: str, port: int) -> tuple[Any, int]:
    """Start the metrics endpoint in a thread; returns (server, bound port)."""
    disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series are noise
    server, _thread = start_http_server(port, addr=address)
    return server, int(server.server_port)
