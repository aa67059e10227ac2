"""Apply a signed configuration document to kiosk.json.

In order, refusing (ConfigRefused, nothing changed) at the first failure:
  1. the signature is the fleet key pinned at enrollment's (a document signed by any other
     key is refused), the type is kiosk-config, the document is for this kiosk;
  2. it has not expired (TUF: a stale document cannot be replayed forever);
  3. its version is higher than the one this kiosk runs (an older one is a rollback; the
     same one is already applied and is left alone);
  4. the fleet settings merged over this kiosk's own kiosk.json pass the kiosk's schema
     (kiosk.settings: the very check the kiosk loads kiosk.json with).
Then it is written only while the agent holds the kiosk's data lock and the journal has no
open transaction: otherwise the apply is deferred (ConfigDeferred) and tried again at the next
run. The write is atomic (temp file, fsync, rename), after kiosk.json.bak is saved."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kiosk.data_lock import DataDirLocked, DataLock
from kiosk.settings import CONFIG_FILENAME, InvalidSettings, KioskSettings
from provisioning.agent.errors import ConfigRefused
from provisioning.agent.local import journal_summary
from provisioning.agent.state import fleet_dir, read_json, write_json, write_private
from provisioning.common import signing
from provisioning.common.config import DOC_TYPE, LOCAL_ONLY, merge, settings_hash


class ConfigDeferred(Exception):
    """Not now: a citizen transaction is open or the running kiosk holds the data lock."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Applied:
    version: int
    settings: dict[str, Any]
    hash: str
    #: what kiosk.json held at each path before the fleet took it over ({"path", "had", "value"}),
    #: so a key the fleet stops setting goes back to the kiosk's own value (or away)
    base: tuple[dict[str, Any], ...] = ()


def applied(data_dir: Path) -> Applied | None:
    raw = read_json(Path(data_dir) / "fleet" / "applied.json")
    if not raw:
        return None
    return Applied(int(raw["version"]), dict(raw["settings"]), str(raw["hash"]), tuple(raw.get("base", ())))


def _paths(settings: dict[str, Any], prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    out: set[tuple[str, ...]] = set()
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out |= _paths(value, prefix + (key,))
        else:
            out.add(prefix + (key,))
    return out


def _lookup(tree: dict[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    node: Any = tree
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return False, None
        node = node[key]
    return True, node


def _restore(tree: dict[str, Any], path: tuple[str, ...], had: bool, value: Any) -> None:
    node = tree
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            if not had:
                return
            node[key] = {}
        node = node[key]
    if had:
        node[path[-1]] = value
    else:
        node.pop(path[-1], None)


def _hand_back(local: dict[str, Any], current: Applied | None, settings: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """kiosk.json with the paths the fleet no longer sets given back their own values, and the
    base for the new settings (paths taken over now remember what the kiosk had there)."""
    local = json.loads(json.dumps(local))
    base = {tuple(b["path"]): b for b in (current.base if current else ())}
    wanted = _paths(settings)
    for path in sorted(wanted - base.keys()):
        had, value = _lookup(local, path)
        base[path] = {"path": list(path), "had": had, "value": value}
    for path in sorted(base.keys() - wanted):
        b = base.pop(path)
        _restore(local, path, bool(b["had"]), b["value"])
    return local, [base[p] for p in sorted(base)]


def current_values(data_dir: Path, keys: Any) -> dict[str, Any]:
    """This kiosk's kiosk.json values of `keys` (what it actually runs), for the report."""
    raw = read_json(Path(data_dir) / CONFIG_FILENAME, {}) or {}
    return {k: raw[k] for k in keys if k in raw}


def verify(doc: Any, *, fleet_public_key: str, kiosk_id: str, now: dt.datetime | None = None) -> signing.VerifiedDocument:
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        verified = signing.verify_document(doc, fleet_public_key, doc_type=DOC_TYPE, now=now)
    except signing.DocumentExpired as exc:
        raise ConfigRefused("config.expired", str(exc)) from None
    except signing.SignatureError as exc:
        raise ConfigRefused("config.bad_signature", str(exc)) from None
    if verified.signed.get("kiosk_id") != kiosk_id:
        raise ConfigRefused("config.other_kiosk", f"the document is for {verified.signed.get('kiosk_id')!r}")
    if not isinstance(verified.signed.get("settings"), dict):
        raise ConfigRefused("config.invalid", "the document carries no settings object")
    return verified


def apply_document(data_dir: Path, doc: Any, *, fleet_public_key: str, kiosk_id: str,
                   now: dt.datetime | None = None) -> Applied | None:
    """Apply `doc`; the new Applied, or None when this version already runs. Raises
    ConfigRefused (never applied) or ConfigDeferred (try again later)."""
    data_dir = Path(data_dir)
    verified = verify(doc, fleet_public_key=fleet_public_key, kiosk_id=kiosk_id, now=now)
    current = applied(data_dir)
    if current is not None and verified.version < current.version:
        raise ConfigRefused("config.rollback", f"version {verified.version} is older than the running "
                            f"version {current.version}")
    if current is not None and verified.version == current.version:
        return None
    settings = verified.signed["settings"]
    for key in LOCAL_ONLY:
        if key in settings:
            raise ConfigRefused("config.invalid", f"{key!r} is this kiosk's own and cannot come from the fleet")
    config_path = data_dir / CONFIG_FILENAME
    local = read_json(config_path, {}) or {}
    if not isinstance(local, dict):
        raise ConfigRefused("config.local_invalid", f"{config_path} is not a JSON object")
    local, base = _hand_back(local, current, settings)
    merged = merge([local, settings])
    try:
        KioskSettings.from_dict(merged, source=f"fleet configuration v{verified.version}")
    except InvalidSettings as exc:
        raise ConfigRefused("config.invalid", str(exc.context.get("problem") or exc)) from None
    return _write_locked(data_dir, merged, Applied(verified.version, settings, settings_hash(settings), tuple(base)))


def _write_locked(data_dir: Path, merged: dict[str, Any], record: Applied | None) -> Applied | None:
    lock = DataLock(data_dir)
    try:
        lock.acquire()
    except DataDirLocked as exc:
        raise ConfigDeferred(f"kiosk running (pid {exc.context.get('pid')}); applies when it releases its data "
                             "dir") from None
    try:
        summary = journal_summary(data_dir)
        if summary["open_transactions"]:
            raise ConfigDeferred(f"{summary['open_transactions']} transaction(s) open")
        config_path = data_dir / CONFIG_FILENAME
        fleet = fleet_dir(data_dir)
        if config_path.exists():
            write_private(fleet / "kiosk.json.bak", config_path.read_bytes())
        write_private(config_path, json.dumps(merged, ensure_ascii=False, indent=2).encode("utf-8"))
        if record is not None:
            write_json(fleet / "applied.json", {"version": record.version, "settings": record.settings,
                                                "hash": record.hash, "base": list(record.base)})
        return record
    finally:
        lock.release()
