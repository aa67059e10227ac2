"""The agent's work: enroll once, then runs (one run = status check, heartbeat, config,
commands, outbox), repeated at the interval the server gives with back-off and jitter when
the server cannot be reached."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import logging
import random
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from kiosk.journal import Journal, canonical_json, journal_path
from kiosk.settings import CONFIG_FILENAME
from provisioning.agent import apply as applying
from provisioning.agent.client import FleetClient
from provisioning.agent.errors import AgentError, ConfigRefused, FleetRefused, FleetUnavailable, NotEnrolled
from provisioning.agent.local import data_lock_holder, device_status, journal_summary, service_status
from provisioning.agent.state import AgentState, fleet_dir, load_or_create_key, read_json, write_json
from provisioning.common import signing
from provisioning.common.config import covers

log = logging.getLogger("fleet.agent")

MAX_BACKOFF_S = 900
LOG_TAIL_BYTES = 32 * 1024
JOURNAL_BATCH = 500
MAX_JOURNAL_BATCHES = 20  # per run: a long backlog goes over several runs


def app_version() -> str:
    try:
        return importlib.metadata.version("city-kiosk")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def default_serial(data_dir: Path) -> str | None:
    raw = read_json(Path(data_dir) / CONFIG_FILENAME, {}) or {}
    return raw.get("kiosk_id") if isinstance(raw, dict) else None


def enroll(data_dir: Path, server_url: str, token: str, *, serial: str, model: str = "city-kiosk",
           fleet_key: str | None = None, restart_command: list[str] | None = None,
           restart_to_apply: bool = False) -> AgentState:
    """Make (or reuse) this kiosk's key and enroll it. The fleet's public key from the answer is
    pinned (or, with `fleet_key`, checked against the one the installer was given)."""
    key = load_or_create_key(data_dir)
    client = FleetClient(server_url, key, signing.ENROLL_ID)
    answer = client.call("POST", "/api/v1/enroll", {
        "token": token, "serial": serial, "model": model, "app_version": app_version(),
        "public_key": signing.public_b64(key)})
    if fleet_key and answer["fleet_public_key"] != fleet_key:
        raise AgentError("the server's fleet key is not the one given with --fleet-key; not enrolled")
    state = AgentState(server_url=server_url.rstrip("/"), kiosk_id=answer["kiosk_id"], status=answer["status"],
                       fleet_public_key=answer["fleet_public_key"], interval_s=int(answer["interval_s"]),
                       restart_command=list(restart_command or []), restart_to_apply=restart_to_apply)
    state.save(data_dir)
    _log(data_dir, f"enrolled as {state.kiosk_id}: {state.status}")
    return state


def _log(data_dir: Path, line: str) -> None:
    log.info("%s", line)
    path = fleet_dir(data_dir) / "agent.log"
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{signing.iso(dt.datetime.now(dt.timezone.utc))} {line}\n")


@dataclass
class RunReport:
    status: str = ""
    heartbeat: bool = False
    config: str = ""
    commands: list[dict[str, Any]] = field(default_factory=list)
    interval_s: int = 60
    journal: str = ""
    restarted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "heartbeat": self.heartbeat, "config": self.config,
                "journal": self.journal, "commands": self.commands, "interval_s": self.interval_s,
                "restarted": self.restarted}


class Agent:
    def __init__(self, data_dir: Path, *, session: Any = None) -> None:
        self.data_dir = Path(data_dir)
        state = AgentState.load(self.data_dir)
        if state is None:
            raise NotEnrolled()
        self.state = state
        self.client = FleetClient(state.server_url, load_or_create_key(self.data_dir), state.kiosk_id,
                                  session=session)
        self.config_state = (read_json(fleet_dir(self.data_dir) / "config-state.json", {}) or {}).get("state")

    # -- one run --
    def run_once(self) -> RunReport:
        report = RunReport()
        self._flush_outbox()
        if self.state.status != "accepted":
            answer = self.client.call("GET", "/api/v1/agent/status")
            if answer["status"] != self.state.status:
                _log(self.data_dir, f"status {self.state.status} -> {answer['status']}")
            self.state.status = answer["status"]
            self.state.save(self.data_dir)
            if self.state.status != "accepted":
                report.status = self.state.status
                return report
        report.status = "accepted"
        try:
            answer = self.client.call("POST", "/api/v1/agent/heartbeat", self.heartbeat_body())
        except FleetRefused as exc:
            self._refused(exc)
            raise
        report.heartbeat = True
        report.interval_s = self.state.interval_s = int(answer.get("interval_s") or self.state.interval_s)
        current = applying.applied(self.data_dir)
        if answer.get("desired_config_version", 0) > (current.version if current else 0):
            report.config = self.update_config()
            # tell the server at once what now runs (AWS IoT's "reported")
            self.client.call("POST", "/api/v1/agent/heartbeat", self.heartbeat_body())
        report.restarted = self.restart_to_apply()
        report.journal = self.upload_journal(int(answer.get("journal_head_seq") or 0))
        for cmd in answer.get("commands", []):
            report.commands.append(self.run_command(cmd))
        self._flush_outbox()
        self.state.save(self.data_dir)
        return report

    def _refused(self, exc: FleetRefused) -> None:
        if exc.code.startswith("kiosk."):  # revoked or rejected: cut off
            self.state.status = exc.code.split(".", 1)[1]
            self.state.save(self.data_dir)
            _log(self.data_dir, f"the server says this kiosk is {self.state.status}")

    def heartbeat_body(self) -> dict[str, Any]:
        current = applying.applied(self.data_dir)
        runs, staged = applying.running(self.data_dir, current)
        summary = journal_summary(self.data_dir)
        holder = data_lock_holder(self.data_dir)
        keys = list(current.settings) if current else []
        state = self.config_state
        if staged and current is not None:
            # the kiosk process still runs what it loaded before the last write
            version = runs["version"] if runs else None
            settings = (runs or {}).get("settings") or {}
            values = {k: settings[k] for k in keys if k in settings}
            state = f"staged: version {current.version} runs from the kiosk's next start"
        else:
            version = current.version if current else None
            values = applying.current_values(self.data_dir, keys)
            if state and state.startswith("staged"):
                state = self._set_config_state("applied")  # the kiosk has restarted since
            if current is not None and state in (None, "applied"):
                drift = sorted(k for k, v in values.items() if not covers(v, current.settings.get(k)))
                missing = sorted(set(keys) - set(values))
                if drift or missing:
                    state = f"drift: kiosk.json differs from version {current.version} in {', '.join(drift + missing)}"
        return {"app_version": app_version(), "config_version": version, "config_values": values,
                "config_state": state, "devices": device_status(self.data_dir),
                "services": service_status(self.data_dir), "data_lock": f"pid {holder}" if holder else "free",
                **summary}

    def _set_config_state(self, state: str) -> str:
        self.config_state = state
        write_json(fleet_dir(self.data_dir) / "config-state.json", {"state": state})
        return state

    def update_config(self) -> str:
        doc = self.client.call("GET", "/api/v1/agent/config")
        if doc is None:
            return "none"
        try:
            done = applying.apply_document(self.data_dir, doc, fleet_public_key=self.state.fleet_public_key,
                                           kiosk_id=self.state.kiosk_id)
        except ConfigRefused as exc:
            _log(self.data_dir, f"configuration refused: {exc.code}: {exc.reason}")
            return self._set_config_state(f"refused: {exc.code}: {exc.reason}"[:200])
        except applying.ConfigDeferred as exc:
            return self._set_config_state(f"pending: {exc.reason}"[:200])
        if done is not None:
            _log(self.data_dir, f"configuration version {done.version} written")
        _, staged = applying.running(self.data_dir)
        if staged:
            return self._set_config_state("staged: runs from the kiosk's next start")
        return self._set_config_state("applied")

    def restart_to_apply(self) -> bool:
        """With --restart-to-apply: a staged configuration waits and no transaction is open, so
        restart the kiosk (the hook) to run it — once per version."""
        current = applying.applied(self.data_dir)
        if not (self.state.restart_to_apply and self.state.restart_command and current is not None
                and current.version > self.state.restarted_for):
            return False
        _, staged = applying.running(self.data_dir, current)
        if not staged or journal_summary(self.data_dir)["open_transactions"]:
            return False
        self.state.restarted_for = current.version
        self.state.save(self.data_dir)
        try:
            self._restart()
        except (AgentError, applying.ConfigDeferred, OSError, subprocess.SubprocessError) as exc:
            _log(self.data_dir, f"restart to run configuration {current.version} failed: {exc}")
            return False
        _log(self.data_dir, f"kiosk restarted to run configuration version {current.version}")
        return True

    # -- journal upload --
    def upload_journal(self, server_head: int) -> str:
        """Send the rows after the server's head, in batches, as the journal stores them."""
        path = journal_path(self.data_dir)
        if not path.exists():
            return "nothing to send"
        journal = Journal.open_readonly(path)
        sent, after = 0, server_head
        try:
            for _ in range(MAX_JOURNAL_BATCHES):
                entries = journal.entries(after, JOURNAL_BATCH)
                if not entries:
                    break
                rows = [[e.seq, e.tx_id, str(e.state), e.at, e.kind, e.amount_rials, canonical_json(e.data),
                         e.prev_hash, e.hash] for e in entries]
                try:
                    answer = self.client.call("POST", "/api/v1/agent/journal", {"rows": rows})
                except FleetRefused as exc:
                    if not exc.code.startswith("journal."):
                        raise
                    _log(self.data_dir, f"journal upload refused: {exc.code}: {exc.reason}")
                    return f"refused: {exc.code}"
                sent += int(answer["stored"])
                after = int(answer["head_seq"])
        finally:
            journal.close()
        return f"{sent} row(s) sent"

    # -- commands --
    def run_command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        cid, kind = int(cmd["id"]), str(cmd["kind"])
        if cmd.get("status") == "queued":
            self._feedback(cid, "received", None)
        try:
            result = self._execute(kind, dict(cmd.get("args") or {}))
            status = "done"
        except applying.ConfigDeferred as exc:
            _log(self.data_dir, f"command {cid} ({kind}) deferred: {exc.reason}")
            return {"id": cid, "kind": kind, "status": "received", "result": f"deferred: {exc.reason}"}
        except (AgentError, OSError, subprocess.SubprocessError) as exc:
            status, result = "failed", str(exc)[:2000]
        _log(self.data_dir, f"command {cid} ({kind}) {status}")
        self._feedback(cid, status, result)
        return {"id": cid, "kind": kind, "status": status, "result": result}

    def _execute(self, kind: str, args: dict[str, str]) -> str:
        handlers: dict[str, Callable[[], str]] = {
            "restart": self._restart,
            "maintenance_on": lambda: self._maintenance(True),
            "maintenance_off": lambda: self._maintenance(False),
            "disable_service": lambda: self._service(args.get("service", ""), False),
            "enable_service": lambda: self._service(args.get("service", ""), True),
            "upload_logs": self._logs,
        }
        if kind not in handlers:
            raise AgentError(f"this agent does not know the command {kind!r}")
        return handlers[kind]()

    def _restart(self) -> str:
        if not self.state.restart_command:
            raise AgentError("no restart hook is configured (kiosk agent enroll --restart-command …)")
        open_now = journal_summary(self.data_dir)["open_transactions"]
        if open_now:  # never cut a citizen's transaction: the command waits for the next run
            raise applying.ConfigDeferred(f"{open_now} transaction(s) open")
        out = subprocess.run(self.state.restart_command, capture_output=True, text=True, timeout=60)
        if out.returncode != 0:
            raise AgentError(f"the restart hook exited {out.returncode}: {out.stderr.strip()[-300:]}")
        return "restart hook ran"

    # Services in and out of service go where the kiosk's own maintenance menu puts them
    # (kiosk/maintenance.py: maintenance-state.json, re-read by the running kiosk between
    # citizen sessions, so an open transaction is never cut), audited in its maintenance log.
    def _service(self, name: str, enable: bool) -> str:
        from kiosk.status import SERVICE_NEEDS

        if name not in SERVICE_NEEDS:
            raise AgentError(f"unknown service {name!r}; this kiosk has {', '.join(SERVICE_NEEDS)}")
        with self._state_lock():  # the kiosk's maintenance menu may change it meanwhile
            state = self._state()
            disabled = [s for s in state.get("disabled_services", []) if s != name] + ([] if enable else [name])
            state["disabled_services"] = sorted(set(disabled))
            self._save_state(state, "service_in" if enable else "service_out", service=name)
        return json.dumps({"disabled_services": state["disabled_services"]})

    def _maintenance(self, on: bool) -> str:
        """Every service out of service (on), or back (off) — only those this took out: one a
        technician took out stays out."""
        from kiosk.status import SERVICE_NEEDS

        with self._state_lock():
            return self._maintenance_locked(on, SERVICE_NEEDS)

    def _maintenance_locked(self, on: bool, SERVICE_NEEDS: Any) -> str:  # noqa: N803 - the kiosk's table
        state = self._state()
        disabled = set(state.get("disabled_services", []))
        if on:
            taken = sorted(set(SERVICE_NEEDS) - disabled) if not state.get("fleet_maintenance") else \
                list(state["fleet_maintenance"].get("taken", []))
            state["fleet_maintenance"] = {"on": True, "taken": taken}
            disabled |= set(SERVICE_NEEDS)
        else:
            taken = list((state.get("fleet_maintenance") or {}).get("taken", []))
            disabled -= set(taken)
            state.pop("fleet_maintenance", None)
        state["disabled_services"] = sorted(disabled)
        self._save_state(state, "fleet_maintenance_on" if on else "fleet_maintenance_off")
        return json.dumps({"maintenance": on, "disabled_services": state["disabled_services"]})

    def _state_lock(self) -> Any:
        """The lock the kiosk's maintenance takes around its own read, change and save of
        maintenance-state.json (kiosk.maintenance.MaintenanceState.locked): without it a
        technician's PIN attempt and a fleet command could each overwrite the other's change."""
        from kiosk.maintenance import MaintenanceState

        return MaintenanceState(self.data_dir).locked()

    def _state(self) -> dict[str, Any]:
        from kiosk.maintenance import MaintenanceState

        raw = MaintenanceState(self.data_dir).load()
        if raw.get("unreadable"):
            raise AgentError("maintenance-state.json cannot be read; a technician must look at it")
        return dict(raw)

    def _save_state(self, state: dict[str, Any], event: str, **details: Any) -> None:
        from kiosk.maintenance import Audit, MaintenanceState

        MaintenanceState(self.data_dir).save(state)
        Audit(self.data_dir).record(event, by="fleet", **details)

    def _logs(self) -> str:
        path = fleet_dir(self.data_dir) / "agent.log"
        data = path.read_bytes()[-LOG_TAIL_BYTES:] if path.exists() else b""
        summary = journal_summary(self.data_dir)
        return json.dumps({"journal": summary, "agent_log": data.decode("utf-8", "replace")}, ensure_ascii=False)

    # -- outbox: feedback survives a lost connection --
    def _outbox_path(self) -> Path:
        return fleet_dir(self.data_dir) / "outbox.json"

    def _feedback(self, cid: int, status: str, result: str | None) -> None:
        items = read_json(self._outbox_path(), []) or []
        items.append({"id": cid, "status": status, "result": result})
        write_json(self._outbox_path(), items)
        self._flush_outbox()

    def _flush_outbox(self) -> None:
        items = read_json(self._outbox_path(), []) or []
        while items:
            item = items[0]
            try:
                self.client.call("POST", f"/api/v1/agent/commands/{int(item['id'])}/feedback",
                                 {"status": item["status"], "result": item["result"]})
            except FleetUnavailable:
                break  # kept for the next run
            except FleetRefused as exc:
                if exc.code.startswith(("kiosk.", "auth.")):
                    raise
                _log(self.data_dir, f"feedback for command {item['id']} dropped: {exc.code}")
            items.pop(0)
            write_json(self._outbox_path(), items)


def run_forever(agent: Agent, *, stop: Callable[[], bool] = lambda: False,
                sleep: Callable[[float], None] = time.sleep) -> None:
    """Run at the server's interval; when it cannot be reached, back off exponentially (with
    jitter, so a fleet coming back after an outage does not arrive all at once)."""
    failures = 0
    while not stop():
        try:
            report = agent.run_once()
            failures = 0
            delay = float(report.interval_s)
        except FleetUnavailable as exc:
            failures += 1
            delay = min(MAX_BACKOFF_S, agent.state.interval_s * 2 ** min(failures, 10))
            log.warning("fleet server unavailable (%s); next try in about %.0f s", exc.detail, delay)
        except FleetRefused as exc:
            if exc.code.startswith("kiosk."):
                raise
            failures += 1
            delay = min(MAX_BACKOFF_S, agent.state.interval_s * 2 ** min(failures, 10))
            log.warning("fleet server refused (%s); next try in about %.0f s", exc.code, delay)
        sleep(delay * random.uniform(0.5, 1.5) if failures else delay * random.uniform(0.9, 1.1))
