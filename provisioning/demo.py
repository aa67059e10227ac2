"""A fleet on one machine (`make run-fleet`, or `python -m provisioning.demo`): a fleet server on
SQLite and loopback, a kiosk data dir that enrolls with its own key, a configuration pushed to
its site, a command, and the agent's run — then what the managers see. With --serve the
server keeps running (Ctrl-C stops) and prints the commands to try against it.

The steps are functions `kiosk ui-demo` (`make run`) uses too, for the demo kiosk's own fleet:
`ServerProcess` (`fleet serve` in a subprocess), `prepare` (a manager token, an enrollment
token, layers), `queue`, `server_view`, `AgentProcess` (`kiosk agent run` in a subprocess)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from kiosk.child_process import end_with_parent
from kiosk.maintenance import disabled_services
from provisioning.agent.runner import Agent, enroll


def sqlite_url(workdir: Path) -> str:
    return f"sqlite:///{Path(workdir) / 'fleet.sqlite3'}"


def _in_session(db: str, work: Callable[[Any], Any]) -> Any:
    """`work(session)` in one transaction on the fleet database, as the `fleet` CLI's admin."""
    from provisioning.server.db import make_engine, session_factory

    engine = make_engine(db)
    try:
        with session_factory(engine)() as s, s.begin():
            return work(s)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class Tokens:
    admin: str  # a manager token with the admin role: the dashboard's sign-in
    enroll: str  # an enrollment token for the site


def prepare(db: str, *, site: str, layers: Iterable[tuple[str, str, dict[str, Any]]] = (),
            label: str = "demo", admin: str = "demo-admin") -> Tokens:
    """A migrated fleet database gets an admin manager token, an enrollment token for `site`
    and the configuration layers given as (scope, target, layer), e.g. ("site", "north", {…})."""
    from provisioning.server import service as svc
    from provisioning.server.models import Role

    def work(s: Any) -> Tokens:
        tokens = Tokens(svc.create_manager_token(s, svc.CLI, admin, Role.ADMIN),
                        svc.create_enroll_token(s, svc.CLI, label=label, site=site))
        for scope, target, layer in layers:
            svc.push_layer(s, svc.CLI, scope, target, layer)
        return tokens

    return _in_session(db, work)  # type: ignore[no-any-return]


def queue(db: str, kiosk_id: str, kind: str, args: dict[str, Any] | None = None) -> int:
    """Queue a command for the kiosk; its id."""
    from provisioning.server import service as svc

    return int(_in_session(db, lambda s: svc.queue_command(s, svc.CLI, kiosk_id, kind, args).id))


def server_view(db: str, kiosk_id: str, interval_s: int) -> dict[str, Any]:
    """The kiosk as the managers see it (`fleet kiosk ID`), with its commands."""
    from provisioning.server import service as svc

    def work(s: Any) -> dict[str, Any]:
        return {**svc.get_kiosk(s, kiosk_id, interval_s), "commands": svc.list_commands(s, kiosk_id)}

    return _in_session(db, work)  # type: ignore[no-any-return]


# --- subprocesses that go with their parent ------------------------------------------------------

def spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start `argv` in its own session (a Ctrl-C at the terminal reaches only the parent, which
    stops it), its output appended to `log`, and ended with its parent. Start it from the
    thread that lives as long as it should (the death signal follows the starting thread)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)  # private, as the data dir
    with os.fdopen(fd, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=end_with_parent(), env=env)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # as Ctrl-C: uvicorn and the kiosk command stop cleanly
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _python(module_main: str) -> list[str]:
    return [sys.executable, "-c", f"import sys; from {module_main} import main; sys.exit(main(sys.argv[1:]))"]


class ServerProcess:
    """`fleet serve --db DB --port 0 --interval N` in a subprocess: start() returns at once (it
    migrates and starts meanwhile), url() waits for it to say where it listens."""

    def __init__(self, db: str, log: Path, *, interval_s: int = 10, port: int = 0) -> None:
        self.db, self.log, self.interval_s, self.port = db, Path(log), interval_s, port
        self.proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None

    def start(self) -> "ServerProcess":
        self.log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = spawn([*_python("provisioning.server.cli"), "serve", "--db", self.db, "--port", str(self.port),
                           "--interval", str(self.interval_s)], self.log)
        return self

    def url(self, timeout: float = 60.0) -> str:
        """The server's URL once it serves; RuntimeError (with its last output) if it stops or
        takes longer than `timeout`."""
        end = time.monotonic() + timeout
        while self._url is None:
            with open(self.log, "rb") as f:
                f.seek(self._offset)
                found = re.search(rb"fleet: serving (http://\S+?);", f.read())
            if found:
                self._url = found.group(1).decode()
                break
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > end:
                tail = self.log.read_bytes()[-800:].decode(errors="replace")
                raise RuntimeError(f"the fleet server did not start: {tail}")
            time.sleep(0.05)
        return self._url

    def stop(self) -> None:
        stop_process(self.proc)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AgentProcess:
    """`kiosk agent run --data-dir D` (an enrolled kiosk's agent, at the server's interval) in a
    subprocess, its log in `log`."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.data_dir, self.log = Path(data_dir), Path(log)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "AgentProcess":
        self.proc = spawn([*_python("kiosk.cli"), "agent", "run", "--data-dir", str(self.data_dir)], self.log)
        return self

    def stop(self) -> None:
        stop_process(self.proc)


# --- `make run`'s fleet: the demo kiosk's own ---------------------------------------------------------

DEMO_SERIAL = "kiosk-demo-01"  # the demo kiosk's id (kiosk_demo.environment.KIOSK_ID)
DEMO_SITE = "demo"
DEMO_LAYERS = (("fleet", "", {"pay_timeout_s": 90}),
               ("site", DEMO_SITE, {"extra": {"brand": "city-kiosk-demo"}}))
#: harmless to the walk-throughs (the service they use, put in service) and visible in its result
DEMO_COMMAND = ("enable_service", {"service": "fee_payment"})


class KioskFleet:
    """The demo kiosk's fleet, for `kiosk ui-demo` (`make run`): `start()` launches `fleet serve`
    on SQLite under `<data dir>/fleet-demo/` (it migrates and starts while the kiosk does other
    things); `join()` — with no kiosk holding the data dir — makes an admin manager token and an
    enrollment token, pushes a fleet and a site layer, enrolls the data dir's agent, queues a
    command, has the agent run once (signed configuration applied, journal uploaded, command
    done), then leaves `kiosk agent run` going in a subprocess at a short interval; `finish()`
    uploads what the kiosk journaled since; `stop()` ends both processes. A fresh fleet every
    run: the agent's enrollment from an earlier run (a server that no longer exists) is dropped."""

    def __init__(self, data_dir: Path, *, interval_s: int = 3,
                 echo: Callable[[str], None] = lambda line: print(line, flush=True)) -> None:
        self.data_dir = Path(data_dir)
        self.work = self.data_dir / "fleet-demo"
        self.db = sqlite_url(self.work)
        self.interval_s = interval_s
        self.echo = echo
        self.server = ServerProcess(self.db, self.work / "server.log", interval_s=interval_s)
        self.agent: AgentProcess | None = None
        self.url: str | None = None
        self.tokens: Tokens | None = None
        self.kiosk_id: str | None = None
        self.error: str | None = None

    def start(self) -> "KioskFleet":
        import shutil

        from provisioning.agent.state import DIR

        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(mode=0o700, parents=True)
        for name in ("agent.json", "applied.json", "config-state.json", "outbox.json", "kiosk.json.bak"):
            (self.data_dir / DIR / name).unlink(missing_ok=True)
        config = self.data_dir / "kiosk.json"
        if not config.exists():  # what the fleet's layers merge over (the demo kiosk's identity only)
            fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(json.dumps({"kiosk_id": DEMO_SERIAL}))
        self.server.start()
        return self

    def join(self) -> bool:
        """Enroll, configure, command, upload (see the class); False (and the reason said) when
        any of it fails — the kiosk's demo goes on without its fleet."""
        try:
            self._join()
            return True
        except Exception as exc:  # the server's or the agent's failure: said, not hidden
            self.error = f"{type(exc).__name__}: {exc}"[:600]
            self.echo(f"fleet: failed: {self.error} (its log: {self.server.log})")
            return False

    def _join(self) -> None:
        self.url = self.server.url()
        self.tokens = prepare(self.db, site=DEMO_SITE, layers=DEMO_LAYERS)
        state = enroll(self.data_dir, self.url, self.tokens.enroll, serial=DEMO_SERIAL)
        self.kiosk_id = state.kiosk_id
        self.echo(f"fleet: enrolled {state.kiosk_id} with {self.url} ({state.status}; its key in "
                  f"{self.data_dir / 'fleet' / 'agent.key'}, the fleet's key pinned)")
        kind, args = DEMO_COMMAND
        cid = queue(self.db, state.kiosk_id, kind, args)
        report = Agent(self.data_dir).run_once()
        view = server_view(self.db, state.kiosk_id, self.interval_s)
        config = view["config"]
        self.echo(f"fleet: configuration version {config['reported_version']} {report.config or 'unchanged'} "
                  f"(signed by the fleet's key; kiosk.json now has "
                  f"{', '.join(sorted(config['desired']))}), in sync: {'yes' if config['in_sync'] else 'no'}")
        for c in report.commands:
            self.echo(f"fleet: command {c['id']} ({kind} {' '.join(f'{k}={v}' for k, v in args.items())}) "
                      f"{c['status']}: {c['result']}")
        if not any(c["id"] == cid for c in report.commands):
            self.echo(f"fleet: command {cid} ({kind}) not delivered")
        self._say_journal(report.journal, view)
        self.agent = AgentProcess(self.data_dir, self.work / "agent.log").start()
        self.echo(f"fleet: `kiosk agent run` beside the kiosk, a heartbeat every {self.interval_s} s")
        for line in self.dashboard_lines():
            self.echo(line)

    def _say_journal(self, sent: str, view: dict[str, Any]) -> None:
        from provisioning.agent.local import journal_summary

        head = journal_summary(self.data_dir)["journal_head"]
        held = view["journal"]
        problems = held.get("problems") or []
        self.echo(f"fleet: journal uploaded ({sent}): the server holds it up to seq {held['head_seq']}, the kiosk's "
                  f"head is seq {head[0]}{'' if held['head_hash'] == head[1] else ' (heads differ)'}"
                  f"{'; problems: ' + str(problems) if problems else ''}")

    def dashboard_lines(self) -> list[str]:
        if not self.url or not self.tokens:
            return []
        return [f"fleet dashboard: {self.url}/ui/ — sign in with the manager token {self.tokens.admin}"]

    def wait_status(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The kiosk as the server sees it once a heartbeat carried its running devices' status
        (none "unknown"); None if none came in `timeout` (default: four intervals)."""
        if not self.kiosk_id:
            return None
        end = time.monotonic() + (timeout if timeout is not None else 4 * self.interval_s + 5)
        while time.monotonic() < end:
            view = server_view(self.db, self.kiosk_id, self.interval_s)
            devices = (view.get("heartbeat") or {}).get("devices") or {}
            if devices and "unknown" not in devices.values():
                return view
            time.sleep(0.5)
        return None

    def say_status(self, timeout: float | None = None) -> None:
        view = self.wait_status(timeout)
        if view is None:
            self.echo("fleet: no heartbeat with the running kiosk's device status came")
            return
        hb = view["heartbeat"]
        services = hb.get("services") or {}
        up = sorted(n for n, v in services.items() if v == "available")
        self.echo(f"fleet: the dashboard shows {view['kiosk_id']} {view['presence']}: "
                  + ", ".join(f"{n} {v}" for n, v in sorted(hb["devices"].items()))
                  + f"; {len(up)} of {len(services)} services available; configuration "
                  + f"{hb.get('config_state') or 'none'}"
                  + ("" if not view.get("alerts") else f"; alerts: {'; '.join(view['alerts'])}"))

    def wait_uploaded(self, timeout: float | None = None) -> bool:
        """Until the server holds the kiosk's journal up to its head (the agent's loop uploads
        it at each run); False if not within `timeout` (default: four intervals)."""
        from provisioning.agent.local import journal_summary

        end = time.monotonic() + (timeout if timeout is not None else 4 * self.interval_s + 5)
        while time.monotonic() < end:
            head = journal_summary(self.data_dir)["journal_head"]
            held = server_view(self.db, str(self.kiosk_id), self.interval_s)["journal"]
            if [held["head_seq"], held["head_hash"]] == list(head):
                return True
            time.sleep(0.5)
        return False

    def reconcile(self, backoffice_url: str, backoffice_db: str) -> dict[str, Any] | None:
        """`fleet reconcile` for today (Tehran) and this kiosk against the demo's running
        back-office, with an integration credential made for it there; the result is printed
        and stored (the dashboard's reconciliation page shows it). None when it could not run."""
        import datetime as dt
        import secrets

        from sqlalchemy.orm import Session

        from backoffice.auth import put_service_token
        from backoffice.db import make_engine
        from backoffice.models import ServiceRole
        from provisioning.server import reconcile as rec
        from provisioning.server import service as svc

        if not self.kiosk_id:
            return None
        try:
            if not self.wait_uploaded():
                self.echo("fleet: reconciliation: the journal is not all uploaded yet; reconciling what is held")
            token = secrets.token_urlsafe(32)
            engine = make_engine(backoffice_db)
            try:  # `backoffice token add fleet-demo --role integration` on the demo's back-office
                with Session(engine) as session, session.begin():
                    put_service_token(session, "fleet-demo", ServiceRole.INTEGRATION, token)
            finally:
                engine.dispose()
            day = dt.datetime.now(rec.TZ).date()
            records = rec.fetch_window(backoffice_url, token, day, self.kiosk_id)
            view = _in_session(self.db, lambda s: rec.reconcile(s, svc.CLI, day, records, self.kiosk_id))
        except Exception as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"[:600]
            self.echo(f"fleet: reconciliation failed: {self.error}")
            return None
        for line in rec.text_report(view).splitlines():
            self.echo(f"fleet: {line.strip()}")
        return view  # type: ignore[no-any-return]

    def finish(self) -> None:
        """With the kiosk stopped: the agent's loop ended, then one run that uploads the rows the
        kiosk journaled since (the touch walk-through's)."""
        if self.agent is not None:
            self.agent.stop()
            self.agent = None
        if not self.kiosk_id:
            return
        try:
            report = Agent(self.data_dir).run_once()
            self._say_journal(report.journal, server_view(self.db, self.kiosk_id, self.interval_s))
        except Exception as exc:
            self.error = self.error or f"{type(exc).__name__}: {exc}"[:600]
            self.echo(f"fleet: the last upload failed: {self.error}")

    def stop(self) -> None:
        if self.agent is not None:
            self.agent.stop()
            self.agent = None
        self.server.stop()


# --- `make run-fleet` ---------------------------------------------------------------------------------

KIOSK_ID = "kiosk-tajrish-03"
SITE = "tajrish"
LAYERS = (("fleet", "", {"lang": "fa", "pay_timeout_s": 90}),
          ("site", SITE, {"topup_max_rials": 3_000_000, "extra": {"brand": "tajrish-square"}}))


def run(workdir: Path, *, serve: bool = False, port: int = 0) -> dict[str, Any]:
    db = sqlite_url(workdir)
    interval = 10
    with ServerProcess(db, workdir / "fleet-server.log", interval_s=interval, port=port) as server:
        url = server.url()
        tokens = prepare(db, site=SITE, layers=LAYERS)
        data = workdir / "kiosk"
        data.mkdir(mode=0o700, exist_ok=True)
        (data / "kiosk.json").write_text(json.dumps({"kiosk_id": KIOSK_ID, "lang": "en"}))
        state = enroll(data, url, tokens.enroll, serial=KIOSK_ID)
        queue(db, state.kiosk_id, "maintenance_on")
        report = Agent(data).run_once()
        view = server_view(db, state.kiosk_id, interval)
        result = {"server": url, "db": db, "kiosk_data_dir": str(data), "agent_run": report.as_dict(),
                  "kiosk_json": json.loads((data / "kiosk.json").read_text()),
                  "services_out_of_service": list(disabled_services(data)), "server_view": view}
        print(json.dumps(result, ensure_ascii=False, indent=2))
        if serve:
            q = shlex.quote
            print(f"\nfleet server on {url} (Ctrl-C stops); dashboard {url}/ui/ (sign in with {tokens.admin}). Try:\n"
                  f"  fleet kiosks --db {q(db)}\n"
                  f"  fleet command {KIOSK_ID} upload_logs --db {q(db)}\n"
                  f"  kiosk agent run --once --data-dir {q(str(data))}\n"
                  f"  fleet commands {KIOSK_ID} --db {q(db)}\n"
                  f"  curl -H 'Authorization: Bearer {tokens.admin}' {url}/api/v1/kiosks", flush=True)
            while server.proc is not None and server.proc.poll() is None:
                time.sleep(1)
        return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m provisioning.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="work here (default: a temporary dir, removed at the end)")
    parser.add_argument("--serve", action="store_true", help="keep the server running afterwards")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        if args.dir:
            Path(args.dir).mkdir(parents=True, exist_ok=True)
            run(Path(args.dir), serve=args.serve, port=args.port)
        else:
            with tempfile.TemporaryDirectory(prefix="fleet-demo-") as tmp:
                os.chmod(tmp, 0o700)
                run(Path(tmp), serve=args.serve, port=args.port)
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
