"""Maintenance mode, the technician's side of the kiosk (issue 10, item 5). No Kivy here: the
touch screen (screens/maintenance.py) and the command line (`kiosk maintenance`) drive it.

- **The PIN.** Only a salted scrypt hash is ever stored: in kiosk.json's `extra` under
  `maintenance_pin_hash` (where the fleet configuration sets it) or, on a data dir without
  kiosk.json (the demo), in `maintenance-pin` (0600). `kiosk maintenance set-pin` writes it.
  The PIN itself is never logged, stored or printed.
- **Lockout.** Five wrong PINs in a row lock maintenance for 30 s; from then on every wrong
  PIN locks it again for twice as long (60 s, 120 s, … at most an hour) until a right one.
  The count and the lock's end are kept in `maintenance-state.json` (0600, written atomically),
  so switching the kiosk off and on does not reset them.
- **Audit.** Every attempt and every action is one JSON line in `maintenance-audit.log` (0600)
  and one log line: what happened, never the digits typed.
- **The session.** `Maintenance.open_session()` refuses while a citizen's transaction is open
  (one the money path has claimed); a `MaintenanceSession` then offers the devices' states and
  counters, a test print, a scan test, a card read, paper refilled, today's journal totals, the
  end-of-day report printed, services taken out of and back into service (persisted here and
  shown on the home tiles through kiosk.status), and the transactions an operator must finish.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.errors import KioskError
from kiosk.fmt import TEHRAN
from kiosk.sensitive import redact, to_ascii_digits

log = logging.getLogger("kiosk.maintenance")

PIN_HASH_KEY = "maintenance_pin_hash"
PIN_FILE = "maintenance-pin"
STATE_FILE = "maintenance-state.json"
AUDIT_FILE = "maintenance-audit.log"
AUDIT_MAX_BYTES = 1 << 20

PIN_MIN, PIN_MAX = 4, 8
MAX_WRONG = 5
BACKOFF_FIRST_S = 30.0
BACKOFF_MAX_S = 3600.0

#: scrypt's cost: 2**14 × 8 × 128 bytes = 16 MiB and some tens of ms a try (RFC 7914's
#: interactive-login figures); a stolen hash of a short PIN still falls to a search, which is
#: why the lockout, not the hash, is what guards the kiosk — and kiosk.json is 0600
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


# --- errors ----------------------------------------------------------------------------------

class MaintenanceError(KioskError):
    key = "maint.error"
    fa = "حالت نگهداری در دسترس نیست"
    en = "Maintenance is not available"


class NoPinSet(MaintenanceError):
    key = "maint.no_pin"
    fa = "رمز تکنسین تعیین نشده است (kiosk maintenance set-pin)"
    en = "No technician PIN is set (kiosk maintenance set-pin)"


class BadPin(MaintenanceError):
    key = "maint.bad_pin"
    fa = "رمز باید {min} تا {max} رقم باشد"
    en = "The PIN must be {min} to {max} digits"


class WrongPin(MaintenanceError):
    key = "maint.wrong_pin"
    fa = "رمز نادرست است. {left} بار دیگر تا قفل شدن"
    en = "Wrong PIN. {left} more tries before the lock"


class Locked(MaintenanceError):
    key = "maint.locked"
    fa = "حالت نگهداری پس از رمزهای نادرست قفل است؛ {seconds} ثانیهٔ دیگر دوباره امتحان کنید"
    en = "Maintenance is locked after wrong PINs; try again in {seconds} s"


class TransactionOpen(MaintenanceError):
    key = "maint.transaction_open"
    fa = "تراکنش یک شهروند در جریان است؛ نگهداری پس از پایان آن ممکن است"
    en = "A citizen's transaction is under way; maintenance can start when it ends"


# --- private files ---------------------------------------------------------------------------

def _write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with `text`, 0600 from its first byte, synced to disk."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    with contextlib.suppress(OSError):
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.error("maintenance: %s unreadable (%s); starting from a locked state", path.name, type(exc).__name__)
        return {"unreadable": True}
    return raw if isinstance(raw, dict) else {"unreadable": True}


# --- the PIN ---------------------------------------------------------------------------------

def normalise_pin(pin: str) -> str:
    """ASCII digits of a PIN typed in Persian, Arabic or ASCII digits; BadPin otherwise."""
    digits = to_ascii_digits(pin.strip())
    if not (digits.isascii() and digits.isdigit() and PIN_MIN <= len(digits) <= PIN_MAX):
        raise BadPin("the PIN is not 4 to 8 digits", min=PIN_MIN, max=PIN_MAX)
    return digits


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    """`scrypt$N$r$p$salt$hash` (base64) of a PIN of 4 to 8 digits."""
    digits = normalise_pin(pin)
    salt = salt if salt is not None else secrets.token_bytes(16)
    key = hashlib.scrypt(digits.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(key).decode()}"


def pin_matches(pin: str, stored: str) -> bool:
    """Whether `pin` is the one `stored` (hash_pin's text) was made from. A malformed hash
    matches nothing."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(key, validate=True)
        got = hashlib.scrypt(normalise_pin(pin).encode(), salt=base64.b64decode(salt, validate=True),
                             n=int(n), r=int(r), p=int(p), dklen=len(want))
    except (ValueError, BadPin):
        return False
    return hmac.compare_digest(got, want)


def stored_pin_hash(data_dir: Path, settings: Any = None) -> str:
    """The technician PIN's hash: kiosk.json's (the fleet sets it there), else the data dir's
    maintenance-pin file; "" when neither holds one."""
    extra = getattr(settings, "extra", None)
    if settings is None:
        with contextlib.suppress(OSError, ValueError):
            extra = json.loads((data_dir / "kiosk.json").read_text(encoding="utf-8")).get("extra")
    if isinstance(extra, Mapping) and isinstance(extra.get(PIN_HASH_KEY), str) and extra[PIN_HASH_KEY]:
        return str(extra[PIN_HASH_KEY])
    with contextlib.suppress(OSError):
        return (data_dir / PIN_FILE).read_text(encoding="ascii").strip()
    return ""


def set_pin(data_dir: Path, pin: str) -> Path:
    """Store the hash of `pin`: in kiosk.json's extra when the data dir has one (kept 0600;
    under the data dir's lock, so not while the kiosk runs), else in the maintenance-pin file
    (read at every attempt, so also under a running demo). Returns the file written."""
    hashed = hash_pin(pin)
    config = data_dir / "kiosk.json"
    if config.exists():
        from kiosk.data_lock import DataLock
        from kiosk.settings import KioskSettings

        # kiosk.json changes only under the data dir's lock, as the fleet agent writes it: never
        # under a running kiosk (which reads it once, at start) nor beside the agent
        # (DataDirLocked names the holder's pid)
        with DataLock(data_dir):
            raw = json.loads(config.read_text(encoding="utf-8"))
            if not isinstance(raw, dict):
                raise ValueError(f"{config} does not hold a JSON object")
            extra = raw.setdefault("extra", {})
            if not isinstance(extra, dict):
                raise ValueError(f"{config}: 'extra' is not an object")
            extra[PIN_HASH_KEY] = hashed
            KioskSettings.from_dict(raw, source=str(config))  # InvalidSettings: written nothing
            _write_private(config, json.dumps(raw, ensure_ascii=False, indent=2))
        target = config
    else:
        _write_private(data_dir / PIN_FILE, hashed + "\n")
        target = data_dir / PIN_FILE
    Audit(data_dir).record("pin_set", file=target.name)
    return target


# --- audit -----------------------------------------------------------------------------------

class Audit:
    """maintenance-audit.log: one JSON line per event (0600), and the same on the log."""

    def __init__(self, data_dir: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = data_dir / AUDIT_FILE
        self._clock = clock

    def record(self, event: str, **details: Any) -> None:
        row = {"at": round(self._clock(), 3), "event": event, **details}
        line = json.dumps(row, ensure_ascii=False, sort_keys=True)
        level = logging.WARNING if event in ("pin_wrong", "pin_refused", "session_refused") else logging.INFO
        log.log(level, "maintenance: %s", line)
        with contextlib.suppress(FileNotFoundError):
            if self.path.stat().st_size > AUDIT_MAX_BYTES:  # one older file is kept beside it
                self.path.replace(self.path.with_name(self.path.name + ".1"))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
        finally:
            os.close(fd)

    def lines(self) -> list[dict[str, Any]]:
        try:
            return [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x.strip()]
        except FileNotFoundError:
            return []


# --- the persisted state ----------------------------------------------------------------------

class MaintenanceState:
    """maintenance-state.json: the wrong-PIN count, the lock, services taken out of service
    and paper refills. Read on every use, so another process's change (the CLI) is seen."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / STATE_FILE

    def load(self) -> dict[str, Any]:
        return _read_json(self.path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state's lock (an flock on maintenance-state.json.lock) around a read, change
        and save, so the kiosk and another process changing it (the fleet agent, the CLI)
        never lose each other's change. Not re-entrant: take it once."""
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def save(self, state: Mapping[str, Any]) -> None:
        _write_private(self.path, json.dumps(dict(state), ensure_ascii=False, sort_keys=True))

    def disabled_services(self) -> tuple[str, ...]:
        value = self.load().get("disabled_services", [])
        return tuple(str(s) for s in value) if isinstance(value, list) else ()


def disabled_services(data_dir: Path | None) -> tuple[str, ...]:
    """The services a technician took out of service on this data dir (none without one)."""
    return MaintenanceState(Path(data_dir)).disabled_services() if data_dir is not None else ()


@dataclass(frozen=True)
class LockStatus:
    failures: int
    lockouts: int
    locked_for_s: float  # 0: not locked now
    damaged: bool = False  # the state file could not be read: counted as a lock, never a fresh start

    @property
    def locked(self) -> bool:
        return self.locked_for_s > 0


# --- the gate --------------------------------------------------------------------------------

class Maintenance:
    """The technician's entry for one kiosk: the PIN check with its lockout, and sessions."""

    def __init__(self, ctx: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.ctx = ctx
        self.data_dir = Path(ctx.data_dir)
        self.state = MaintenanceState(self.data_dir)
        self.audit = Audit(self.data_dir, clock=clock)
        self._clock = clock

    # lockout ---------------------------------------------------------------------------------
    def lock_status(self) -> LockStatus:
        raw = self.state.load()
        damaged = LockStatus(0, 1, BACKOFF_FIRST_S, damaged=True)
        if raw.get("unreadable"):  # a damaged state file must not reset the lockout: lock
            return damaged
        try:
            until = float(raw.get("locked_until", 0) or 0)
            failures, lockouts = int(raw.get("failures", 0) or 0), int(raw.get("lockouts", 0) or 0)
        except (TypeError, ValueError):
            return damaged
        left = min(max(0.0, until - self._clock()), BACKOFF_MAX_S)  # a clock set back cannot lock for ever
        return LockStatus(failures, lockouts, left)

    def check_pin(self, pin: str) -> None:
        """None when `pin` is the technician's; NoPinSet, Locked (seconds left), WrongPin
        (tries left) otherwise. Every attempt is audited, without the digits."""
        stored = stored_pin_hash(self.data_dir, getattr(self.ctx, "settings", None))
        if not stored:
            self.audit.record("pin_refused", why="no_pin_set")
            raise NoPinSet("no technician PIN is set")
        with self.state.locked():
            self._check_pin(pin, stored)

    def _check_pin(self, pin: str, stored: str) -> None:
        status = self.lock_status()
        if status.damaged:  # a new lock from now, written down, so it ends
            raw = {k: v for k, v in self.state.load().items() if k in ("disabled_services", "paper_refills")}
            raw.update(failures=0, lockouts=1, locked_until=self._clock() + BACKOFF_FIRST_S)
            self.state.save(raw)
            self.audit.record("pin_refused", why="state_damaged", seconds=int(BACKOFF_FIRST_S))
            raise Locked("the lockout state was damaged", seconds=int(BACKOFF_FIRST_S))
        if status.locked:
            seconds = int(status.locked_for_s + 0.999)
            self.audit.record("pin_refused", why="locked", seconds=seconds)
            raise Locked(f"locked for {seconds} s", seconds=seconds)
        raw = {k: v for k, v in self.state.load().items() if k != "unreadable"}
        if pin_matches(pin, stored):
            raw.update(failures=0, lockouts=0, locked_until=0)
            self.state.save(raw)
            self.audit.record("pin_ok")
            return
        failures = status.failures + 1
        lockouts = status.lockouts
        if failures >= MAX_WRONG or lockouts > 0:
            lockouts += 1
            seconds = min(BACKOFF_FIRST_S * 2 ** (lockouts - 1), BACKOFF_MAX_S)
            raw.update(failures=0, lockouts=lockouts, locked_until=self._clock() + seconds)
            self.state.save(raw)
            self.audit.record("pin_wrong", failures=failures, locked_s=seconds, lockouts=lockouts)
            raise Locked(f"locked for {seconds:.0f} s", seconds=int(seconds))
        raw.update(failures=failures, lockouts=lockouts, locked_until=0)
        self.state.save(raw)
        self.audit.record("pin_wrong", failures=failures)
        raise WrongPin(f"wrong PIN ({failures})", left=MAX_WRONG - failures)

    # sessions --------------------------------------------------------------------------------
    def busy_transactions(self) -> list[Any]:
        """Open transactions a flow (or a recovery step) is working on now: a citizen's."""
        money = getattr(self.ctx, "money", None)
        return [tx for tx in self.ctx.journal.open_transactions()
                if money is not None and money.is_claimed(tx.tx_id)]

    def refuse_if_busy(self) -> None:
        """TransactionOpen (audited) while a citizen's transaction is under way."""
        busy = self.busy_transactions()
        if busy:
            self.audit.record("session_refused", why="transaction_open", transactions=len(busy))
            raise TransactionOpen(f"{len(busy)} transaction(s) under way", count=len(busy))

    def open_session(self, pin: str, *, status: Any = None) -> "MaintenanceSession":
        """The technician's session, after the PIN; TransactionOpen while a citizen's
        transaction is under way (checked first: a citizen's session is never interrupted,
        and a PIN typed then does not count)."""
        self.refuse_if_busy()
        self.check_pin(pin)
        self.audit.record("session_start")
        return MaintenanceSession(self, status=status)


# --- the session -----------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckResult:
    """What one test did: ok, the message key saying so and its params (for the screen)."""

    ok: bool
    key: str
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Totals:
    """Transactions created on one Tehran day: counts and sums by kind and by state."""

    day: dt.date
    count: int
    sum_rials: int
    by_kind: Mapping[str, tuple[int, int]]
    by_state: Mapping[str, tuple[int, int]]

    @property
    def completed(self) -> tuple[int, int]:
        return self.by_state.get("COMPLETED", (0, 0))

    def to_dict(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "count": self.count, "sum_rials": self.sum_rials,
                "by_kind": {k: {"count": c, "sum_rials": s} for k, (c, s) in self.by_kind.items()},
                "by_state": {k: {"count": c, "sum_rials": s} for k, (c, s) in self.by_state.items()}}


#: transaction data an operator needs to finish a refund (strings are redacted once more)
DETAIL_KEYS = ("masked_pan", "rrn", "stan", "poi_reference", "tracking", "reversal_outcome", "error_condition",
               "error", "reason", "bill_id", "payment_id")


def operator_details(tx: Any) -> dict[str, Any]:
    data = tx.data if isinstance(tx.data, Mapping) else {}
    out: dict[str, Any] = {}
    for key in DETAIL_KEYS:
        value = data.get(key)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            out[key] = redact(str(value))[:64]
    return out


def day_bounds(day: dt.date) -> tuple[float, float]:
    start = dt.datetime.combine(day, dt.time(0), tzinfo=TEHRAN)
    return start.timestamp(), (start + dt.timedelta(days=1)).timestamp()


def journal_totals(journal: Any, day: dt.date | None = None, *, clock: Callable[[], float] = time.time) -> Totals:
    """Count and sum, by kind and by state, of the transactions created on `day` (Tehran;
    default today). Reads every transaction once."""
    day = day or dt.datetime.fromtimestamp(clock(), TEHRAN).date()
    start, end = day_bounds(day)
    by_kind: dict[str, list[int]] = {}
    by_state: dict[str, list[int]] = {}
    count = total = 0
    for tx in journal.transactions():
        if not start <= tx.created_at < end:
            continue
        count += 1
        total += tx.amount_rials
        for table, name in ((by_kind, tx.kind), (by_state, str(tx.state))):
            row = table.setdefault(name, [0, 0])
            row[0] += 1
            row[1] += tx.amount_rials
    return Totals(day, count, total, {k: (c, s) for k, (c, s) in sorted(by_kind.items())},
                  {k: (c, s) for k, (c, s) in sorted(by_state.items())})


class MaintenanceSession:
    """What a technician does once in. Each action is audited; none needs the PIN again."""

    def __init__(self, gate: Maintenance, *, status: Any = None) -> None:
        self.gate = gate
        self.ctx = gate.ctx
        self.status = status  # a kiosk.status.StatusCoordinator the home tiles follow, if any
        self.audit = gate.audit
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.audit.record("session_end")

    # devices ---------------------------------------------------------------------------------
    def devices(self) -> list[dict[str, Any]]:
        """Every configured device: its class, state, consumables, counters and last error."""
        rows = []
        for name, st in self.ctx.devices.status_map().items():
            error = st.last_error or {}
            rows.append({"name": name, "class": st.device_class, "driver": st.driver, "state": str(st.state),
                         "consumables": dict(st.consumables), "counters": dict(st.counters),
                         "last_error": str(error.get("error_code") or error.get("type") or "") if error else ""})
        return rows

    def _first(self, contract: type) -> Any:
        return self.ctx.devices.first(contract)

    async def test_print(self) -> CheckResult:
        """A small test page on the receipt printer, with a QR naming the kiosk and the time."""
        from devices.base import DeviceError
        from devices.contracts import ReceiptPrinter
        from kiosk.receipt_issuer import render_for

        printer = self._first(ReceiptPrinter)
        if printer is None:
            return self._done("test_print", CheckResult(False, "maint.no_device", {"device": "device.ReceiptPrinter"}))
        now = dt.datetime.fromtimestamp(self.gate._clock(), dt.UTC)
        try:
            await printer.print_job(await render_for(printer, build_test_page(self.ctx.kiosk_id, printer.name, now,
                                                                        self._lang())))
        except DeviceError as exc:
            return self._done("test_print", CheckResult(False, "maint.test_failed",
                                                       {"device": "device.ReceiptPrinter",
                                                        "code": exc.error_code or type(exc).__name__}))
        return self._done("test_print", CheckResult(True, "maint.test_print_ok"))

    async def scan_test(self, timeout: float = 30.0) -> CheckResult:
        """Wait for one code on the scanner; its format and (redacted, short) text."""
        from devices.base import DeviceError
        from devices.contracts import Scanner

        scanner = self._first(Scanner)
        if scanner is None:
            return self._done("scan_test", CheckResult(False, "maint.no_device", {"device": "device.Scanner"}))
        try:
            code = await scanner.read(timeout=timeout)
        except DeviceError as exc:
            return self._done("scan_test", CheckResult(False, "maint.test_failed",
                                                      {"device": "device.Scanner",
                                                       "code": exc.error_code or type(exc).__name__}))
        shown = redact(code.text)
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        # the audit keeps the format and length only: a code may be a citizen's slip
        self.audit.record("scan_test", ok=True, format=code.format, length=len(code.text))
        return CheckResult(True, "maint.scan_ok", {"format": code.format, "code": shown})

    async def card_read(self, timeout: float = 30.0) -> CheckResult:
        """Detect a card on the transit card reader: its type and the end of its UID."""
        from devices.base import DeviceError
        from devices.contracts import CardReader

        reader = self._first(CardReader)
        if reader is None:
            return self._done("card_read", CheckResult(False, "maint.no_device", {"device": "device.CardReader"}))
        try:
            card = await reader.wait_for_card(timeout=timeout)
        except DeviceError as exc:
            return self._done("card_read", CheckResult(False, "maint.test_failed",
                                                      {"device": "device.CardReader",
                                                       "code": exc.error_code or type(exc).__name__}))
        uid = "…" + card.uid[-4:].upper()  # a citizen's card: its UID is not shown or kept whole
        return self._done("card_read", CheckResult(True, "maint.card_ok", {"card_type": card.card_type, "uid": uid}))

    async def paper_refilled(self) -> CheckResult:
        """The technician loaded paper: the driver's own paper counter is reset where it has
        one, the sensor is read again now (so a low/out state clears without waiting for the
        next poll), and the refill is recorded with the printer's job count."""
        from devices.base import DeviceError
        from devices.contracts import ReceiptPrinter

        printer = self._first(ReceiptPrinter)
        if printer is None:
            return self._done("paper_refilled", CheckResult(False, "maint.no_device",
                                                           {"device": "device.ReceiptPrinter"}))
        reset = getattr(printer, "reset_paper_counter", None)
        if callable(reset):
            result = reset()
            if hasattr(result, "__await__"):
                await result
        try:
            paper = str(await printer.paper_state())
        except DeviceError as exc:
            paper = f"error:{exc.error_code or type(exc).__name__}"
        with self.gate.state.locked():
            raw = {k: v for k, v in self.gate.state.load().items() if k != "unreadable"}
            refills = list(raw.get("paper_refills", []))[-49:]
            refills.append({"at": round(self.gate._clock(), 3), "printer": printer.name,
                            "jobs": int(printer.counters.get("jobs", 0))})
            raw["paper_refills"] = refills
            self.gate.state.save(raw)
        ok = paper in ("ok", "unknown")
        return self._done("paper_refilled", CheckResult(ok, "maint.paper_ok" if ok else "maint.paper_still",
                                                       {"paper": paper}), paper=paper)

    # the journal -----------------------------------------------------------------------------
    def totals(self, day: dt.date | None = None) -> Totals:
        return journal_totals(self.ctx.journal, day, clock=self.gate._clock)

    def needs_operator(self) -> list[dict[str, Any]]:
        """REFUND_PENDING transactions (an operator refunds them) and open ones nobody is
        working on (recovery could not finish them yet), oldest first, with their details."""
        from kiosk.journal import TxState

        txs = [t for t in self.ctx.journal.transactions() if t.state == TxState.REFUND_PENDING]
        txs += [t for t in self.ctx.journal.open_transactions() if not self.ctx.money.is_claimed(t.tx_id)]
        txs.sort(key=lambda t: t.created_at)
        return [{"tx_id": t.tx_id, "kind": t.kind, "amount_rials": t.amount_rials, "state": str(t.state),
                 "created_at": t.created_at, "updated_at": t.updated_at, "details": operator_details(t)}
                for t in txs]

    async def print_day_report(self, day: dt.date | None = None) -> CheckResult:
        """The end-of-day report on the receipt printer: today's totals by kind and state,
        what waits for an operator, the printer's counters."""
        from devices.base import DeviceError
        from devices.contracts import ReceiptPrinter
        from kiosk.receipt_issuer import render_for

        totals = await asyncio.to_thread(self.totals, day)  # off the event loop: the whole journal is read
        printer = self._first(ReceiptPrinter)
        if printer is None:
            return self._done("day_report", CheckResult(False, "maint.no_device", {"device": "device.ReceiptPrinter"}))
        pending = await asyncio.to_thread(self.needs_operator)
        now = dt.datetime.fromtimestamp(self.gate._clock(), dt.UTC)
        doc = build_day_report(totals, pending, self.devices(), kiosk_id=self.ctx.kiosk_id, printed_at=now,
                         lang=self._lang())
        try:
            await printer.print_job(await render_for(printer, doc))
        except DeviceError as exc:
            return self._done("day_report", CheckResult(False, "maint.test_failed",
                                                       {"device": "device.ReceiptPrinter",
                                                        "code": exc.error_code or type(exc).__name__}))
        return self._done("day_report", CheckResult(True, "maint.report_ok",
                                                   {"count": totals.count, "sum_rials": totals.sum_rials}),
                          count=totals.count)

    # services --------------------------------------------------------------------------------
    def services(self) -> list[dict[str, Any]]:
        """Each citizen service: taken out by the technician or not, and whether it can run."""
        from kiosk.status import SERVICE_NEEDS

        disabled = set(self.gate.state.disabled_services())
        names = list(self.status.needs) if self.status is not None else list(SERVICE_NEEDS)
        out = []
        for name in names:
            row: dict[str, Any] = {"service": name, "disabled": name in disabled}
            if self.status is not None:
                st = self.status.service(name)
                row.update(available=st.available, reason=st.reason.key if st.reason else None)
            out.append(row)
        return out

    def set_service(self, service: str, in_service: bool) -> tuple[str, ...]:
        """Take `service` out of service (False) or back in (True): persisted, audited, and
        pushed to the status coordinator so the home tile shows it at once."""
        from kiosk.status import SERVICE_NEEDS, apply_disabled

        known = set(self.status.needs) if self.status is not None else set(SERVICE_NEEDS)
        if service not in known:
            raise ValueError(f"unknown service {service!r}")
        with self.gate.state.locked():
            raw = {k: v for k, v in self.gate.state.load().items() if k != "unreadable"}
            disabled = [s for s in raw.get("disabled_services", []) if s != service]
            if not in_service:
                disabled.append(service)
            raw["disabled_services"] = sorted(set(disabled))
            self.gate.state.save(raw)
        self.audit.record("service_in" if in_service else "service_out", service=service)
        if self.status is not None:
            apply_disabled(self.status, raw["disabled_services"])
        return tuple(raw["disabled_services"])

    # helpers ---------------------------------------------------------------------------------
    def _lang(self) -> str:
        return str(getattr(self.ctx.settings, "lang", "fa") or "fa")

    def _done(self, event: str, result: CheckResult, **extra: Any) -> CheckResult:
        params = {k: v for k, v in result.params.items() if k in ("device", "code")}
        self.audit.record(event, ok=result.ok, **params, **extra)
        return result


# --- printed documents -----------------------------------------------------------------------

def _pick(key: str, lang: str, **params: Any) -> str:
    from kiosk.messages import text

    return text(key, lang, **params)


def build_test_page(kiosk_id: str, printer_name: str, now: dt.datetime, lang: str = "fa") -> Any:
    """A short test page: the kiosk, the printer, the time, a rule and a QR to scan back."""
    from kiosk.fmt import format_datetime
    from kiosk.receipts.layout import QR, Document, Feed, Heading, Row, Separator, Text
    from kiosk.text.bidi import ltr

    return Document((
        Heading(_pick("maint.doc.test_title", lang)),
        Row(_pick("maint.doc.kiosk", lang), ltr(kiosk_id)),
        Row(_pick("maint.doc.printer", lang), ltr(printer_name)),
        Row(_pick("maint.doc.time", lang), format_datetime(now, lang)),
        Separator(),
        Text("ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789", align="center"),
        Text(" ".join("ابپتثجچحخدذرزژسشصضطظعغفقکگلمنوهی"), align="center"),  # every letter, on its own
        Text("گزارش پایان روز — ۰۱۲۳۴۵۶۷۸۹", align="center"),  # joined letters and Persian digits
        QR(f"CITY-KIOSK-TEST {kiosk_id} {now.isoformat(timespec='seconds')}"),
        Feed(2),
    ), direction="rtl" if lang == "fa" else "ltr")


def build_day_report(totals: Totals, pending: Iterable[Mapping[str, Any]], devices: Iterable[Mapping[str, Any]], *,
               kiosk_id: str, printed_at: dt.datetime, lang: str = "fa") -> Any:
    """The end-of-day report: totals by kind and by state, what waits for an operator, each
    device's counters; a QR with the figures, for whoever files the report."""
    from kiosk.fmt import format_datetime, format_jalali_date, format_number, format_rials
    from kiosk.receipts.layout import QR, Document, Feed, Heading, Row, Separator, Text
    from kiosk.text.bidi import ltr

    def count_sum(c: int, s: int) -> str:
        return f"{format_number(c, lang)} / {format_rials(s, lang)}"

    pending = list(pending)
    blocks: list[Any] = [
        Heading(_pick("maint.doc.report_title", lang)),
        Row(_pick("maint.doc.kiosk", lang), ltr(kiosk_id)),
        Row(_pick("maint.doc.day", lang), format_jalali_date(totals.day, lang)),
        Row(_pick("maint.doc.time", lang), format_datetime(printed_at, lang)),
        Separator(),
        Row(_pick("maint.doc.all", lang), count_sum(totals.count, totals.sum_rials), bold=True),
        Text(_pick("maint.doc.by_kind", lang), bold=True),
        *[Row(ltr(kind), count_sum(c, s)) for kind, (c, s) in totals.by_kind.items()],
        Text(_pick("maint.doc.by_state", lang), bold=True),
        *[Row(ltr(state), count_sum(c, s)) for state, (c, s) in totals.by_state.items()],
        Separator(),
        Row(_pick("maint.doc.pending", lang), count_sum(len(pending), sum(p["amount_rials"] for p in pending))),
        *[Row(ltr(p["tx_id"]), f"{ltr(p['state'])} {format_rials(p['amount_rials'], lang)}", size=20)
          for p in pending[:20]],
        Separator(),
        Text(_pick("maint.doc.devices", lang), bold=True),
    ]
    for d in devices:
        counters = ", ".join(f"{k}={v}" for k, v in sorted(d["counters"].items())) or "-"
        blocks.append(Row(ltr(d["name"]), ltr(f"{d['state']} {counters}"), size=20))
    completed = totals.completed
    blocks += [QR(f"CITY-KIOSK-EOD {kiosk_id} {totals.day.isoformat()} n={totals.count} sum={totals.sum_rials} "
                  f"completed={completed[0]}/{completed[1]} pending={len(pending)}"), Feed(2)]
    return Document(tuple(blocks), direction="rtl" if lang == "fa" else "ltr")


__all__ = ["AUDIT_FILE", "Audit", "BadPin", "LockStatus", "Locked", "Maintenance", "MaintenanceError",
           "MaintenanceSession", "MaintenanceState", "NoPinSet", "PIN_FILE", "PIN_HASH_KEY", "STATE_FILE",
           "CheckResult", "Totals", "TransactionOpen", "WrongPin", "build_day_report", "disabled_services", "hash_pin",
           "journal_totals", "normalise_pin", "operator_details", "pin_matches", "set_pin", "stored_pin_hash",
           "build_test_page"]
