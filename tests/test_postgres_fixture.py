"""The PostgreSQL tests run on a fresh clone with nothing beside it: with KIOSK_TEST_PG_URL
unset the session starts its own throwaway server (Unix socket only, removed at the end);
with it set to a server that does not answer, they fail — never skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
REPORT_ENV = "KIOSK_TEST_PG_REPORT"
THIS = "tests/test_postgres_fixture.py"


@pytest.mark.postgres
def test_pg_url_answers_and_can_create_a_database(pg_url: str) -> None:
    dsn = make_url(pg_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute('CREATE DATABASE "kiosk_fixture_probe"')
        conn.execute('DROP DATABASE "kiosk_fixture_probe"')
        listen = conn.execute("SHOW listen_addresses").fetchone()
        data_dir = conn.execute("SELECT current_setting('data_directory')").fetchone()
    report = os.environ.get(REPORT_ENV)
    if report:  # asked by the tests below, which run this one in a child session
        Path(report).write_text(json.dumps({"url": pg_url, "listen_addresses": listen[0] if listen else None,
                                            "data_directory": data_dir[0] if data_dir else None}))


def _child_session(tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], Path]:
    report = tmp_path / "report.json"
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{THIS}::test_pg_url_answers_and_can_create_a_database"],
        cwd=ROOT, env={**env, REPORT_ENV: str(report)}, capture_output=True, text=True, timeout=240)
    return out, report


@pytest.mark.postgres
def test_without_the_variable_a_throwaway_server_on_a_unix_socket_serves_and_is_removed(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KIOSK_TEST_PG_URL"}
    out, report = _child_session(tmp_path, env)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "1 passed" in out.stdout and "skipped" not in out.stdout
    seen = json.loads(report.read_text())
    url = make_url(seen["url"])
    assert url.host is None and str(url.query["host"]).startswith("/tmp/kiosk-pg-")  # a socket, no TCP
    assert seen["listen_addresses"] == ""
    root = Path(str(url.query["host"])).parent
    assert Path(seen["data_directory"]).is_relative_to(root)
    assert not root.exists()  # stopped and removed when the session ended


@pytest.mark.postgres
def test_with_the_variable_set_to_a_dead_server_the_tests_fail_not_skip(tmp_path: Path) -> None:
    env = {**os.environ, "KIOSK_TEST_PG_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    out, report = _child_session(tmp_path, env)
    assert out.returncode == 1, out.stdout[-3000:]
    assert "1 error" in out.stdout and "skipped" not in out.stdout
    assert "cannot be reached" in out.stdout
    assert not report.exists()
