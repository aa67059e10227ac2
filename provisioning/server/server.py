"""Run the fleet server: a real uvicorn on a socket we bind ourselves, in a daemon thread
(tests, `make run`) or in the foreground (`fleet serve`), with one process or several
(`fleet serve --workers N`: the app keeps nothing in memory between requests, so N processes
share the listening socket and the database). Binding and the RunningServer handle are the
back-office's (backoffice.server).

uvicorn picks httptools and uvloop when they are installed (the `server` extra installs them):
its pure-Python HTTP parser (h11) costs more than a heartbeat's database work."""

from __future__ import annotations

import logging
import multiprocessing
import signal
import socket
import threading
import time
from typing import Any, Callable

import uvicorn

from backoffice.server import RunningServer, _AnnouncingServer, bind_socket, url_of
from provisioning.server.app import Settings, create_app
from provisioning.server.db import make_engine, upgrade

__all__ = ["RunningServer", "bind_socket", "url_of", "serve_foreground", "serve_in_thread"]

log = logging.getLogger("fleet.server")


def _config(db_url: str, settings: Settings | None, log_level: str = "warning", *,
            migrate: bool = True) -> uvicorn.Config:
    # no pre-ping: it is one more round trip before every request's transaction (a heartbeat
    # is three). A connection the database dropped fails the one request that meets it, and
    # SQLAlchemy then discards the whole pool; the agent sends again at its next interval.
    engine = make_engine(db_url, pool_pre_ping=False)
    app = create_app(db_url, migrate=migrate, settings=settings, engine=engine)
    return uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", timeout_graceful_shutdown=5)


def serve_foreground(db_url: str, sock: socket.socket, *, settings: Settings | None = None,
                     log_level: str = "warning", on_started: Callable[[], None] = lambda: None,
                     workers: int = 1) -> None:
    if workers <= 1:
        _AnnouncingServer(_config(db_url, settings, log_level), on_started).run(sockets=[sock])
        return
    _serve_workers(db_url, sock, settings, log_level, on_started, workers)


def _worker(db_url: str, sock: socket.socket, settings: Settings | None, log_level: str, started: Any) -> None:
    """One worker process: its own app, engine and pool on the shared listening socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor stops its workers (SIGTERM)
    _AnnouncingServer(_config(db_url, settings, log_level, migrate=False), started.release).run(sockets=[sock])


def _serve_workers(db_url: str, sock: socket.socket, settings: Settings | None, log_level: str,
                   on_started: Callable[[], None], workers: int) -> None:
    """Migrate once, start `workers` processes on the socket, announce once they all accept,
    restart one that dies, and stop them all on SIGINT or SIGTERM."""
    upgrade(db_url)
    ctx = multiprocessing.get_context("spawn")
    started = ctx.Semaphore(0)
    stopping = threading.Event()

    def spawn() -> Any:
        proc = ctx.Process(target=_worker, args=(db_url, sock, settings, log_level, started),
                           name="fleet-worker", daemon=True)
        proc.start()
        return proc

    def stop(signum: int, _frame: Any) -> None:
        stopping.set()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    procs = [spawn() for _ in range(workers)]
    try:
        waiting = workers
        while waiting and not stopping.is_set():
            if started.acquire(timeout=0.2):
                waiting -= 1
            elif not any(p.is_alive() for p in procs):
                raise RuntimeError("fleet serve: no worker started")
        if not stopping.is_set():
            on_started()
        while not stopping.wait(0.5):
            for i, proc in enumerate(procs):
                if not proc.is_alive():
                    log.warning("fleet worker %s exited (%s); starting another", proc.pid, proc.exitcode)
                    procs[i] = spawn()
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()  # SIGTERM: uvicorn finishes the requests in flight
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for s, handler in previous.items():
            signal.signal(s, handler)


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
