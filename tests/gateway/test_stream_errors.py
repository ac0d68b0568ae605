"""A stream that fails after it started says so (NDJSON error line, SSE error event); a
401 names its scheme; every server stream declares what it becomes over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest

from ferry import plugins
from ferry.app import App
from ferry.errors import Unavailable
from ferry.rpc.filters import Filter, FilterPlugin, RpcCall
from gateway.routes import all_routes
from tests.gateway.conftest import bearer, seed_small

Gateway = Callable[..., Any]


class FailAfterThree(Filter):
    """Ends every server stream with UNAVAILABLE after its third message."""

    def __init__(self, app: App) -> None:
        pass

    def message(self, call: RpcCall) -> None:
        sent = call.attrs.get("sent", 0) + 1
        call.attrs["sent"] = sent
        if sent > 3:
            raise Unavailable("the export service went away mid-stream")


class FailAfterThreePlugin(FilterPlugin):
    server_half = FailAfterThree


@pytest.fixture
def failing_streams() -> Iterator[None]:
    plugins.register("ferry.filters", "fail-after-three", FailAfterThreePlugin)
    yield
    plugins.unregister("ferry.filters", "fail-after-three")


def test_ndjson_stream_that_fails_midway_ends_with_an_error_line(
    gateway: Gateway, empty_url: str, failing_streams: None
) -> None:
    seed_small(empty_url)
    client, app = gateway(
        empty_url, FERRY_SERVER_FILTERS="[logging, metrics, deadline, auth, fail-after-three]"
    )
    r = client.get(
        "/api/v1/sessions/2026-fall/records?batch_size=100", headers=bearer(app, "operator")
    )
    assert r.status_code == 200
    lines = [orjson.loads(x) for x in r.content.splitlines() if x]
    assert len(lines) == 4
    assert "header" in orjson.dumps(lines[0]).decode()
    assert lines[-1] == {
        "error": {
            "code": "UNAVAILABLE",
            "reason": "UNAVAILABLE",  # the machine reason a page words (ErrorInfo)
            "metadata": {},
            "message": "the export service went away mid-stream",
        }
    }


def test_401_carries_www_authenticate_bearer(gateway: Gateway, empty_url: str) -> None:
    client, _ = gateway(empty_url)
    r = client.get("/api/v1/sessions/semesters")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_streaming_route_declares_its_http_kind() -> None:
    streams = [r for r in all_routes() if r.method.server_streaming]
    assert streams
    assert {r.kind for r in streams} <= {"file", "records", "events"}
    by_name = {r.method.name: r.kind for r in streams}
    assert by_name["StreamSession"] == "records"
    assert by_name["WatchExportJob"] == "events"
    assert by_name["DownloadSession"] == "file"


@pytest.mark.parametrize("size", [4_097, 8_300, 11_000])
def test_an_oversized_token_is_401_at_the_gateway_never_a_grpc_metadata_error(
    gateway: Gateway, empty_url: str, size: int
) -> None:
    # Forwarded, a token near 8 KiB trips gRPC's metadata soft limit at random (429
    # RESOURCE_EXHAUSTED), and past 10 KiB always; the gateway refuses it first.
    client, _ = gateway(empty_url)
    for _ in range(5):
        headers = {"authorization": "Bearer " + "x" * size}
        r = client.get("/api/v1/sessions/semesters", headers=headers)
        assert r.status_code == 401, r.text[:300]
        assert r.json()["message"] == "token is larger than 4 KiB"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
