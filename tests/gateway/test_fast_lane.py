"""The gateway's fast lane (gateway.middleware.FastLane): a unary route with a literal
path, asked without Origin, answers as the full ASGI stack does (status, body, security
headers, Vary, metrics, errors); a request naming an Origin still gets CORS."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from tests.gateway.conftest import bearer

Gateway = Callable[..., Any]
PATH = "/api/v1/sessions/semesters"
# What CORS adds for an allowed Origin; every other header is the same either way.
CORS = {"access-control-allow-origin", "access-control-expose-headers"}


def _counted(client: Any, status: str) -> float:
    text = client.get("/metrics").text
    pattern = (
        r'ferry_gateway_requests_total\{method="GET",route="' + re.escape(PATH)
        + r'",status="' + status + r'"\} ([0-9.e+]+)'
    )  # fmt: skip
    m = re.search(pattern, text)
    return float(m.group(1)) if m else 0.0


def test_the_fast_lane_answers_as_the_full_stack(gateway: Gateway, empty_url: str) -> None:
    origin = "https://school.example"
    client, app = gateway(empty_url, FERRY_GATEWAY_CORS_ORIGINS=f'["{origin}"]')
    before = _counted(client, "200")
    fast = client.get(PATH, headers=bearer(app))
    full = client.get(PATH, headers={**bearer(app), "Origin": origin})  # the full stack
    assert fast.status_code == full.status_code == 200
    assert fast.content == full.content
    assert full.headers["access-control-allow-origin"] == origin  # CORS still ran there
    assert "access-control-allow-origin" not in fast.headers
    assert set(fast.headers) == set(full.headers) - CORS
    for name in ("content-security-policy", "x-frame-options", "x-content-type-options",
                 "referrer-policy", "content-type", "vary"):  # fmt: skip
        assert fast.headers[name] == full.headers[name], name
    assert _counted(client, "200") == before + 2  # both requests counted, one label set


def test_errors_on_the_fast_lane_keep_their_shape_and_headers(
    gateway: Gateway, empty_url: str
) -> None:
    client, _ = gateway(empty_url)
    before = _counted(client, "401")
    r = client.get(PATH)  # no token
    assert r.status_code == 401
    assert r.json()["code"] == "UNAUTHENTICATED"
    assert r.headers["x-frame-options"] == "DENY" and r.headers["vary"] == "Origin"
    assert _counted(client, "401") == before + 1
