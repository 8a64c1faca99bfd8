"""Run the service with uvicorn: in the foreground (``rankstack serve``) or in a thread."""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
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
