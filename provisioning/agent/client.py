"""Signed HTTP calls to the fleet server (requests; no server library)."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import requests

from provisioning.agent.errors import FleetRefused, FleetUnavailable
from provisioning.common import signing

TIMEOUT_S = 15.0


class FleetClient:
    def __init__(self, base_url: str, key: signing.Ed25519PrivateKey, kiosk_id: str, *,
                 session: requests.Session | None = None, timeout_s: float = TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.kiosk_id = kiosk_id
        self.http = session or requests.Session()
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, body: Any = None, *, kiosk_id: str | None = None) -> Any:
        """Send a signed request; the JSON answer (None for 204). FleetRefused when the server
        answers with its own error code, FleetUnavailable for anything else."""
        data = b"" if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = signing.sign_request(self.key, kiosk_id or self.kiosk_id, method, path, data,
                                       now=time.time(), nonce=secrets.token_urlsafe(18))
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            resp = self.http.request(method, self.base_url + path, data=data, headers=headers,
                                     timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise FleetUnavailable(type(exc).__name__) from exc
        if resp.status_code == 204:
            return None
        try:
            payload = resp.json()
        except ValueError:
            raise FleetUnavailable(f"HTTP {resp.status_code}, not JSON") from None
        if resp.status_code >= 400:
            if isinstance(payload, dict) and isinstance(payload.get("error"), str) and resp.status_code < 500:
                raise FleetRefused(resp.status_code, payload["error"], str(payload.get("message", "")))
            raise FleetUnavailable(f"HTTP {resp.status_code}")
        return payload
