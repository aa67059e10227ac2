"""Run the fleet server: a real uvicorn on a socket we bind ourselves, in a daemon thread
(tests, `make run`) or in the foreground (`fleet serve`). Binding and the RunningServer handle
are the back-office's (backoffice.server)."""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

import uvicorn

from backoffice.server import RunningServer, _AnnouncingServer, bind_socket, url_of
from provisioning.server.app import Settings, create_app

__all__ = ["RunningServer", "bind_socket", "url_of", "serve_foreground", "serve_in_thread"]

log = logging.getLogger("fleet.server")


def _config(db_url: str, settings: Settings | None, log_level: str = "warning") -> uvicorn.Config:
    app = create_app(db_url, migrate=True, settings=settings)
    return uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=5)


def serve_foreground(db_url: str, sock: socket.socket, *, settings: Settings | None = None,
                     log_level: str = "warning", on_started: Callable[[], None] = lambda: None) -> None:
    _AnnouncingServer(_config(db_url, settings, log_level), on_started).run(sockets=[sock])


def serve_in_thread(db_url: str, host: str = "127.0.0.1", port: int = 0, *, settings: Settings | None = None,
                    startup_timeout: float = 30.0) -> RunningServer:
    config = _config(db_url, settings)
    sock = bind_socket(host, port)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"fleet-{sock.getsockname()[1]}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("fleet server did not start")
        time.sleep(0.01)
    running = RunningServer(server, thread, sock, host)
    log.info("fleet server serving on %s", running.url)
    return running
