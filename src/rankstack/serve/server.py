"""Run the service with uvicorn (in the foreground or in a thread), and the request limits
every request passes through (:class:`RequestLimits`)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from rankstack.errors import ConfigError, require

log = logging.getLogger("rankstack.serve")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot bind {host}:{port}: {exc}") from None
    sock.set_inheritable(True)
    return sock


def serve_forever(app: Any, host: str = "127.0.0.1", port: int = 8000,
                  log_level: str = "info") -> None:
    """Run ``app`` until interrupted."""
    uvicorn = require("uvicorn", extra="serve", purpose="rankstack serve")
    if not is_loopback(host):
        log.warning("binding %s: the service is reachable from other machines", host)
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


class BackgroundServer:
    """uvicorn in a daemon thread on a socket bound here (port 0 = a free port).

    >>> with BackgroundServer(app) as srv:   # doctest: +SKIP
    ...     httpx.get(srv.url + "/health")
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 log_level: str = "warning") -> None:
        uvicorn = require("uvicorn", extra="serve", purpose="rankstack serve")
        self._sock = _bind(host, port)
        self.host, self.port = self._sock.getsockname()[:2]
        config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [self._sock]}, daemon=True,
                                        name="rankstack-uvicorn")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread exited during start-up")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start within {timeout} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class RequestStats:
    """What :class:`RequestLimits` refused or cancelled (``GET /stats`` under ``requests``)."""

    #: bodies over max_body_bytes (by Content-Length, or counted while a chunked body arrives)
    body_too_large: int = 0
    #: clients that went away before their response: their work was cancelled
    disconnected: int = 0
    #: requests past their deadline: cancelled, answered 504
    deadline_exceeded: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class RequestLimits:
    """ASGI middleware: the body limit, cancellation on disconnect, a per-request deadline.

    * The body is read here, counting bytes as they arrive, whatever the framing
      (Content-Length or chunked). Past ``max_body_bytes`` the request gets 413 with
      ``Connection: close``. So that an ordinary client, still writing its body, can read that
      answer instead of a reset connection, up to another ``max_body_bytes`` (and at most
      ``DRAIN_S`` seconds) is read and discarded first ("lingering close"); the rest is never
      read. A Content-Length over twice the limit gets 413 before any byte of the body is read.
    * The application then runs as a task while this middleware waits for the client's
      disconnect; if the client goes away first, the task is cancelled (so its queued scoring
      is dropped, see :mod:`rankstack.serve.batching`) and counted.
    * ``deadline_s`` (None = none) bounds each request from its first byte of body to its
      response: past it, the task is cancelled and the client gets 504.
    """

    def __init__(self, app: Any, *, max_body_bytes: int, deadline_s: float | None,
                 stats: RequestStats) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.deadline_s = deadline_s
        self.stats = stats

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        length = dict(scope.get("headers") or ()).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _json(send, 400, "invalid Content-Length header")
                return
            if declared > limit:
                self.stats.body_too_large += 1
                if declared <= 2 * limit:
                    await _drain(receive, declared)
                await _json(send, 413, f"request body of {declared} bytes exceeds the limit "
                                       f"of {limit} bytes (setting max_body_bytes)", close=True)
                return
        loop = asyncio.get_running_loop()
        deadline = None if self.deadline_s is None else loop.time() + self.deadline_s
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                self.stats.disconnected += 1
                return
            body = msg.get("body", b"")
            size += len(body)
            if size > limit:
                self.stats.body_too_large += 1
                if msg.get("more_body", False):
                    await _drain(receive, limit)
                await _json(send, 413, f"request body exceeds the limit of {limit} bytes "
                                       f"(setting max_body_bytes; {size} bytes received before "
                                       f"the request was refused)", close=True)
                return
            chunks.append(body)
            more = msg.get("more_body", False)
        await self._run(scope, b"".join(chunks), receive, send, deadline)

    async def _run(self, scope: dict, body: bytes, receive: Any, send: Any,
                   deadline: float | None) -> None:
        gone = asyncio.Event()
        body_given = False
        started = False

        async def app_receive() -> dict:
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def app_send(msg: dict) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        task = asyncio.ensure_future(self.app(scope, app_receive, app_send))
        # With the body read, the server's next message is http.disconnect: the client went
        # away (or, once the response is complete, the cycle ended).
        watcher = asyncio.ensure_future(receive())
        timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            done, _ = await asyncio.wait({task, watcher}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            if not watcher.done():
                watcher.cancel()
        if task in done:
            task.result()  # re-raise the application's error to the server
            return
        task.cancel()
        if watcher in done:
            gone.set()
            self.stats.disconnected += 1
            log.info("client disconnected: %s %s cancelled", scope.get("method"),
                     scope.get("path"))
        else:
            self.stats.deadline_exceeded += 1
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if watcher not in done and not started:
            await _json(send, 504, f"request not answered within its deadline of "
                                   f"{self.deadline_s:g} s (setting request_timeout_s); "
                                   f"its work was cancelled", close=True)


#: the longest a refused body is drained before its 413 is sent (see RequestLimits)
DRAIN_S = 5.0


async def _drain(receive: Any, budget: int) -> None:
    """Read and discard up to ``budget`` more body bytes, for at most ``DRAIN_S`` seconds."""
    async def read() -> None:
        left = budget
        while left > 0:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            left -= len(msg.get("body", b""))
            if not msg.get("more_body", False):
                return

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(read(), DRAIN_S)


async def _json(send: Any, status: int, detail: str, *, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode("utf-8")
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode("ascii"))]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
