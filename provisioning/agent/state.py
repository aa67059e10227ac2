"""The agent's files in the kiosk's data dir, under fleet/ (0700; every file 0600):

  agent.key     the kiosk's Ed25519 private key (32 raw bytes), made on this kiosk, never sent
  agent.json    server URL, kiosk id, enrollment status, the fleet's public key (pinned at
                enrollment), the heartbeat interval, an optional restart hook
  applied.json  the configuration version this kiosk runs, its settings and hash
  kiosk.json.bak  kiosk.json as it was before the last apply (the backup)
  outbox.json   command feedback not yet delivered (sent at the next run)
  agent.log     the agent's own log lines (what `upload_logs` sends)
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from provisioning.common import signing

DIR = "fleet"


def fleet_dir(data_dir: Path) -> Path:
    path = Path(data_dir) / DIR
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write atomically (temp file, fsync, rename) and privately (0600 from creation)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def write_json(path: Path, value: Any) -> None:
    write_private(path, json.dumps(value, ensure_ascii=False, indent=2).encode("utf-8"))


def load_or_create_key(data_dir: Path) -> signing.Ed25519PrivateKey:
    path = fleet_dir(data_dir) / "agent.key"
    if path.exists():
        return signing.private_from_raw(path.read_bytes())
    key = signing.new_private_key()
    write_private(path, signing.private_raw(key))
    return key


@dataclass
class AgentState:
    server_url: str
    kiosk_id: str
    status: str
    fleet_public_key: str
    interval_s: int = 60
    restart_command: list[str] = field(default_factory=list)
    #: restart the kiosk (the hook) by itself once a staged configuration waits and no
    #: transaction is open, once per version
    restart_to_apply: bool = False
    restarted_for: int = 0

    @classmethod
    def load(cls, data_dir: Path) -> AgentState | None:
        raw = read_json(Path(data_dir) / DIR / "agent.json")
        return None if raw is None else cls(**raw)

    def save(self, data_dir: Path) -> None:
        write_json(fleet_dir(data_dir) / "agent.json", asdict(self))
