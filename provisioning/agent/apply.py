"""Apply a signed configuration document to kiosk.json.

In order, refusing (ConfigRefused, nothing changed) at the first failure:
  1. the signature is the fleet key pinned at enrollment's (a document signed by any other
     key is refused), the type is kiosk-config, the document is for this kiosk;
  2. it has not expired (TUF: a stale document cannot be replayed forever);
  3. its version is higher than the one this kiosk runs (an older one is a rollback; the
     same one is already applied and is left alone);
  4. the fleet settings merged over this kiosk's own kiosk.json pass the kiosk's schema
     (kiosk.settings: the very check the kiosk loads kiosk.json with).
Then it is written only when the journal has no open transaction (else ConfigDeferred: tried
again at the next run): under the data lock when the kiosk is stopped, beside a running kiosk
otherwise (it reads kiosk.json only at start; the new version is "staged" until its next
start — see running()). The write is atomic (temp file, fsync, rename), after kiosk.json.bak
is saved."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
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
    #: when kiosk.json was written (epoch s), and what ran before ({"version", "settings"}): a
    #: kiosk process started before the write still runs that
    written_at: float = 0.0
    previous: dict[str, Any] | None = None
    written_boot: tuple[str, float] | None = None  # (boot id, seconds since boot) of the write


def applied(data_dir: Path) -> Applied | None:
    raw = read_json(Path(data_dir) / "fleet" / "applied.json")
    if not raw:
        return None
    boot = raw.get("written_boot")
    return Applied(int(raw["version"]), dict(raw["settings"]), str(raw["hash"]), tuple(raw.get("base", ())),
                   float(raw.get("written_at", 0.0)), raw.get("previous"),
                   (str(boot[0]), float(boot[1])) if isinstance(boot, list) and len(boot) == 2 else None)


def process_started_at(pid: str | int) -> float | None:
    """When process `pid` started, in seconds since this boot (/proc/PID/stat), comparable
    with boot_clock(); None when it cannot be told."""
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22: start time after boot, in ticks
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def boot_clock() -> tuple[str, float]:
    """(this boot's id, seconds since it): the clock process start times are kept in."""
    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = ""
    return boot_id, time.clock_gettime(time.CLOCK_BOOTTIME)


def running(data_dir: Path, current: Applied | None = None) -> tuple[dict[str, Any] | None, bool]:
    """What the kiosk runs: ({"version", "settings"} or None, staged). A kiosk process that
    holds the data dir and started before the last write still runs what it loaded then
    (staged = True: the new version runs at its next start)."""
    from provisioning.agent.local import data_lock_holder

    current = current if current is not None else applied(data_dir)
    if current is None:
        return None, False
    holder = data_lock_holder(data_dir)
    written = current.written_boot
    if holder and written and written[0] == boot_clock()[0]:  # the same boot: compare start times
        started = process_started_at(holder) if holder.isdigit() else None
        if started is None or started < written[1]:
            return current.previous, True
    return {"version": current.version, "settings": current.settings}, False


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
    read_as = config_path.read_bytes() if config_path.exists() else None
    local = read_json(config_path, {}) or {}
    if not isinstance(local, dict):
        raise ConfigRefused("config.local_invalid", f"{config_path} is not a JSON object")
    local, base = _hand_back(local, current, settings)
    merged = merge([local, settings])
    try:
        KioskSettings.from_dict(merged, source=f"fleet configuration v{verified.version}")
    except InvalidSettings as exc:
        raise ConfigRefused("config.invalid", str(exc.context.get("problem") or exc)) from None
    now_running, _ = running(data_dir, current)
    record = Applied(verified.version, settings, settings_hash(settings), tuple(base), 0.0, now_running)
    return _write(data_dir, merged, record, read_as)


def _write(data_dir: Path, merged: dict[str, Any], record: Applied, read_as: bytes | None) -> Applied:
    """Write kiosk.json when no transaction is open. With the kiosk stopped, under its data
    lock (no kiosk starts meanwhile). With the kiosk running (it holds the lock), without it:
    the kiosk reads kiosk.json only at start, so the running process and any transaction it
    opens meanwhile are untouched, and the new version runs from its next start."""
    lock = DataLock(data_dir)
    try:
        lock.acquire()
    except DataDirLocked:
        lock = None  # the kiosk runs
    try:
        summary = journal_summary(data_dir)
        if summary["open_transactions"]:
            raise ConfigDeferred(f"{summary['open_transactions']} transaction(s) open")
        config_path = data_dir / CONFIG_FILENAME
        fleet = fleet_dir(data_dir)
        now_as = config_path.read_bytes() if config_path.exists() else None
        if now_as != read_as:  # someone else (kiosk maintenance set-pin, a technician) wrote it meanwhile
            raise ConfigDeferred("kiosk.json changed while the configuration was prepared")
        if now_as is not None:
            write_private(fleet / "kiosk.json.bak", now_as)
        written_at, written_boot = time.time(), boot_clock()
        write_private(config_path, json.dumps(merged, ensure_ascii=False, indent=2).encode("utf-8"))
        record = Applied(record.version, record.settings, record.hash, record.base, written_at, record.previous,
                         written_boot)
        write_json(fleet / "applied.json", {"version": record.version, "settings": record.settings,
                                            "hash": record.hash, "base": list(record.base),
                                            "written_at": written_at, "written_boot": list(written_boot),
                                            "previous": record.previous})
        return record
    finally:
        if lock is not None:
            lock.release()
