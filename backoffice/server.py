"""Run the back-office: a real uvicorn server on a socket we bind ourselves, either in a daemon
thread (tests, the embedded demo) or in the foreground (`backoffice serve`)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import Callable

import uvicorn

from backoffice.app import create_app
from backoffice.municipal import LookupLimits

log = logging.getLogger("backoffice.server")


class RunningServer:
    """A started server; `.url` is http://HOST:PORT with the port the OS actually bound."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, sock: socket.socket, host: str) -> None:
        self._server = server
        self._thread = thread
        self._sock = sock
        self.host = host
        self.port: int = sock.getsockname()[1]
        self.url = url_of(host, self.port)

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():  # a hung request: stop waiting for it
            self._server.force_exit = True
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def url_of(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on HOST:PORT (0 = any free port). Raises OSError (in use, not
    allowed, unknown host) before anything is served."""
    # proto must be IPPROTO_TCP: asyncio only sets TCP_NODELAY on such sockets, and without it
    # every response waits ~40 ms for the client's delayed ACK (Nagle), measured here.
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    try:
        # lets a restarted server take a port whose old connections linger in TIME_WAIT; a
        # port another process listens on is still refused (EADDRINUSE)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that calls `on_started` once it accepts requests."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started()


def serve_foreground(db_url: str, sock: socket.socket, *, log_level: str = "warning",
                     on_started: Callable[[], None] = lambda: None,
                     lookup_limits: LookupLimits | None = None) -> None:
    """Serve on the bound `sock` in this thread until SIGINT/SIGTERM (`backoffice serve`).
    The database is migrated first; its errors are raised before anything is served."""
    app = create_app(db_url, migrate=True, lookup_limits=lookup_limits)
    # no access log: fee-slip queries carry national codes in the URL
    config = uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    _AnnouncingServer(config, on_started).run(sockets=[sock])


def serve_in_thread(db_url: str, host: str = "127.0.0.1", port: int = 0, *,
                    startup_timeout: float = 30.0, lookup_limits: LookupLimits | None = None) -> RunningServer:
    """Migrate `db_url`, bind HOST:PORT (0 = any free port) and serve until `.stop()`.
    `lookup_limits`: default from the environment (LookupLimits.from_env)."""
    app = create_app(db_url, migrate=True, lookup_limits=lookup_limits)
    sock = bind_socket(host, port)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"backoffice-{sock.getsockname()[1]}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("back-office server did not start")
        time.sleep(0.01)
    running = RunningServer(server, thread, sock, host)
    log.info("back-office serving on %s", running.url)
    return running
