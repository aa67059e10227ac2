"""What the agent reads from its own kiosk, locally and read-only: the journal (open
transactions, refunds waiting for an operator, the last transaction's time), who holds the
data lock, and device status.

Device status: the devices configured in kiosk.json (or, with none configured there — the
demo's kiosk —, those the file names); a status for each from <data_dir>/device-status.json,
which the running kiosk writes (kiosk.status.StatusFile: its StatusCoordinator's to_dict(),
with when and by which process; a plain {"name": "ok" | "fault: …"} is read too), else
"unknown". A file whose writer is gone (its pid no longer runs, or runs another program) or
that has not been written for 3 × its refresh period is stale: every device is "unknown" and
every service "unknown", never the last status a dead kiosk saw."""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from kiosk.data_lock import LOCK_FILENAME
from kiosk.journal import GENESIS_HASH, Journal, TxState, journal_path
from kiosk.settings import CONFIG_FILENAME

DEVICE_STATUS_FILE = "device-status.json"


def journal_summary(data_dir: Path) -> dict[str, Any]:
    path = journal_path(data_dir)
    if not path.exists():
        return {"open_transactions": 0, "refunds_pending": 0, "last_tx_at": None, "journal_head": [0, GENESIS_HASH]}
    journal = Journal.open_readonly(path)
    try:
        open_count = len(journal.open_transactions())
        # the newest state of every transaction: those an operator must refund
        rows = journal._read(  # noqa: SLF001 (read-only query on the journal's own table)
            "SELECT count(*) FROM journal j JOIN (SELECT tx_id, max(seq) AS last FROM journal GROUP BY tx_id) t "
            "ON j.seq = t.last WHERE j.state = ?", (TxState.REFUND_PENDING.value,))
        refunds = int(rows[0][0]) if rows else 0
        seq, head_hash = journal.head()
        last = journal.entry_at(seq) if seq else None
    finally:
        journal.close()
    last_at = dt.datetime.fromtimestamp(last.at, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if last else None
    return {"open_transactions": open_count, "refunds_pending": refunds, "last_tx_at": last_at,
            "journal_head": [seq, head_hash]}


def data_lock_holder(data_dir: Path) -> str | None:
    """The pid holding the kiosk's data lock (a running kiosk, recover, the demo), or None."""
    path = Path(data_dir) / LOCK_FILENAME
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


#: a file not written for this many of its refresh periods is stale
STALE_AFTER_REFRESHES = 3


def _live(data_dir: Path, now: float | None = None) -> tuple[dict[str, Any], bool]:
    """(the file's content, whether it is fresh). Missing or unreadable: ({}, False)."""
    path = Path(data_dir) / DEVICE_STATUS_FILE
    try:
        mtime = path.stat().st_mtime
        live = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, False
    if not isinstance(live, dict):
        return {}, False
    return live, _fresh(live, mtime, time.time() if now is None else now)


def _fresh(live: dict[str, Any], mtime: float, now: float) -> bool:
    from kiosk.status import STATUS_REFRESH_S, process_started

    pid = live.get("pid")
    if pid is not None:  # written by a kiosk process: is it still that process?
        if not isinstance(pid, int) or process_started(pid) is None:
            return False
        started = live.get("pid_started")
        if started is not None and process_started(pid) != started:
            return False  # the pid was reused by another process
    written = live.get("written_at")
    written_at = float(written) if isinstance(written, (int, float)) else mtime
    refresh = live.get("refresh_s")
    refresh_s = float(refresh) if isinstance(refresh, (int, float)) and refresh > 0 else STATUS_REFRESH_S
    return now - written_at <= STALE_AFTER_REFRESHES * refresh_s


def _device_text(row: Any) -> str:
    """A device's status in one phrase: "ok", or its state and the reason it is not usable."""
    if not isinstance(row, dict):
        return str(row)[:80]
    reason = row.get("reason")
    if not reason:
        return "ok"
    key = reason.get("key") if isinstance(reason, dict) else reason
    return f"{row.get('state', 'unusable')}: {key}"[:80]


def device_status(data_dir: Path) -> dict[str, str]:
    """Every device configured in kiosk.json with its status. The file is either the kiosk's
    StatusCoordinator.to_dict() ({"devices": {name: {state, reason, …}}, "services": …}) or a
    plain {name: status}; a device it does not name, and every device when the file is stale,
    is "unknown"."""
    try:
        raw = json.loads((Path(data_dir) / CONFIG_FILENAME).read_text(encoding="utf-8"))
        names = [str(d.get("name")) for d in raw.get("devices", []) if isinstance(d, dict)]
    except (OSError, ValueError, AttributeError):
        names = []
    live, fresh = _live(data_dir)
    rows = live.get("devices") if isinstance(live.get("devices"), dict) else \
        {k: v for k, v in live.items() if k not in _META}
    if not names:  # nothing configured in kiosk.json (the demo's kiosk): the devices the kiosk reports
        names = [str(n) for n in rows]
    if not fresh:
        return {name: "unknown" for name in names}
    return {name: _device_text(rows[name]) if name in rows else "unknown" for name in names}


#: the keys of the file that are about the file, not a device
_META = frozenset({"written_at", "pid", "pid_started", "refresh_s", "services"})


def service_status(data_dir: Path) -> dict[str, str]:
    """Each citizen service: "available", or why not (from the same file; empty without it,
    "unknown" for each when it is stale)."""
    live, fresh = _live(data_dir)
    services = live.get("services")
    if not isinstance(services, dict):
        return {}
    if not fresh:
        return {str(name): "unknown" for name in services}
    out = {}
    for name, row in services.items():
        if isinstance(row, dict):
            reason = row.get("reason")
            out[str(name)] = "available" if row.get("available") else \
                str(reason.get("key") if isinstance(reason, dict) else reason or "unavailable")[:80]
    return out
