"""gateway.server.OneSend: a response's head leaves with the write after it in one send,
a lone write leaves when the event-loop turn ends, close sends what is held first, and
a real uvicorn on it serves whole, streamed, large and keep-alive responses byte for byte."""

from __future__ import annotations

import asyncio
import http.client
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from gateway.server import OneSend, OneSendHttpTools


class Recorder:
    """A transport that records its writes (and whether it was closed after them)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        assert not self.closed
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


def _turn(loop: asyncio.AbstractEventLoop) -> None:
    """Run the loop until the callbacks scheduled so far have run."""
    loop.run_until_complete(asyncio.sleep(0))


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    made = asyncio.new_event_loop()
    yield made
    made.close()


def test_head_and_body_of_one_turn_leave_in_one_write(loop: asyncio.AbstractEventLoop) -> None:
    t = Recorder()
    sends = OneSend(t, loop)  # type: ignore[arg-type]
    sends.write(b"HTTP/1.1 200 OK\r\n\r\n")
    sends.write(b"body")
    assert t.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    _turn(loop)
    assert t.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]  # nothing held, nothing sent twice


def test_a_lone_write_leaves_when_the_turn_ends(loop: asyncio.AbstractEventLoop) -> None:
    t = Recorder()
    sends = OneSend(t, loop)  # type: ignore[arg-type]
    sends.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    assert t.writes == []
    _turn(loop)
    assert t.writes == [b"HTTP/1.1 100 Continue\r\n\r\n"]


def test_order_is_kept_and_large_writes_are_not_held(loop: asyncio.AbstractEventLoop) -> None:
    t = Recorder()
    sends = OneSend(t, loop)  # type: ignore[arg-type]
    big = b"x" * (OneSend.JOIN_AT_MOST + 1)
    sends.write(b"head")
    sends.write(big)  # too large to copy: the head first, then the body as it is
    sends.write(b"a")  # held again, then joined with the next
    sends.write(memoryview(b"b"))
    sends.write(b"y" * (OneSend.HOLD_AT_MOST + 1))  # not held
    assert t.writes == [b"head", big, b"ab", b"y" * (OneSend.HOLD_AT_MOST + 1)]
    sends.writelines([b"c", b"d"])
    _turn(loop)
    assert t.writes[-1] == b"cd"
    assert b"".join(t.writes) == b"head" + big + b"ab" + b"y" * (OneSend.HOLD_AT_MOST + 1) + b"cd"


def test_close_sends_what_is_held_first(loop: asyncio.AbstractEventLoop) -> None:
    t = Recorder()
    sends = OneSend(t, loop)  # type: ignore[arg-type]
    sends.write(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n")
    sends.close()
    assert t.writes == [b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n"]
    assert t.closed and sends.is_closing()
    _turn(loop)
    assert len(t.writes) == 1
    assert sends.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest is the transport's


CHUNKS = [bytes([65 + i]) * (1000 * i + 1) for i in range(12)]
LARGE = bytes(range(256)) * (5 * 1024 * 1024 // 256)  # past JOIN_AT_MOST


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for chunk in CHUNKS:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)
        await send({"type": "http.response.body", "body": b""})
        return
    body = LARGE if path == "/large" else b'{"ok": true}'
    headers = [(b"content-length", str(len(body)).encode()), (b"content-type", b"text/plain")]
    if path == "/close":
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
def server() -> Iterator[int]:
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=0, http=OneSendHttpTools, lifespan="off",
        log_config=None, access_log=False,
    )  # fmt: skip
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    yield int(srv.servers[0].sockets[0].getsockname()[1])
    srv.should_exit = True
    thread.join(timeout=30)


def test_a_real_server_on_it_answers_byte_for_byte(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=30)
    for _ in range(3):  # keep-alive: one connection, several answers
        conn.request("POST", "/small", b"{}")
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b'{"ok": true}')
        conn.request("GET", "/stream")
        r = conn.getresponse()
        assert r.getheader("transfer-encoding") == "chunked"
        assert r.read() == b"".join(CHUNKS)
        conn.request("GET", "/large")
        r = conn.getresponse()
        assert r.read() == LARGE
    conn.request("GET", "/close")
    r = conn.getresponse()
    assert r.read() == b'{"ok": true}' and r.getheader("connection") == "close"
    conn.close()
