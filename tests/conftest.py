"""Shared fixtures.

PostgreSQL (`pg_url`, for tests marked `postgres`): when KIOSK_TEST_PG_URL is set (CI: .ci/run
sets it) that server is used, and one that cannot be reached is a failure, never a skip.
When it is unset, the session starts a throwaway PostgreSQL of its own from Debian's
binaries (`make` installs them as root): `initdb` in a temporary directory, listening on a
Unix socket in that directory only (no TCP port), stopped and removed when the session ends.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

# Back-offices the tests start look the same demo owners up again and again: roomy look-up
# limits unless a test sets its own (tests/test_backoffice_municipal.py and
# tests/test_backoffice_replicas.py test the real limits with explicit ones).
os.environ.setdefault("BACKOFFICE_LOOKUP_LIMIT_KIOSK", "100000/60")
os.environ.setdefault("BACKOFFICE_LOOKUP_LIMIT_IDENTIFIER", "100000/600")

PG_ENV = "KIOSK_TEST_PG_URL"
#: where Debian's packages put the server binaries; KIOSK_TEST_PG_BIN overrides
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PG_SUPERUSER = "kiosk"
PG_START_TIMEOUT_S = 60.0
#: initdb refuses to run as root: as root, the throwaway server runs as the first of these
PG_OS_USERS = ("postgres", "nobody")


def _connect_check(url: str, timeout_s: int = 5) -> None:
    """Open and close one connection to `url` (a SQLAlchemy URL); raise when impossible."""
    import psycopg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, connect_timeout=timeout_s) as conn:
        conn.execute("SELECT 1")


def pg_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL bin dir, else the one initdb is found in on the PATH."""
    explicit = os.environ.get("KIOSK_TEST_PG_BIN")
    if explicit:
        return Path(explicit)
    found = sorted(glob.glob(PG_BIN_GLOB), key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0)
    for candidate in reversed(found):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


@dataclass
class ThrowawayPostgres:
    """A private PostgreSQL cluster: data and socket in one temporary directory."""

    root: Path
    process: subprocess.Popen[bytes]
    os_user: str | None

    @property
    def socket_dir(self) -> Path:
        return self.root / "socket"

    @property
    def url(self) -> str:
        from sqlalchemy.engine import URL

        return URL.create("postgresql+psycopg", username=PG_SUPERUSER, database="postgres",
                          query={"host": str(self.socket_dir)}).render_as_string(hide_password=False)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # "fast" shutdown: ends sessions, no wait
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _run_as(os_user: str | None) -> dict[str, object]:
    """Popen keyword arguments that drop root to `os_user` (nothing when not root)."""
    if os_user is None:
        return {}
    entry = pwd.getpwnam(os_user)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def start_throwaway_postgres() -> ThrowawayPostgres:
    bin_dir = pg_bin_dir()
    if bin_dir is None or not (bin_dir / "initdb").exists():
        pytest.fail(f"{PG_ENV} is unset and no PostgreSQL server binaries were found "
                    f"({PG_BIN_GLOB}/initdb): run `make deps` as root (Debian package postgresql-15), "
                    f"or set {PG_ENV} to a server")
    os_user = None
    if os.geteuid() == 0:
        os_user = next((u for u in PG_OS_USERS if _user_exists(u)), None)
        if os_user is None:
            pytest.fail(f"running as root and none of the users {PG_OS_USERS} exists to run initdb")
    # a short path: a Unix socket's path is limited to ~107 bytes
    root = Path(tempfile.mkdtemp(prefix="kiosk-pg-", dir="/tmp"))
    data, sockets = root / "data", root / "socket"
    sockets.mkdir()
    if os_user is not None:
        entry = pwd.getpwnam(os_user)
        for path in (root, sockets):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    as_user = _run_as(os_user)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    init = subprocess.run(
        [str(bin_dir / "initdb"), "-D", str(data), "-U", PG_SUPERUSER, "--auth=trust",
         "--encoding=UTF8", "--no-sync", "--no-instructions"],
        cwd=root, env=env, capture_output=True, text=True, timeout=120, **as_user)  # type: ignore[call-overload]
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"initdb failed ({init.returncode}): {init.stderr[-2000:]}")
    log = open(root / "postgres.log", "wb")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(
        [str(bin_dir / "postgres"), "-D", str(data), "-k", str(sockets),
         "-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
         "-c", "full_page_writes=off", "-c", "max_connections=100"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, **as_user)  # type: ignore[call-overload]
    log.close()
    server = ThrowawayPostgres(root, process, os_user)
    deadline = time.monotonic() + PG_START_TIMEOUT_S
    while True:
        if process.poll() is not None:
            text = (root / "postgres.log").read_text(errors="replace")[-2000:]
            server.stop()
            pytest.fail(f"throwaway PostgreSQL exited ({process.returncode}): {text}")
        try:
            _connect_check(server.url, timeout_s=2)
            return server
        except Exception:
            if time.monotonic() > deadline:
                server.stop()
                pytest.fail(f"throwaway PostgreSQL did not accept connections in {PG_START_TIMEOUT_S:.0f} s")
            time.sleep(0.1)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server for this session (SQLAlchemy URL): $KIOSK_TEST_PG_URL, which must
    answer, or a throwaway one of our own."""
    url = os.environ.get(PG_ENV)
    if url:
        try:
            _connect_check(url)
        except Exception as exc:
            pytest.fail(f"{PG_ENV}={url} cannot be reached: {exc}")
        yield url
        return
    server = start_throwaway_postgres()
    try:
        yield server.url
    finally:
        server.stop()


#: tests that time the product against a baseline measured in the same run: `make test` runs them
#: alone (`-m serial`) after the rest has run on two workers (`-m "not serial"`), so neither side
#: of a ratio is measured beside another test's load
SERIAL_MODULES = frozenset({
    "test_bench_decode.py", "test_bench_lookup.py", "test_bench_slip.py", "test_decode_budget.py",
    "test_fleet_bench.py", "test_fleet_bench_targets.py", "test_ui_bench.py",
})


#: the files whose tests take minutes (the soak, the two screenshot tours, the fuzzers): collected
#: first, so the workers start on them instead of one worker finishing them alone at the end (a
#: file's tests stay together, in their order)
LONG_MODULES = ("test_transit_soak.py", "test_ui_tour.py", "test_nexo.py", "test_ui_maintenance.py",
                "test_make_run.py", "test_make_run_fleet.py", "test_pn532_frames.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)
    first = {name: rank for rank, name in enumerate(LONG_MODULES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable: the rest keep their order
