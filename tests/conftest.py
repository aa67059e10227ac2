"""Shared fixtures. PostgreSQL tests read KIOSK_TEST_PG_URL (set by .ci/run); in CI
(CI=true) a missing server is a failure, never a skip."""

from __future__ import annotations

import os

import pytest

PG_ENV = "KIOSK_TEST_PG_URL"


@pytest.fixture(scope="session")
def pg_url() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(f"{PG_ENV} is not set: PostgreSQL tests need a real server "
                    "(.ci/run sets postgresql+psycopg://root@127.0.0.1:5432/test)")
    return url
